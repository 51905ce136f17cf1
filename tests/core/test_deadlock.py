"""Deadlock detection: a call that would close a cycle of blocked calls raises at once."""

from __future__ import annotations

import time

import pytest

import otpy
from otpy.testing import assert_receive
from tests.conftest import WAIT

pytestmark = pytest.mark.timeout(30)


class Relay(otpy.GenServer):
    """Calls the next server in a path with what is left of it; the last answers."""

    def handle_call(self, request, caller):
        match request:
            case ("path", []):
                return "end"
            case ("path", [nxt, *rest]):
                try:
                    return otpy.GenServer.call(nxt, ("path", rest), timeout=None)
                except otpy.DeadlockError as exc:
                    return ("deadlock", exc.reason, otpy.self())
            case "ping":
                return "pong"


class MailboxRelay(Relay):
    inline_calls = False  # every call goes through the mailbox and a pool thread


@pytest.fixture(params=[Relay, MailboxRelay], ids=["inline", "mailbox"])
def relay(request):
    return request.param


class TestCycles:
    def test_a_two_cycle_raises_in_the_caller_that_closes_it(self, runtime, relay):
        a, b = relay.start(), relay.start()
        start = time.monotonic()
        # a calls b, b calls a: b closes the cycle.
        answer = otpy.GenServer.call(a, ("path", [b, a]), timeout=None)
        assert answer == ("deadlock", ("deadlock", [b, a]), b)
        assert time.monotonic() - start < 1.0, "raised at once, not after a timeout"

    def test_a_three_cycle_names_every_process_from_the_closer(self, runtime, relay):
        a, b, c = relay.start(), relay.start(), relay.start()
        answer = otpy.GenServer.call(a, ("path", [b, c, a]), timeout=None)
        assert answer == ("deadlock", ("deadlock", [c, a, b]), c)

    def test_a_long_chain_without_a_cycle_is_fine(self, runtime, relay):
        servers = [relay.start() for _ in range(20)]
        assert otpy.GenServer.call(servers[0], ("path", servers[1:]), timeout=None) == "end"

    def test_a_cycle_that_does_not_include_the_caller_is_not_the_callers(self, runtime, relay):
        a, b = relay.start(), relay.start()
        # The thread calls a; a calls b; b calls a: the cycle is b -> a, not the thread.
        answer = otpy.GenServer.call(a, ("path", [b, a]), timeout=WAIT)
        assert answer[1] == ("deadlock", [b, a])
        assert otpy.self() not in answer[1][1]

    def test_after_a_deadlock_the_servers_serve_again(self, runtime, relay):
        a, b = relay.start(), relay.start()
        otpy.GenServer.call(a, ("path", [b, a]), timeout=None)
        assert otpy.GenServer.call(a, ("path", [b]), timeout=None) == "end"
        assert otpy.GenServer.call(b, ("path", [a]), timeout=None) == "end"

    def test_an_uncaught_deadlock_error_crashes_the_closer_and_the_caller_sees_it(self, runtime):
        class Naive(otpy.GenServer):
            def handle_call(self, request, caller):
                return otpy.GenServer.call(request, otpy.self(), timeout=None)

        a, b = Naive.start(), Naive.start()
        ref_b = otpy.monitor(b)
        # a calls b (request a), b calls a back (request b): b raises, b crashes, a's call fails.
        with pytest.raises(otpy.ExitError) as info:
            otpy.GenServer.call(a, b, timeout=None)
        crash = assert_receive(lambda m: isinstance(m, otpy.Down) and m.ref == ref_b, WAIT).reason
        assert isinstance(crash, otpy.DeadlockError)
        assert isinstance(info.value.reason, (otpy.DeadlockError, otpy.ExitError))


class TestTheError:
    def test_it_is_an_exit_error_with_a_readable_message(self, runtime):
        class Catch(otpy.GenServer):
            def handle_call(self, request, caller):
                try:
                    return otpy.GenServer.call(request, otpy.self())
                except otpy.DeadlockError as exc:
                    return exc

        a, c = Catch.start(), Catch.start()
        # The thread calls c (with a), c calls a (with c), a calls c: a closes the cycle.
        exc = otpy.GenServer.call(c, a)
        assert isinstance(exc, otpy.DeadlockError) and isinstance(exc, otpy.ExitError)
        assert exc.reason == ("deadlock", [a, c]) and exc.cycle == [a, c]
        assert "deadlock" in str(exc) and repr(a) in str(exc) and "NOREPLY" in str(exc)

    def test_calling_yourself_is_still_calling_self(self, runtime):
        class Selfish(otpy.GenServer):
            def handle_call(self, request, caller):
                try:
                    otpy.GenServer.call(otpy.self(), "x")
                except otpy.DeadlockError:
                    return "deadlock"
                except otpy.ExitError as exc:
                    return exc.reason

        assert otpy.GenServer.call(Selfish.start(), "go") == "calling_self"


class TestNoFalseAlarms:
    def test_a_timed_out_call_leaves_no_trace(self, runtime):
        class Slow(otpy.GenServer):
            inline_calls = False

            def handle_call(self, request, caller):
                if request == "slow":
                    otpy.sleep(0.3)
                    return "late"
                return otpy.GenServer.call(request, "ping", timeout=WAIT)

        a, b = Relay.start(), Slow.start()

        class Caller(otpy.GenServer):
            def handle_call(self, request, caller):
                try:
                    otpy.GenServer.call(b, "slow", timeout=0.05)
                except otpy.Timeout:
                    return "timed out"

        c = Caller.start()
        assert otpy.GenServer.call(c, "go") == "timed out"
        # c is no longer blocked in a call to b: b calling c must work.
        assert otpy.GenServer.call(b, a) == "pong"

    def test_pairs_closing_cycles_at_the_same_moment_never_hang(self, runtime):
        me = otpy.self()

        class Peer(otpy.GenServer):
            inline_calls = False

            def handle_cast(self, other):
                try:
                    result = otpy.GenServer.call(other, "ping", timeout=2.0)
                except otpy.DeadlockError:
                    result = "deadlock"
                except otpy.Timeout:
                    result = "timeout"
                otpy.send(me, (otpy.self(), result))

            def handle_call(self, request, caller):
                return "pong"

        for _ in range(100):
            a, b = Peer.start(), Peer.start()
            otpy.GenServer.cast(a, b)
            otpy.GenServer.cast(b, a)
            results = dict(assert_receive(lambda m: type(m) is tuple and len(m) == 2, WAIT) for _ in range(2))
            assert "timeout" not in results.values(), results
            # Either one call got through before the other began, or the cycle was seen.
            assert set(results.values()) <= {"pong", "deadlock"}
            otpy.GenServer.stop(a)
            otpy.GenServer.stop(b)
