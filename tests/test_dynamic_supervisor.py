"""Acceptance tests for the DynamicSupervisor section of API.md.

start_link and its options (max_children, extra_args, restart intensity,
backoff, name), start_child, terminate_child, which_children, count_children,
restarts by restart value, concurrent shutdown on stop, and a kill/restart
stress test.
"""

from __future__ import annotations

import logging
import time

import pytest
from conftest import WAIT, down_of, exit_from, raise_, wait_until

import otpy
from otpy.testing import assert_receive, refute_receive

pytestmark = pytest.mark.timeout(60)

DS = otpy.DynamicSupervisor


# --- helpers -----------------------------------------------------------------------------------


def event(kind, tag=None):
    return lambda m: (
        type(m) is tuple and len(m) >= 3 and m[0] == kind and (tag is None or m[1] == tag)
    )


def started(tag=None) -> otpy.Pid:
    return assert_receive(event("started", tag), WAIT)[2]


class Worker(otpy.GenServer):
    """Sends ``("started", tag, pid, args)`` from init and ``("terminate", tag, pid, reason)``.

    With ``terminate=seconds`` it sleeps that long in terminate, then sends
    ``("terminated", tag, pid, reason)``.
    """

    def init(self, *args, trap=False, on_init=None, terminate=None):
        self.observer, self.tag = args[-2], args[-1]
        self.on_terminate = terminate
        if trap:
            otpy.trap_exits(True)
        otpy.send(self.observer, ("started", self.tag, otpy.self(), args))
        if on_init is not None:
            return on_init(self)
        return None

    def handle_call(self, request, caller):
        return request

    def handle_cast(self, request):
        match request:
            case ("stop", reason):
                raise otpy.Stop(reason)
            case ("raise", exc):
                raise exc

    def terminate(self, reason):
        otpy.send(self.observer, ("terminate", self.tag, otpy.self(), reason))
        if self.on_terminate is not None:
            otpy.sleep(self.on_terminate)  # noqa: SLEEP001 sleep is the behaviour (a slow terminate)
            otpy.send(self.observer, ("terminated", self.tag, otpy.self(), reason))


def spec(tag, observer, *, restart="permanent", shutdown=5.0, **options):
    return Worker.child_spec(observer, tag, id=tag, restart=restart, shutdown=shutdown, **options)


def pids_of(ds) -> list:
    return [c.pid for c in DS.which_children(ds)]


def crash(pid, exc=None) -> None:
    otpy.GenServer.cast(pid, ("raise", exc or RuntimeError("boom")))


def end_child(pid, reason) -> None:
    ref = otpy.monitor(pid)
    if isinstance(reason, BaseException):
        crash(pid, reason)
    else:
        otpy.GenServer.cast(pid, ("stop", reason))
    assert_receive(down_of(ref), WAIT)


# --- start_link --------------------------------------------------------------------------------


class TestStartLink:
    def test_a_new_dynamic_supervisor_has_no_children(self, runtime):
        ds = DS.start_link()
        assert DS.which_children(ds) == []
        assert DS.count_children(ds) == otpy.ChildCount(0, 0, 0, 0)

    def test_it_is_linked_to_the_caller_and_traps_exits(self, runtime):
        ds = DS.start_link()
        assert ds in otpy.process_info(otpy.self()).links
        assert otpy.process_info(ds).trap_exits is True

    def test_name_registers_it(self, runtime):
        ds = DS.start_link(name="dyn")
        assert otpy.whereis("dyn") == ds
        me = otpy.self()
        pid = DS.start_child("dyn", spec("a", me))
        assert pids_of("dyn") == [pid]

    @pytest.mark.parametrize(
        "options, bad",
        [
            ({"max_children": -1}, "-1"),
            ({"max_children": 1.5}, "1.5"),
            ({"max_restarts": -2}, "-2"),
            ({"max_seconds": 0}, "0"),
        ],
    )
    def test_bad_options_raise_value_error_naming_the_value(self, runtime, options, bad):
        with pytest.raises(ValueError) as info:
            DS.start_link(**options)
        assert bad in str(info.value)

    def test_extra_args_that_are_not_a_sequence_raise_type_error(self, runtime):
        with pytest.raises(TypeError):
            DS.start_link(extra_args="abc")

    def test_a_dynamic_supervisor_can_be_a_child_of_a_supervisor(self, runtime):
        me = otpy.self()
        root = otpy.Supervisor.start_link([DS.child_spec(name="dyn", max_children=1)])
        [info] = otpy.Supervisor.which_children(root)
        assert (info.id, info.type) == (DS, "supervisor")
        assert otpy.whereis("dyn") == info.pid
        DS.start_child("dyn", spec("a", me))
        with pytest.raises(otpy.MaxChildrenError):
            DS.start_child("dyn", spec("b", me))


# --- start_child -------------------------------------------------------------------------------


class TestStartChild:
    def test_start_child_starts_the_child_linked_to_the_supervisor_and_returns_its_pid(
        self, runtime
    ):
        me = otpy.self()
        ds = DS.start_link()
        pid = DS.start_child(ds, spec("a", me))
        assert pid == started("a")
        assert pid in otpy.process_info(ds).links
        assert pids_of(ds) == [pid]

    def test_start_child_takes_a_class(self, runtime):
        class Echo(otpy.GenServer):
            def handle_call(self, request, caller):
                return request

        ds = DS.start_link()
        pid = DS.start_child(ds, Echo)
        assert otpy.GenServer.call(pid, "hi") == "hi"

    def test_children_with_the_same_id_may_run_side_by_side(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        first = DS.start_child(ds, spec("same", me))
        second = DS.start_child(ds, spec("same", me))
        assert first != second
        assert pids_of(ds) == [first, second]

    def test_a_failing_start_raises_start_error_with_the_reason_and_adds_nothing(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        error = ConnectionRefusedError("db")
        with pytest.raises(otpy.StartError) as info:
            DS.start_child(ds, spec("bad", me, on_init=lambda s: raise_(error)))
        assert info.value.reason is error
        assert DS.which_children(ds) == []
        assert otpy.is_alive(ds)

    def test_a_child_that_ignores_its_start_returns_none_and_is_not_kept(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        assert DS.start_child(ds, spec("ignored", me, on_init=lambda s: otpy.IGNORE)) is None
        assert DS.count_children(ds) == otpy.ChildCount(0, 0, 0, 0)

    def test_extra_args_are_prepended_to_the_child_start_arguments(self, runtime):
        me = otpy.self()
        ds = DS.start_link(extra_args=("pool-config", 42))
        DS.start_child(ds, spec("a", me))
        args = assert_receive(event("started", "a"), WAIT)[3]
        assert args == ("pool-config", 42, me, "a")

    def test_extra_args_are_prepended_again_on_a_restart(self, runtime, caplog):
        me = otpy.self()
        ds = DS.start_link(extra_args=["x"])
        crash(DS.start_child(ds, spec("a", me)))
        assert_receive(event("started", "a"), WAIT)
        assert assert_receive(event("started", "a"), WAIT)[3] == ("x", me, "a")
        assert len(DS.which_children(ds)) == 1


class TestMaxChildren:
    def test_start_child_beyond_max_children_raises_max_children_error(self, runtime):
        me = otpy.self()
        ds = DS.start_link(max_children=2)
        DS.start_child(ds, spec("a", me))
        DS.start_child(ds, spec("b", me))
        with pytest.raises(otpy.MaxChildrenError):
            DS.start_child(ds, spec("c", me))
        assert len(DS.which_children(ds)) == 2
        refute_receive(event("started", "c"), timeout=0)

    def test_a_slot_frees_when_a_child_is_terminated_or_exits(self, runtime):
        me = otpy.self()
        ds = DS.start_link(max_children=1)
        pid = DS.start_child(ds, spec("a", me))
        DS.terminate_child(ds, pid)
        pid = DS.start_child(ds, spec("b", me, restart="temporary"))
        end_child(pid, "normal")
        wait_until(lambda: DS.count_children(ds).specs == 0)
        assert DS.start_child(ds, spec("c", me)) is not None

    def test_a_restarted_child_keeps_its_slot(self, runtime, caplog):
        me = otpy.self()
        ds = DS.start_link(max_children=1)
        crash(DS.start_child(ds, spec("a", me)))
        started("a"), started("a")
        assert DS.count_children(ds).active == 1
        with pytest.raises(otpy.MaxChildrenError):
            DS.start_child(ds, spec("b", me))

    def test_max_children_zero_admits_nobody(self, runtime):
        ds = DS.start_link(max_children=0)
        with pytest.raises(otpy.MaxChildrenError):
            DS.start_child(ds, spec("a", otpy.self()))
        refute_receive(event("started"), timeout=0)


# --- restarts ----------------------------------------------------------------------------------


class TestRestarts:
    def test_a_permanent_child_is_restarted_after_a_crash(self, runtime, caplog):
        me = otpy.self()
        ds = DS.start_link()
        old = DS.start_child(ds, spec("p", me))
        started("p")
        end_child(old, RuntimeError("crash"))
        new = started("p")
        assert new != old
        assert pids_of(ds) == [new]

    def test_a_permanent_child_is_restarted_after_a_normal_exit(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        old = DS.start_child(ds, spec("p", me))
        started("p")
        end_child(old, "normal")
        assert started("p") != old

    @pytest.mark.parametrize("reason", ["normal", "shutdown", ("shutdown", "bye")])
    def test_a_transient_child_is_not_restarted_after_a_normal_exit(self, runtime, reason):
        me = otpy.self()
        ds = DS.start_link()
        pid = DS.start_child(ds, spec("t", me, restart="transient"))
        started("t")
        end_child(pid, reason)
        wait_until(lambda: DS.which_children(ds) == [])
        refute_receive(event("started"), timeout=0)

    def test_a_transient_child_is_restarted_after_a_crash(self, runtime, caplog):
        me = otpy.self()
        ds = DS.start_link()
        pid = DS.start_child(ds, spec("t", me, restart="transient"))
        started("t")
        end_child(pid, ValueError("bad"))
        assert pids_of(ds) == [started("t")]

    def test_a_temporary_child_is_never_restarted_and_leaves_which_children(self, runtime, caplog):
        me = otpy.self()
        ds = DS.start_link()
        keep = DS.start_child(ds, spec("keep", me))
        pid = DS.start_child(ds, spec("tmp", me, restart="temporary"))
        started("tmp")
        end_child(pid, RuntimeError("crash"))
        wait_until(lambda: pids_of(ds) == [keep])
        refute_receive(event("started", "tmp"), timeout=0)

    def test_a_crash_of_one_child_leaves_the_others_alone(self, runtime, caplog):
        me = otpy.self()
        ds = DS.start_link()
        a = DS.start_child(ds, spec("a", me))
        b = DS.start_child(ds, spec("b", me))
        c = DS.start_child(ds, spec("c", me))
        started("b")
        end_child(b, RuntimeError("crash"))
        wait_until(lambda: pids_of(ds)[1] != b)
        pids = pids_of(ds)
        assert pids[0] == a and pids[2] == c
        assert otpy.is_alive(pids[1])

    def test_an_exit_from_a_linked_process_that_is_not_a_child_is_ignored(self, runtime, caplog):
        me = otpy.self()
        ds = DS.start_link()
        a = DS.start_child(ds, spec("a", me))

        def stranger():
            otpy.link(ds)
            raise RuntimeError("not a child")

        _, ref = otpy.spawn_monitor(stranger)
        assert_receive(down_of(ref), WAIT)
        assert otpy.is_alive(ds)
        assert pids_of(ds) == [a]

    def test_past_the_restart_intensity_every_child_stops_and_it_exits_with_shutdown(
        self, runtime, trap, caplog
    ):
        me = otpy.self()
        ds = DS.start_link(max_restarts=1)
        steady = DS.start_child(ds, spec("steady", me, trap=True))
        pid = DS.start_child(ds, spec("c", me))
        started("c")
        end_child(pid, RuntimeError("one"))
        pid = started("c")
        assert otpy.is_alive(ds)
        crash(pid)
        assert assert_receive(exit_from(ds), WAIT).reason == "shutdown"
        assert assert_receive(event("terminate", "steady"), WAIT)[2:] == (steady, "shutdown")

    def test_the_default_intensity_is_three_restarts_in_five_seconds(self, runtime, trap, caplog):
        me = otpy.self()
        ds = DS.start_link()
        pid = DS.start_child(ds, spec("c", me))
        started("c")
        for _ in range(3):
            end_child(pid, RuntimeError("again"))
            pid = started("c")
        assert otpy.is_alive(ds)
        crash(pid)
        assert assert_receive(exit_from(ds), WAIT).reason == "shutdown"

    def test_a_child_that_keeps_failing_to_restart_exhausts_the_intensity(
        self, runtime, trap, caplog
    ):
        me = otpy.self()
        plan = [None] + [RuntimeError("cannot start")] * 20

        def on_init(server):
            step = plan.pop(0)
            if step is not None:
                raise step

        ds = DS.start_link(max_restarts=3)
        pid = DS.start_child(ds, spec("c", me, on_init=on_init))
        crash(pid)
        assert assert_receive(exit_from(ds), WAIT).reason == "shutdown"
        assert len(plan) >= 20 - 4, "it kept trying past its restart intensity"

    def test_a_child_that_fails_once_to_restart_is_tried_again(self, runtime, caplog):
        me = otpy.self()
        plan = [None, RuntimeError("cannot start yet"), None]

        def on_init(server):
            step = plan.pop(0)
            if step is not None:
                raise step

        ds = DS.start_link(max_restarts=5)
        pid = DS.start_child(ds, spec("c", me, on_init=on_init))
        started("c")
        crash(pid)
        started("c")  # the failed attempt
        new = started("c")
        wait_until(lambda: pids_of(ds) == [new])
        assert otpy.is_alive(ds)

    def test_a_crashing_child_with_backoff_restarts_after_a_delay_shown_as_restarting(
        self, runtime, caplog
    ):
        me = otpy.self()
        ds = DS.start_link(max_restarts=0, backoff=otpy.Backoff(min=0.2, max=0.2, jitter=0.0))
        pid = DS.start_child(ds, spec("c", me))
        started("c")
        crashed_at = time.monotonic()
        crash(pid)
        wait_until(lambda: pids_of(ds) == [otpy.RESTARTING])
        new = started("c")
        assert time.monotonic() - crashed_at >= 0.19
        assert pids_of(ds) == [new]
        assert otpy.is_alive(ds)


# --- terminate_child ---------------------------------------------------------------------------


class TestTerminateChild:
    def test_the_child_stops_with_shutdown_and_is_not_restarted(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        pid = DS.start_child(ds, spec("a", me, trap=True))
        other = DS.start_child(ds, spec("b", me))
        ref = otpy.monitor(pid)
        assert DS.terminate_child(ds, pid) is None
        assert assert_receive(event("terminate", "a"), WAIT)[3] == "shutdown"
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        assert pids_of(ds) == [other]
        started("a"), started("b")
        refute_receive(event("started"), timeout=0)

    def test_terminate_child_honours_the_shutdown_time(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        pid = DS.start_child(ds, spec("slow", me, trap=True, terminate=10, shutdown=0.1))
        ref = otpy.monitor(pid)
        begin = time.monotonic()
        DS.terminate_child(ds, pid)
        assert 0.1 <= time.monotonic() - begin < 2.0
        assert assert_receive(down_of(ref), WAIT).reason == "killed"

    def test_brutal_kill_skips_terminate(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        pid = DS.start_child(ds, spec("b", me, trap=True, shutdown=otpy.BRUTAL_KILL))
        ref = otpy.monitor(pid)
        DS.terminate_child(ds, pid)
        assert assert_receive(down_of(ref), WAIT).reason == "killed"
        refute_receive(event("terminate"), timeout=0)

    def test_a_pid_that_is_not_a_child_raises_not_found_error(self, runtime):
        ds = DS.start_link()
        stranger = otpy.spawn(otpy.receive)
        with pytest.raises(otpy.NotFoundError):
            DS.terminate_child(ds, stranger)
        with pytest.raises(otpy.NotFoundError):
            DS.terminate_child(ds, otpy.self())
        assert otpy.is_alive(ds)
        assert otpy.is_alive(stranger)
        otpy.exit(stranger, "kill")

    def test_terminating_a_child_twice_raises_not_found_error(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        pid = DS.start_child(ds, spec("a", me))
        DS.terminate_child(ds, pid)
        with pytest.raises(otpy.NotFoundError):
            DS.terminate_child(ds, pid)


# --- which_children / count_children -----------------------------------------------------------


class TestWhichChildren:
    def test_children_are_listed_in_start_order_with_pid_and_type(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        a = DS.start_child(ds, spec("a", me))
        sub = DS.start_child(ds, DS.child_spec())
        b = DS.start_child(ds, spec("b", me))
        infos = DS.which_children(ds)
        assert all(isinstance(i, otpy.ChildInfo) for i in infos)
        assert [(i.pid, i.type) for i in infos] == [
            (a, "worker"),
            (sub, "supervisor"),
            (b, "worker"),
        ]


class TestCountChildren:
    def test_count_children_counts_specs_active_supervisors_and_workers(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        DS.start_child(ds, spec("a", me))
        DS.start_child(ds, spec("b", me))
        DS.start_child(ds, DS.child_spec())
        assert DS.count_children(ds) == otpy.ChildCount(specs=3, active=3, supervisors=1, workers=2)


# --- stop --------------------------------------------------------------------------------------


class TestStop:
    def test_all_children_shut_down_concurrently(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        pids = [DS.start_child(ds, spec(i, me, trap=True, terminate=0.3)) for i in range(5)]
        begin = time.monotonic()
        DS.stop(ds)
        elapsed = time.monotonic() - begin
        done = {assert_receive(event("terminated"), WAIT)[2] for _ in range(5)}
        assert done == set(pids)
        assert 0.3 <= elapsed < 1.0, f"5 terminates of 0.3 s took {elapsed:.2f} s"
        assert not any(otpy.is_alive(pid) for pid in pids)

    def test_stop_leaves_nothing_running(self, runtime):
        otpy.self()
        baseline = set(otpy.processes())
        ds = DS.start_link()
        for i in range(10):
            DS.start_child(ds, spec(i, otpy.self()))
        DS.stop(ds)
        assert set(otpy.processes()) == baseline

    def test_each_child_gets_its_own_shutdown_time_then_is_killed(self, runtime):
        me = otpy.self()
        ds = DS.start_link()
        slow = DS.start_child(ds, spec("slow", me, trap=True, terminate=10, shutdown=0.2))
        quick = DS.start_child(ds, spec("quick", me, trap=True))
        refs = {otpy.monitor(slow): "slow", otpy.monitor(quick): "quick"}
        DS.stop(ds)
        reasons = {}
        for _ in range(2):
            down = assert_receive(lambda m: isinstance(m, otpy.Down) and m.ref in refs, WAIT)
            reasons[refs[down.ref]] = down.reason
        assert reasons == {"slow": "killed", "quick": "shutdown"}

    def test_stop_with_a_reason(self, runtime):
        ds = DS.start()
        ref = otpy.monitor(ds)
        DS.stop(ds, reason=("shutdown", "maintenance"))
        assert assert_receive(down_of(ref), WAIT).reason == ("shutdown", "maintenance")


# --- stress ------------------------------------------------------------------------------------


class Plain(otpy.GenServer):
    def handle_call(self, request, caller):
        return request


class TestStress:
    def test_a_thousand_kill_restart_cycles_leave_exactly_the_children(self, runtime, caplog):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        me = otpy.self()
        n = 3
        ds = DS.start_link(max_restarts=1_000_000, max_seconds=1.0)
        for i in range(n):
            DS.start_child(ds, Plain.child_spec(id=i))
        pids = pids_of(ds)
        deadline = time.monotonic() + 20.0
        for cycle in range(1000):
            victim = cycle % n
            old = pids
            otpy.exit(old[victim], "kill")
            while pids_of(ds)[victim] in (old[victim], None):
                assert time.monotonic() < deadline, f"child {victim} not restarted"
            pids = pids_of(ds)
            assert [p for i, p in enumerate(pids) if i != victim] == [
                p for i, p in enumerate(old) if i != victim
            ]
            assert set(otpy.processes()) == {ds, me, *pids}, cycle
        assert all(otpy.is_alive(pid) for pid in pids)
        assert DS.count_children(ds) == otpy.ChildCount(n, n, 0, n)
