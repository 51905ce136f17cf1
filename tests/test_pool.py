"""Tests for ``otpy.pool`` (API.md, "Worker pools").

start_link / start / child_spec / stop and their options, checkout (waiting,
FIFO service, timeouts that leave nothing reserved, timeout=0), overtaking
(a new checkout may take a worker ahead of waiters younger than
HANDOFF_AFTER, never ahead of older ones), checkin, worker(), transaction(),
status() and its states, lifo/fifo, overflow and overflow_ttl, replacement of
dead workers, caller death (kill / checkin), workers that fail to start,
telemetry (start, stop, exception), and stress tests (concurrent
transactions, random caller kills, timeouts racing check-ins and wake-ups, a
pool stopped under contention).

Some tests set ``otpy.pool.HANDOFF_AFTER`` (read at each decision) to 60 s,
so that every waiter is served by a wake-up, or to 0, so that every waiter is
handed its worker: that makes the two paths deterministic.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import traceback

import pytest
from conftest import WAIT, down_of, in_thread, nothing_pending, recv, tagged, wait_until

import otpy
import otpy.pool
from otpy import telemetry
from otpy.pool import HANDOFF_AFTER, Pool

pytestmark = pytest.mark.timeout(60)

Status = Pool.Status
FAST_RETRY = otpy.Backoff(min=0.01, max=0.05, jitter=0.0)


# --- helpers -----------------------------------------------------------------------------------


class Worker(otpy.GenServer):
    """Reports ``("started", pid)`` and ``("terminate", pid, reason)`` to ``observer``."""

    def init(self, observer=None, trap=False, slow_terminate=None):
        self.observer = observer
        self.slow_terminate = slow_terminate
        if trap:
            otpy.trap_exits(True)
        if observer is not None:
            otpy.send(observer, ("started", otpy.self()))

    def handle_call(self, request, caller):
        match request:
            case "whoami":
                return otpy.self()
        return request

    def handle_cast(self, request):
        match request:
            case "crash":
                raise RuntimeError("worker crash")

    def terminate(self, reason):
        if self.observer is not None:
            otpy.send(self.observer, ("terminate", otpy.self(), reason))
        if self.slow_terminate is not None:
            otpy.sleep(self.slow_terminate)  # noqa: SLEEP001 a slow terminate is the behaviour


def spec(observer=None, **options):
    return Worker.child_spec(observer, **options)


def started(n=1):
    return [recv(tagged("started"))[1] for _ in range(n)]


def settled(pool, size):
    """Wait until the pool is back at rest: ``size`` idle workers, nothing else."""
    wait_until(lambda: Pool.status(pool) == Status("ready", size, 0, 0, 0))


def idle_workers(pool, n):
    """The pool's idle workers, by checking all of them out and back in."""
    pids = [Pool.checkout(pool) for _ in range(n)]
    for pid in pids:
        Pool.checkin(pool, pid)
    return pids


class Holder:
    """A spawned process that checks out, reports ``("got", tag, pid)``, then waits for
    "release" (checks in and reports ``("released", tag)``) or "exit" (exits holding it)."""

    @staticmethod
    def body(pool, observer, tag, timeout=WAIT):
        try:
            pid = Pool.checkout(pool, timeout=timeout)
        except otpy.Timeout:
            otpy.send(observer, ("timeout", tag))
            return
        except otpy.ExitError as exc:
            otpy.send(observer, ("exit_error", tag, exc.reason))
            return
        otpy.send(observer, ("got", tag, pid))
        if otpy.receive() == "release":
            Pool.checkin(pool, pid)
            otpy.send(observer, ("released", tag))

    @classmethod
    def spawn(cls, pool, tag, timeout=WAIT):
        return otpy.spawn(cls.body, pool, otpy.self(), tag, timeout)


def got(tag):
    msg = recv(lambda m: type(m) is tuple and m[:2] == ("got", tag))
    return msg[2]


def waiting(pool, n):
    wait_until(lambda: Pool.status(pool).waiting == n)


@pytest.fixture
def events(runtime):
    """Telemetry of checkouts: a list of (event, measurements, metadata)."""
    seen = []
    lock = threading.Lock()

    def handler(event, measurements, metadata, config):
        with lock:
            seen.append((event, measurements, metadata))

    for kind in ("start", "stop", "exception"):
        telemetry.attach(f"test-pool-{kind}", ("otpy", "pool", "checkout", kind), handler)
    yield seen
    for kind in ("start", "stop", "exception"):
        telemetry.detach(f"test-pool-{kind}")


# --- start_link, start, stop -------------------------------------------------------------------


class TestStartLink:
    def test_size_workers_start_with_the_pool_linked_to_it(self, runtime):
        pool = Pool.start_link(spec(otpy.self()), size=3, max_overflow=0)
        workers = started(3)
        assert Pool.status(pool) == Status("ready", 3, 0, 0, 0)
        for pid in workers:
            info = otpy.process_info(pid)
            assert pool in info.links
            assert info.parent == pool  # started from inside the pool's process
        assert otpy.process_info(pool).trap_exits

    def test_the_defaults_are_five_workers_and_ten_overflow(self, runtime):
        pool = Pool.start_link(spec())
        assert Pool.status(pool) == Status("ready", 5, 0, 0, 0)
        held = [Pool.checkout(pool) for _ in range(15)]
        assert len(set(held)) == 15
        assert Pool.status(pool) == Status("full", 0, 10, 15, 0)
        with pytest.raises(otpy.Timeout):
            Pool.checkout(pool, timeout=0)

    def test_a_class_with_child_spec_is_a_worker_spec(self, runtime):
        pool = Pool.start_link(Worker, size=2)
        pid = Pool.checkout(pool)
        assert otpy.GenServer.call(pid, "whoami") == pid

    def test_a_name_registers_the_pool(self, runtime):
        pool = Pool.start_link(spec(), size=1, name="db")
        assert otpy.whereis("db") == pool
        assert Pool.transaction("db", lambda pid: otpy.GenServer.call(pid, "whoami")) is not None
        assert Pool.status("db").available == 1

    def test_a_via_name_works_too(self, runtime):
        otpy.Registry.start_link(keys="unique", name="pools")
        pool = Pool.start_link(spec(), size=1, name=otpy.via("pools", "db"))
        assert Pool.status(otpy.via("pools", "db")) == Status("ready", 1, 0, 0, 0)
        Pool.stop(pool)

    def test_a_taken_name_raises_already_started(self, runtime):
        Pool.start_link(spec(), size=1, name="db")
        with pytest.raises(otpy.AlreadyStartedError):
            Pool.start_link(spec(), size=1, name="db")

    def test_start_link_links_and_start_does_not(self, runtime):
        linked = Pool.start_link(spec(), size=1)
        unlinked = Pool.start(spec(), size=1)
        links = otpy.process_info(otpy.self()).links
        assert linked in links
        assert unlinked not in links
        Pool.stop(unlinked)


class TestStop:
    def test_stop_stops_every_worker_idle_or_checked_out_with_a_shutdown(self, runtime):
        pool = Pool.start_link(spec(otpy.self(), trap=True), size=3, max_overflow=1)
        workers = started(3)
        held = [Pool.checkout(pool) for _ in range(4)]  # one overflow worker too
        workers += started(1)
        assert set(held) == set(workers)
        refs = {otpy.monitor(pid): pid for pid in workers}
        pool_ref = otpy.monitor(pool)
        Pool.stop(pool)
        terminated = {recv(tagged("terminate"))[1:] for _ in workers}
        assert terminated == {(pid, "shutdown") for pid in workers}
        for ref in refs:
            recv(down_of(ref))
        assert recv(down_of(pool_ref)).reason == "normal"

    def test_a_worker_that_does_not_stop_is_killed_after_its_shutdown_time(self, runtime):
        slow = spec(otpy.self(), trap=True, slow_terminate=WAIT * 2, shutdown=0.05)
        pool = Pool.start_link(slow, size=1, max_overflow=0)
        (worker,) = started()
        ref = otpy.monitor(worker)
        Pool.stop(pool)
        assert recv(down_of(ref)).reason == "killed"

    def test_a_checkout_waiting_when_the_pool_stops_gets_an_exit_error(self, runtime):
        pool = Pool.start(spec(), size=1, max_overflow=0)
        Pool.checkout(pool)
        Holder.spawn(pool, "w")
        waiting(pool, 1)
        Pool.stop(pool, reason="shutdown")
        assert recv(tagged("exit_error"))[1:] == ("w", "shutdown")

    def test_a_killed_pool_fails_its_waiters_and_takes_its_workers_along(self, runtime):
        pool = Pool.start(spec(otpy.self()), size=1, max_overflow=0)
        (worker,) = started()
        ref = otpy.monitor(worker)
        Pool.checkout(pool)
        Holder.spawn(pool, "w")
        waiting(pool, 1)
        otpy.exit(pool, "kill")
        assert recv(tagged("exit_error"))[1:] == ("w", "killed")
        assert recv(down_of(ref)).reason == "killed"

    def test_a_stopped_pool_is_no_proc(self, runtime):
        pool = Pool.start_link(spec(), size=1)
        pid = Pool.checkout(pool)
        Pool.stop(pool)
        for call in (
            lambda: Pool.checkout(pool),
            lambda: Pool.checkin(pool, pid),
            lambda: Pool.status(pool),
            lambda: Pool.transaction(pool, lambda p: None),
            lambda: Pool.stop(pool),
        ):
            with pytest.raises(otpy.NoProcError):
                call()
        with pytest.raises(otpy.NoProcError), Pool.worker(pool):
            pass

    def test_an_unknown_name_is_no_proc(self, runtime):
        with pytest.raises(otpy.NoProcError, match="nope"):
            Pool.checkout("nope")


# --- bad arguments ------------------------------------------------------------------------------


class TestBadArguments:
    @pytest.mark.parametrize(
        ("options", "error", "words"),
        [
            ({"size": -1}, ValueError, "size must be an int >= 0; got -1"),
            ({"size": 1.5}, TypeError, "size must be an int >= 0; got 1.5"),
            ({"size": True}, TypeError, "size"),
            ({"max_overflow": -2}, ValueError, "max_overflow must be an int >= 0; got -2"),
            ({"max_overflow": "3"}, TypeError, "max_overflow"),
            ({"size": 0, "max_overflow": 0}, ValueError, "size + max_overflow must be >= 1"),
            ({"strategy": "random"}, ValueError, "strategy must be one of ('lifo', 'fifo')"),
            ({"overflow_ttl": -1}, ValueError, "overflow_ttl"),
            ({"overflow_ttl": float("nan")}, ValueError, "overflow_ttl"),
            ({"overflow_ttl": float("inf")}, ValueError, "overflow_ttl"),
            ({"overflow_ttl": "1"}, TypeError, "overflow_ttl"),
            ({"on_caller_exit": "ignore"}, ValueError, "('kill', 'checkin')"),
            ({"name": 42}, TypeError, "name must be a str"),
        ],
    )
    def test_bad_options_raise_naming_the_value_and_what_is_allowed(
        self, runtime, options, error, words
    ):
        before = set(otpy.processes())
        with pytest.raises(error, match=re.escape(words)):
            Pool.start_link(spec(), **options)
        with pytest.raises(error):
            Pool.child_spec(spec(), **options)  # checked when the spec is made
        assert set(otpy.processes()) == before

    def test_a_worker_spec_must_be_a_child_spec_or_a_class_with_child_spec(self, runtime):
        with pytest.raises(TypeError, match="child_spec"):
            Pool.start_link(42)

    @pytest.mark.parametrize(
        ("timeout", "error"), [(-1, ValueError), (float("nan"), ValueError), ("5", TypeError)]
    )
    def test_bad_timeouts_raise(self, runtime, timeout, error):
        pool = Pool.start_link(spec(), size=1)
        with pytest.raises(error, match="timeout"):
            Pool.checkout(pool, timeout=timeout)
        with pytest.raises(error, match="timeout"):
            Pool.transaction(pool, lambda pid: None, timeout=timeout)
        with pytest.raises(error, match="timeout"):
            Pool.worker(pool, timeout=timeout)
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    def test_checkin_takes_a_pid(self, runtime):
        pool = Pool.start_link(spec(), size=1)
        with pytest.raises(TypeError, match=re.escape("Pool.checkin takes the pid")):
            Pool.checkin(pool, "worker")

    def test_transaction_takes_a_function(self, runtime):
        pool = Pool.start_link(spec(), size=1)
        with pytest.raises(TypeError, match="function"):
            Pool.transaction(pool, 42)

    def test_a_process_that_is_not_a_pool_is_refused(self, runtime):
        server = Worker.start_link()
        with pytest.raises(TypeError, match=re.escape("not an otpy.pool.Pool")):
            Pool.checkout(server)
        with pytest.raises(TypeError, match="takes a pool"):
            Pool.status(42)


# --- checkout, checkin, worker, transaction -------------------------------------------------------


class TestCheckout:
    def test_a_checkout_lends_a_worker_and_checkin_returns_it(self, runtime):
        pool = Pool.start_link(spec(otpy.self()), size=2, max_overflow=0)
        workers = started(2)
        pid = Pool.checkout(pool)
        assert pid in workers
        assert Pool.status(pool) == Status("ready", 1, 0, 1, 0)
        Pool.checkin(pool, pid)
        assert Pool.status(pool) == Status("ready", 2, 0, 0, 0)

    def test_a_waiting_checkout_gets_the_next_worker_checked_in(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        Holder.spawn(pool, "w")
        waiting(pool, 1)
        assert Pool.status(pool) == Status("full", 0, 0, 1, 1)
        Pool.checkin(pool, pid)
        assert got("w") == pid
        assert Pool.status(pool) == Status("full", 0, 0, 1, 0)

    def test_waiters_are_served_first_come_first_served(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        holders = {}
        for n in range(4):
            holders[n] = Holder.spawn(pool, n)
            waiting(pool, n + 1)
        Pool.checkin(pool, pid)
        for n in range(4):
            assert got(n) == pid
            otpy.send(holders[n], "release")
            recv(lambda m, n=n: m == ("released", n))
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    def test_a_new_checkout_does_not_overtake_a_waiter_that_waited_handoff_after(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        Holder.spawn(pool, "w")
        waiting(pool, 1)
        otpy.sleep(2 * HANDOFF_AFTER)  # noqa: SLEEP001 the waiter's age is the behaviour
        Pool.checkin(pool, pid)
        with pytest.raises(otpy.Timeout):
            Pool.checkout(pool, timeout=0)  # the worker went to the waiter
        assert got("w") == pid

    def test_a_checkout_that_times_out_leaves_nothing_reserved(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        with pytest.raises(otpy.Timeout, match="waiting for a free worker") as info:
            Pool.checkout(pool, timeout=0.05)
        assert info.value.timeout == 0.05
        assert Pool.status(pool) == Status("full", 0, 0, 1, 0)
        Pool.checkin(pool, pid)
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)
        assert Pool.checkout(pool, timeout=0) == pid

    def test_a_process_that_timed_out_can_check_out_again(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)

        def body(observer):
            try:
                Pool.checkout(pool, timeout=0.02)
            except otpy.Timeout:
                otpy.send(observer, "timed out")
            otpy.send(observer, ("got", "again", Pool.checkout(pool, timeout=WAIT)))

        otpy.spawn(body, otpy.self())
        recv(lambda m: m == "timed out")
        waiting(pool, 1)
        Pool.checkin(pool, pid)
        assert got("again") == pid

    def test_timeout_zero_takes_an_idle_worker_or_raises_at_once(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=1)
        pid = Pool.checkout(pool, timeout=0)
        with pytest.raises(otpy.Timeout, match="asking for an idle worker"):
            Pool.checkout(pool, timeout=0)
        # It neither waited in line nor started an overflow worker.
        assert Pool.status(pool) == Status("overflow", 0, 0, 1, 0)
        Pool.checkin(pool, pid)

    def test_timeout_none_waits_as_long_as_it_takes(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        Holder.spawn(pool, "w", timeout=None)
        waiting(pool, 1)
        Pool.checkin(pool, pid)
        assert got("w") == pid

    def test_a_plain_thread_can_check_out_and_in(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)

        def body():
            pid = Pool.checkout(pool)
            Pool.checkin(pool, pid)
            return pid

        assert in_thread(body) == in_thread(lambda: Pool.transaction(pool, lambda pid: pid))
        settled(pool, 1)


class TestOvertaking:
    """A new checkout may take a worker ahead of waiters younger than HANDOFF_AFTER, never
    ahead of an older one; waiters never overtake one another."""

    def test_a_new_checkout_may_take_a_worker_ahead_of_a_young_waiter_which_keeps_its_place(
        self, runtime, monkeypatch
    ):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        # White box: whether the woken waiter has come back yet has no public face.
        table = otpy.pool._table_of(pool, "test")
        pid = Pool.checkout(pool)
        overtaken = 0
        for n in range(50):
            if overtaken == 4:
                break
            monkeypatch.setattr(otpy.pool, "HANDOFF_AFTER", 60.0)  # every waiter is young
            holder = Holder.spawn(pool, n)
            waiting(pool, 1)
            Pool.checkin(pool, pid)  # the worker goes back, and the waiter is woken to take it
            try:
                pid = Pool.checkout(pool, timeout=0)  # races the woken waiter
            except otpy.Timeout:
                assert got(n) == pid  # the waiter came first this time
            else:
                overtaken += 1
                wait_until(lambda: not table.woken)  # it came back, lost, and waits on
                assert Pool.status(pool) == Status("full", 0, 0, 1, 1)
                if overtaken % 2:
                    # Still young: the next check-in wakes it again, and nobody competes.
                    Pool.checkin(pool, pid)
                else:
                    # Old now: the next check-in is handed to it, as first in line, and a
                    # new checkout cannot have it.
                    monkeypatch.setattr(otpy.pool, "HANDOFF_AFTER", 0.0)
                    Pool.checkin(pool, pid)
                    with pytest.raises(otpy.Timeout):
                        Pool.checkout(pool, timeout=0)
                assert got(n) == pid
            otpy.send(holder, "release")
            recv(lambda m, n=n: m == ("released", n))
            pid = Pool.checkout(pool, timeout=0)
        assert overtaken == 4
        Pool.checkin(pool, pid)
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    def test_waiters_that_waited_handoff_after_are_served_in_order_while_others_compete(
        self, runtime
    ):
        # The test holds the only worker while five waiters pile up and grow old; then it
        # checks the worker in while two threads keep trying non-waiting checkouts. Every
        # check-in must go to the next of the five, in the order they came, and the
        # competitors get the worker only after the last of them.
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        lock = threading.Lock()
        served = []
        attempts = [0, 0]
        stop = threading.Event()

        def record(tag):
            with lock:
                served.append(tag)

        def waiter(observer, n):
            Pool.transaction(pool, lambda pid: record(n), timeout=WAIT)
            otpy.send(observer, ("served", n))

        def compete(i):
            while not stop.is_set():
                attempts[i] += 1
                try:
                    Pool.transaction(pool, lambda pid: record("new"), timeout=0)
                except otpy.Timeout:
                    pass

        pid = Pool.checkout(pool)
        for n in range(5):
            otpy.spawn(waiter, otpy.self(), n)
            waiting(pool, n + 1)
        otpy.sleep(2 * HANDOFF_AFTER)  # noqa: SLEEP001 the waiters' age is the behaviour
        threads = [threading.Thread(target=compete, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        wait_until(lambda: min(attempts) > 0)  # both compete already
        Pool.checkin(pool, pid)
        for n in range(5):
            recv(lambda m, n=n: m == ("served", n))
        stop.set()
        for thread in threads:
            thread.join(WAIT)
        assert served[:5] == [0, 1, 2, 3, 4]
        assert all(tag == "new" for tag in served[5:])
        settled(pool, 1)

    def test_a_waiter_under_a_flood_of_new_checkouts_is_served(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        stop = threading.Event()
        done = [0] * 4  # transactions per flooding thread (each writes only its own slot)

        def flood(i):
            while not stop.is_set():
                Pool.transaction(pool, lambda pid: None, timeout=WAIT)
                done[i] += 1

        def probe():
            pid = Pool.checkout(pool, timeout=WAIT)  # Timeout if the flood starved it
            Pool.checkin(pool, pid)
            return pid

        (worker,) = idle_workers(pool, 1)
        threads = [threading.Thread(target=flood, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: min(done) >= 50)  # every thread is flooding
            for _ in range(10):
                assert in_thread(probe) == worker
        finally:
            stop.set()
            for thread in threads:
                thread.join(WAIT)
        assert not any(thread.is_alive() for thread in threads)
        settled(pool, 1)


class TestStrategy:
    def test_lifo_lends_the_worker_checked_in_last(self, runtime):
        pool = Pool.start_link(spec(), size=3, max_overflow=0, strategy="lifo")
        a, b, c = (Pool.checkout(pool) for _ in range(3))
        for pid in (a, b, c):
            Pool.checkin(pool, pid)
        assert Pool.checkout(pool) == c
        assert Pool.checkout(pool) == b

    def test_fifo_lends_the_worker_idle_longest(self, runtime):
        pool = Pool.start_link(spec(), size=3, max_overflow=0, strategy="fifo")
        a, b, c = (Pool.checkout(pool) for _ in range(3))
        for pid in (a, b, c):
            Pool.checkin(pool, pid)
        assert Pool.checkout(pool) == a
        assert Pool.checkout(pool) == b

    def test_lifo_keeps_reusing_one_warm_worker_and_fifo_rotates(self, runtime):
        lifo = Pool.start_link(spec(), size=3, max_overflow=0, strategy="lifo")
        fifo = Pool.start_link(spec(), size=3, max_overflow=0, strategy="fifo")
        assert len({Pool.transaction(lifo, lambda pid: pid) for _ in range(6)}) == 1
        assert len({Pool.transaction(fifo, lambda pid: pid) for _ in range(6)}) == 3


class TestCheckin:
    def test_a_pid_that_is_not_checked_out_raises_value_error(self, runtime):
        pool = Pool.start_link(spec(otpy.self()), size=2, max_overflow=0)
        idle, _ = started(2)
        with pytest.raises(ValueError, match="is not checked out from pool"):
            Pool.checkin(pool, idle)
        with pytest.raises(ValueError, match="not checked out"):
            Pool.checkin(pool, otpy.self())
        assert Pool.status(pool) == Status("ready", 2, 0, 0, 0)

    def test_checking_in_twice_raises_value_error(self, runtime):
        pool = Pool.start_link(spec(), size=2, max_overflow=0)
        pid = Pool.checkout(pool)
        Pool.checkin(pool, pid)
        with pytest.raises(ValueError):
            Pool.checkin(pool, pid)
        assert Pool.status(pool) == Status("ready", 2, 0, 0, 0)

    def test_a_worker_of_another_pool_raises_value_error(self, runtime):
        one = Pool.start_link(spec(), size=1)
        other = Pool.start_link(spec(), size=1)
        pid = Pool.checkout(one)
        with pytest.raises(ValueError):
            Pool.checkin(other, pid)
        Pool.checkin(one, pid)

    def test_another_process_may_check_in_what_was_checked_out(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)

        def body(observer):
            Pool.checkin(pool, pid)
            otpy.send(observer, "checked in")

        otpy.spawn(body, otpy.self())
        recv(lambda m: m == "checked in")
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)


class TestWorkerContext:
    def test_the_worker_is_checked_in_when_the_block_ends(self, runtime):
        pool = Pool.start_link(spec(), size=2, max_overflow=0)
        with Pool.worker(pool) as pid:
            assert otpy.GenServer.call(pid, "whoami") == pid
            assert Pool.status(pool) == Status("ready", 1, 0, 1, 0)
        assert Pool.status(pool) == Status("ready", 2, 0, 0, 0)

    def test_the_worker_is_checked_in_when_the_block_raises(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        with pytest.raises(KeyError), Pool.worker(pool):
            raise KeyError("inside")
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    def test_entering_times_out_like_checkout(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        with pytest.raises(otpy.Timeout), Pool.worker(pool, timeout=0.02):
            pytest.fail("the block must not run")
        Pool.checkin(pool, pid)
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    def test_a_context_can_be_used_again_after_it_ended(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        ctx = Pool.worker(pool)
        with ctx as first:
            pass
        with ctx as second:
            pass
        assert first == second
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)


class TestTransaction:
    def test_returns_the_value_of_fn_called_with_a_worker(self, runtime):
        pool = Pool.start_link(spec(), size=1)
        assert Pool.transaction(pool, lambda pid: ("called", otpy.GenServer.call(pid, 7))) == (
            "called",
            7,
        )
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    def test_the_worker_is_checked_in_when_fn_raises_and_the_exception_propagates(self, runtime):
        pool = Pool.start_link(spec(), size=1)

        def fn(pid):
            assert Pool.status(pool).checked_out == 1
            raise ZeroDivisionError("inside")

        with pytest.raises(ZeroDivisionError, match="inside"):
            Pool.transaction(pool, fn)
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    def test_a_transaction_times_out_like_checkout(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        with pytest.raises(otpy.Timeout):
            Pool.transaction(pool, lambda p: pytest.fail("fn must not run"), timeout=0.02)
        Pool.checkin(pool, pid)


# --- status, overflow, overflow_ttl ---------------------------------------------------------------


class TestStatus:
    def test_state_is_ready_then_overflow_then_full(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=1)
        assert Pool.status(pool).state == "ready"
        a = Pool.checkout(pool)
        assert Pool.status(pool) == Status("overflow", 0, 0, 1, 0)
        b = Pool.checkout(pool)
        assert Pool.status(pool) == Status("full", 0, 1, 2, 0)
        Pool.checkin(pool, b)
        Pool.checkin(pool, a)
        settled(pool, 1)

    def test_without_overflow_a_pool_with_none_idle_is_full(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        Pool.checkout(pool)
        assert Pool.status(pool) == Status("full", 0, 0, 1, 0)

    def test_a_pool_of_size_zero_starts_every_worker_on_demand(self, runtime):
        pool = Pool.start_link(spec(otpy.self()), size=0, max_overflow=2)
        assert Pool.status(pool) == Status("overflow", 0, 0, 0, 0)
        pid = Pool.checkout(pool)
        assert started() == [pid]
        assert Pool.status(pool) == Status("overflow", 0, 1, 1, 0)
        ref = otpy.monitor(pid)
        Pool.checkin(pool, pid)
        assert recv(down_of(ref)).reason == "shutdown"
        assert Pool.status(pool) == Status("overflow", 0, 0, 0, 0)

    def test_status_is_a_frozen_value(self, runtime):
        pool = Pool.start_link(spec(), size=1)
        status = Pool.status(pool)
        with pytest.raises(AttributeError):
            status.available = 3
        assert Pool.Status.__module__ == "otpy.pool"
        assert Pool.__module__ == "otpy.pool"
        assert repr(status) == (
            "Pool.Status(state='ready', available=1, overflow=0, checked_out=0, waiting=0)"
        )


class TestOverflow:
    def test_overflow_workers_start_on_demand_up_to_max_overflow(self, runtime):
        pool = Pool.start_link(spec(otpy.self()), size=1, max_overflow=2)
        base = started(1)
        held = [Pool.checkout(pool) for _ in range(3)]
        assert len(set(held)) == 3
        assert set(held) - set(base) == set(started(2))
        assert Pool.status(pool) == Status("full", 0, 2, 3, 0)
        with pytest.raises(otpy.Timeout):
            Pool.checkout(pool, timeout=0.02)

    def test_a_worker_checked_in_beyond_size_is_stopped_at_once_by_default(self, runtime):
        pool = Pool.start_link(spec(otpy.self(), trap=True), size=1, max_overflow=1)
        started(1)
        a, b = Pool.checkout(pool), Pool.checkout(pool)
        started(1)
        ref = otpy.monitor(b)
        Pool.checkin(pool, b)
        assert recv(tagged("terminate"))[1:] == (b, "shutdown")  # an orderly stop
        assert recv(down_of(ref)).reason == "shutdown"
        assert Pool.status(pool) == Status("overflow", 0, 0, 1, 0)
        Pool.checkin(pool, a)
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    def test_a_waiter_gets_an_overflow_worker_started_for_it(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=1)
        Pool.checkout(pool)
        Holder.spawn(pool, "w")
        pid = got("w")
        assert Pool.status(pool) == Status("full", 0, 1, 2, 0)
        assert otpy.is_alive(pid)

    def test_overflow_ttl_keeps_an_overflow_worker_for_reuse_then_stops_it(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=1, overflow_ttl=0.3)
        a, b = Pool.checkout(pool), Pool.checkout(pool)
        ref = otpy.monitor(b)
        Pool.checkin(pool, b)
        assert Pool.status(pool) == Status("ready", 1, 1, 1, 0)
        assert Pool.checkout(pool, timeout=0) == b  # reused within the ttl
        Pool.checkin(pool, b)
        Pool.checkin(pool, a)
        assert Pool.status(pool) == Status("ready", 2, 1, 0, 0)
        assert recv(down_of(ref)).reason == "shutdown"  # stopped after the ttl
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)
        assert otpy.is_alive(a)

    def test_overflow_ttl_stops_the_worker_idle_longest(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=2, overflow_ttl=0.1)
        a, b, c = (Pool.checkout(pool) for _ in range(3))
        refs = {otpy.monitor(pid): pid for pid in (a, b, c)}
        for pid in (a, b, c):
            Pool.checkin(pool, pid)
        stopped = {refs[recv(lambda m: isinstance(m, otpy.Down) and m.ref in refs).ref]}
        stopped.add(refs[recv(lambda m: isinstance(m, otpy.Down) and m.ref in refs).ref])
        assert stopped == {a, b}  # c went idle last
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    @pytest.mark.parametrize("overflow_ttl", [0.0, 0.05])
    def test_an_overflow_worker_left_idle_by_a_woken_waiter_is_still_stopped(
        self, runtime, monkeypatch, overflow_ttl
    ):
        # Both workers come back while a waiter is in line: the first wakes it, the second
        # (usually before it came back) goes idle too. It takes one; the other is beyond
        # size with nobody waiting, and must be stopped as a check-in would stop it.
        monkeypatch.setattr(otpy.pool, "HANDOFF_AFTER", 60.0)  # served by a wake-up
        pool = Pool.start_link(spec(), size=1, max_overflow=1, overflow_ttl=overflow_ttl)
        a, b = Pool.checkout(pool), Pool.checkout(pool)
        refs = {otpy.monitor(pid): pid for pid in (a, b)}
        holder = Holder.spawn(pool, "w")
        waiting(pool, 1)
        Pool.checkin(pool, b)
        Pool.checkin(pool, a)
        held = got("w")
        down = recv(lambda m: isinstance(m, otpy.Down) and m.ref in refs)
        assert down.reason == "shutdown"
        assert refs[down.ref] != held
        assert Pool.status(pool) == Status("overflow", 0, 0, 1, 0)
        otpy.send(holder, "release")
        recv(lambda m: m == ("released", "w"))
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)


# --- dying workers, dying callers, failing starts ---------------------------------------------------


class TestWorkerDeath:
    def test_an_idle_worker_that_dies_is_replaced(self, runtime, caplog):
        pool = Pool.start_link(spec(otpy.self()), size=2, max_overflow=0)
        dead, alive = started(2)
        with caplog.at_level(logging.ERROR, logger="otpy.pool"):
            otpy.exit(dead, "kill")
            (new,) = started()
        assert new not in (dead, alive)
        settled(pool, 2)
        assert set(idle_workers(pool, 2)) == {alive, new}
        assert any("exited: 'killed'" in r.getMessage() for r in caplog.records), caplog.text

    def test_a_checked_out_worker_that_dies_is_replaced_and_its_checkin_does_nothing(
        self, runtime, caplog
    ):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        pool = Pool.start_link(spec(otpy.self()), size=1, max_overflow=0)
        started(1)
        pid = Pool.checkout(pool)
        otpy.GenServer.cast(pid, "crash")
        (new,) = started()
        settled(pool, 1)
        Pool.checkin(pool, pid)  # void: no error, no effect
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)
        assert Pool.checkout(pool) == new

    def test_a_worker_checked_in_dead_before_the_pool_saw_its_exit_is_not_lent_again(
        self, runtime, caplog
    ):
        # The pool's process is kept busy starting an overflow worker for a waiter, so it
        # cannot handle the exit of a worker that crashed; the caller, which saw it die,
        # checks it in meanwhile: it must not go to the waiter, nor to anyone else.
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        go_on = threading.Event()
        calls = []

        def start():
            calls.append(1)
            if len(calls) == 3:
                go_on.wait(WAIT)
            return Worker.start_link()

        worker_spec = otpy.ChildSpec(id="w", start=(start, (), {}))
        pool = Pool.start_link(worker_spec, size=2, max_overflow=1)
        a, b = Pool.checkout(pool), Pool.checkout(pool)
        holder = Holder.spawn(pool, "w")
        wait_until(lambda: len(calls) == 3)  # the pool is inside the overflow start
        ref = otpy.monitor(a)
        otpy.GenServer.cast(a, "crash")
        recv(down_of(ref))
        Pool.checkin(pool, a)
        with pytest.raises(otpy.Timeout):
            Pool.checkout(pool, timeout=0)
        assert Pool.status(pool) == Status("full", 0, 1, 1, 1)
        go_on.set()
        new = got("w")  # the overflow worker, once started
        assert new not in (a, b)
        assert otpy.is_alive(new)
        otpy.send(holder, "release")
        recv(lambda m: m == ("released", "w"))
        Pool.checkin(pool, b)
        settled(pool, 2)
        assert a not in idle_workers(pool, 2)

    def test_a_worker_dying_in_a_transaction_leaves_the_pool_whole(self, runtime, caplog):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        pool = Pool.start_link(spec(), size=2, max_overflow=0)

        def fn(pid):
            ref = otpy.monitor(pid)
            otpy.exit(pid, "kill")
            recv(down_of(ref))
            return "done"

        assert Pool.transaction(pool, fn) == "done"
        settled(pool, 2)

    def test_a_dead_overflow_worker_is_not_replaced_when_size_workers_remain(self, runtime):
        pool = Pool.start_link(spec(otpy.self()), size=1, max_overflow=1)
        started(1)
        Pool.checkout(pool)
        b = Pool.checkout(pool)
        started(1)
        otpy.exit(b, "kill")
        wait_until(lambda: Pool.status(pool) == Status("overflow", 0, 0, 1, 0))
        assert nothing_started()


def nothing_started():
    try:
        otpy.receive(timeout=0.05, match=tagged("started"))
    except otpy.Timeout:
        return True
    return False


class TestCallerDeath:
    @pytest.mark.parametrize("how", ["kill", "crash", "normal"])
    def test_with_kill_a_dead_callers_worker_is_killed_and_replaced(self, runtime, how):
        pool = Pool.start_link(spec(otpy.self()), size=2, max_overflow=0)
        started(2)
        caller = Holder.spawn(pool, "c")
        worker = got("c")
        ref = otpy.monitor(worker)
        if how == "kill":
            otpy.exit(caller, "kill")
        elif how == "crash":
            otpy.exit(caller, RuntimeError("caller crash"))
        else:
            otpy.send(caller, "exit")
        assert recv(down_of(ref)).reason == "killed"
        (new,) = started()
        settled(pool, 2)
        assert worker not in idle_workers(pool, 2)
        assert new in idle_workers(pool, 2)

    def test_with_checkin_a_dead_callers_worker_goes_back_to_the_pool(self, runtime):
        pool = Pool.start_link(spec(otpy.self()), size=2, max_overflow=0, on_caller_exit="checkin")
        started(2)
        caller = Holder.spawn(pool, "c")
        worker = got("c")
        otpy.exit(caller, "kill")
        settled(pool, 2)
        assert otpy.is_alive(worker)
        assert worker in idle_workers(pool, 2)
        assert nothing_started()

    def test_with_checkin_a_dead_callers_worker_goes_to_the_next_waiter(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0, on_caller_exit="checkin")
        caller = Holder.spawn(pool, "c")
        worker = got("c")
        Holder.spawn(pool, "next")
        waiting(pool, 1)
        otpy.exit(caller, "kill")
        assert got("next") == worker

    def test_a_caller_that_dies_while_waiting_leaves_no_waiter(self, runtime):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        waiter = Holder.spawn(pool, "w")
        waiting(pool, 1)
        otpy.exit(waiter, "kill")
        waiting(pool, 0)
        Pool.checkin(pool, pid)
        assert Pool.status(pool) == Status("ready", 1, 0, 0, 0)

    @pytest.mark.parametrize("handoff_after", [None, 60.0])
    def test_a_worker_checked_in_skips_a_waiter_that_gave_up_before_the_pool_noticed(
        self, runtime, monkeypatch, handoff_after
    ):
        # The pool's process is kept busy starting an overflow worker, so it cannot
        # handle the Down of a waiter that was killed: the dead waiter may still be in line
        # when the worker comes back, and the worker must go to the next one (handed to it,
        # or, with HANDOFF_AFTER at 60 s, by waking it).
        if handoff_after is not None:
            monkeypatch.setattr(otpy.pool, "HANDOFF_AFTER", handoff_after)
        go_on = threading.Event()
        calls = []

        def start():
            calls.append(1)
            if len(calls) == 2:
                go_on.wait(WAIT)
            return Worker.start_link()

        worker_spec = otpy.ChildSpec(id="w", start=(start, (), {}))
        pool = Pool.start_link(worker_spec, size=1, max_overflow=1)
        pid = Pool.checkout(pool)
        gave_up = Holder.spawn(pool, "gave up")
        wait_until(lambda: len(calls) == 2)  # the pool is inside the overflow start
        Holder.spawn(pool, "next")
        waiting(pool, 2)
        otpy.exit(gave_up, "kill")
        Pool.checkin(pool, pid)
        assert got("next") == pid
        go_on.set()  # the overflow worker, now needed by nobody, is stopped at once
        wait_until(lambda: Pool.status(pool) == Status("overflow", 0, 0, 1, 0))

    def test_a_caller_holding_several_workers_gives_back_all_of_them(self, runtime):
        pool = Pool.start_link(spec(), size=3, max_overflow=0, on_caller_exit="checkin")

        def body(observer):
            held = [Pool.checkout(pool) for _ in range(3)]
            otpy.send(observer, ("held", held))
            otpy.receive()

        caller = otpy.spawn(body, otpy.self())
        held = recv(tagged("held"))[1]
        otpy.exit(caller, "kill")
        settled(pool, 3)
        assert set(idle_workers(pool, 3)) == set(held)


class TestStartFailures:
    def flaky_spec(self, failures, *, observer=None, result=None):
        """A worker spec whose start raises (or returns ``result``) the first ``failures`` times."""
        lock = threading.Lock()
        calls = [0]

        def start():
            with lock:
                calls[0] += 1
                n = calls[0]
            if n <= failures:
                if result is not None:
                    return result
                raise ConnectionError(f"database down (attempt {n})")
            return Worker.start_link(observer)

        return otpy.ChildSpec(id="flaky", start=(start, (), {}), backoff=FAST_RETRY), calls

    def test_a_worker_that_fails_to_start_does_not_crash_the_pool(self, runtime, caplog):
        worker_spec, calls = self.flaky_spec(3, observer=otpy.self())
        with caplog.at_level(logging.ERROR, logger="otpy.pool"):
            pool = Pool.start_link(worker_spec, size=2, max_overflow=0)
            assert Pool.status(pool).available < 2
            pid = Pool.checkout(pool, timeout=WAIT)  # waits out the backoff
            settled_after_checkin = Pool.status(pool)
            Pool.checkin(pool, pid)
            settled(pool, 2)
        assert settled_after_checkin.checked_out == 1
        assert calls[0] == 5
        failures = [r for r in caplog.records if "failed to start" in r.getMessage()]
        assert len(failures) == 3
        assert "database down" in failures[0].getMessage()

    def test_a_start_that_returns_no_pid_counts_as_a_failure(self, runtime, caplog):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        worker_spec, calls = self.flaky_spec(2, result="not a pid")
        pool = Pool.start_link(worker_spec, size=1, max_overflow=0)
        assert otpy.is_alive(Pool.checkout(pool, timeout=WAIT))
        assert calls[0] == 3

    def test_checkouts_time_out_while_starts_keep_failing(self, runtime, caplog):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        worker_spec, calls = self.flaky_spec(10**9)
        pool = Pool.start_link(worker_spec, size=1, max_overflow=0)
        with pytest.raises(otpy.Timeout):
            Pool.checkout(pool, timeout=0.1)
        wait_until(lambda: calls[0] >= 3)  # it keeps trying, with backoff
        assert Pool.status(pool) == Status("full", 0, 0, 0, 0)
        assert otpy.is_alive(pool)
        Pool.stop(pool)

    def test_a_replacement_that_fails_to_start_is_retried(self, runtime, caplog):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        lock = threading.Lock()
        calls = [0]

        def start():
            with lock:
                calls[0] += 1
                n = calls[0]
            if n in (2, 3):
                raise ConnectionError("down")
            return Worker.start_link()

        worker_spec = otpy.ChildSpec(id="w", start=(start, (), {}), backoff=FAST_RETRY)
        pool = Pool.start_link(worker_spec, size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        otpy.exit(pid, "kill")
        new = Pool.checkout(pool, timeout=WAIT)
        assert new != pid
        assert calls[0] == 4


# --- telemetry ----------------------------------------------------------------------------------


class TestTelemetry:
    def test_a_checkout_emits_start_and_stop_with_the_time_waited(self, runtime, events):
        pool = Pool.start_link(spec(), size=1, max_overflow=0, name="db")
        pid = Pool.checkout(pool)
        (start, stop) = events
        assert start[0] == ("otpy", "pool", "checkout", "start")
        assert start[2] == {"pool": "db"}
        assert set(start[1]) == {"monotonic_time", "system_time"}
        assert stop[0] == ("otpy", "pool", "checkout", "stop")
        assert stop[2] == {"pool": "db", "worker": pid}
        assert set(stop[1]) == {"duration", "monotonic_time"}
        assert 0 <= stop[1]["duration"] < WAIT
        assert stop[1]["monotonic_time"] == pytest.approx(
            start[1]["monotonic_time"] + stop[1]["duration"]
        )
        Pool.checkin(pool, pid)

    def test_the_duration_of_a_waiting_checkout_covers_the_wait(self, runtime, events):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        pid = Pool.checkout(pool)
        events.clear()
        Holder.spawn(pool, "w")
        waiting(pool, 1)
        otpy.sleep(0.05)  # noqa: SLEEP001 the checkout waits this long: that is what is measured
        Pool.checkin(pool, pid)
        got("w")
        stop = [e for e in events if e[0][-1] == "stop"]
        assert len(stop) == 1
        assert stop[0][2] == {"pool": pool, "worker": pid}
        assert stop[0][1]["duration"] >= 0.05

    @pytest.mark.parametrize("timeout", [0, 0.02])
    def test_a_checkout_that_times_out_emits_exception_instead_of_stop(
        self, runtime, events, timeout
    ):
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        Pool.checkout(pool)
        events.clear()
        with pytest.raises(otpy.Timeout) as info:
            Pool.checkout(pool, timeout=timeout)
        assert [e[0][-1] for e in events] == ["start", "exception"]
        (start, (event, measurements, metadata)) = events
        assert event == ("otpy", "pool", "checkout", "exception")
        assert set(measurements) == {"duration", "monotonic_time"}
        assert measurements["duration"] >= timeout
        assert measurements["monotonic_time"] >= start[1]["monotonic_time"]
        assert set(metadata) == {"pool", "kind", "reason", "stacktrace"}
        assert metadata["pool"] == pool
        assert metadata["kind"] is otpy.Timeout
        assert metadata["reason"] is info.value
        assert isinstance(metadata["stacktrace"], traceback.StackSummary)

    def test_a_checkout_failed_by_the_pool_stopping_emits_exception(self, runtime, events):
        pool = Pool.start(spec(), size=1, max_overflow=0)
        Pool.checkout(pool)
        Holder.spawn(pool, "w")
        waiting(pool, 1)
        Pool.stop(pool, reason="shutdown")
        assert recv(tagged("exit_error"))[1:] == ("w", "shutdown")
        failed = [e for e in events if e[0][-1] == "exception"]
        assert len(failed) == 1
        assert failed[0][2]["kind"] is otpy.ExitError
        assert failed[0][2]["reason"].reason == "shutdown"

    def test_the_open_telemetry_bridge_ends_the_span_of_a_failed_checkout(self, runtime):
        pytest.importorskip("opentelemetry.sdk")
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.trace import StatusCode

        from otpy.telemetry import otel

        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider(shutdown_on_exit=False)
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        meter_provider = MeterProvider(
            metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False
        )
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        try:
            with otel.instrument(tracer_provider, meter_provider):
                pid = Pool.checkout(pool)
                with pytest.raises(otpy.Timeout):
                    Pool.checkout(pool, timeout=0)
                Pool.checkin(pool, pid)
            spans = exporter.get_finished_spans()
        finally:
            tracer_provider.shutdown()
            meter_provider.shutdown()
        assert [span.name for span in spans] == ["otpy.pool.checkout"] * 2
        assert spans[0].status.status_code is not StatusCode.ERROR
        assert spans[1].status.status_code is StatusCode.ERROR


# --- supervision ---------------------------------------------------------------------------------


class TestSupervision:
    def test_a_pool_runs_under_a_supervisor_through_child_spec(self, runtime):
        child = Pool.child_spec(spec(otpy.self()), size=2, max_overflow=0, name="db")
        assert child.id is Pool
        assert child.type == "supervisor"
        sup = otpy.Supervisor.start_link([child])
        workers = started(2)
        (info,) = otpy.Supervisor.which_children(sup)
        assert info.pid == otpy.whereis("db")
        assert Pool.transaction("db", lambda pid: pid) in workers
        refs = [otpy.monitor(pid) for pid in workers]
        otpy.Supervisor.stop(sup)
        for ref in refs:
            assert recv(down_of(ref)).reason == "shutdown"

    def test_a_pool_that_crashes_is_restarted_with_fresh_workers(self, runtime, caplog):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        sup = otpy.Supervisor.start_link(
            [Pool.child_spec(spec(otpy.self()), id="db", size=1, name="db")]
        )
        (old,) = started()
        ref = otpy.monitor(old)
        first = otpy.whereis("db")
        otpy.exit(first, "kill")
        assert recv(down_of(ref)).reason == "killed"
        (new,) = started()
        wait_until(lambda: otpy.whereis("db") not in (None, first))
        assert Pool.transaction("db", lambda pid: pid) == new
        otpy.Supervisor.stop(sup)


# --- stress --------------------------------------------------------------------------------------


class TestStress:
    def test_fifty_concurrent_transactions_never_exceed_size_plus_overflow(self, runtime):
        pool = Pool.start_link(spec(), size=3, max_overflow=2)
        lock = threading.Lock()
        in_use: set = set()
        peak = [0]
        done = []

        def fn(pid):
            with lock:
                assert pid not in in_use, "one worker lent to two callers at once"
                in_use.add(pid)
                peak[0] = max(peak[0], len(in_use))
            otpy.sleep(0.005)  # noqa: SLEEP001 holding the worker for a while is the behaviour
            with lock:
                in_use.discard(pid)
            return pid

        def body():
            pid = Pool.transaction(pool, fn, timeout=WAIT * 2)
            with lock:
                done.append(pid)

        threads = [threading.Thread(target=body) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 2)
        assert len(done) == 50
        assert 3 <= peak[0] <= 5
        settled(pool, 3)

    @pytest.mark.parametrize(
        ("on_caller_exit", "handoff_after"), [("kill", None), ("checkin", None), ("kill", 60.0)]
    )
    def test_a_thousand_checkouts_with_random_caller_kills_leave_the_pool_exact(
        self, runtime, caplog, monkeypatch, on_caller_exit, handoff_after
    ):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        if handoff_after is not None:  # every waiter is woken, never handed a worker
            monkeypatch.setattr(otpy.pool, "HANDOFF_AFTER", handoff_after)
        size = 3
        pool = Pool.start_link(spec(), size=size, max_overflow=2, on_caller_exit=on_caller_exit)
        rng = random.Random(20240601)
        me = otpy.self()

        def caller(hold):
            pid = Pool.checkout(pool, timeout=WAIT)
            if hold:
                otpy.send(me, ("holding", otpy.self()))
                otpy.receive()
            Pool.checkin(pool, pid)

        batch = []
        for i in range(1000):
            point = rng.choice(["at_once", "while_holding", "never", "never"])
            pid = otpy.spawn(caller, point == "while_holding")
            if point == "at_once":
                otpy.exit(pid, "kill")
            batch.append((pid, point))
            if len(batch) == 8 or i == 999:
                for pid, point in batch:
                    if point == "while_holding":
                        recv(lambda m, pid=pid: m == ("holding", pid))
                        otpy.exit(pid, "kill")
                batch = []
        settled(pool, size)
        assert len(set(idle_workers(pool, size))) == size

    def test_timeouts_racing_checkins_never_leak_a_worker(self, runtime):
        # The test process races its checkout timeouts against a churning holder's
        # check-ins; it stays alive, so a worker granted to one of its timed-out
        # checkouts would stay checked out (no caller death to clean it up).
        pool = Pool.start_link(spec(), size=1, max_overflow=0)
        rng = random.Random(7)

        def churn(observer, rounds):
            rng = random.Random(8)  # its own: the test process draws from the other one
            for _ in range(rounds):
                pid = Pool.checkout(pool, timeout=WAIT)
                otpy.sleep(rng.choice([0.0, 0.0002, 0.0005]))  # noqa: SLEEP001 holding is the behaviour
                Pool.checkin(pool, pid)
            otpy.send(observer, "churned")

        _, ref = otpy.spawn_monitor(churn, otpy.self(), 1500)
        outcomes = {"got": 0, "timeout": 0}
        while nothing_pending(lambda m: m == "churned" or down_of(ref)(m)):
            try:
                pid = Pool.checkout(pool, timeout=rng.choice([0.0001, 0.0003, 0.0007]))
            except otpy.Timeout:
                outcomes["timeout"] += 1
                continue
            outcomes["got"] += 1
            Pool.checkin(pool, pid)
        assert recv(down_of(ref)).reason == "normal"
        settled(pool, 1)
        assert outcomes["got"] and outcomes["timeout"]  # both sides of the race happened

    @pytest.mark.parametrize(
        ("handoff_after", "overflow_ttl"), [(None, 0.0), (60.0, 0.0), (None, 0.002)]
    )
    def test_short_timeouts_under_contention_leave_the_pool_exact(
        self, runtime, monkeypatch, handoff_after, overflow_ttl
    ):
        # Six threads compete for two workers and one overflow worker, with timeouts so short
        # that many run out: some as a worker comes free, some just after their waiter was
        # woken. With HANDOFF_AFTER at 60 s every waiter is served by a wake-up (never by a
        # hand-off) and races the new checkouts each time.
        if handoff_after is not None:
            monkeypatch.setattr(otpy.pool, "HANDOFF_AFTER", handoff_after)
        pool = Pool.start_link(spec(), size=2, max_overflow=1, overflow_ttl=overflow_ttl)
        lock = threading.Lock()
        in_use: set = set()
        outcomes = {"got": 0, "timeout": 0}
        wrong = []

        def body(seed):
            rng = random.Random(seed)
            for _ in range(300):
                try:
                    pid = Pool.checkout(pool, timeout=rng.choice([0, 0.0002, 0.001, 0.005]))
                except otpy.Timeout:
                    with lock:
                        outcomes["timeout"] += 1
                    continue
                with lock:
                    if pid in in_use:
                        wrong.append(pid)
                    in_use.add(pid)
                    outcomes["got"] += 1
                if rng.random() < 0.3:
                    otpy.sleep(rng.choice([0.0001, 0.0005]))  # noqa: SLEEP001 holding is the behaviour
                with lock:
                    in_use.discard(pid)
                Pool.checkin(pool, pid)

        threads = [threading.Thread(target=body, args=(seed,)) for seed in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 2)
        assert not any(thread.is_alive() for thread in threads)
        assert not wrong, "one worker lent to two callers at once"
        assert outcomes["got"] and outcomes["timeout"]  # both sides of the race happened
        settled(pool, 2)
        assert len(set(idle_workers(pool, 2))) == 2

    @pytest.mark.parametrize("handoff_after", [None, 60.0])
    def test_a_pool_stopped_under_contention_fails_every_waiter(
        self, runtime, monkeypatch, handoff_after
    ):
        if handoff_after is not None:  # every waiter is woken, never handed a worker
            monkeypatch.setattr(otpy.pool, "HANDOFF_AFTER", handoff_after)
        pool = Pool.start(spec(), size=1, max_overflow=0)
        me = otpy.self()

        def body(n):
            rounds = 0
            try:
                while True:
                    Pool.transaction(pool, lambda pid: None, timeout=WAIT)
                    rounds += 1
                    if rounds == 20:
                        otpy.send(me, ("busy", n))
            except (otpy.ExitError, otpy.NoProcError) as exc:
                otpy.send(me, ("ended", n, type(exc)))

        for n in range(6):
            otpy.spawn(body, n)
        for _ in range(6):
            recv(tagged("busy"))
        Pool.stop(pool, reason="shutdown")
        ends = [recv(tagged("ended")) for _ in range(6)]
        assert sorted(n for _, n, _ in ends) == list(range(6))
