"""Acceptance tests for the Task part of API.md (TaskSupervisor is tested elsewhere).

async_/await_, yield_, shutdown, await_many, yield_many, start, start_link and
async_stream with its ordering, concurrency, laziness and timeout options.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time

import pytest
from conftest import WAIT, down_of, raise_, tagged, wait_until

import otpy
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(30)


# --- helpers -----------------------------------------------------------------------------------


def wait_for_go(parent, value):
    """A task body: announce ("started", pid), wait for "go", return value."""
    otpy.send(parent, ("started", otpy.self()))
    otpy.receive(match=lambda m: m == "go")
    return value


def crash_on_go(parent, exc):
    otpy.send(parent, ("started", otpy.self()))
    otpy.receive(match=lambda m: m == "go")
    raise exc


def started() -> otpy.Pid:
    return assert_receive(tagged("started"), WAIT)[1]


def sleep_then_return(seconds):
    otpy.sleep(seconds)
    return seconds


class Concurrency:
    """Counts how many calls of a function run at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0

    def __enter__(self):
        with self.lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)

    def __exit__(self, *exc_info):
        with self.lock:
            self.running -= 1


# --- async_ / await_ -------------------------------------------------------------------------------


class TestAsyncAwait:
    def test_await_returns_the_value_of_the_function(self, runtime):
        assert otpy.Task.async_(lambda a, b: a + b, 1, 2).await_() == 3
        assert otpy.Task.async_(lambda: "x").await_(timeout=5.0) == "x"

    def test_the_task_runs_in_its_own_process_linked_to_the_caller(self, runtime):
        me = otpy.self()
        task = otpy.Task.async_(wait_for_go, me, "v")
        pid = started()
        assert pid != me
        assert pid in otpy.process_info(me).links
        otpy.send(pid, "go")
        assert task.await_() == "v"

    def test_a_task_started_by_a_process_is_linked_to_that_process(self, runtime):
        me = otpy.self()

        def owner():
            task = otpy.Task.async_(wait_for_go, me, "v")
            otpy.send(me, ("owner got", task.await_()))

        owner_pid = otpy.spawn(owner)
        task_pid = started()
        assert owner_pid in otpy.process_info(task_pid).links
        assert task_pid not in otpy.process_info(me).links
        otpy.send(task_pid, "go")
        assert assert_receive(tagged("owner got"), WAIT) == ("owner got", "v")

    def test_tasks_run_concurrently(self, runtime):
        start = time.monotonic()
        tasks = [otpy.Task.async_(sleep_then_return, 0.2) for _ in range(5)]
        assert [t.await_() for t in tasks] == [0.2] * 5
        assert time.monotonic() - start < 0.9

    def test_await_timeout_raises_timeout_naming_the_timeout(self, runtime):
        me = otpy.self()
        task = otpy.Task.async_(wait_for_go, me, "v")
        started()
        start = time.monotonic()
        with pytest.raises(otpy.Timeout) as info:
            task.await_(timeout=0.05)
        assert time.monotonic() - start < 1.0
        assert isinstance(info.value, TimeoutError)
        assert "0.05" in str(info.value)
        assert task.shutdown(otpy.BRUTAL_KILL) is None

    @pytest.mark.parametrize("timeout", [None, 0.5, 1, math.inf])
    def test_await_accepts_none_and_real_timeouts(self, runtime, timeout):
        assert otpy.Task.async_(lambda: 1).await_(timeout=timeout) == 1

    @pytest.mark.parametrize(
        "bad, error", [(-1, ValueError), (math.nan, ValueError), ("1", TypeError)]
    )
    def test_await_rejects_a_bad_timeout(self, runtime, bad, error):
        task = otpy.Task.async_(lambda: 1)
        with pytest.raises(error):
            task.await_(timeout=bad)
        assert task.await_() == 1

    def test_a_crash_makes_await_raise_exit_error_with_the_exception(self, runtime, trap):
        error = ValueError("task failed")
        task = otpy.Task.async_(raise_, error)
        with pytest.raises(otpy.ExitError) as info:
            task.await_()
        assert info.value.reason is error
        assert info.value.__cause__ is error

    def test_a_crash_kills_a_non_trapping_owner_through_the_link(self, runtime):
        me = otpy.self()
        error = ValueError("task failed")

        def owner():
            task = otpy.Task.async_(crash_on_go, me, error)
            task.await_(timeout=10)
            otpy.send(me, "await returned")  # must not happen

        pid, ref = otpy.spawn_monitor(owner)
        otpy.send(started(), "go")
        assert assert_receive(down_of(ref), WAIT) == otpy.Down(ref, pid, error)
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0, match=lambda m: m == "await returned")

    def test_a_crash_in_a_task_of_the_test_thread_surfaces_as_exit_error(self, runtime):
        error = ValueError("task failed")
        with pytest.raises(otpy.ExitError) as info:
            otpy.Task.async_(raise_, error).await_()
        assert info.value.reason is error
        # the thread goes on with a fresh process
        assert otpy.Task.async_(lambda: "fine").await_() == "fine"

    def test_only_the_owner_can_await_a_task(self, runtime):
        me = otpy.self()
        task = otpy.Task.async_(wait_for_go, me, "v")
        pid = started()

        def stranger():
            start = time.monotonic()
            try:
                task.await_(timeout=2.0)
            except Exception as exc:
                otpy.send(me, ("stranger", exc, time.monotonic() - start))
            else:
                otpy.send(me, ("stranger", None, time.monotonic() - start))

        otpy.spawn(stranger)
        _, error, elapsed = assert_receive(tagged("stranger"), WAIT)
        assert error is not None and not isinstance(error, otpy.Timeout)
        assert elapsed < 1.0
        otpy.send(pid, "go")
        assert task.await_() == "v"


# --- yield_ --------------------------------------------------------------------------------------


class TestYield:
    def test_yield_is_none_while_running_then_ok_with_the_value(self, runtime):
        me = otpy.self()
        task = otpy.Task.async_(wait_for_go, me, 42)
        pid = started()
        assert task.yield_(timeout=0.05) is None
        assert task.yield_(timeout=0) is None
        otpy.send(pid, "go")
        assert task.yield_(timeout=WAIT) == ("ok", 42)

    def test_yield_of_a_crashed_task_is_exit_with_the_exception(self, runtime, trap):
        error = KeyError("gone")
        task = otpy.Task.async_(raise_, error)
        result = task.yield_()
        assert result[0] == "exit"
        assert result[1] is error

    @pytest.mark.parametrize("bad, error", [(-1, ValueError), ("1", TypeError)])
    def test_yield_rejects_a_bad_timeout(self, runtime, bad, error):
        task = otpy.Task.async_(lambda: 1)
        with pytest.raises(error):
            task.yield_(timeout=bad)
        assert task.await_() == 1


# --- shutdown ------------------------------------------------------------------------------------


class TestShutdown:
    def test_shutdown_of_a_running_task_stops_it_and_returns_none(self, runtime):
        me = otpy.self()
        task = otpy.Task.async_(wait_for_go, me, 1)
        pid = started()
        ref = otpy.monitor(pid)
        assert task.shutdown(timeout=1.0) is None
        assert assert_receive(down_of(ref), WAIT).reason in ("shutdown", "killed")
        assert not otpy.is_alive(pid)
        assert otpy.is_alive(otpy.self())

    def test_shutdown_with_brutal_kill_kills_at_once(self, runtime):
        me = otpy.self()
        task = otpy.Task.async_(wait_for_go, me, 1)
        pid = started()
        ref = otpy.monitor(pid)
        assert task.shutdown(otpy.BRUTAL_KILL) is None
        assert assert_receive(down_of(ref), WAIT).reason == "killed"

    def test_shutdown_kills_a_task_that_ignores_the_shutdown_signal_after_the_timeout(
        self, runtime
    ):
        me = otpy.self()

        def stubborn():
            otpy.trap_exits(True)
            otpy.send(me, ("started", otpy.self()))
            while True:
                otpy.receive()

        task = otpy.Task.async_(stubborn)
        pid = started()
        ref = otpy.monitor(pid)
        start = time.monotonic()
        assert task.shutdown(timeout=0.1) is None
        assert 0.09 <= time.monotonic() - start < 2.0
        assert assert_receive(down_of(ref), WAIT).reason == "killed"

    def test_shutdown_of_a_finished_task_returns_its_value(self, runtime):
        me = otpy.self()

        def quick():
            otpy.send(me, ("started", otpy.self()))
            return 7

        task = otpy.Task.async_(quick)
        ref = otpy.monitor(started())
        assert_receive(down_of(ref), WAIT)
        assert task.shutdown() == ("ok", 7)

    def test_shutdown_of_a_crashed_task_returns_exit_with_the_exception(self, runtime, trap):
        me = otpy.self()
        error = RuntimeError("crashed before shutdown")

        def crash():
            otpy.send(me, ("started", otpy.self()))
            raise error

        task = otpy.Task.async_(crash)
        ref = otpy.monitor(started())
        assert_receive(down_of(ref), WAIT)
        assert task.shutdown() == ("exit", error)

    def test_shutdown_rejects_a_bad_timeout(self, runtime):
        task = otpy.Task.async_(lambda: 1)
        with pytest.raises(ValueError):
            task.shutdown(timeout=-1)
        assert task.await_() == 1


# --- await_many / yield_many -----------------------------------------------------------------------


class TestAwaitMany:
    def test_await_many_returns_the_values_in_task_order(self, runtime):
        tasks = [otpy.Task.async_(sleep_then_return, s) for s in (0.15, 0.0, 0.05)]
        assert otpy.Task.await_many(tasks) == [0.15, 0.0, 0.05]

    def test_await_many_of_no_tasks_is_an_empty_list(self, runtime):
        assert otpy.Task.await_many([]) == []

    def test_await_many_raises_timeout_when_one_task_is_too_slow(self, runtime):
        me = otpy.self()
        fast = otpy.Task.async_(lambda: 1)
        slow = otpy.Task.async_(wait_for_go, me, 2)
        started()
        start = time.monotonic()
        with pytest.raises(otpy.Timeout):
            otpy.Task.await_many([fast, slow], timeout=0.1)
        assert time.monotonic() - start < 1.0
        slow.shutdown(otpy.BRUTAL_KILL)

    def test_await_many_raises_exit_error_when_a_task_crashed(self, runtime, trap):
        error = ValueError("one of many")
        tasks = [otpy.Task.async_(lambda: 1), otpy.Task.async_(raise_, error)]
        with pytest.raises(otpy.ExitError) as info:
            otpy.Task.await_many(tasks)
        assert info.value.reason is error


class TestYieldMany:
    def test_yield_many_pairs_each_task_with_its_result_in_input_order(self, runtime):
        me = otpy.self()
        done = otpy.Task.async_(lambda: "done")
        running = otpy.Task.async_(wait_for_go, me, "late")
        pid = started()
        results = otpy.Task.yield_many([running, done], timeout=0.5)
        assert [task for task, _ in results] == [running, done]
        assert results[0][1] is None
        assert results[1][1] == ("ok", "done")
        otpy.send(pid, "go")
        assert running.await_() == "late"

    def test_yield_many_reports_ok_and_exit(self, runtime, trap):
        error = LookupError("bad item")
        ok = otpy.Task.async_(lambda: 1)
        bad = otpy.Task.async_(raise_, error)
        results = otpy.Task.yield_many([ok, bad], timeout=WAIT)
        assert results[0] == (ok, ("ok", 1))
        assert results[1][0] is bad
        assert results[1][1] == ("exit", error)


# --- start / start_link ---------------------------------------------------------------------------


class TestStart:
    def test_start_runs_the_function_in_a_new_process_and_returns_its_pid(self, runtime):
        me = otpy.self()
        pid = otpy.Task.start(lambda a: otpy.send(me, ("ran", a, otpy.self())), "arg")
        assert isinstance(pid, otpy.Pid)
        assert assert_receive(tagged("ran"), WAIT) == ("ran", "arg", pid)

    def test_start_is_not_linked_a_crash_leaves_the_caller_alone(self, runtime):
        me = otpy.self()
        error = ValueError("unlinked crash")
        pid = otpy.Task.start(crash_on_go, me, error)
        assert started() == pid
        assert pid not in otpy.process_info(me).links
        ref = otpy.monitor(pid)
        otpy.send(pid, "go")
        assert assert_receive(down_of(ref), WAIT).reason is error
        assert otpy.self() == me

    def test_start_link_is_linked_a_crash_kills_the_owner(self, runtime):
        me = otpy.self()
        error = ValueError("linked crash")

        def owner():
            otpy.Task.start_link(crash_on_go, me, error)
            otpy.receive()

        owner_pid, ref = otpy.spawn_monitor(owner)
        otpy.send(started(), "go")
        assert assert_receive(down_of(ref), WAIT) == otpy.Down(ref, owner_pid, error)

    def test_start_link_runs_the_function_with_its_arguments(self, runtime):
        me = otpy.self()
        pid = otpy.Task.start_link(lambda a, b: otpy.send(me, ("ran", a + b)), 2, 3)
        assert isinstance(pid, otpy.Pid)
        assert assert_receive(tagged("ran"), WAIT) == ("ran", 5)


# --- async_stream -----------------------------------------------------------------------------------


def slow_if_asked(seconds):
    def fn(x):
        if x == "slow":
            otpy.sleep(seconds)
        return x

    return fn


class TestAsyncStream:
    def test_results_come_in_input_order_by_default(self, runtime):
        delays = [0.15, 0.1, 0.05, 0.0]
        results = list(otpy.Task.async_stream(delays, sleep_then_return, max_concurrency=4))
        assert results == [("ok", d) for d in delays]

    def test_unordered_results_come_in_completion_order(self, runtime):
        delays = [0.3, 0.15, 0.0]
        results = list(
            otpy.Task.async_stream(delays, sleep_then_return, max_concurrency=3, ordered=False)
        )
        assert results == [("ok", 0.0), ("ok", 0.15), ("ok", 0.3)]

    def test_an_empty_iterable_gives_no_results(self, runtime):
        assert list(otpy.Task.async_stream([], sleep_then_return)) == []

    def test_max_concurrency_is_respected(self, runtime):
        counter = Concurrency()

        def fn(x):
            with counter:
                otpy.sleep(0.02)
            return x * 2

        results = list(otpy.Task.async_stream(range(20), fn, max_concurrency=3))
        assert results == [("ok", x * 2) for x in range(20)]
        assert counter.peak <= 3
        assert counter.peak == 3
        assert counter.calls == 20

    def test_default_max_concurrency_is_the_cpu_count(self, runtime):
        counter = Concurrency()
        cpus = os.cpu_count() or 1

        def fn(x):
            with counter:
                otpy.sleep(0.03)
            return x

        results = list(otpy.Task.async_stream(range(4 * cpus), fn))
        assert len(results) == 4 * cpus
        assert counter.peak == cpus

    def test_the_stream_is_lazy(self, runtime):
        counter = Concurrency()

        def fn(x):
            with counter:
                return x

        stream = otpy.Task.async_stream(itertools.count(), fn, max_concurrency=2)
        assert counter.calls == 0, "nothing may run before the stream is iterated"
        first = list(itertools.islice(stream, 3))
        assert first == [("ok", 0), ("ok", 1), ("ok", 2)]
        assert counter.calls <= 3 + 2 + 1
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        assert counter.calls <= 3 + 2 + 1

    def test_timeout_with_kill_task_yields_exit_timeout_and_goes_on(self, runtime):
        delays = [0.0, 10.0, 0.0]
        start = time.monotonic()
        results = list(
            otpy.Task.async_stream(
                delays, sleep_then_return, max_concurrency=3, timeout=0.1, on_timeout="kill_task"
            )
        )
        assert results == [("ok", 0.0), ("exit", "timeout"), ("ok", 0.0)]
        assert time.monotonic() - start < 3.0
        assert otpy.is_alive(otpy.self())

    def test_timeout_with_kill_task_and_zip_input_on_exit_yields_the_item(self, runtime):
        delays = [10.0, 0.0]
        results = list(
            otpy.Task.async_stream(
                delays,
                sleep_then_return,
                max_concurrency=2,
                timeout=0.1,
                on_timeout="kill_task",
                zip_input_on_exit=True,
            )
        )
        assert results == [("exit", (10.0, "timeout")), ("ok", 0.0)]

    @pytest.mark.parametrize("on_timeout", ["kill_task", "exit"])
    def test_a_slow_item_after_many_quick_ones_times_out_on_time_with_a_short_timeout(
        self, runtime, on_timeout
    ):
        items = [*range(300), "slow", "last"]
        start = time.monotonic()
        stream = otpy.Task.async_stream(
            items, slow_if_asked(2.0), max_concurrency=2, timeout=0.5, on_timeout=on_timeout
        )
        if on_timeout == "kill_task":
            assert list(stream)[-3:] == [("ok", 299), ("exit", "timeout"), ("ok", "last")]
        else:
            with pytest.raises(otpy.Timeout):
                list(stream)
        assert time.monotonic() - start < 1.5, "the slow item overran the stream's timeout"

    @pytest.mark.parametrize("on_timeout", ["kill_task", "exit"])
    def test_a_slow_item_after_many_quick_ones_is_reported_as_timed_out_with_a_long_timeout(
        self, runtime, on_timeout
    ):
        # The documented cost of running trivial items on the consumer's thread: an
        # item that turns slow there is seen as timed out only when it returns.
        items = [*range(300), "slow", "last"]
        start = time.monotonic()
        stream = otpy.Task.async_stream(
            items, slow_if_asked(1.3), max_concurrency=2, timeout=1.0, on_timeout=on_timeout
        )
        if on_timeout == "kill_task":
            assert list(stream)[-3:] == [("ok", 299), ("exit", "timeout"), ("ok", "last")]
        else:
            with pytest.raises(otpy.Timeout):
                list(stream)
        assert time.monotonic() - start < 2.5

    def test_the_timeout_is_per_item_not_for_the_whole_stream(self, runtime):
        delays = [0.15, 0.15, 0.15]
        results = list(
            otpy.Task.async_stream(delays, sleep_then_return, max_concurrency=1, timeout=0.5)
        )
        assert results == [("ok", d) for d in delays]

    def test_timeout_with_on_timeout_exit_raises_timeout(self, runtime):
        stream = otpy.Task.async_stream(
            [0.0, 10.0], sleep_then_return, max_concurrency=2, timeout=0.1, on_timeout="exit"
        )
        start = time.monotonic()
        with pytest.raises(otpy.Timeout):
            list(stream)
        assert time.monotonic() - start < 3.0

    def test_the_default_on_timeout_is_exit(self, runtime):
        with pytest.raises(otpy.Timeout):
            list(otpy.Task.async_stream([10.0], sleep_then_return, timeout=0.1))

    def test_a_crash_in_fn_raises_exit_error_from_the_iterator(self, runtime):
        error = ValueError("bad item")

        def fn(x):
            if x == 2:
                raise error
            return x

        with pytest.raises(otpy.ExitError) as info:
            list(otpy.Task.async_stream(range(5), fn, max_concurrency=1))
        assert info.value.reason is error

    def test_the_tasks_are_gone_after_the_stream_is_consumed(self, runtime):
        otpy.self()
        baseline = set(otpy.processes())
        results = list(otpy.Task.async_stream(range(50), lambda x: x, max_concurrency=4))
        assert results == [("ok", x) for x in range(50)]
        wait_until(lambda: set(otpy.processes()) == baseline)

    def test_leaving_a_stream_early_shuts_its_running_tasks_down(self, runtime):
        me = otpy.self()
        baseline = set(otpy.processes())

        def fn(x):
            if x == 0:
                return x
            otpy.sleep(10)
            return x

        stream = otpy.Task.async_stream(range(10), fn, max_concurrency=3)
        for result in stream:
            assert result == ("ok", 0)
            break
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        del stream
        wait_until(lambda: set(otpy.processes()) == baseline, timeout=3.0)
        assert otpy.self() == me

    @pytest.mark.parametrize(
        "options", [{"max_concurrency": 0}, {"on_timeout": "explode"}, {"timeout": -1}]
    )
    def test_bad_options_raise_value_error(self, runtime, options):
        with pytest.raises(ValueError):
            list(otpy.Task.async_stream([1], lambda x: x, **options))
