"""Acceptance tests for ``retry=`` of Task.async_stream and TaskSupervisor.async_stream*.

API.md: an item whose function raised a selected exception is retried, then reported
as usual. Here: the retries run in the item's worker and the item's timeout covers
them; an exception the policy does not select, or the last one, is the item's crash
as without retry; a worker waiting to retry dies with its stream.
"""

from __future__ import annotations

import threading

import pytest
from conftest import WAIT, down_of, wait_until

import otpy
import otpy.retry
from otpy import telemetry
from otpy.retry import RetryPolicy
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(30)

TS = otpy.TaskSupervisor
QUICK = {"wait_initial": 0.001, "wait_max": 1.0, "wait_jitter": 0.0}


class PerItem:
    """``fn`` for a stream: item x raises ``failures(x)`` exceptions, then returns x * 10.

    Counts the calls and remembers the threads and processes of each item's calls.
    """

    def __init__(self, failures, kind: type[Exception] = ConnectionError) -> None:
        self.lock = threading.Lock()
        self.failures = failures
        self.kind = kind
        self.calls: dict[object, int] = {}
        self.threads: dict[object, list[int]] = {}
        self.pids: dict[object, list[otpy.Pid]] = {}
        self.raised: dict[object, list[Exception]] = {}

    def __call__(self, x):
        with self.lock:
            n = self.calls[x] = self.calls.get(x, 0) + 1
            self.threads.setdefault(x, []).append(threading.get_ident())
            self.pids.setdefault(x, []).append(otpy.self())
            if n <= self.failures(x):
                error = self.kind(f"item {x} call {n}")
                self.raised.setdefault(x, []).append(error)
            else:
                error = None
        if error is not None:
            raise error
        return x * 10


@pytest.fixture
def scheduled():
    """The ("otpy", "retry", "scheduled") events: (measurements, metadata, emitting pid)."""
    lock = threading.Lock()
    seen: list[tuple[dict, dict, otpy.Pid]] = []

    def handle(event, measurements, metadata, config):
        with lock:
            seen.append((dict(measurements), dict(metadata), otpy.self()))

    handler = f"test-task-retry-{id(seen)}"
    telemetry.attach(handler, ("otpy", "retry", "scheduled"), handle)
    yield seen
    telemetry.detach(handler)


@pytest.fixture
def testing_mode():
    yield otpy.retry.set_testing
    otpy.retry.set_testing(False)


def twice_for_even(x):
    return 2 if x % 2 == 0 else 0


class TestTaskAsyncStream:
    def test_items_that_fail_twice_then_succeed_yield_ok(self, runtime):
        fn = PerItem(twice_for_even)
        policy = RetryPolicy(on=ConnectionError, **QUICK)
        results = list(otpy.Task.async_stream(range(8), fn, max_concurrency=3, retry=policy))
        assert results == [("ok", x * 10) for x in range(8)]
        assert fn.calls == {x: 3 if x % 2 == 0 else 1 for x in range(8)}

    def test_the_attempts_of_an_item_run_in_its_worker_not_the_consumer(self, runtime, scheduled):
        me = otpy.self()
        fn = PerItem(lambda x: 2)
        policy = RetryPolicy(on=ConnectionError, **QUICK)
        results = list(otpy.Task.async_stream([1, 2], fn, max_concurrency=2, retry=policy))
        assert results == [("ok", 10), ("ok", 20)]
        for x in (1, 2):
            [worker] = set(fn.pids[x])  # every attempt of the item in one process
            assert worker != me
        assert {pid for _, _, pid in scheduled} == set(fn.pids[1]) | set(fn.pids[2])
        assert sorted(m["attempt"] for m, _, _ in scheduled) == [1, 1, 2, 2]
        assert all(md["target"] is fn for _, md, _ in scheduled)

    def test_unordered_streams_retry_too(self, runtime):
        fn = PerItem(twice_for_even)
        policy = RetryPolicy(on=ConnectionError, **QUICK)
        results = otpy.Task.async_stream(range(10), fn, ordered=False, retry=policy)
        assert sorted(results) == [("ok", x * 10) for x in range(10)]

    def test_an_exception_the_policy_does_not_select_crashes_the_stream_as_before(
        self, runtime, caplog
    ):
        fn = PerItem(lambda x: 1 if x == 2 else 0, kind=ValueError)
        policy = RetryPolicy(on=ConnectionError, **QUICK)
        with pytest.raises(otpy.ExitError) as info:
            list(otpy.Task.async_stream(range(4), fn, max_concurrency=1, retry=policy))
        assert info.value.reason is fn.raised[2][0]
        assert fn.calls[2] == 1

    def test_when_retries_run_out_the_last_exception_is_the_item_s_crash(self, runtime, caplog):
        fn = PerItem(lambda x: 99 if x == 1 else 0)
        policy = RetryPolicy(on=ConnectionError, attempts=3, **QUICK)
        with pytest.raises(otpy.ExitError) as info:
            list(otpy.Task.async_stream(range(3), fn, max_concurrency=1, retry=policy))
        assert fn.calls[1] == 3
        assert info.value.reason is fn.raised[1][-1]

    def test_the_item_timeout_covers_all_its_attempts_and_waits(self, runtime, scheduled):
        fn = PerItem(lambda x: 10**6 if x == 1 else 0)
        policy = RetryPolicy(
            on=ConnectionError, attempts=1000, wait_initial=0.1, wait_exp_base=1.0, wait_jitter=0
        )
        results = list(
            otpy.Task.async_stream(
                range(3), fn, timeout=0.5, on_timeout="kill_task", retry=policy, max_concurrency=3
            )
        )
        assert results == [("ok", 0), ("exit", "timeout"), ("ok", 20)]
        assert 2 <= fn.calls[1] <= 6  # retried inside the item until its 0.5 s were up
        assert len(scheduled) == fn.calls[1] or len(scheduled) == fn.calls[1] - 1

    def test_the_item_timeout_with_on_timeout_exit_raises_timeout(self, runtime):
        fn = PerItem(lambda x: 10**6)
        policy = RetryPolicy(on=ConnectionError, wait_initial=0.05, wait_jitter=0)
        with pytest.raises(otpy.Timeout):
            list(otpy.Task.async_stream([1], fn, timeout=0.3, retry=policy))
        assert fn.calls[1] >= 2

    def test_the_policy_s_timeout_also_ends_an_item(self, runtime, caplog):
        fn = PerItem(lambda x: 10**6)
        policy = RetryPolicy(on=ConnectionError, wait_initial=10.0, wait_jitter=0, timeout=1.0)
        with pytest.raises(otpy.ExitError) as info:
            list(otpy.Task.async_stream([1], fn, timeout=None, retry=policy))
        assert fn.calls[1] == 1  # a 5 s wait would end after the policy's 1 s
        assert info.value.reason is fn.raised[1][0]

    def test_set_testing_applies_to_stream_items(self, runtime, testing_mode):
        testing_mode(True, attempts=3)
        fn = PerItem(twice_for_even)
        policy = RetryPolicy(on=ConnectionError, wait_initial=20.0, wait_max=20.0, wait_jitter=0)
        results = list(otpy.Task.async_stream(range(4), fn, timeout=10.0, retry=policy))
        assert results == [("ok", x * 10) for x in range(4)]

    def test_trivial_items_still_run_inline_and_a_retry_never_waits_on_the_consumer(self, runtime):
        consumer = threading.get_ident()
        failed = []

        def fn(x):
            if threading.get_ident() == consumer and not failed:
                failed.append(x)  # the first item run inline fails once
                raise ConnectionError(x)
            return x

        policy = RetryPolicy(on=lambda exc: 60.0, timeout=None)  # its retry waits a minute
        stream = otpy.Task.async_stream(
            range(300), fn, max_concurrency=2, ordered=False, timeout=None, retry=policy
        )
        others = [next(stream) for _ in range(299)]  # come while that item waits
        assert failed, "no item ran on the consumer's thread"
        assert sorted(others) == [("ok", x) for x in range(300) if x != failed[0]]
        stream.close()

    def test_a_worker_waiting_to_retry_dies_with_its_consumer(self, runtime, scheduled):
        fn = PerItem(lambda x: 10**6)
        policy = RetryPolicy(
            on=ConnectionError, wait_initial=60.0, wait_max=60.0, wait_jitter=0, timeout=None
        )

        def consumer():
            list(otpy.Task.async_stream([1], fn, timeout=None, retry=policy))

        pid, ref = otpy.spawn_monitor(consumer)
        wait_until(lambda: scheduled)
        worker = scheduled[0][2]
        worker_ref = otpy.monitor(worker)
        otpy.exit(pid, "kill")
        assert_receive(down_of(ref), WAIT)
        assert assert_receive(down_of(worker_ref), WAIT).reason in ("killed", "normal")
        assert fn.calls[1] == 1

    def test_closing_the_stream_stops_a_worker_that_waits_to_retry(self, runtime, scheduled):
        fn = PerItem(lambda x: 10**6 if x == 1 else 0)
        policy = RetryPolicy(
            on=ConnectionError, wait_initial=60.0, wait_max=60.0, wait_jitter=0, timeout=None
        )
        stream = otpy.Task.async_stream([0, 1], fn, timeout=None, retry=policy, ordered=False)
        assert next(stream) == ("ok", 0)
        wait_until(lambda: scheduled)
        ref = otpy.monitor(scheduled[0][2])
        stream.close()
        assert assert_receive(down_of(ref), WAIT).reason == "killed"

    @pytest.mark.parametrize("bad", [3, ConnectionError, {"on": ConnectionError}, True])
    def test_retry_must_be_a_policy_or_none(self, runtime, bad):
        with pytest.raises(TypeError, match="RetryPolicy"):
            otpy.Task.async_stream([1], str, retry=bad)

    def test_retry_none_is_the_default(self, runtime):
        assert list(otpy.Task.async_stream([1, 2], str, retry=None)) == [("ok", "1"), ("ok", "2")]


class TestTaskSupervisorAsyncStream:
    def test_async_stream_retries_items(self, runtime):
        ts = TS.start_link()
        fn = PerItem(twice_for_even)
        policy = RetryPolicy(on=ConnectionError, **QUICK)
        results = list(TS.async_stream(ts, range(6), fn, max_concurrency=3, retry=policy))
        assert results == [("ok", x * 10) for x in range(6)]
        assert fn.calls == {x: 3 if x % 2 == 0 else 1 for x in range(6)}
        wait_until(lambda: TS.children(ts) == [])

    def test_async_stream_crashes_on_an_exception_the_policy_does_not_select(self, runtime, caplog):
        ts = TS.start_link()
        fn = PerItem(lambda x: 1 if x == 1 else 0, kind=KeyError)
        policy = RetryPolicy(on=ConnectionError, **QUICK)
        with pytest.raises(otpy.ExitError) as info:
            list(TS.async_stream(ts, range(3), fn, max_concurrency=1, retry=policy))
        assert info.value.reason is fn.raised[1][0]
        assert fn.calls[1] == 1
        assert otpy.is_alive(ts)

    def test_nolink_reports_a_retried_item_that_succeeded_as_ok_and_one_that_gave_up_as_exit(
        self, runtime, caplog
    ):
        ts = TS.start_link()
        fn = PerItem(lambda x: {0: 2, 1: 99}.get(x, 0))
        policy = RetryPolicy(on=ConnectionError, attempts=3, **QUICK)
        results = list(TS.async_stream_nolink(ts, range(4), fn, max_concurrency=2, retry=policy))
        assert results == [("ok", 0), ("exit", fn.raised[1][-1]), ("ok", 20), ("ok", 30)]
        assert fn.calls == {0: 3, 1: 3, 2: 1, 3: 1}
        wait_until(lambda: TS.children(ts) == [])

    def test_nolink_reports_an_unselected_exception_at_once(self, runtime, caplog):
        ts = TS.start_link()
        fn = PerItem(lambda x: 1 if x == 0 else 0, kind=ValueError)
        policy = RetryPolicy(on=ConnectionError, **QUICK)
        results = list(TS.async_stream_nolink(ts, range(2), fn, retry=policy))
        assert results == [("exit", fn.raised[0][0]), ("ok", 10)]
        assert fn.calls[0] == 1

    def test_the_workers_are_children_of_the_supervisor_while_they_wait(self, runtime, scheduled):
        ts = TS.start_link()
        fn = PerItem(lambda x: 10**6)
        policy = RetryPolicy(
            on=ConnectionError, wait_initial=60.0, wait_max=60.0, wait_jitter=0, timeout=None
        )

        def consumer():
            list(TS.async_stream_nolink(ts, [1], fn, timeout=None, retry=policy))

        pid, ref = otpy.spawn_monitor(consumer)
        wait_until(lambda: scheduled)
        assert TS.children(ts) == [scheduled[0][2]]
        otpy.exit(pid, "kill")
        assert_receive(down_of(ref), WAIT)
        wait_until(lambda: TS.children(ts) == [])

    @pytest.mark.parametrize("variant", ["async_stream", "async_stream_nolink"])
    def test_retry_must_be_a_policy_or_none(self, runtime, variant):
        ts = TS.start_link()
        with pytest.raises(TypeError, match="RetryPolicy"):
            getattr(TS, variant)(ts, [1], str, retry="yes")
