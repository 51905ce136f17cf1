"""Races between deaths, links, monitors, calls and shutdown, repeated many times."""

from __future__ import annotations

import sys
import threading
import weakref

import pytest

import otpy

pytestmark = pytest.mark.timeout(120)


def _idle() -> None:
    otpy.receive()


class Echo(otpy.GenServer):
    def handle_call(self, request, caller):
        return request

    def handle_cast(self, request):
        pass


def test_link_racing_with_a_kill_either_links_or_reports_noproc(runtime):
    otpy.trap_exits(True)
    for _ in range(500):
        pid = otpy.spawn(_idle)
        killer = threading.Thread(target=otpy.exit, args=(pid, "kill"))
        killer.start()
        try:
            otpy.link(pid)
        finally:
            killer.join()
        exit_msg = otpy.receive(
            timeout=5, match=lambda m, p=pid: isinstance(m, otpy.Exit) and m.pid == p
        )
        assert exit_msg.reason in ("killed", "noproc")
    assert otpy.processes() == [otpy.self()]


def test_monitor_racing_with_a_kill_always_gets_exactly_one_down(runtime):
    for _ in range(500):
        pid = otpy.spawn(_idle)
        killer = threading.Thread(target=otpy.exit, args=(pid, "kill"))
        killer.start()
        ref = otpy.monitor(pid)
        killer.join()
        down = otpy.receive(
            timeout=5, match=lambda m, r=ref: isinstance(m, otpy.Down) and m.ref == r
        )
        assert down.reason in ("killed", "noproc")
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0, match=lambda m, r=ref: isinstance(m, otpy.Down) and m.ref == r)


def test_calls_racing_with_a_kill_return_or_raise_and_never_hang(runtime):
    outcomes = {"reply": 0, "exit": 0, "noproc": 0}
    for i in range(300):
        pid = Echo.start()
        killer = threading.Thread(target=otpy.exit, args=(pid, "kill"))
        killer.start()
        try:
            assert Echo.call(pid, i, timeout=0.5) == i
            outcomes["reply"] += 1
        except otpy.ExitError as exc:
            assert exc.reason == "killed"
            outcomes["exit"] += 1
        except otpy.NoProcError:
            outcomes["noproc"] += 1
        killer.join()
    assert sum(outcomes.values()) == 300


def test_eight_threads_of_casts_and_calls_lose_no_message(runtime):
    class Counter(otpy.GenServer):
        def init(self):
            self.counts: dict[int, int] = {}

        def handle_cast(self, request):
            sender, n = request
            assert self.counts.get(sender, -1) == n - 1, "per-sender order"
            self.counts[sender] = n

        def handle_call(self, request, caller):
            return sum(v + 1 for v in self.counts.values())

    pid = Counter.start()
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            for n in range(25_000):
                otpy.GenServer.cast(pid, (k, n))
                if n % 1000 == 0:
                    Counter.call(pid, "count", timeout=30)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Counter.call(pid, "count", timeout=30) == 8 * 25_000


def test_shutdown_racing_with_spawning_leaves_nothing_behind():
    for _ in range(20):
        rt = otpy.Runtime(max_threads=4)
        stop = threading.Event()

        def spawner(stop: threading.Event = stop) -> None:
            while not stop.is_set():
                try:
                    otpy.spawn(_idle)
                    Echo.start()
                except (RuntimeError, otpy.ExitError, otpy.StartError):
                    return  # the runtime closed, or shut the new server down during init

        with rt:
            threads = [threading.Thread(target=spawner) for _ in range(2)]
            for t in threads:
                t.start()
            otpy.sleep(0.01)
            rt.shutdown()  # inside the block: the spawners keep addressing rt
            stop.set()
            for t in threads:
                t.join()
        assert rt.processes() == []


def test_a_thousand_kills_of_processes_busy_in_calls_leave_no_process_behind(runtime):
    server = Echo.start()
    for _ in range(1000):

        def caller() -> None:
            while True:
                Echo.call(server, 1, timeout=None)

        pid, ref = otpy.spawn_monitor(caller)
        otpy.exit(pid, "kill")
        assert (
            otpy.receive(
                timeout=5, match=lambda m, r=ref: isinstance(m, otpy.Down) and m.ref == r
            ).reason
            == "killed"
        )
    assert Echo.call(server, "still here") == "still here"
    assert set(otpy.processes()) == {otpy.self(), server}


class Tally(otpy.GenServer):
    """Counts its casts; a call answers the count."""

    def init(self):
        self.n = 0

    def handle_cast(self, request):
        self.n += 1

    def handle_call(self, request, caller):
        return self.n


def test_first_messages_racing_to_a_process_with_no_mailbox_yet_are_all_kept(runtime):
    # A process gets its mailbox with its first message; senders that race to be
    # first must all put into the one mailbox that stays.
    senders, each = 4, 25
    for _ in range(200):
        pid = Tally.start()
        assert pid._proc._q.__class__.__name__ == "_NoMailbox"
        go = threading.Barrier(senders)

        def send(pid=pid, go=go):
            go.wait()
            for _ in range(each):
                otpy.GenServer.cast(pid, "+1")

        threads = [threading.Thread(target=send) for _ in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert otpy.GenServer.call(pid, "count") == senders * each
        otpy.GenServer.stop(pid)


def test_processes_without_a_mailbox_share_one_that_refuses_puts_and_stays_empty(runtime):
    # The shared stand-in is a real SimpleQueue for readers (C-speed empty/qsize/get_nowait);
    # a put or a wait on it would be a bug, and must say so instead of mixing mailboxes.
    from queue import Empty

    a, b = Tally.start(), Tally.start()
    shared = a._proc._q
    assert shared is b._proc._q
    assert shared.empty() and shared.qsize() == 0
    with pytest.raises(Empty):
        shared.get_nowait()
    with pytest.raises(AssertionError, match="shared empty mailbox"):
        shared.put("lost")
    with pytest.raises(AssertionError, match="shared empty mailbox"):
        shared.put_nowait("lost")
    with pytest.raises(AssertionError, match="shared empty mailbox"):
        shared.get(timeout=0.01)
    assert shared.empty()
    otpy.GenServer.cast(a, "+1")  # the first message gives a its own mailbox
    assert otpy.GenServer.call(a, "count") == 1
    assert a._proc._q is not shared and b._proc._q is shared
    assert otpy.GenServer.call(b, "count") == 0


def test_a_plain_process_waiting_for_its_first_message_is_woken_by_it_or_by_its_death(runtime):
    me = otpy.self()

    def first(got):
        got.append(otpy.receive(timeout=5))
        otpy.send(me, "done")

    for _ in range(200):
        got: list[object] = []
        pid = otpy.spawn(first, got)
        threading.Thread(target=otpy.send, args=(pid, "first")).start()
        assert otpy.receive(timeout=5, match=lambda m: m == "done") == "done"
        assert got == ["first"]
        waiting = otpy.spawn(otpy.receive)
        ref = otpy.monitor(waiting)
        otpy.exit(waiting, "kill")
        down = otpy.receive(
            timeout=5, match=lambda m, r=ref: isinstance(m, otpy.Down) and m.ref == r
        )
        assert down.reason == "killed"


def test_links_between_processes_that_share_lock_stripes_never_deadlock(runtime, monkeypatch):
    # Process locks are striped: with 3 stripes, most pairs share one or take two in
    # an order unrelated to their pids. Threads linking and unlinking every pair in
    # both directions, and killing some, must all finish.
    from otpy._core import _process

    monkeypatch.setattr(_process, "LOCK_STRIPES", 3)
    monkeypatch.setattr(_process, "_STRIPES", [threading.Lock() for _ in range(3)])
    procs = [otpy.spawn(_idle) for _ in range(12)]
    assert len({p._proc._lock for p in procs}) == 3
    errors: list[BaseException] = []

    def churn(offset: int) -> None:
        try:
            me = otpy.self()
            otpy.trap_exits(True)
            for round_ in range(300):
                a = procs[(round_ + offset) % len(procs)]
                b = procs[(round_ * 7 + offset * 5) % len(procs)]
                a_proc, b_proc = a._proc, b._proc
                if a_proc is not b_proc:
                    a_proc.add_link(b_proc)
                    b_proc.remove_link(a_proc)
                try:
                    otpy.link(a)
                    otpy.unlink(a)
                except otpy.NoProcError:
                    pass
            assert me._proc.alive
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,), daemon=True) for i in range(4)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads inside the locked sections too
    try:
        for thread in threads:
            thread.start()
        for victim in procs[::4]:
            otpy.exit(victim, "kill")
        for thread in threads:
            thread.join(10)
    finally:
        sys.setswitchinterval(switch)
    assert not any(thread.is_alive() for thread in threads), "a link deadlocked"
    assert errors == []
    for pid in procs:
        otpy.exit(pid, "kill")


def test_a_finaliser_that_kills_while_its_thread_holds_the_stripe_does_not_deadlock(runtime):
    # The garbage collector runs finalisers inside any allocation, also one made with a
    # process lock held; an unfinished async_stream's finaliser kills its workers there.
    from otpy._core import _hooks, _process

    target = otpy.spawn(_idle)
    ref = otpy.monitor(target)
    proc = target._proc
    _hooks.prepare_kill_later(target)
    sharing = [p for p in _process._STRIPES if p is proc._lock]
    assert sharing, "the process's lock is one of the stripes"
    with proc._lock:  # as if the collector ran a finaliser here
        _hooks.kill_later(target)  # returns at once: the timer thread kills
    down = otpy.receive(timeout=5, match=lambda m: isinstance(m, otpy.Down) and m.ref == ref)
    assert down.reason == "killed"


def test_an_unfinished_stream_dropped_in_a_cycle_has_its_workers_killed(runtime):
    import gc

    # One item at a time: after the first, nothing is in flight (a job in a worker, or a
    # result in our mailbox, would keep the stream alive) and its worker waits idle.
    stream = otpy.Task.async_stream(range(100), lambda x: x, max_concurrency=1)
    assert next(stream) == ("ok", 0)
    workers = list(stream._refs)
    assert workers
    refs = [otpy.monitor(w) for w in workers]
    cycle = [stream]
    cycle.append(cycle)  # only the collector frees it
    collected = weakref.ref(stream)
    del stream, cycle
    gc.collect()
    assert collected() is None
    for ref in refs:
        otpy.receive(timeout=5, match=lambda m, r=ref: isinstance(m, otpy.Down) and m.ref == r)
