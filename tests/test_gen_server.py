"""Acceptance tests for the GenServer section of API.md.

Starting (init arguments, names, Continue, IGNORE, failures), call/cast/reply,
Stop and crashes, terminate, handle_info, crash logging, child_spec, and the
scale and blocking guarantees a GenServer must keep.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time

import pytest
from conftest import WAIT, down_of, exit_from, idle, raise_, tagged, wait_until

import otpy
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(30)


# --- helpers -----------------------------------------------------------------------------------


class Probe(otpy.GenServer):
    """A server whose callbacks do what the request says and report to an observer."""

    def init(self, observer=None, *, trap=False, on_init=None):
        self.observer = observer
        self.log = []
        self.pending = None
        if trap:
            otpy.trap_exits(True)
        if on_init is not None:
            return on_init(self)
        return None

    def tell(self, *msg):
        if self.observer is not None:
            otpy.send(self.observer, msg)

    def handle_call(self, request, caller):
        match request:
            case ("echo", x):
                return x
            case "log":
                return list(self.log)
            case ("sleep", seconds):
                time.sleep(seconds)  # noqa: SLEEP001 sleep is the behaviour (a slow handler)
                return ("slept", seconds)
            case ("raise", exc):
                raise exc
            case ("stop", reason, reply):
                raise otpy.Stop(reason, reply=reply)
            case ("stop_without_reply", reason):
                raise otpy.Stop(reason)
            case ("continue", arg, reply):
                return otpy.Continue(arg, reply=reply)
            case "reply_later":
                self.pending = caller
                self.tell("pending")
                return otpy.NOREPLY
            case ("reply_from_another_process", value):
                otpy.spawn(otpy.GenServer.reply, caller, value)
                return otpy.NOREPLY
            case ("run", fn):
                return fn(self)
        raise AssertionError(f"unexpected call {request!r}")

    def handle_cast(self, request):
        match request:
            case ("log", x):
                self.log.append(x)
            case ("reply", value):
                otpy.GenServer.reply(self.pending, value)
            case ("raise", exc):
                raise exc
            case ("stop", reason):
                raise otpy.Stop(reason)
            case ("continue", arg):
                return otpy.Continue(arg)
            case ("run", fn):
                fn(self)
        return None

    def handle_info(self, message):
        self.log.append(("info", message))
        self.tell("info", message)

    def handle_continue(self, arg):
        self.log.append(("continue", arg))

    def terminate(self, reason):
        self.tell("terminate", reason)


class Args(otpy.GenServer):
    def init(self, a, b=None, *, c=None):
        self.args = (a, b, c)
        self.me = otpy.self()

    def handle_call(self, request, caller):
        return (self.args, self.me)


class Stack(otpy.GenServer):
    """The example of API.md, verbatim in spirit."""

    def init(self, items):
        self.items = list(items)

    def handle_call(self, request, caller):
        match request:
            case "pop":
                return self.items.pop()
            case ("pop_later",):
                self.waiting = caller
                return otpy.NOREPLY

    def handle_cast(self, request):
        match request:
            case ("push", x):
                self.items.append(x)
                if getattr(self, "waiting", None) is not None:
                    waiting, self.waiting = self.waiting, None
                    otpy.GenServer.reply(waiting, self.items.pop())


def call_and_report(me, server, request, timeout=WAIT):
    """A process body: call, then send ("result", value) or ("error", exception) to me."""
    try:
        otpy.send(me, ("result", otpy.GenServer.call(server, request, timeout=timeout)))
    except Exception as exc:
        otpy.send(me, ("error", exc))


def outcome():
    return assert_receive(lambda m: type(m) is tuple and len(m) == 2 and m[0] in ("result", "error"), WAIT)


# --- starting ----------------------------------------------------------------------------------


class TestStart:
    def test_init_gets_positional_and_keyword_arguments(self, runtime):
        pid = Args.start_link(1, 2, c=3)
        assert otpy.GenServer.call(pid, "args")[0] == (1, 2, 3)
        pid2 = Args.start(1, b=2)
        assert otpy.GenServer.call(pid2, "args")[0] == (1, 2, None)

    def test_init_runs_inside_the_new_process(self, runtime):
        pid = Args.start_link(0)
        assert isinstance(pid, otpy.Pid)
        assert otpy.GenServer.call(pid, "me")[1] == pid
        assert pid != otpy.self()

    def test_start_link_links_the_server_to_the_caller_and_start_does_not(self, runtime):
        me = otpy.self()
        linked = Probe.start_link()
        unlinked = Probe.start()
        assert linked in otpy.process_info(me).links
        assert unlinked not in otpy.process_info(me).links

    def test_name_registers_the_server(self, runtime):
        pid = Probe.start_link(name="probe")
        assert otpy.whereis("probe") == pid
        assert otpy.process_info(pid).name == "probe"
        assert otpy.GenServer.call("probe", ("echo", 1)) == 1
        assert Probe.call("probe", ("echo", 2)) == 2

    def test_name_is_not_passed_to_init(self, runtime):
        pid = Args.start_link("a", name="args")
        assert otpy.GenServer.call(pid, "args")[0] == ("a", None, None)

    def test_a_taken_name_raises_already_started_error_with_the_holder(self, runtime):
        first = Probe.start_link(name="probe")
        baseline = set(otpy.processes())
        with pytest.raises(otpy.AlreadyStartedError) as info:
            Probe.start_link(name="probe")
        assert info.value.pid == first
        assert "probe" in str(info.value)
        assert otpy.whereis("probe") == first
        wait_until(lambda: set(otpy.processes()) == baseline)

    def test_concurrent_starts_under_one_name_have_exactly_one_winner(self, runtime):
        barrier = threading.Barrier(6)
        outcomes = []
        lock = threading.Lock()

        def contend():
            barrier.wait()
            try:
                result = ("won", Probe.start(name="contested"))
            except otpy.AlreadyStartedError as exc:
                result = ("lost", exc.pid)
            except BaseException as exc:
                result = ("error", exc)
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=contend) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        winners = [pid for kind, pid in outcomes if kind == "won"]
        assert len(outcomes) == 6
        assert len(winners) == 1
        assert all(kind == "lost" and pid == winners[0] for kind, pid in outcomes if kind != "won")
        assert otpy.whereis("contested") == winners[0]

    @pytest.mark.parametrize("bad", [42, ("tuple",), b"bytes"])
    def test_a_name_that_is_neither_str_nor_via_is_rejected(self, runtime, bad):
        with pytest.raises((TypeError, ValueError)) as info:
            Probe.start_link(name=bad)
        assert repr(bad) in str(info.value) or str(bad) in str(info.value)

    def test_init_returning_continue_runs_handle_continue_before_any_message(self, runtime):
        def on_init(server):
            server.log.append("init")
            return otpy.Continue("warm up")

        pid = Probe.start_link(on_init=on_init)
        otpy.GenServer.cast(pid, ("log", "first cast"))
        otpy.send(pid, "first info")
        assert otpy.GenServer.call(pid, "log") == [
            "init",
            ("continue", "warm up"),
            "first cast",
            ("info", "first info"),
        ]

    def test_init_returning_ignore_makes_start_link_return_none_and_leaves_no_process(
        self, runtime
    ):
        otpy.self()
        baseline = set(otpy.processes())
        assert Probe.start_link(on_init=lambda server: otpy.IGNORE) is None
        assert Probe.start(on_init=lambda server: otpy.IGNORE, name="ignored") is None
        assert otpy.whereis("ignored") is None
        wait_until(lambda: set(otpy.processes()) == baseline)

    def test_init_raising_stop_makes_start_link_raise_start_error_with_the_reason(self, runtime):
        def on_init(server):
            raise otpy.Stop("bad config")

        with pytest.raises(otpy.StartError) as info:
            Probe.start_link(on_init=on_init)
        assert info.value.reason == "bad config"
        with pytest.raises(otpy.StartError) as info:
            Probe.start(on_init=on_init)
        assert info.value.reason == "bad config"

    def test_init_raising_an_exception_makes_start_raise_start_error_with_the_exception(
        self, runtime
    ):
        error = KeyError("missing")

        def on_init(server):
            raise error

        with pytest.raises(otpy.StartError) as info:
            Probe.start_link(on_init=on_init)
        assert info.value.reason is error
        with pytest.raises(otpy.StartError) as info:
            Probe.start(on_init=on_init)
        assert info.value.reason is error

    def test_a_failed_start_link_leaves_the_caller_alive_and_no_process_or_name_behind(
        self, runtime
    ):
        me = otpy.self()
        baseline = set(otpy.processes())

        def on_init(server):
            raise ValueError("no")

        with pytest.raises(otpy.StartError):
            Probe.start_link(on_init=on_init, name="failed")
        assert otpy.self() == me
        assert otpy.whereis("failed") is None
        wait_until(lambda: set(otpy.processes()) == baseline)
        assert otpy.self() == me


# --- call --------------------------------------------------------------------------------------


class TestCall:
    def test_the_return_value_of_handle_call_is_the_reply(self, runtime):
        pid = Probe.start_link()
        assert otpy.GenServer.call(pid, ("echo", {"a": 1})) == {"a": 1}
        assert otpy.GenServer.call(pid, ("echo", None)) is None

    def test_class_call_is_the_same_as_genserver_call(self, runtime):
        pid = Probe.start_link()
        assert Probe.call(pid, ("echo", 7), timeout=5.0) == 7
        assert otpy.GenServer.call(pid, ("echo", 7), timeout=5.0) == 7

    def test_the_api_example_stack_works(self, runtime):
        Stack.start_link([1, 2], name="stack")
        assert Stack.call("stack", "pop", timeout=5.0) == 2
        otpy.GenServer.cast("stack", ("push", 3))
        assert otpy.GenServer.call("stack", "pop") == 3
        assert otpy.GenServer.call("stack", "pop") == 1

    @pytest.mark.parametrize("timeout", [None, 0.5, 1, math.inf, 1e300])
    def test_call_accepts_none_and_any_real_timeout_not_below_zero(self, runtime, timeout):
        pid = Probe.start_link()
        assert otpy.GenServer.call(pid, ("echo", "ok"), timeout=timeout) == "ok"

    @pytest.mark.parametrize(
        "bad, error", [(-1, ValueError), (math.nan, ValueError), ("5", TypeError)]
    )
    def test_call_rejects_a_bad_timeout(self, runtime, bad, error):
        pid = Probe.start_link()
        with pytest.raises(error):
            otpy.GenServer.call(pid, ("echo", "ok"), timeout=bad)

    def test_call_timeout_raises_timeout_and_the_late_reply_never_arrives(self, runtime):
        pid = Probe.start_link()
        start = time.monotonic()
        with pytest.raises(otpy.Timeout) as info:
            otpy.GenServer.call(pid, ("sleep", 0.3), timeout=0.05)
        assert time.monotonic() - start < 0.25
        assert isinstance(info.value, TimeoutError)
        assert "0.05" in str(info.value)
        # this call is handled after the slow one, so the late reply has been sent by now
        assert otpy.GenServer.call(pid, ("echo", "after")) == "after"
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.1)

    def test_call_to_a_dead_server_raises_noproc_error(self, runtime):
        pid = Probe.start()
        otpy.GenServer.stop(pid)
        with pytest.raises(otpy.NoProcError) as info:
            otpy.GenServer.call(pid, ("echo", 1))
        assert repr(pid) in str(info.value)

    def test_call_to_an_unknown_name_raises_noproc_error_naming_it(self, runtime):
        with pytest.raises(otpy.NoProcError) as info:
            otpy.GenServer.call("no_such_server", ("echo", 1))
        assert "no_such_server" in str(info.value)

    def test_call_to_a_server_that_crashes_raises_exit_error_with_the_exception(self, runtime):
        pid = Probe.start()
        error = ZeroDivisionError("oops")
        with pytest.raises(otpy.ExitError) as info:
            otpy.GenServer.call(pid, ("raise", error))
        assert info.value.reason is error
        assert not otpy.is_alive(pid)

    def test_call_to_a_server_killed_before_replying_raises_exit_error(self, runtime):
        me = otpy.self()
        pid = Probe.start(me)
        otpy.spawn(call_and_report, me, pid, "reply_later")
        assert_receive(lambda m: m == ("pending",), WAIT)
        otpy.exit(pid, "kill")
        kind, error = outcome()
        assert kind == "error"
        assert isinstance(error, otpy.ExitError)
        assert error.reason == "killed"

    def test_calling_yourself_from_a_handler_raises_a_clear_error_instead_of_hanging(self, runtime):
        def call_self(server):
            start = time.monotonic()
            try:
                otpy.GenServer.call(otpy.self(), ("echo", 1), timeout=3.0)
            except Exception as exc:
                return exc, time.monotonic() - start
            return None, time.monotonic() - start

        pid = Probe.start_link()
        error, elapsed = otpy.GenServer.call(pid, ("run", call_self), timeout=10)
        assert error is not None, "a call to itself returned a value"
        assert not isinstance(error, otpy.Timeout), "a call to itself hung until its timeout"
        assert elapsed < 1.0
        assert "self" in str(error).lower() or "itself" in str(error).lower()
        assert otpy.GenServer.call(pid, ("echo", "alive")) == "alive"


class TestCallbacksRunAsTheServer:
    """Whichever thread runs a callback, it runs as the server's process."""

    def warm(self, pid):
        for _ in range(30):
            otpy.GenServer.call(pid, ("echo", None))

    def test_self_in_a_handler_is_the_server(self, runtime):
        pid = Probe.start_link()
        self.warm(pid)
        assert otpy.GenServer.call(pid, ("run", lambda server: otpy.self())) == pid

    def test_receive_in_a_handler_reads_the_servers_mailbox_not_the_callers(self, runtime):
        me = otpy.self()
        pid = Probe.start_link()
        self.warm(pid)
        otpy.send(me, "for the caller")

        def peek(server):
            try:
                return otpy.receive(timeout=0.05, match=lambda m: m == "for the caller")
            except otpy.Timeout:
                return "not found"

        assert otpy.GenServer.call(pid, ("run", peek)) == "not found"
        assert otpy.receive(timeout=0) == "for the caller"

    def test_trap_exits_link_and_monitor_in_a_handler_belong_to_the_server(self, runtime):
        me = otpy.self()
        pid = Probe.start()
        self.warm(pid)
        other = otpy.spawn(idle)

        def setup(server):
            otpy.trap_exits(True)
            otpy.link(other)
            return otpy.monitor(other)

        otpy.GenServer.call(pid, ("run", setup))
        server_info = otpy.process_info(pid)
        mine = otpy.process_info(me)
        assert server_info.trap_exits is True
        assert mine.trap_exits is False
        assert other in server_info.links
        assert other not in mine.links
        assert len(server_info.monitors) == 1
        assert len(mine.monitors) == 0
        otpy.send(other, "stop")

    def test_a_crash_in_a_handler_is_the_servers_crash_not_the_callers(self, runtime):
        me = otpy.self()
        pid = Probe.start()
        self.warm(pid)
        with pytest.raises(otpy.ExitError):
            otpy.GenServer.call(pid, ("raise", RuntimeError("handler bug")))
        assert otpy.self() == me
        assert otpy.is_alive(me)
        assert not otpy.is_alive(pid)

    def test_a_task_started_in_a_handler_is_linked_to_the_server(self, runtime):
        me = otpy.self()
        pid = Probe.start()
        self.warm(pid)
        ref = otpy.monitor(pid)
        error = ValueError("task of the server")

        def start_crashing_task(server):
            otpy.Task.async_(raise_, error)
            return "started"

        assert otpy.GenServer.call(pid, ("run", start_crashing_task)) == "started"
        assert assert_receive(down_of(ref), WAIT).reason is error
        assert otpy.self() == me

    @pytest.mark.parametrize("blocking", ["otpy.sleep", "pure python loop"])
    def test_a_kill_while_a_handler_runs_ends_the_call_with_exit_error_and_spares_the_caller(
        self, runtime, blocking
    ):
        me = otpy.self()

        def block(server):
            otpy.send(me, "blocking")
            if blocking == "otpy.sleep":
                otpy.sleep(10)
            else:
                while True:
                    pass

        def caller(server):
            for _ in range(30):
                otpy.GenServer.call(server, ("echo", None), timeout=20)
            try:
                otpy.GenServer.call(server, ("run", block), timeout=20)
            except otpy.ExitError as exc:
                otpy.send(me, ("caller got", exc.reason))
            otpy.send(me, ("caller still alive", otpy.self()))
            idle()

        pid = Probe.start()
        caller_pid = otpy.spawn(caller, pid)
        assert_receive(lambda m: m == "blocking", WAIT)
        start = time.monotonic()
        otpy.exit(pid, "kill")
        assert assert_receive(tagged("caller got"), WAIT) == ("caller got", "killed")
        assert time.monotonic() - start < 1.0
        assert assert_receive(tagged("caller still alive"), WAIT) == ("caller still alive", caller_pid)
        otpy.send(caller_pid, "stop")

    @pytest.mark.parametrize("work", ["otpy.sleep", "pure python loop"])
    def test_the_callers_death_during_a_handler_does_not_interrupt_the_server(self, runtime, work):
        me = otpy.self()
        pid = Probe.start()
        self.warm(pid)
        in_handler = threading.Event()

        def handler(server):
            in_handler.set()
            if work == "otpy.sleep":
                for _ in range(3):
                    otpy.sleep(0.1)
            else:
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline:
                    pass
            server.log.append("handler finished")
            return "reply"

        def kill_the_caller():
            assert in_handler.wait(WAIT)
            otpy.exit(me, "caller killed")

        killer = threading.Thread(target=kill_the_caller)
        killer.start()
        try:
            otpy.GenServer.call(pid, ("run", handler), timeout=5)
        except otpy.ExitError as exc:
            assert exc.reason == "caller killed"
        killer.join(WAIT)
        with contextlib.suppress(otpy.ExitError):
            otpy.self()
        assert otpy.self() != me
        assert otpy.is_alive(pid)
        assert otpy.GenServer.call(pid, "log") == ["handler finished"]

    def test_a_call_cycle_raises_deadlock_instead_of_reentering_a_busy_server(self, runtime):
        entered = []
        a = Probe.start()
        b = Probe.start()
        self.warm(a)
        self.warm(b)

        def in_b(server):
            entered.append(otpy.self())
            try:
                return otpy.GenServer.call(a, ("run", lambda s: "re-entered a!"), timeout=0.2)
            except otpy.DeadlockError as exc:
                assert exc.reason == ("deadlock", [b, a])
                return "a was busy: deadlock"

        def in_a(server):
            entered.append(otpy.self())
            return otpy.GenServer.call(b, ("run", in_b), timeout=5)

        assert otpy.GenServer.call(a, ("run", in_a), timeout=10) == "a was busy: deadlock"
        assert entered == [a, b]

    @pytest.mark.parametrize("wait", ["sleep", "receive"])
    def test_a_short_call_timeout_holds_when_a_previously_quick_handler_blocks(self, runtime, wait):
        pid = Probe.start()
        self.warm(pid)
        start = time.monotonic()
        with pytest.raises(otpy.Timeout):
            otpy.GenServer.call(pid, ("run", blocker(wait, 1.0)), timeout=0.5)
        assert time.monotonic() - start < 0.9, "the call overran its timeout"

    @pytest.mark.parametrize("wait", ["sleep", "receive"])
    def test_a_long_call_to_a_quick_server_that_blocks_times_out_when_the_handler_returns(
        self, runtime, wait
    ):
        # The documented cost of running quick handlers on the caller's thread: the
        # caller still gets Timeout, late; and the server is then called through its
        # mailbox, where the timeout is exact.
        pid = Probe.start()
        self.warm(pid)
        start = time.monotonic()
        with pytest.raises(otpy.Timeout):
            otpy.GenServer.call(pid, ("run", blocker(wait, 1.2)), timeout=1.0)
        assert 1.0 <= time.monotonic() - start < 2.0
        if wait == "receive":  # the handler's own receive timed out: the server crashed
            pid = Probe.start()
            self.warm(pid)
            with pytest.raises(otpy.Timeout):
                otpy.GenServer.call(pid, ("run", blocker("sleep", 1.2)), timeout=1.0)
        start = time.monotonic()
        with pytest.raises(otpy.Timeout):
            otpy.GenServer.call(pid, ("run", blocker("sleep", 2.0)), timeout=1.0)
        assert time.monotonic() - start < 1.5, "a server that blocked is called through its mailbox"

    def test_a_server_with_inline_calls_off_keeps_every_timeout_exact(self, runtime):
        class Strict(Probe):
            inline_calls = False

        pid = Strict.start()
        self.warm(pid)
        start = time.monotonic()
        with pytest.raises(otpy.Timeout):
            otpy.GenServer.call(pid, ("run", blocker("sleep", 2.0)), timeout=1.0)
        assert time.monotonic() - start < 1.5


def blocker(wait, seconds):
    def block(server):
        if wait == "sleep":
            otpy.sleep(seconds)
        else:
            otpy.receive(timeout=seconds, match=lambda m: m == "never sent")

    return block


class TestReply:
    def test_noreply_then_reply_from_another_process(self, runtime):
        pid = Probe.start_link()
        assert (
            otpy.GenServer.call(pid, ("reply_from_another_process", "from elsewhere"))
            == "from elsewhere"
        )

    def test_noreply_then_reply_from_a_later_callback(self, runtime):
        me = otpy.self()
        pid = Probe.start_link(me)
        otpy.spawn(call_and_report, me, pid, "reply_later")
        assert_receive(lambda m: m == ("pending",), WAIT)
        otpy.GenServer.cast(pid, ("reply", "later"))
        assert outcome() == ("result", "later")

    def test_the_server_keeps_serving_while_a_reply_is_pending(self, runtime):
        me = otpy.self()
        pid = Probe.start_link(me)
        otpy.spawn(call_and_report, me, pid, "reply_later")
        assert_receive(lambda m: m == ("pending",), WAIT)
        assert otpy.GenServer.call(pid, ("echo", "meanwhile")) == "meanwhile"
        otpy.GenServer.cast(pid, ("reply", "done"))
        assert outcome() == ("result", "done")

    def test_a_reply_after_the_caller_timed_out_never_reaches_its_mailbox(self, runtime):
        me = otpy.self()
        pid = Probe.start_link(me)
        with pytest.raises(otpy.Timeout):
            otpy.GenServer.call(pid, "reply_later", timeout=0.05)
        assert_receive(lambda m: m == ("pending",), WAIT)
        otpy.GenServer.cast(pid, ("reply", "too late"))
        assert otpy.GenServer.call(pid, ("echo", "sync")) == "sync"
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.1)

    def test_a_pending_call_gets_exit_error_when_the_server_stops_normally(self, runtime):
        me = otpy.self()
        pid = Probe.start(me)
        otpy.spawn(call_and_report, me, pid, "reply_later")
        assert_receive(lambda m: m == ("pending",), WAIT)
        otpy.GenServer.cast(pid, ("stop", "normal"))
        kind, error = outcome()
        assert kind == "error"
        assert isinstance(error, otpy.ExitError)
        assert error.reason == "normal"

    def test_continue_with_reply_replies_then_runs_handle_continue(self, runtime):
        pid = Probe.start_link()
        assert otpy.GenServer.call(pid, ("continue", "next step", "the reply")) == "the reply"
        assert otpy.GenServer.call(pid, "log") == [("continue", "next step")]

    def test_a_cast_handler_may_return_continue(self, runtime):
        pid = Probe.start_link()
        otpy.GenServer.cast(pid, ("continue", "after cast"))
        otpy.GenServer.cast(pid, ("log", "second"))
        assert otpy.GenServer.call(pid, "log") == [("continue", "after cast"), "second"]


class TestStopFromAHandler:
    def test_raise_stop_with_reply_replies_then_stops_with_the_reason(self, runtime):
        me = otpy.self()
        pid = Probe.start(me)
        ref = otpy.monitor(pid)
        assert otpy.GenServer.call(pid, ("stop", "done", "bye")) == "bye"
        assert assert_receive(tagged("terminate"), WAIT) == ("terminate", "done")
        assert assert_receive(down_of(ref), WAIT).reason == "done"

    def test_raise_stop_without_reply_makes_the_caller_get_exit_error(self, runtime):
        pid = Probe.start()
        with pytest.raises(otpy.ExitError) as info:
            otpy.GenServer.call(pid, ("stop_without_reply", "finished"))
        assert info.value.reason == "finished"

    def test_raise_stop_from_handle_cast_stops_the_server(self, runtime):
        pid = Probe.start()
        ref = otpy.monitor(pid)
        otpy.GenServer.cast(pid, ("stop", "normal"))
        assert assert_receive(down_of(ref), WAIT).reason == "normal"


class TestCrash:
    def test_linked_trapping_parent_gets_exit_with_the_exception(self, runtime, trap):
        pid = Probe.start_link()
        error = RuntimeError("kaboom")
        otpy.GenServer.cast(pid, ("raise", error))
        assert assert_receive(exit_from(pid), WAIT) == otpy.Exit(pid, error)

    def test_a_crash_kills_a_non_trapping_linked_parent(self, runtime):
        me = otpy.self()
        error = RuntimeError("kaboom")

        def parent():
            server = Probe.start_link()
            otpy.send(me, ("server", server))
            otpy.receive()

        parent_pid, ref = otpy.spawn_monitor(parent)
        _, server = assert_receive(tagged("server"), WAIT)
        otpy.GenServer.cast(server, ("raise", error))
        assert assert_receive(down_of(ref), WAIT) == otpy.Down(ref, parent_pid, error)

    def test_a_crash_is_logged_with_its_traceback(self, runtime, caplog):
        caplog.set_level(logging.DEBUG)
        pid = Probe.start(name="crasher")
        ref = otpy.monitor(pid)
        otpy.GenServer.cast(pid, ("raise", RuntimeError("kaboom-1234")))
        assert_receive(down_of(ref), WAIT)

        def logged():
            return [
                r
                for r in caplog.records
                if "kaboom-1234" in r.getMessage()
                or (r.exc_info and "kaboom-1234" in str(r.exc_info[1]))
            ]

        wait_until(logged)
        record = logged()[0]
        assert record.levelno >= logging.ERROR
        assert record.name.startswith("otpy")
        assert "Traceback" in caplog.text
        assert "kaboom-1234" in caplog.text
        assert repr(pid) in caplog.text or "crasher" in caplog.text

    @pytest.mark.parametrize("reason", ["normal", "shutdown", ("shutdown", "maintenance")])
    def test_normal_and_shutdown_stops_are_not_logged(self, runtime, caplog, reason):
        caplog.set_level(logging.DEBUG)
        by_stop = Probe.start()
        ref = otpy.monitor(by_stop)
        otpy.GenServer.cast(by_stop, ("stop", reason))
        assert_receive(down_of(ref), WAIT)
        by_genserver_stop = Probe.start()
        otpy.GenServer.stop(by_genserver_stop, reason)
        marker = Probe.start()
        otpy.GenServer.stop(marker)
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# --- cast ----------------------------------------------------------------------------------------


class TestCast:
    def test_cast_returns_none_and_is_handled_in_order_before_a_later_call(self, runtime):
        pid = Probe.start_link()
        for i in range(100):
            assert otpy.GenServer.cast(pid, ("log", i)) is None
        assert otpy.GenServer.call(pid, "log") == list(range(100))

    def test_sends_and_casts_from_one_process_arrive_in_order(self, runtime):
        pid = Probe.start_link()
        for i in range(200):
            if i % 2:
                otpy.GenServer.cast(pid, ("log", i))
            else:
                otpy.send(pid, i)
        expected = [i if i % 2 else ("info", i) for i in range(200)]
        assert otpy.GenServer.call(pid, "log") == expected

    def test_cast_to_a_dead_pid_does_not_raise(self, runtime):
        pid = Probe.start()
        otpy.GenServer.stop(pid)
        assert otpy.GenServer.cast(pid, ("log", 1)) is None

    def test_cast_to_an_unknown_name_does_not_raise(self, runtime):
        assert otpy.GenServer.cast("nobody_by_that_name", ("log", 1)) is None

    def test_cast_by_name(self, runtime):
        Probe.start_link(name="probe")
        otpy.GenServer.cast("probe", ("log", "by name"))
        assert Probe.call("probe", "log") == ["by name"]


# --- stop and terminate --------------------------------------------------------------------------


class SlowTerminate(otpy.GenServer):
    def init(self, seconds):
        self.seconds = seconds

    def terminate(self, reason):
        time.sleep(self.seconds)  # noqa: SLEEP001 sleep is the behaviour (a slow terminate)


class TestStop:
    def test_stop_runs_terminate_with_normal_and_the_server_is_dead_on_return(self, runtime):
        me = otpy.self()
        pid = Probe.start_link(me, name="probe")
        assert otpy.GenServer.stop(pid) is None
        assert not otpy.is_alive(pid)
        assert otpy.whereis("probe") is None
        assert assert_receive(tagged("terminate"), WAIT) == ("terminate", "normal")

    def test_stop_with_a_reason_passes_it_to_terminate_and_monitors(self, runtime):
        me = otpy.self()
        pid = Probe.start(me)
        ref = otpy.monitor(pid)
        otpy.GenServer.stop(pid, reason="shutdown", timeout=WAIT)
        assert assert_receive(tagged("terminate"), WAIT) == ("terminate", "shutdown")
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"

    def test_stop_by_name(self, runtime):
        pid = Probe.start(name="probe")
        otpy.GenServer.stop("probe")
        assert not otpy.is_alive(pid)

    def test_stop_of_a_dead_server_raises_noproc_error(self, runtime):
        pid = Probe.start()
        otpy.GenServer.stop(pid)
        with pytest.raises(otpy.NoProcError):
            otpy.GenServer.stop(pid)

    def test_stop_raises_timeout_when_terminate_takes_longer(self, runtime):
        pid = SlowTerminate.start(0.5)
        ref = otpy.monitor(pid)
        with pytest.raises(otpy.Timeout):
            otpy.GenServer.stop(pid, timeout=0.05)
        assert assert_receive(down_of(ref), WAIT).reason == "normal"

    def test_stopping_a_linked_server_normally_does_not_hurt_the_caller(self, runtime):
        me = otpy.self()
        pid = Probe.start_link()
        otpy.GenServer.stop(pid)
        assert otpy.self() == me
        assert pid not in otpy.process_info(me).links


def parent_of_a_trapping_probe(observer):
    server = Probe.start_link(observer, trap=True)
    otpy.send(observer, ("server", server))
    otpy.receive()


class TestTerminate:
    def test_terminate_runs_on_stop_from_a_handler(self, runtime):
        me = otpy.self()
        pid = Probe.start(me)
        otpy.GenServer.cast(pid, ("stop", ("shutdown", "done")))
        assert assert_receive(tagged("terminate"), WAIT) == ("terminate", ("shutdown", "done"))

    def test_terminate_runs_on_a_crash_with_the_exception(self, runtime):
        me = otpy.self()
        pid = Probe.start(me)
        error = ValueError("crash in handler")
        otpy.GenServer.cast(pid, ("raise", error))
        _, reason = assert_receive(tagged("terminate"), WAIT)
        assert reason is error

    def test_terminate_runs_on_a_shutdown_exit_from_the_parent_when_trapping(self, runtime):
        me = otpy.self()
        parent = otpy.spawn(parent_of_a_trapping_probe, me)
        _, server = assert_receive(tagged("server"), WAIT)
        ref = otpy.monitor(server)
        otpy.exit(parent, "shutdown")
        assert assert_receive(tagged("terminate"), WAIT) == ("terminate", "shutdown")
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"

    def test_a_trapping_server_stops_when_its_parent_ends_normally(self, runtime):
        me = otpy.self()

        def parent():
            server = Probe.start_link(me, trap=True)
            otpy.send(me, ("server", server))
            otpy.receive(match=lambda m: m == "return")

        parent_pid = otpy.spawn(parent)
        _, server = assert_receive(tagged("server"), WAIT)
        ref = otpy.monitor(server)
        otpy.send(parent_pid, "return")
        assert assert_receive(tagged("terminate"), WAIT) == ("terminate", "normal")
        assert assert_receive(down_of(ref), WAIT).reason == "normal"

    def test_terminate_never_runs_on_kill(self, runtime):
        me = otpy.self()
        pid = Probe.start(me, trap=True)
        ref = otpy.monitor(pid)
        otpy.exit(pid, "kill")
        assert assert_receive(down_of(ref), WAIT).reason == "killed"
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.2, match=tagged("terminate"))


# --- handle_info ---------------------------------------------------------------------------------


class TestHandleInfo:
    def test_plain_messages_go_to_handle_info(self, runtime):
        me = otpy.self()
        pid = Probe.start_link(me)
        otpy.send(pid, {"plain": "message"})
        assert assert_receive(tagged("info"), WAIT) == ("info", {"plain": "message"})

    def test_down_of_a_monitor_goes_to_handle_info(self, runtime):
        me = otpy.self()
        pid = Probe.start_link(me)
        target = otpy.spawn(idle)
        ref = otpy.GenServer.call(pid, ("run", lambda server: otpy.monitor(target)))
        otpy.exit(target, "kill")
        assert assert_receive(tagged("info"), WAIT) == ("info", otpy.Down(ref, target, "killed"))

    def test_exit_of_a_link_goes_to_handle_info_when_trapping(self, runtime):
        me = otpy.self()
        pid = Probe.start_link(me, trap=True)
        error = OSError("linked worker died")
        child = otpy.GenServer.call(pid, ("run", lambda server: otpy.spawn_link(raise_, error)))
        assert assert_receive(tagged("info"), WAIT) == ("info", otpy.Exit(child, error))
        assert otpy.is_alive(pid)

    def test_an_unlinked_server_has_no_parent_so_an_exit_from_its_starter_is_a_message(
        self, runtime
    ):
        me = otpy.self()
        pid = Probe.start(me, trap=True)
        otpy.exit(pid, "shutdown")
        got = assert_receive(lambda m: tagged("info")(m) or tagged("terminate")(m), WAIT)
        assert got == ("info", otpy.Exit(me, "shutdown"))
        assert otpy.is_alive(pid)

    def test_send_after_to_a_server_goes_to_handle_info(self, runtime):
        me = otpy.self()
        pid = Probe.start_link(me)
        otpy.send_after(0.01, pid, "tick")
        assert assert_receive(tagged("info"), WAIT) == ("info", "tick")


# --- child_spec ----------------------------------------------------------------------------------


class TestChildSpec:
    def test_child_spec_defaults(self, runtime):
        spec = Stack.child_spec([1, 2], name="stack")
        assert isinstance(spec, otpy.ChildSpec)
        assert spec.id is Stack
        assert spec.restart == "permanent"
        assert spec.shutdown == 5.0
        assert spec.type == "worker"

    def test_child_spec_start_starts_the_server_with_the_arguments(self, runtime):
        spec = Stack.child_spec([1, 2], name="stack")
        fn, args, kwargs = spec.start
        pid = fn(*args, **kwargs)
        assert otpy.whereis("stack") == pid
        assert Stack.call("stack", "pop") == 2


# --- scale and blocking --------------------------------------------------------------------------


class Chain(otpy.GenServer):
    def init(self, next_pid):
        self.next = next_pid

    def handle_call(self, request, caller):
        if self.next is None:
            return 0
        return otpy.GenServer.call(self.next, request, timeout=25) + 1


class Idle(otpy.GenServer):
    def init(self, n):
        self.n = n

    def handle_call(self, request, caller):
        return self.n


class Counter(otpy.GenServer):
    def init(self):
        self.total = 0
        self.per_sender = {}
        self.out_of_order = 0

    def handle_cast(self, request):
        _, sender, i = request
        if self.per_sender.get(sender, 0) != i:
            self.out_of_order += 1
        self.per_sender[sender] = i + 1
        self.total += 1

    def handle_call(self, request, caller):
        match request:
            case ("seen", sender):
                return self.per_sender.get(sender, 0)
            case "stats":
                return self.total, self.out_of_order


@contextlib.contextmanager
def own_runtime(**options):
    """Like the ``runtime`` fixture, for a test that needs Runtime options."""
    before = set(threading.enumerate())
    rt = otpy.Runtime(**options)
    with rt:
        yield rt
    leftover = rt.processes()
    wait_until(lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()])
    assert not leftover, f"processes left behind: {leftover}"


class TestScale:
    def test_a_500_deep_chain_of_nested_calls_completes_on_4_threads(self):
        with own_runtime(max_threads=4):
            head = None
            for _ in range(500):
                head = Chain.start(head)
            assert otpy.GenServer.call(head, "depth", timeout=25) == 499

    def test_ten_thousand_servers_live_on_fewer_than_100_threads(self, runtime):
        pids = [Idle.start(i) for i in range(10_000)]
        assert threading.active_count() < 100
        for i in range(0, 10_000, 97):
            assert otpy.GenServer.call(pids[i], "n") == i
        assert threading.active_count() < 100
        assert len(set(pids)) == 10_000

    def test_8_threads_times_25000_casts_with_interleaved_calls_lose_nothing(self, runtime):
        server = Counter.start()
        errors = []

        def client(sender):
            try:
                for i in range(25_000):
                    otpy.GenServer.cast(server, ("inc", sender, i))
                    if i % 2_500 == 2_499:
                        seen = otpy.GenServer.call(server, ("seen", sender))
                        if seen != i + 1:
                            errors.append((sender, i, seen))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(25)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert otpy.GenServer.call(server, "stats") == (200_000, 0)


def test_queued_casts_of_plain_requests_cost_the_garbage_collector_nothing(runtime):
    # A cast travels as a tuple whose tag is not a tracked object, so once the collector
    # has seen it, a cast of a str or an int is no longer tracked: a mailbox holding many
    # queued casts adds nothing to the collector's every full pass.
    import gc

    release = threading.Event()

    class Slow(otpy.GenServer):
        def init(self):
            self.n = 0

        def handle_cast(self, request):
            if request == "block":
                release.wait(WAIT)
            self.n += 1

        def handle_call(self, request, caller):
            return self.n

    pid = Slow.start()
    otpy.GenServer.cast(pid, "block")
    wait_until(lambda: otpy.process_info(pid).status == "running")
    try:
        gc.collect()
        before = sum(1 for o in gc.get_objects() if type(o) is tuple)
        for i in range(10_000):
            otpy.GenServer.cast(pid, i)  # queued behind the blocked handler
        assert otpy.process_info(pid).message_queue_len >= 10_000
        gc.collect()
        after = sum(1 for o in gc.get_objects() if type(o) is tuple)
        assert after - before < 100, f"{after - before} queued casts are still tracked"
    finally:
        release.set()
    assert otpy.GenServer.call(pid, "count") == 10_001
