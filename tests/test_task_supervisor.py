"""Acceptance tests for TaskSupervisor (the Task and TaskSupervisor section of API.md).

async_ (linked to the caller) and async_nolink (a crash reaches the caller
only through await_/yield_), start_child with its restart values,
async_stream and async_stream_nolink, children, terminate_child,
max_children, stop, and use under a Supervisor.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import WAIT, down_of, raise_, tagged, wait_until

import otpy
from otpy.testing import assert_receive, refute_receive

pytestmark = pytest.mark.timeout(60)

TS = otpy.TaskSupervisor


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


class Concurrency:
    """Counts how many calls of a function run at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __call__(self, x):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        otpy.sleep(0.02)  # noqa: SLEEP001 sleep is the behaviour (each item takes a while)
        with self.lock:
            self.now -= 1
        return x


def divide(x):
    return 10 / x


# --- start_link --------------------------------------------------------------------------------


class TestStartLink:
    def test_a_new_task_supervisor_has_no_children(self, runtime):
        ts = TS.start_link()
        assert TS.children(ts) == []

    def test_name_registers_it(self, runtime):
        ts = TS.start_link(name="tasks")
        assert otpy.whereis("tasks") == ts
        assert TS.async_("tasks", lambda: 1).await_() == 1

    def test_a_bad_max_children_raises_value_error(self, runtime):
        with pytest.raises(ValueError, match="-1"):
            TS.start_link(max_children=-1)

    def test_a_task_supervisor_can_be_a_child_of_a_supervisor(self, runtime):
        root = otpy.Supervisor.start_link([TS.child_spec(name="tasks")])
        [info] = otpy.Supervisor.which_children(root)
        assert (info.id, info.type) == (TS, "supervisor")
        assert otpy.whereis("tasks") == info.pid
        assert TS.async_nolink("tasks", lambda: "ok").await_() == "ok"


# --- async_ ------------------------------------------------------------------------------------


class TestAsync:
    def test_await_returns_the_value_of_the_function_with_its_arguments(self, runtime):
        ts = TS.start_link()
        task = TS.async_(ts, lambda a, b: a + b, 2, 3)
        assert isinstance(task, otpy.Task)
        assert task.await_() == 5

    def test_the_task_is_a_child_of_the_supervisor_and_linked_to_the_caller(self, runtime):
        me = otpy.self()
        ts = TS.start_link()
        task = TS.async_(ts, wait_for_go, me, "v")
        pid = started()
        assert task.pid == pid
        assert task.owner == me
        assert TS.children(ts) == [pid]
        assert pid in otpy.process_info(ts).links
        assert pid in otpy.process_info(me).links
        otpy.send(pid, "go")
        assert task.await_() == "v"
        wait_until(lambda: TS.children(ts) == [])

    def test_a_crash_kills_a_non_trapping_caller(self, runtime, caplog):
        me = otpy.self()
        ts = TS.start_link()
        error = ValueError("task failed")

        def caller():
            task = TS.async_(ts, crash_on_go, me, error)
            task.await_(timeout=10)
            otpy.send(me, "await returned")  # must not happen

        pid, ref = otpy.spawn_monitor(caller)
        otpy.send(started(), "go")
        assert assert_receive(down_of(ref), WAIT) == otpy.Down(ref, pid, error)
        refute_receive(lambda m: m == "await returned", timeout=0)
        assert otpy.is_alive(ts)

    def test_the_task_dies_with_a_caller_that_crashes(self, runtime, caplog):
        me = otpy.self()
        ts = TS.start_link()

        def caller():
            TS.async_(ts, wait_for_go, me, None)
            otpy.receive(match=lambda m: m == "crash")
            raise RuntimeError("caller crashed")

        pid = otpy.spawn(caller)
        task_ref = otpy.monitor(started())
        otpy.send(pid, "crash")
        assert isinstance(assert_receive(down_of(task_ref), WAIT).reason, RuntimeError)
        wait_until(lambda: TS.children(ts) == [])
        assert otpy.is_alive(ts)

    def test_a_trapping_caller_gets_the_exit_and_await_raises_exit_error(
        self, runtime, trap, caplog
    ):
        ts = TS.start_link()
        error = KeyError("gone")
        task = TS.async_(ts, raise_, error)
        assert assert_receive(lambda m: isinstance(m, otpy.Exit) and m.pid == task.pid, WAIT).reason is error
        with pytest.raises(otpy.ExitError) as info:
            task.await_()
        assert info.value.reason is error

    def test_a_crashed_task_is_not_restarted(self, runtime, trap, caplog):
        ts = TS.start_link()
        task = TS.async_(ts, raise_, RuntimeError("once"))
        assert task.yield_()[0] == "exit"
        wait_until(lambda: TS.children(ts) == [])

    def test_a_non_callable_raises_type_error(self, runtime):
        ts = TS.start_link()
        with pytest.raises(TypeError):
            TS.async_(ts, 42)


class TestAsyncNolink:
    def test_the_value_comes_through_await_and_yield(self, runtime):
        ts = TS.start_link()
        assert TS.async_nolink(ts, lambda: "v").await_() == "v"
        assert TS.async_nolink(ts, lambda x: x * 2, 21).yield_() == ("ok", 42)

    def test_the_task_is_not_linked_to_the_caller(self, runtime):
        me = otpy.self()
        ts = TS.start_link()
        task = TS.async_nolink(ts, wait_for_go, me, None)
        pid = started()
        assert pid not in otpy.process_info(me).links
        assert pid in otpy.process_info(ts).links
        otpy.send(pid, "go")
        task.await_()

    def test_a_crash_reaches_a_non_trapping_caller_only_through_await(self, runtime, caplog):
        me = otpy.self()
        ts = TS.start_link()
        error = ValueError("nolink crash")

        def caller():
            task = TS.async_nolink(ts, crash_on_go, me, error)
            otpy.send(me, ("task", task.pid))
            try:
                task.await_(timeout=10)
            except otpy.ExitError as exc:
                otpy.send(me, ("await raised", exc.reason))
            otpy.receive(match=lambda m: m == "stop")

        pid, ref = otpy.spawn_monitor(caller)
        otpy.send(started(), "go")
        assert assert_receive(tagged("await raised"), WAIT)[1] is error
        assert otpy.is_alive(pid)
        otpy.send(pid, "stop")
        assert assert_receive(down_of(ref), WAIT).reason == "normal"

    def test_a_crash_is_yield_exit_with_the_exception(self, runtime, caplog):
        ts = TS.start_link()
        error = ZeroDivisionError("nolink")
        task = TS.async_nolink(ts, raise_, error)
        assert task.yield_() == ("exit", error)
        refute_receive(lambda m: isinstance(m, otpy.Exit), timeout=0)

    def test_yield_is_none_while_the_task_runs(self, runtime):
        me = otpy.self()
        ts = TS.start_link()
        task = TS.async_nolink(ts, wait_for_go, me, 7)
        pid = started()
        assert task.yield_(timeout=0.05) is None
        otpy.send(pid, "go")
        assert task.yield_() == ("ok", 7)


# --- start_child -------------------------------------------------------------------------------


class TestStartChild:
    def test_start_child_runs_the_function_with_its_arguments_and_returns_its_pid(self, runtime):
        me = otpy.self()
        ts = TS.start_link()
        pid = TS.start_child(ts, lambda a, b: otpy.send(me, ("ran", a, b, otpy.self())), 1, 2)
        assert assert_receive(tagged("ran"), WAIT) == ("ran", 1, 2, pid)

    def test_a_started_child_is_not_linked_to_the_caller(self, runtime, caplog):
        me = otpy.self()
        ts = TS.start_link()
        pid = TS.start_child(ts, crash_on_go, me, RuntimeError("alone"))
        assert started() == pid
        assert pid not in otpy.process_info(me).links
        ref = otpy.monitor(pid)
        otpy.send(pid, "go")
        assert_receive(down_of(ref), WAIT)
        assert otpy.self() == me

    def test_by_default_a_crashed_child_is_not_restarted(self, runtime, caplog):
        me = otpy.self()
        ts = TS.start_link()
        pid = TS.start_child(ts, crash_on_go, me, RuntimeError("temporary"))
        started()
        otpy.send(pid, "go")
        wait_until(lambda: TS.children(ts) == [])
        refute_receive(tagged("started"), timeout=0)

    def test_a_transient_child_is_restarted_after_a_crash(self, runtime, caplog):
        me = otpy.self()
        ts = TS.start_link()
        attempts = []

        def flaky():
            attempts.append(otpy.self())
            otpy.send(me, ("attempt", len(attempts)))
            if len(attempts) < 3:
                raise ConnectionError("try again")

        TS.start_child(ts, flaky, restart="transient")
        assert [assert_receive(tagged("attempt"), WAIT)[1] for _ in range(3)] == [1, 2, 3]
        wait_until(lambda: TS.children(ts) == [])
        assert len(set(attempts)) == 3
        refute_receive(tagged("attempt"), timeout=0)

    def test_a_transient_child_that_returns_is_not_restarted(self, runtime):
        me = otpy.self()
        ts = TS.start_link()
        TS.start_child(ts, otpy.send, me, "ran", restart="transient")
        assert_receive(lambda m: m == "ran", WAIT)
        wait_until(lambda: TS.children(ts) == [])
        refute_receive(lambda m: m == "ran", timeout=0)

    def test_a_permanent_child_is_restarted_even_after_it_returns(self, runtime):
        me = otpy.self()
        ts = TS.start_link()
        count = []

        def once_more():
            count.append(1)
            otpy.send(me, ("ran", len(count)))
            if len(count) >= 2:
                otpy.receive(match=lambda m: m == "never")

        TS.start_child(ts, once_more, restart="permanent")
        assert [assert_receive(tagged("ran"), WAIT)[1] for _ in range(2)] == [1, 2]
        assert len(TS.children(ts)) == 1


# --- async_stream ------------------------------------------------------------------------------


class TestAsyncStream:
    def test_results_come_in_input_order(self, runtime):
        ts = TS.start_link()
        results = list(TS.async_stream(ts, range(20), lambda x: x * x, max_concurrency=4))
        assert results == [("ok", x * x) for x in range(20)]

    def test_the_workers_are_children_of_the_supervisor(self, runtime):
        me = otpy.self()
        ts = TS.start_link()

        def report(x):
            otpy.send(me, ("worker", otpy.self()))
            otpy.receive(match=lambda m: m == "go")
            return x

        # consume the stream in a task, so that the test can look at the workers meanwhile
        task = otpy.Task.async_(
            lambda: list(TS.async_stream(ts, range(2), report, max_concurrency=2))
        )
        workers = {assert_receive(tagged("worker"), WAIT)[1] for _ in range(2)}
        assert workers <= set(TS.children(ts))
        for w in workers:
            otpy.send(w, "go")
        assert task.await_() == [("ok", 0), ("ok", 1)]

    def test_max_concurrency_is_respected(self, runtime):
        ts = TS.start_link()
        probe = Concurrency()
        results = list(TS.async_stream(ts, range(12), probe, max_concurrency=3))
        assert results == [("ok", x) for x in range(12)]
        assert 1 <= probe.peak <= 3

    def test_a_crash_in_fn_raises_exit_error_from_the_iterator(self, runtime, caplog):
        ts = TS.start_link()
        with pytest.raises(otpy.ExitError) as info:
            list(TS.async_stream(ts, [1, 2, 0, 5], divide, max_concurrency=1))
        assert isinstance(info.value.reason, ZeroDivisionError)

    def test_a_crash_in_fn_kills_a_non_trapping_consumer_process(self, runtime, caplog):
        ts = TS.start_link()

        def consumer():
            for _ in TS.async_stream(ts, [1, 0, 2], divide, max_concurrency=1):
                pass

        _, ref = otpy.spawn_monitor(consumer)
        assert isinstance(assert_receive(down_of(ref), WAIT).reason, ZeroDivisionError)
        wait_until(lambda: TS.children(ts) == [])
        assert otpy.is_alive(ts)

    def test_timeout_with_kill_task_yields_exit_timeout_and_goes_on(self, runtime):
        ts = TS.start_link()

        def slow_on_one(x):
            if x == 1:
                otpy.sleep(10)
            return x

        results = list(
            TS.async_stream(ts, range(3), slow_on_one, timeout=0.1, on_timeout="kill_task")
        )
        assert results == [("ok", 0), ("exit", "timeout"), ("ok", 2)]
        wait_until(lambda: TS.children(ts) == [])

    def test_timeout_with_on_timeout_exit_raises_timeout(self, runtime):
        ts = TS.start_link()
        with pytest.raises(otpy.Timeout):
            list(TS.async_stream(ts, [10.0], otpy.sleep, timeout=0.05))
        wait_until(lambda: TS.children(ts) == [])

    def test_the_workers_are_gone_after_the_stream_is_consumed(self, runtime):
        ts = TS.start_link()
        list(TS.async_stream(ts, range(30), lambda x: x, max_concurrency=4))
        wait_until(lambda: TS.children(ts) == [])

    def test_bad_options_raise_value_error(self, runtime):
        ts = TS.start_link()
        with pytest.raises(ValueError):
            list(TS.async_stream(ts, [1], lambda x: x, max_concurrency=0))


class TestAsyncStreamNolink:
    def test_a_crash_yields_exit_with_the_exception_and_the_stream_goes_on(self, runtime, caplog):
        ts = TS.start_link()
        results = list(TS.async_stream_nolink(ts, [1, 0, 2, 0, 5], divide, max_concurrency=2))
        assert [kind for kind, _ in results] == ["ok", "exit", "ok", "exit", "ok"]
        assert [v for kind, v in results if kind == "ok"] == [10.0, 5.0, 2.0]
        assert all(isinstance(v, ZeroDivisionError) for kind, v in results if kind == "exit")

    def test_the_consumer_survives_the_crashes(self, runtime, caplog):
        me = otpy.self()
        ts = TS.start_link()

        def consumer():
            results = list(TS.async_stream_nolink(ts, [0, 1, 0], divide, max_concurrency=1))
            otpy.send(me, ("results", [kind for kind, _ in results]))

        _, ref = otpy.spawn_monitor(consumer)
        assert assert_receive(tagged("results"), WAIT)[1] == ["exit", "ok", "exit"]
        assert assert_receive(down_of(ref), WAIT).reason == "normal"

    def test_zip_input_on_exit_pairs_the_item_with_the_reason(self, runtime, caplog):
        ts = TS.start_link()
        results = list(TS.async_stream_nolink(ts, [2, 0], divide, zip_input_on_exit=True))
        assert results[0] == ("ok", 5.0)
        kind, (item, reason) = results[1]
        assert (kind, item) == ("exit", 0)
        assert isinstance(reason, ZeroDivisionError)

    def test_unordered_results_are_all_there(self, runtime):
        ts = TS.start_link()
        results = list(TS.async_stream_nolink(ts, range(10), lambda x: x, ordered=False))
        assert sorted(results) == [("ok", x) for x in range(10)]


# --- children / terminate_child / max_children / stop ------------------------------------------


class TestChildren:
    def test_children_lists_the_running_tasks(self, runtime):
        me = otpy.self()
        ts = TS.start_link()
        tasks = [TS.async_nolink(ts, wait_for_go, me, i) for i in range(3)]
        pids = {started() for _ in range(3)}
        assert set(TS.children(ts)) == pids == {t.pid for t in tasks}
        for pid in pids:
            otpy.send(pid, "go")
        assert [t.await_() for t in tasks] == [0, 1, 2]
        wait_until(lambda: TS.children(ts) == [])


class TestTerminateChild:
    def test_a_running_task_is_stopped_and_removed(self, runtime):
        me = otpy.self()
        ts = TS.start_link()
        task = TS.async_nolink(ts, wait_for_go, me, None)
        pid = started()
        ref = otpy.monitor(pid)
        assert TS.terminate_child(ts, pid) is None
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        assert TS.children(ts) == []
        assert task.yield_() == ("exit", "shutdown")

    def test_a_pid_that_is_not_a_task_raises_not_found_error(self, runtime):
        ts = TS.start_link()
        with pytest.raises(otpy.NotFoundError):
            TS.terminate_child(ts, otpy.self())
        assert otpy.is_alive(ts)


class TestMaxChildren:
    def test_a_full_supervisor_raises_max_children_error(self, runtime):
        me = otpy.self()
        ts = TS.start_link(max_children=1)
        task = TS.async_nolink(ts, wait_for_go, me, "first")
        pid = started()
        with pytest.raises(otpy.MaxChildrenError):
            TS.async_nolink(ts, lambda: "second")
        with pytest.raises(otpy.MaxChildrenError):
            TS.async_(ts, lambda: "second")
        with pytest.raises(otpy.MaxChildrenError):
            TS.start_child(ts, lambda: "second")
        otpy.send(pid, "go")
        assert task.await_() == "first"
        wait_until(lambda: TS.children(ts) == [])
        assert TS.async_nolink(ts, lambda: "third").await_() == "third"


class TestStop:
    def test_stop_stops_the_running_tasks(self, runtime):
        me = otpy.self()
        baseline = set(otpy.processes())
        ts = TS.start_link()
        tasks = [TS.async_nolink(ts, wait_for_go, me, i) for i in range(3)]
        refs = [otpy.monitor(started()) for _ in range(3)]
        begin = time.monotonic()
        TS.stop(ts)
        assert time.monotonic() - begin < 2.0
        for ref in refs:
            assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        assert all(t.yield_(timeout=0) == ("exit", "shutdown") for t in tasks)
        assert set(otpy.processes()) == baseline
