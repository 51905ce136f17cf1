"""Calls that run the handler on the caller's thread, and where they must not."""

from __future__ import annotations

import threading
import time

import pytest

import otpy

pytestmark = pytest.mark.timeout(30)


class Probe(otpy.GenServer):
    def handle_call(self, request, caller):
        match request:
            case "where":
                return threading.get_ident(), otpy.self()
            case ("sleep", seconds):
                time.sleep(seconds)  # noqa: SLEEP001 sleep is the behaviour (a slow handler)
                return "slept"
            case "crash":
                raise ValueError("crash in handler")


def test_a_call_with_the_default_timeout_to_an_idle_server_runs_on_the_callers_thread(runtime):
    pid = Probe.start()
    thread, me = Probe.call(pid, "where")
    assert thread == threading.get_ident()
    assert me == pid, "inside the handler the server still is otpy.self()"


def test_a_call_with_a_short_timeout_goes_through_the_mailbox(runtime):
    pid = Probe.start()
    thread, _ = Probe.call(pid, "where", timeout=0.5)
    assert thread != threading.get_ident()


def test_a_short_timeout_interrupts_the_wait_for_a_slow_handler(runtime):
    pid = Probe.start()
    start = time.monotonic()
    with pytest.raises(otpy.Timeout):
        Probe.call(pid, ("sleep", 0.5), timeout=0.05)
    assert time.monotonic() - start < 0.4


def test_an_inline_handler_that_overruns_the_timeout_still_raises_timeout(runtime, monkeypatch):
    monkeypatch.setattr(otpy._core._process, "INLINE_MIN_TIMEOUT", 0.05)
    pid = Probe.start()
    with pytest.raises(otpy.Timeout):
        Probe.call(pid, ("sleep", 0.2), timeout=0.1)
    with pytest.raises(otpy.Timeout):
        otpy.receive(timeout=0.05)  # and no late reply in the mailbox


def test_a_slow_server_is_no_longer_called_inline(runtime):
    pid = Probe.start()
    assert Probe.call(pid, ("sleep", 0.3), timeout=5.0) == "slept"
    thread, _ = Probe.call(pid, "where", timeout=5.0)
    assert thread != threading.get_ident(), "0.3 s > 5 s / 20: through the mailbox"


class SlowStart(Probe):
    def init(self, seconds):
        time.sleep(seconds)  # noqa: SLEEP001 a slow start (a connection, say), outside otpy


def test_a_slow_init_does_not_keep_later_calls_off_the_callers_thread(runtime):
    # As on a pool thread, an init is not timed: it says nothing of the handlers.
    pid = SlowStart.start(0.3)
    thread, _ = Probe.call(pid, "where", timeout=5.0)
    assert thread == threading.get_ident()


def test_a_handler_that_is_not_a_bound_method_handles_every_message(runtime):
    seen = []
    done = threading.Event()

    def handle(msg):
        seen.append(msg)
        if len(seen) == 3:
            done.set()

    pid = otpy._core.spawn_reactive(handle)
    for i in range(3):
        otpy.send(pid, i)
    assert done.wait(5)
    assert seen == [0, 1, 2]


def test_a_crash_in_an_inline_handler_is_the_servers_crash_not_the_callers(runtime, caplog):
    pid, ref = otpy.spawn_monitor(lambda: None)  # warm up: a monitor to compare with
    otpy.receive(timeout=5)
    pid = Probe.start()
    ref = otpy.monitor(pid)
    with pytest.raises(otpy.ExitError) as info:
        Probe.call(pid, "crash")
    assert isinstance(info.value.reason, ValueError)
    down = otpy.receive(timeout=5)
    assert down == otpy.Down(ref, pid, info.value.reason)
    assert otpy.is_alive(otpy.self())


def test_messages_cast_before_a_call_are_handled_before_it(runtime):
    class Log(otpy.GenServer):
        def init(self):
            self.seen = []

        def handle_cast(self, request):
            self.seen.append(request)

        def handle_call(self, request, caller):
            return list(self.seen)

    pid = Log.start()
    for i in range(100):
        otpy.GenServer.cast(pid, i)
        assert Log.call(pid, "seen") == list(range(i + 1))


def test_a_nested_chain_deeper_than_the_inline_limit_still_completes(runtime):
    class Link(otpy.GenServer):
        def init(self, nxt):
            self.nxt = nxt

        def handle_call(self, request, caller):
            if self.nxt is None:
                return request
            return otpy.GenServer.call(self.nxt, request + 1, timeout=None)

    nxt = None
    for _ in range(200):
        nxt = Link.start(nxt)
    assert otpy.GenServer.call(nxt, 0, timeout=None) == 199


class TestOptOutHoldsForEveryTimeout:
    @pytest.mark.parametrize("timeout", [None, 5.0])
    def test_inline_calls_false_never_runs_on_the_callers_thread(self, runtime, timeout):
        import threading

        class Apart(otpy.GenServer):
            inline_calls = False

            def handle_call(self, request, caller):
                return threading.get_ident()

        pid = Apart.start()
        for _ in range(5):
            assert otpy.GenServer.call(pid, "where", timeout=timeout) != threading.get_ident()
