"""Acceptance tests for the Processes section of API.md.

Spawning, messages and selective receive, exit signals, links, monitors,
registration, timers, interruptible sleep, process_info, plain threads as
processes, Pid values and the timeout argument rules shared by every call.
"""

from __future__ import annotations

import contextlib
import math
import queue
import re
import threading
import time

import attrs
import pytest
from conftest import WAIT, down_of, exit_from, idle, in_thread, raise_, tagged, wait_until

import otpy
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(30)


# --- helpers ------------------------------------------------------------------------------


def crash_on_go(exc: BaseException) -> None:
    otpy.receive(match=lambda m: m == "go")
    raise exc


def servant() -> None:
    """Run the functions it is sent, inside itself, and send back what they return.

    Only ("run", ...) requests and "stop" are taken from the mailbox: every other
    message stays there for a function to receive.
    """
    while True:
        msg = otpy.receive(match=lambda m: m == "stop" or (type(m) is tuple and m[:1] == ("run",)))
        if msg == "stop":
            return
        _, fn, reply_to, tag = msg
        otpy.send(reply_to, (tag, fn()))


def run_in(pid: otpy.Pid, fn):
    """Run ``fn`` inside the servant ``pid`` and return its result."""
    tag = object()
    otpy.send(pid, ("run", fn, otpy.self(), tag))
    return assert_receive(lambda m: type(m) is tuple and len(m) == 2 and m[0] is tag, WAIT)[1]


# --- spawn --------------------------------------------------------------------------------


class TestSpawn:
    def test_spawn_runs_the_function_with_positional_and_keyword_arguments(self, runtime):
        me = otpy.self()

        def body(a, b, *, c):
            otpy.send(me, ("args", a, b, c))

        otpy.spawn(body, 1, 2, c=3)
        assert assert_receive(timeout=WAIT) == ("args", 1, 2, 3)

    def test_spawn_returns_the_pid_the_new_process_sees_as_self(self, runtime):
        me = otpy.self()
        pid = otpy.spawn(lambda: otpy.send(me, ("self", otpy.self())))
        assert isinstance(pid, otpy.Pid)
        assert assert_receive(tagged("self"), WAIT) == ("self", pid)
        assert pid != me

    def test_process_is_alive_while_it_runs_and_dead_once_its_function_returns(self, runtime):
        pid, ref = otpy.spawn_monitor(idle)
        assert otpy.is_alive(pid)
        otpy.send(pid, "stop")
        assert assert_receive(down_of(ref), WAIT) == otpy.Down(ref, pid, "normal")
        assert not otpy.is_alive(pid)

    def test_spawn_monitor_reports_a_crash_with_the_exception_as_reason(self, runtime):
        error = ValueError("boom")
        pid, ref = otpy.spawn_monitor(raise_, error)
        down = assert_receive(down_of(ref), WAIT)
        assert down.pid == pid
        assert down.reason is error

    def test_spawn_link_crash_kills_a_non_trapping_parent_with_the_same_reason(self, runtime):
        me = otpy.self()
        error = ValueError("boom")

        def parent():
            child = otpy.spawn_link(crash_on_go, error)
            otpy.send(me, ("child", child))
            otpy.receive()

        parent_pid, ref = otpy.spawn_monitor(parent)
        _, child = assert_receive(tagged("child"), WAIT)
        otpy.send(child, "go")
        down = assert_receive(down_of(ref), WAIT)
        assert down.pid == parent_pid
        assert down.reason is error

    @pytest.mark.parametrize("bad", [None, 42, "not callable"])
    def test_spawn_of_something_not_callable_raises_type_error(self, runtime, bad):
        with pytest.raises(TypeError):
            otpy.spawn(bad)


class TestSelf:
    def test_self_in_the_test_thread_is_a_stable_pid(self, runtime):
        me = otpy.self()
        assert isinstance(me, otpy.Pid)
        assert otpy.self() == me
        assert otpy.is_alive(me)


# --- send and receive ---------------------------------------------------------------------


class TestSendAndReceive:
    def test_messages_from_one_process_to_another_arrive_in_send_order(self, runtime):
        me = otpy.self()
        otpy.spawn(lambda: [otpy.send(me, ("n", i)) for i in range(2000)])
        assert [assert_receive(timeout=WAIT)[1] for _ in range(2000)] == list(range(2000))

    def test_messages_sent_to_a_spawned_process_arrive_in_send_order(self, runtime):
        me = otpy.self()

        def collector():
            got = [otpy.receive() for _ in range(2000)]
            otpy.send(me, ("got", got))

        pid = otpy.spawn(collector)
        for i in range(2000):
            otpy.send(pid, i)
        assert assert_receive(tagged("got"), WAIT) == ("got", list(range(2000)))

    def test_messages_from_several_senders_keep_each_senders_order(self, runtime):
        me = otpy.self()
        for sender in range(4):
            otpy.spawn(lambda s=sender: [otpy.send(me, (s, i)) for i in range(500)])
        seen = {s: [] for s in range(4)}
        for _ in range(2000):
            s, i = assert_receive(timeout=WAIT)
            seen[s].append(i)
        assert all(v == list(range(500)) for v in seen.values())

    def test_messages_sent_before_death_arrive_before_the_down(self, runtime):
        me = otpy.self()
        pid, ref = otpy.spawn_monitor(lambda: [otpy.send(me, i) for i in range(200)])
        assert [assert_receive(timeout=WAIT) for _ in range(201)] == [*range(200), otpy.Down(ref, pid, "normal")]

    def test_messages_sent_before_a_crash_arrive_before_the_exit(self, runtime, trap):
        me = otpy.self()
        error = ValueError("after sending")

        def body():
            for i in range(200):
                otpy.send(me, i)
            raise error

        pid = otpy.spawn_link(body)
        assert [assert_receive(timeout=WAIT) for _ in range(201)] == [*range(200), otpy.Exit(pid, error)]

    def test_receive_with_match_takes_the_first_match_and_leaves_the_rest_in_order(self, runtime):
        me = otpy.self()
        for m in [1, "a", 2, "b", 3]:
            otpy.send(me, m)
        assert otpy.receive(timeout=1.0, match=lambda m: isinstance(m, str)) == "a"
        assert [otpy.receive(timeout=1.0) for _ in range(4)] == [1, 2, "b", 3]

    def test_receive_with_match_waits_for_a_matching_message_that_comes_later(self, runtime):
        me = otpy.self()
        otpy.send(me, 1)
        otpy.send(me, 2)
        otpy.send_after(0.05, me, "wanted")
        assert assert_receive(lambda m: m == "wanted", WAIT) == "wanted"
        assert [otpy.receive(timeout=0), otpy.receive(timeout=0)] == [1, 2]

    def test_messages_skipped_by_a_selective_receive_stay_ahead_of_later_arrivals(self, runtime):
        me = otpy.self()
        otpy.send(me, 1)
        otpy.send(me, 2)
        otpy.spawn(lambda: [otpy.send(me, m) for m in (3, 4, "wanted", 5)])
        assert assert_receive(lambda m: m == "wanted", WAIT) == "wanted"
        assert [assert_receive(timeout=WAIT) for _ in range(5)] == [1, 2, 3, 4, 5]

    def test_receive_with_match_that_times_out_leaves_the_mailbox_untouched(self, runtime):
        me = otpy.self()
        otpy.send(me, "x")
        otpy.send(me, "y")
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.05, match=lambda m: m == "z")
        assert [otpy.receive(timeout=0), otpy.receive(timeout=0)] == ["x", "y"]

    def test_receive_timeout_raises_timeout_naming_the_timeout(self, runtime):
        start = time.monotonic()
        with pytest.raises(otpy.Timeout) as info:
            otpy.receive(timeout=0.05)
        assert time.monotonic() - start >= 0.045
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, otpy.OtpError)
        assert "0.05" in str(info.value)

    def test_receive_timeout_can_be_caught_as_a_builtin_timeout_error(self, runtime):
        with pytest.raises(TimeoutError):
            otpy.receive(timeout=0.01)

    def test_receive_with_zero_timeout_returns_a_waiting_message_or_raises_at_once(self, runtime):
        otpy.send(otpy.self(), "here")
        assert otpy.receive(timeout=0) == "here"
        start = time.monotonic()
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0)
        assert time.monotonic() - start < 0.5

    @pytest.mark.parametrize("timeout", [None, math.inf, 1e300])
    def test_receive_without_a_finite_timeout_waits_for_the_message(self, runtime, timeout):
        otpy.send_after(0.05, otpy.self(), "late")
        assert otpy.receive(timeout=timeout) == "late"

    def test_send_returns_none(self, runtime):
        assert otpy.send(otpy.self(), "x") is None
        assert assert_receive(timeout=WAIT) == "x"

    def test_send_to_a_dead_pid_is_a_no_op(self, runtime):
        pid, ref = otpy.spawn_monitor(lambda: None)
        assert_receive(down_of(ref), WAIT)
        assert otpy.send(pid, "anyone there?") is None
        assert not otpy.is_alive(pid)

    def test_send_to_a_registered_name_delivers(self, runtime):
        otpy.register("inbox", otpy.self())
        otpy.send("inbox", "by name")
        assert assert_receive(timeout=WAIT) == "by name"

    def test_send_to_an_unregistered_name_raises_noproc_error_naming_it(self, runtime):
        with pytest.raises(otpy.NoProcError) as info:
            otpy.send("nobody_is_called_this", "hello")
        assert "nobody_is_called_this" in str(info.value)
        assert isinstance(info.value, otpy.OtpError)

    def test_arbitrary_objects_can_be_sent(self, runtime):
        me = otpy.self()
        payload = {"k": [1, 2, (3, None)], "f": len}
        otpy.spawn(lambda: otpy.send(me, ("payload", payload)))
        assert assert_receive(tagged("payload"), WAIT) == ("payload", payload)


# --- Exit and Down --------------------------------------------------------------------------


class TestExitAndDownMessages:
    def test_down_is_a_frozen_attrs_class_with_ref_pid_and_reason(self, runtime):
        pid, ref = otpy.spawn_monitor(lambda: None)
        down = assert_receive(down_of(ref), WAIT)
        assert isinstance(down, otpy.Down)
        assert attrs.has(otpy.Down)
        assert [f.name for f in attrs.fields(otpy.Down)] == ["ref", "pid", "reason"]
        assert (down.ref, down.pid, down.reason) == (ref, pid, "normal")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            down.reason = "changed"  # type: ignore[misc]
        assert down == otpy.Down(ref, pid, "normal")
        assert hash(down) == hash(otpy.Down(ref, pid, "normal"))

    def test_exit_is_a_frozen_attrs_class_with_pid_and_reason(self, runtime, trap):
        pid = otpy.spawn_link(lambda: None)
        msg = assert_receive(exit_from(pid), WAIT)
        assert isinstance(msg, otpy.Exit)
        assert attrs.has(otpy.Exit)
        assert [f.name for f in attrs.fields(otpy.Exit)] == ["pid", "reason"]
        assert msg == otpy.Exit(pid, "normal")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            msg.reason = "changed"  # type: ignore[misc]

    def test_exit_and_down_work_in_match_statements(self, runtime, trap):
        def describe(msg):
            match msg:
                case otpy.Down(pid=p, reason=r):
                    return ("down", p, r)
                case otpy.Exit(pid=p, reason=r):
                    return ("exit", p, r)
                case _:
                    return ("other", msg)

        pid = otpy.spawn_link(idle)
        otpy.monitor(pid)
        otpy.exit(pid, "bye")
        got = {describe(assert_receive(timeout=WAIT)) for _ in range(2)}
        assert got == {("down", pid, "bye"), ("exit", pid, "bye")}
        assert describe("plain") == ("other", "plain")

    def test_exit_and_down_match_positionally_in_their_documented_order(self, runtime):
        pid, ref = otpy.spawn_monitor(lambda: None)
        match assert_receive(down_of(ref), WAIT):
            case otpy.Down(r, p, reason):
                assert (r, p, reason) == (ref, pid, "normal")
            case other:
                pytest.fail(f"not a Down: {other!r}")
        match otpy.Exit(pid, "x"):
            case otpy.Exit(p, reason):
                assert (p, reason) == (pid, "x")


# --- links and exit signals ---------------------------------------------------------------


class TestLink:
    def test_abnormal_exit_kills_a_non_trapping_linked_process_with_the_same_reason(self, runtime):
        a = otpy.spawn(servant)
        b = otpy.spawn(servant)
        run_in(a, lambda: otpy.link(b))
        ref_a = otpy.monitor(a)
        otpy.exit(b, "boom")
        assert assert_receive(down_of(ref_a), WAIT) == otpy.Down(ref_a, a, "boom")

    def test_a_link_works_in_both_directions(self, runtime):
        a = otpy.spawn(servant)
        b = otpy.spawn(servant)
        run_in(a, lambda: otpy.link(b))
        ref_b = otpy.monitor(b)
        otpy.exit(a, "boom")
        assert assert_receive(down_of(ref_b), WAIT).reason == "boom"

    def test_normal_exit_does_not_kill_a_linked_process(self, runtime):
        a = otpy.spawn(servant)
        b = otpy.spawn(servant)
        run_in(a, lambda: otpy.link(b))
        ref_b = otpy.monitor(b)
        otpy.send(b, "stop")
        assert assert_receive(down_of(ref_b), WAIT).reason == "normal"
        assert run_in(a, lambda: "still here") == "still here"
        otpy.send(a, "stop")

    @pytest.mark.parametrize("reason", ["shutdown", ("shutdown", "maintenance"), "killed"])
    def test_shutdown_reasons_are_abnormal_for_links(self, runtime, reason):
        a = otpy.spawn(servant)
        b = otpy.spawn(servant)
        run_in(a, lambda: otpy.link(b))
        ref_a = otpy.monitor(a)
        otpy.exit(b, reason)
        assert assert_receive(down_of(ref_a), WAIT).reason == reason

    def test_trapping_process_gets_exit_with_the_pid_and_the_reason(self, runtime, trap):
        pid = otpy.spawn_link(idle)
        otpy.exit(pid, "boom")
        assert assert_receive(exit_from(pid), WAIT) == otpy.Exit(pid, "boom")
        assert otpy.is_alive(otpy.self())

    def test_trapping_process_gets_exit_normal_when_a_link_ends_normally(self, runtime, trap):
        pid = otpy.spawn_link(lambda: None)
        assert assert_receive(exit_from(pid), WAIT) == otpy.Exit(pid, "normal")

    def test_trapping_process_gets_the_exception_of_a_crashed_link(self, runtime, trap):
        error = RuntimeError("crash")
        pid = otpy.spawn_link(raise_, error)
        assert assert_receive(exit_from(pid), WAIT).reason is error

    def test_unlink_removes_the_link_in_both_directions(self, runtime):
        a = otpy.spawn(servant)
        b = otpy.spawn(servant)
        run_in(a, lambda: otpy.link(b))
        run_in(a, lambda: otpy.unlink(b))
        ref_b = otpy.monitor(b)
        otpy.exit(b, "boom")
        assert assert_receive(down_of(ref_b), WAIT).reason == "boom"
        assert run_in(a, lambda: "alive") == "alive"
        otpy.send(a, "stop")

    def test_unlink_stops_exit_messages_to_a_trapping_process(self, runtime, trap):
        pid = otpy.spawn_link(idle)
        otpy.unlink(pid)
        ref = otpy.monitor(pid)
        otpy.exit(pid, "boom")
        assert_receive(down_of(ref), WAIT)
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.1, match=exit_from(pid))

    def test_link_to_a_dead_process_gives_a_trapping_caller_exit_noproc(self, runtime, trap):
        pid, ref = otpy.spawn_monitor(lambda: None)
        assert_receive(down_of(ref), WAIT)
        otpy.link(pid)
        assert assert_receive(exit_from(pid), WAIT) == otpy.Exit(pid, "noproc")

    def test_link_shows_in_process_info_of_both_sides(self, runtime):
        me = otpy.self()
        pid = otpy.spawn(idle)
        otpy.link(pid)
        assert pid in otpy.process_info(me).links
        assert me in otpy.process_info(pid).links
        otpy.unlink(pid)
        assert pid not in otpy.process_info(me).links
        assert me not in otpy.process_info(pid).links
        otpy.send(pid, "stop")


class TestExit:
    def test_kill_cannot_be_trapped_and_links_see_killed(self, runtime, trap):
        victim = otpy.spawn_link(servant)
        assert run_in(victim, lambda: otpy.trap_exits(True)) is False
        ref = otpy.monitor(victim)
        otpy.exit(victim, otpy.KILL)
        assert assert_receive(down_of(ref), WAIT).reason == "killed"
        assert assert_receive(exit_from(victim), WAIT) == otpy.Exit(victim, "killed")
        assert otpy.KILLED == "killed"

    def test_normal_signal_is_ignored_by_a_non_trapping_process(self, runtime):
        pid = otpy.spawn(servant)
        otpy.exit(pid, otpy.NORMAL)
        assert run_in(pid, lambda: "still here") == "still here"
        assert otpy.is_alive(pid)
        otpy.send(pid, "stop")

    def test_normal_signal_reaches_a_trapping_process_as_an_exit_message(self, runtime):
        me = otpy.self()
        pid = otpy.spawn(servant)
        run_in(pid, lambda: otpy.trap_exits(True))
        otpy.exit(pid, "normal")
        assert run_in(pid, lambda: otpy.receive(timeout=WAIT)) == otpy.Exit(me, "normal")
        otpy.send(pid, "stop")

    def test_abnormal_signal_kills_a_non_trapping_process_with_that_reason(self, runtime):
        pid, ref = otpy.spawn_monitor(idle)
        otpy.exit(pid, ("custom", 1))
        assert assert_receive(down_of(ref), WAIT).reason == ("custom", 1)
        assert not otpy.is_alive(pid)

    def test_abnormal_signal_reaches_a_trapping_process_as_an_exit_from_the_sender(self, runtime):
        me = otpy.self()
        pid = otpy.spawn(servant)
        run_in(pid, lambda: otpy.trap_exits(True))
        otpy.exit(pid, "please stop")
        assert run_in(pid, lambda: otpy.receive(timeout=WAIT)) == otpy.Exit(me, "please stop")
        assert otpy.is_alive(pid)
        otpy.send(pid, "stop")

    def test_exit_to_a_dead_process_is_a_no_op(self, runtime):
        pid, ref = otpy.spawn_monitor(lambda: None)
        assert_receive(down_of(ref), WAIT)
        assert otpy.exit(pid, "boom") is None

    @pytest.mark.parametrize("reason", ["kill", "boom"])
    def test_death_is_immediate_for_the_runtime_even_while_python_code_still_runs(
        self, runtime, reason
    ):
        spinning = threading.Event()

        def spin():
            spinning.set()
            while True:
                pass

        pid = otpy.spawn(spin)
        otpy.register("spinner", pid)
        assert spinning.wait(WAIT)
        otpy.exit(pid, reason)
        assert not otpy.is_alive(pid)
        assert otpy.whereis("spinner") is None
        assert otpy.process_info(pid) is None

    def test_a_killed_process_still_in_invisible_blocking_sends_nothing_afterwards(self, runtime):
        me = otpy.self()
        sleeping = threading.Event()
        finished = threading.Event()

        def zombie():
            try:
                sleeping.set()
                time.sleep(0.3)  # noqa: SLEEP001 sleep is the behaviour (blocking otpy cannot see)
                otpy.send(me, "from beyond the grave")
            finally:
                finished.set()

        pid, ref = otpy.spawn_monitor(zombie)
        assert sleeping.wait(WAIT)
        start = time.monotonic()
        otpy.exit(pid, "kill")
        assert assert_receive(down_of(ref), WAIT).reason == "killed"
        assert time.monotonic() - start < 0.2, "the Down waited for the Python code to stop"
        assert finished.wait(WAIT)
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.05)

    def test_dying_process_drops_its_unread_messages_and_releases_its_name(self, runtime):
        pid, ref = otpy.spawn_monitor(idle)
        otpy.register("doomed", pid)
        for i in range(10):
            otpy.send(pid, i)
        otpy.exit(pid, "kill")
        assert_receive(down_of(ref), WAIT)
        assert otpy.whereis("doomed") is None
        assert otpy.process_info(pid) is None


# --- monitors -------------------------------------------------------------------------------


class TestMonitor:
    def test_monitor_delivers_down_with_the_ref_the_pid_and_the_reason(self, runtime):
        pid = otpy.spawn(idle)
        ref = otpy.monitor(pid)
        otpy.exit(pid, "boom")
        assert assert_receive(down_of(ref), WAIT) == otpy.Down(ref, pid, "boom")

    def test_monitor_of_a_killed_process_reports_killed(self, runtime):
        pid = otpy.spawn(idle)
        ref = otpy.monitor(pid)
        otpy.exit(pid, "kill")
        assert assert_receive(down_of(ref), WAIT).reason == "killed"

    def test_monitor_on_a_dead_pid_delivers_noproc_down_at_once(self, runtime):
        pid, ref = otpy.spawn_monitor(lambda: None)
        assert_receive(down_of(ref), WAIT)
        ref2 = otpy.monitor(pid)
        assert otpy.receive(timeout=1.0) == otpy.Down(ref2, pid, "noproc")

    def test_each_monitor_gets_its_own_ref_and_its_own_down(self, runtime):
        pid = otpy.spawn(idle)
        ref1 = otpy.monitor(pid)
        ref2 = otpy.monitor(pid)
        assert ref1 != ref2
        assert len({ref1, ref2}) == 2
        otpy.send(pid, "stop")
        assert assert_receive(down_of(ref1), WAIT).reason == "normal"
        assert assert_receive(down_of(ref2), WAIT).reason == "normal"

    def test_monitor_is_one_way_the_monitor_survives(self, runtime):
        watcher = otpy.spawn(servant)
        target = otpy.spawn(idle)
        ref = run_in(watcher, lambda: otpy.monitor(target))
        otpy.exit(target, "boom")
        assert run_in(watcher, lambda: otpy.receive(timeout=WAIT)) == otpy.Down(ref, target, "boom")
        assert otpy.is_alive(watcher)
        otpy.send(watcher, "stop")

    def test_demonitor_stops_a_future_down(self, runtime):
        pid = otpy.spawn(idle)
        ref1 = otpy.monitor(pid)
        ref2 = otpy.monitor(pid)
        otpy.demonitor(ref1)
        otpy.exit(pid, "boom")
        assert_receive(down_of(ref2), WAIT)
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.1, match=down_of(ref1))

    def test_demonitor_with_flush_removes_a_pending_down(self, runtime):
        me = otpy.self()
        pid = otpy.spawn(idle)
        ref1 = otpy.monitor(pid)
        ref2 = otpy.monitor(pid)
        otpy.exit(pid, "boom")
        assert_receive(down_of(ref2), WAIT)
        wait_until(lambda: otpy.process_info(me).message_queue_len == 1)
        otpy.demonitor(ref1, flush=True)
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.1)

    def test_demonitor_without_flush_leaves_a_delivered_down_in_the_mailbox(self, runtime):
        me = otpy.self()
        pid = otpy.spawn(idle)
        ref1 = otpy.monitor(pid)
        ref2 = otpy.monitor(pid)
        otpy.exit(pid, "boom")
        assert_receive(down_of(ref2), WAIT)
        wait_until(lambda: otpy.process_info(me).message_queue_len == 1)
        otpy.demonitor(ref1)
        assert otpy.receive(timeout=0) == otpy.Down(ref1, pid, "boom")

    def test_demonitor_with_flush_keeps_other_messages(self, runtime):
        me = otpy.self()
        pid = otpy.spawn(idle)
        ref = otpy.monitor(pid)
        otpy.send(me, "before")
        otpy.exit(pid, "boom")
        wait_until(lambda: otpy.process_info(me).message_queue_len == 2)
        otpy.send(me, "after")
        otpy.demonitor(ref, flush=True)
        assert [otpy.receive(timeout=0), otpy.receive(timeout=0)] == ["before", "after"]


class TestTrapExits:
    def test_trap_exits_returns_the_previous_value(self, runtime):
        assert otpy.trap_exits(True) is False
        assert otpy.trap_exits(True) is True
        assert otpy.trap_exits(False) is True
        assert otpy.trap_exits(False) is False

    def test_a_new_process_does_not_trap_exits(self, runtime):
        pid = otpy.spawn(servant)
        assert otpy.process_info(pid).trap_exits is False
        assert run_in(pid, lambda: otpy.trap_exits(True)) is False
        assert otpy.process_info(pid).trap_exits is True
        otpy.send(pid, "stop")


# --- registration -----------------------------------------------------------------------------


class TestRegister:
    def test_register_makes_whereis_return_the_pid(self, runtime):
        pid = otpy.spawn(idle)
        otpy.register("worker", pid)
        assert otpy.whereis("worker") == pid
        assert otpy.process_info(pid).name == "worker"
        otpy.send("worker", "stop")

    def test_whereis_of_an_unknown_name_is_none(self, runtime):
        assert otpy.whereis("never_registered") is None

    def test_unregister_frees_the_name(self, runtime):
        pid = otpy.spawn(idle)
        otpy.register("worker", pid)
        otpy.unregister("worker")
        assert otpy.whereis("worker") is None
        with pytest.raises(otpy.NoProcError):
            otpy.send("worker", "stop")
        otpy.register("worker", pid)
        otpy.send("worker", "stop")

    def test_name_is_released_when_its_process_dies(self, runtime):
        pid, ref = otpy.spawn_monitor(idle)
        otpy.register("worker", pid)
        otpy.exit(pid, "kill")
        assert_receive(down_of(ref), WAIT)
        assert otpy.whereis("worker") is None
        other = otpy.spawn(idle)
        otpy.register("worker", other)
        assert otpy.whereis("worker") == other
        otpy.send(other, "stop")

    def test_registering_a_taken_name_raises_already_started_error_with_the_holder(self, runtime):
        holder = otpy.spawn(idle)
        other = otpy.spawn(idle)
        otpy.register("worker", holder)
        with pytest.raises(otpy.AlreadyStartedError) as info:
            otpy.register("worker", other)
        assert info.value.pid == holder
        assert "worker" in str(info.value)
        assert otpy.whereis("worker") == holder
        otpy.send(holder, "stop")
        otpy.send(other, "stop")

    @pytest.mark.parametrize("bad", [42, None, ("a", "b")])
    def test_a_name_that_is_not_a_string_is_rejected(self, runtime, bad):
        with pytest.raises((TypeError, ValueError)) as info:
            otpy.register(bad, otpy.self())
        assert repr(bad) in str(info.value) or str(bad) in str(info.value)

    def test_concurrent_registration_of_one_name_has_exactly_one_winner(self, runtime):
        candidates = [otpy.spawn(idle) for _ in range(8)]
        barrier = threading.Barrier(8)
        outcomes: queue.Queue = queue.Queue()

        def contend(pid):
            barrier.wait()
            try:
                otpy.register("contested", pid)
                outcomes.put(("won", pid))
            except otpy.AlreadyStartedError as exc:
                outcomes.put(("lost", exc.pid))
            except BaseException as exc:
                outcomes.put(("error", exc))

        threads = [threading.Thread(target=contend, args=(pid,)) for pid in candidates]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        results = [outcomes.get_nowait() for _ in range(8)]
        winners = [pid for kind, pid in results if kind == "won"]
        assert len(winners) == 1
        assert all(kind == "lost" and pid == winners[0] for kind, pid in results if kind != "won")
        assert otpy.whereis("contested") == winners[0]
        for pid in candidates:
            otpy.send(pid, "stop")

    def test_a_dead_pid_cannot_hold_a_name(self, runtime):
        pid, ref = otpy.spawn_monitor(lambda: None)
        assert_receive(down_of(ref), WAIT)
        with contextlib.suppress(otpy.OtpError, ValueError):
            otpy.register("ghost", pid)
        assert otpy.whereis("ghost") is None

    def test_the_test_threads_own_process_can_be_registered(self, runtime):
        otpy.register("me", otpy.self())
        assert otpy.whereis("me") == otpy.self()
        otpy.send("me", "hi")
        assert assert_receive(timeout=WAIT) == "hi"


# --- timers ------------------------------------------------------------------------------------


class TestSendAfter:
    def test_send_after_delivers_the_message_after_the_delay(self, runtime):
        start = time.monotonic()
        otpy.send_after(0.05, otpy.self(), "tick")
        assert assert_receive(timeout=WAIT) == "tick"
        assert time.monotonic() - start >= 0.045

    def test_send_after_with_zero_delay_delivers(self, runtime):
        otpy.send_after(0, otpy.self(), "now")
        assert assert_receive(timeout=WAIT) == "now"

    def test_send_after_to_a_registered_name_delivers(self, runtime):
        otpy.register("clock_reader", otpy.self())
        otpy.send_after(0.01, "clock_reader", "tick")
        assert assert_receive(timeout=WAIT) == "tick"

    def test_timers_fire_in_deadline_order(self, runtime):
        me = otpy.self()
        otpy.send_after(0.09, me, 3)
        otpy.send_after(0.03, me, 1)
        otpy.send_after(0.06, me, 2)
        assert [assert_receive(timeout=WAIT), assert_receive(timeout=WAIT), assert_receive(timeout=WAIT)] == [1, 2, 3]

    def test_cancel_timer_returns_the_remaining_seconds_and_the_message_never_comes(self, runtime):
        me = otpy.self()
        tref = otpy.send_after(0.2, me, "never")
        remaining = otpy.cancel_timer(tref)
        assert isinstance(remaining, float)
        assert 0 < remaining <= 0.2
        otpy.send_after(0.3, me, "marker")
        assert assert_receive(timeout=WAIT) == "marker"
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0)

    def test_cancel_timer_of_a_long_timer_reports_about_its_full_delay(self, runtime):
        tref = otpy.send_after(10.0, otpy.self(), "never")
        remaining = otpy.cancel_timer(tref)
        assert 9.0 < remaining <= 10.0

    def test_cancel_timer_after_it_fired_or_twice_returns_none(self, runtime):
        me = otpy.self()
        fired = otpy.send_after(0, me, "fired")
        assert assert_receive(timeout=WAIT) == "fired"
        assert otpy.cancel_timer(fired) is None
        pending = otpy.send_after(10.0, me, "never")
        assert otpy.cancel_timer(pending) is not None
        assert otpy.cancel_timer(pending) is None

    def test_timer_to_a_process_that_died_does_nothing(self, runtime):
        me = otpy.self()
        pid, ref = otpy.spawn_monitor(idle)
        tref = otpy.send_after(0.03, pid, "too late")
        otpy.exit(pid, "kill")
        assert_receive(down_of(ref), WAIT)
        otpy.send_after(0.08, me, "marker")
        assert assert_receive(timeout=WAIT) == "marker"
        assert otpy.cancel_timer(tref) is None
        assert not otpy.is_alive(pid)
        assert pid not in otpy.processes()
        otpy.send_after(0, me, "timers still work")
        assert assert_receive(timeout=WAIT) == "timers still work"

    def test_timer_to_a_name_that_is_not_registered_when_it_fires_does_nothing(self, runtime):
        me = otpy.self()
        otpy.send_after(0.01, "nobody_has_this_name", "lost")
        otpy.send_after(0.05, me, "marker")
        assert assert_receive(timeout=WAIT) == "marker"
        otpy.send_after(0, me, "timers still work")
        assert assert_receive(timeout=WAIT) == "timers still work"

    @pytest.mark.parametrize(
        "bad, error", [(-1, ValueError), (math.nan, ValueError), ("1", TypeError)]
    )
    def test_send_after_rejects_a_bad_delay(self, runtime, bad, error):
        with pytest.raises(error):
            otpy.send_after(bad, otpy.self(), "x")


class TestSleep:
    def test_sleep_waits_at_least_the_given_seconds(self, runtime):
        start = time.monotonic()
        otpy.sleep(0.05)
        assert time.monotonic() - start >= 0.045

    def test_sleep_leaves_messages_in_the_mailbox(self, runtime):
        otpy.send(otpy.self(), "kept")
        otpy.sleep(0.01)
        assert otpy.receive(timeout=0) == "kept"

    @pytest.mark.parametrize("seconds", [100, math.inf, 1e300])
    @pytest.mark.parametrize("reason, seen", [("stop", "stop"), ("kill", "killed")])
    def test_sleep_is_interrupted_by_an_exit_signal(self, runtime, reason, seen, seconds):
        me = otpy.self()

        def sleeper():
            otpy.send(me, "sleeping")
            otpy.sleep(seconds)

        pid, ref = otpy.spawn_monitor(sleeper)
        assert_receive(lambda m: m == "sleeping", WAIT)
        start = time.monotonic()
        otpy.exit(pid, reason)
        assert otpy.receive(timeout=1.0, match=down_of(ref)).reason == seen
        assert time.monotonic() - start < 1.0

    @pytest.mark.parametrize(
        "bad, error", [(-0.1, ValueError), (math.nan, ValueError), ("1", TypeError)]
    )
    def test_sleep_rejects_a_bad_duration(self, runtime, bad, error):
        with pytest.raises(error):
            otpy.sleep(bad)


# --- introspection ------------------------------------------------------------------------------


def waits_for_go() -> None:
    otpy.receive(match=lambda m: m == "go")


class TestProcessInfo:
    def test_process_info_of_a_waiting_process(self, runtime):
        pid = otpy.spawn(waits_for_go)
        otpy.register("info_target", pid)
        otpy.send(pid, "a")
        otpy.send(pid, "b")

        wait_until(lambda: otpy.process_info(pid).message_queue_len == 2)
        wait_until(lambda: otpy.process_info(pid).status == "waiting")
        info = otpy.process_info(pid)
        assert isinstance(info, otpy.ProcessInfo)
        assert info.name == "info_target"
        assert info.trap_exits is False
        assert list(info.links) == []
        assert list(info.monitors) == []
        assert info.current is waits_for_go or "waits_for_go" in str(info.current)
        otpy.send(pid, "go")

    def test_process_info_of_an_unnamed_process_has_name_none(self, runtime):
        pid = otpy.spawn(waits_for_go)
        assert otpy.process_info(pid).name is None
        otpy.send(pid, "go")

    def test_process_info_lists_links_and_monitors(self, runtime):
        me = otpy.self()
        pid = otpy.spawn(waits_for_go)
        otpy.link(pid)
        ref = otpy.monitor(pid)
        mine = otpy.process_info(me)
        assert pid in mine.links
        assert len(mine.monitors) == 1
        assert pid in mine.monitors or ref in mine.monitors
        assert me in otpy.process_info(pid).links
        otpy.demonitor(ref)
        assert len(otpy.process_info(me).monitors) == 0
        otpy.unlink(pid)
        otpy.send(pid, "go")

    def test_process_info_of_a_process_running_python_code_says_running(self, runtime):
        me = otpy.self()

        def spin():
            otpy.send(me, "spinning")
            while True:
                pass

        pid, ref = otpy.spawn_monitor(spin)
        assert_receive(lambda m: m == "spinning", WAIT)
        wait_until(lambda: otpy.process_info(pid).status == "running")
        assert otpy.process_info(pid).current is spin or "spin" in str(
            otpy.process_info(pid).current
        )
        otpy.exit(pid, "kill")
        assert assert_receive(down_of(ref), WAIT).reason == "killed"

    def test_a_process_sees_itself_running(self, runtime):
        me = otpy.self()
        otpy.spawn(lambda: otpy.send(me, ("status", otpy.process_info(otpy.self()).status)))
        assert assert_receive(tagged("status"), WAIT) == ("status", "running")

    def test_process_info_of_a_dead_pid_is_none(self, runtime):
        pid, ref = otpy.spawn_monitor(lambda: None)
        assert_receive(down_of(ref), WAIT)
        assert otpy.process_info(pid) is None

    def test_process_info_of_the_test_thread_reports_trap_exits_and_queue(self, runtime):
        me = otpy.self()
        otpy.trap_exits(True)
        otpy.send(me, "x")
        info = otpy.process_info(me)
        assert info.trap_exits is True
        assert info.message_queue_len == 1
        otpy.trap_exits(False)


class TestProcesses:
    def test_processes_lists_the_living_and_not_the_dead(self, runtime):
        me = otpy.self()
        pid, ref = otpy.spawn_monitor(idle)
        listed = otpy.processes()
        assert isinstance(listed, list)
        assert all(isinstance(p, otpy.Pid) for p in listed)
        assert me in listed
        assert pid in listed
        otpy.send(pid, "stop")
        assert_receive(down_of(ref), WAIT)
        assert pid not in otpy.processes()


# --- plain threads ----------------------------------------------------------------------------------


class TestPlainThreads:
    def test_a_plain_thread_gets_its_own_process_and_can_receive(self, runtime):
        me = otpy.self()
        pids: queue.Queue = queue.Queue()

        def body():
            mine = otpy.self()
            pids.put(mine)
            msg = otpy.receive(timeout=WAIT)
            otpy.send(me, ("thread got", msg, mine))
            return mine

        thread_result: queue.Queue = queue.Queue()
        thread = threading.Thread(target=lambda: thread_result.put(body()))
        thread.start()
        theirs = pids.get(timeout=WAIT)
        assert isinstance(theirs, otpy.Pid)
        assert theirs != me
        otpy.send(theirs, "hello thread")
        assert assert_receive(tagged("thread got"), WAIT) == ("thread got", "hello thread", theirs)
        thread.join(WAIT)
        assert thread_result.get_nowait() == theirs

    def test_a_plain_threads_process_killed_by_a_linked_crash(self, runtime):
        error = ValueError("linked crash")
        setup: queue.Queue = queue.Queue()
        go_on = threading.Event()

        def body():
            mine = otpy.self()
            crasher = otpy.spawn_link(crash_on_go, error)
            setup.put((mine, crasher))
            assert go_on.wait(WAIT)
            try:
                otpy.self()
            except otpy.ExitError as exc:
                first = exc
            else:
                first = None
            fresh = otpy.self()
            otpy.send(fresh, "mail for the fresh process")
            return first, fresh, otpy.receive(timeout=WAIT)

        def run():
            try:
                outcome.put(("ok", body()))
            except BaseException as exc:
                outcome.put(("error", exc))

        outcome: queue.Queue = queue.Queue()
        thread = threading.Thread(target=run)
        thread.start()
        old, crasher = setup.get(timeout=WAIT)
        ref = otpy.monitor(old)
        otpy.send(crasher, "go")
        assert assert_receive(down_of(ref), WAIT).reason is error
        assert not otpy.is_alive(old)
        go_on.set()
        thread.join(WAIT)
        kind, value = outcome.get(timeout=WAIT)
        assert kind == "ok", value
        first, fresh, received = value
        assert isinstance(first, otpy.ExitError), "the next otpy call must raise ExitError"
        assert first.reason is error
        assert fresh != old
        assert received == "mail for the fresh process"

    @pytest.mark.parametrize("wait", ["receive", "sleep"])
    def test_a_plain_thread_blocked_in_otpy_learns_promptly_that_it_was_killed(self, runtime, wait):
        setup: queue.Queue = queue.Queue()
        outcome: queue.Queue = queue.Queue()

        def body():
            setup.put(otpy.self())
            start = time.monotonic()
            try:
                if wait == "receive":
                    otpy.receive(timeout=10)
                else:
                    otpy.sleep(10)
            except otpy.ExitError as exc:
                outcome.put((exc.reason, time.monotonic() - start))
            except BaseException as exc:
                outcome.put((exc, None))

        thread = threading.Thread(target=body)
        thread.start()
        theirs = setup.get(timeout=WAIT)
        ref = otpy.monitor(theirs)
        otpy.exit(theirs, "go away")
        assert assert_receive(down_of(ref), WAIT).reason == "go away"
        reason, elapsed = outcome.get(timeout=WAIT)
        thread.join(WAIT)
        assert reason == "go away"
        assert elapsed < 5

    def test_a_plain_threads_process_ends_normally_when_the_thread_ends(self, runtime):
        theirs = in_thread(otpy.self)
        ref = otpy.monitor(theirs)
        assert assert_receive(down_of(ref), WAIT).reason in ("normal", "noproc")
        assert theirs not in otpy.processes()

    def test_two_plain_threads_get_different_processes(self, runtime):
        a = in_thread(otpy.self)
        b = in_thread(otpy.self)
        assert a != b
        assert otpy.self() not in (a, b)


# --- Pid -----------------------------------------------------------------------------------------------


class TestPid:
    def test_pid_is_hashable_and_compares_by_value(self, runtime):
        me = otpy.self()
        pid = otpy.spawn(lambda: otpy.send(me, ("self", otpy.self())))
        _, seen_inside = assert_receive(tagged("self"), WAIT)
        assert seen_inside == pid
        assert hash(seen_inside) == hash(pid)
        assert {pid: "x"}[seen_inside] == "x"
        assert pid != me
        assert len({pid, seen_inside, me}) == 2

    def test_pids_of_different_processes_differ(self, runtime):
        pids = [otpy.spawn(lambda: None) for _ in range(100)]
        assert len(set(pids)) == 100

    def test_pid_prints_readably(self, runtime):
        pid = otpy.spawn(lambda: None)
        assert re.fullmatch(r"<\d+\.\d+\.\d+>", repr(pid)), repr(pid)
        assert re.fullmatch(r"<\d+\.\d+\.\d+>", repr(otpy.self())), repr(otpy.self())
        assert repr(pid) != repr(otpy.self())


# --- timeout arguments ----------------------------------------------------------------------------------


BAD_TIMEOUTS = [
    (-1, ValueError),
    (-0.001, ValueError),
    (math.nan, ValueError),
    (-math.inf, ValueError),
    ("1", TypeError),
    ([1.0], TypeError),
]


class TestTimeoutArguments:
    @pytest.mark.parametrize("timeout", [None, 0, 0.0, 1, 2.5, math.inf, 1e300])
    def test_receive_accepts_none_and_every_real_number_not_below_zero(self, runtime, timeout):
        otpy.send(otpy.self(), "ready")
        assert otpy.receive(timeout=timeout) == "ready"

    @pytest.mark.parametrize("bad, error", BAD_TIMEOUTS)
    def test_receive_rejects_a_bad_timeout_and_names_it(self, runtime, bad, error):
        otpy.send(otpy.self(), "ready")
        with pytest.raises(error) as info:
            otpy.receive(timeout=bad)
        assert repr(bad) in str(info.value) or str(bad) in str(info.value)
        assert otpy.receive(timeout=0) == "ready"


# --- races and stress --------------------------------------------------------------------------------------


class TestKillBusyProcess:
    @pytest.mark.parametrize("reason, seen", [("kill", "killed"), ("boom", "boom")])
    def test_kill_of_a_process_busy_in_a_pure_python_loop_is_seen_at_once(
        self, runtime, reason, seen
    ):
        me = otpy.self()

        def spin():
            otpy.send(me, "spinning")
            while True:
                pass

        pid, ref = otpy.spawn_monitor(spin)
        assert_receive(lambda m: m == "spinning", WAIT)
        start = time.monotonic()
        otpy.exit(pid, reason)
        assert otpy.receive(timeout=1.0, match=down_of(ref)).reason == seen
        assert time.monotonic() - start < 1.0
        assert not otpy.is_alive(pid)
        # the runtime keeps working; the fixture then checks that it shuts down
        _, ref2 = otpy.spawn_monitor(lambda: None)
        assert assert_receive(down_of(ref2), WAIT).reason == "normal"


class TestStress:
    def test_a_thousand_link_crash_cycles_leave_no_process_behind(self, runtime, trap):
        baseline = set(otpy.processes())
        for i in range(1000):
            pid = otpy.spawn_link(raise_, ValueError(i))
            reason = assert_receive(exit_from(pid), WAIT).reason
            assert isinstance(reason, ValueError)
            assert reason.args == (i,)
        wait_until(lambda: set(otpy.processes()) == baseline)

    def test_a_link_racing_a_crash_gives_exactly_one_exit(self, runtime, trap):
        for i in range(500):
            pid = otpy.spawn(raise_, ValueError(i))
            otpy.link(pid)
            msg = assert_receive(exit_from(pid), WAIT)
            assert msg.reason == "noproc" or (
                isinstance(msg.reason, ValueError) and msg.reason.args == (i,)
            )
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.05, match=lambda m: isinstance(m, otpy.Exit))

    def test_a_monitor_racing_a_death_gives_exactly_one_down(self, runtime):
        for _ in range(500):
            pid = otpy.spawn(lambda: None)
            ref = otpy.monitor(pid)
            assert assert_receive(down_of(ref), WAIT).reason in ("normal", "noproc")
        with pytest.raises(otpy.Timeout):
            otpy.receive(timeout=0.05)

    def test_spawn_and_kill_from_several_threads_at_once(self, runtime):
        errors = []

        def churn():
            try:
                for _ in range(250):
                    pid, ref = otpy.spawn_monitor(idle)
                    otpy.exit(pid, "kill")
                    down = otpy.receive(timeout=WAIT, match=down_of(ref))
                    if down.reason != "killed":
                        errors.append(down)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=churn) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert errors == []

    def test_a_thousand_monitor_kill_cycles_all_report_killed(self, runtime):
        for _ in range(1000):
            pid, ref = otpy.spawn_monitor(idle)
            otpy.exit(pid, "kill")
            assert assert_receive(down_of(ref), WAIT).reason == "killed"
