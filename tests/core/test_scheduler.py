"""The pool: growth under blocking, the max_threads bound, idle threads, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

import otpy
from otpy._core._scheduler import Scheduler

pytestmark = pytest.mark.timeout(60)


class _Job:
    def __init__(self, fn):
        self.fn = fn

    def run(self) -> None:
        self.fn()


def test_the_pool_starts_threads_lazily_and_never_more_than_max_threads_run():
    sched = Scheduler(max_threads=3, name="t1")
    assert sched.stats()["threads"] == 0
    lock = threading.Lock()
    running = 0
    peak = 0
    release = threading.Event()
    started = threading.Semaphore(0)

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        started.release()
        release.wait(10)  # invisible blocking: it keeps its thread
        with lock:
            running -= 1

    for _ in range(10):
        sched.submit(_Job(work))
    for _ in range(3):
        assert started.acquire(timeout=5)
    assert not started.acquire(timeout=0.1)  # the other seven wait for a thread
    assert sched.stats()["threads"] == 3
    release.set()
    for _ in range(7):
        assert started.acquire(timeout=5)
    assert peak == 3
    sched.close(timeout=5)
    assert sched.stats()["threads"] == 0


def test_a_worker_blocked_in_an_otpy_wait_lets_the_pool_grow():
    sched = Scheduler(max_threads=1, name="t2")
    done = threading.Event()
    gate = threading.Event()

    def blocked() -> None:
        sched.blocking()  # what every otpy wait does around its wait
        try:
            gate.wait(10)
        finally:
            sched.unblocked()

    sched.submit(_Job(blocked))
    sched.submit(_Job(done.set))
    assert done.wait(5), "the second job must get a thread while the first is blocked"
    assert sched.stats()["threads"] == 2
    gate.set()
    sched.close(timeout=5)


def test_a_bug_in_a_job_is_logged_and_the_worker_goes_on(caplog):
    sched = Scheduler(max_threads=1, name="t3")
    done = threading.Event()

    def bad() -> None:
        raise RuntimeError("bug")

    sched.submit(_Job(bad))
    sched.submit(_Job(done.set))
    assert done.wait(5)
    sched.close(timeout=5)
    assert any("this is a bug in otpy" in r.getMessage() for r in caplog.records)


def test_ten_thousand_idle_genservers_hold_fewer_than_100_threads(runtime):
    class Idle(otpy.GenServer):
        def handle_call(self, request, caller):
            return request

    pids = [Idle.start() for _ in range(10_000)]
    for pid in pids[::100]:
        assert Idle.call(pid, "hi") == "hi"
    assert all(otpy.is_alive(pid) for pid in pids)
    assert threading.active_count() < 100


def test_a_thousand_processes_blocked_in_receive_do_not_deadlock_a_small_pool():
    with otpy.Runtime(max_threads=2):
        me = otpy.self()

        def wait_then_answer() -> None:
            otpy.send(me, ("ready", otpy.self()))
            otpy.receive()
            otpy.send(me, "done")

        pids = [otpy.spawn(wait_then_answer) for _ in range(1000)]
        for _ in pids:
            otpy.receive(timeout=10, match=lambda m: isinstance(m, tuple))
        for pid in pids:
            otpy.send(pid, "go")
        for _ in pids:
            otpy.receive(timeout=10, match=lambda m: m == "done")


def test_process_info_shows_which_thread_holds_a_process_busy_outside_otpy(runtime):
    me = otpy.self()
    gate = threading.Event()

    def busy() -> None:
        otpy.send(me, "started")
        gate.wait(10)  # blocking otpy cannot see

    pid = otpy.spawn(busy)
    assert otpy.receive(timeout=5) == "started"
    info = otpy.process_info(pid)
    assert info is not None
    assert info.status == "running"
    assert info.thread is not None and "worker" in info.thread
    gate.set()


def test_process_info_shows_a_process_waiting_in_receive(runtime):
    me = otpy.self()

    def waiter() -> None:
        otpy.send(me, "about to wait")
        otpy.receive()

    pid = otpy.spawn(waiter)
    assert otpy.receive(timeout=5) == "about to wait"
    deadline = time.monotonic() + 5
    while otpy.process_info(pid).status != "waiting":  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.001)  # noqa: SLEEP001 polling with a deadline
    otpy.exit(pid, "kill")
