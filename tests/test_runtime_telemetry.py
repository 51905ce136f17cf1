"""The telemetry events the runtime itself emits: crashes, restarts, restart intensity, drops."""

from __future__ import annotations

import pytest

import otpy
from otpy import telemetry
from otpy.testing import assert_receive
from tests.conftest import WAIT, down_of, wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def events(capture_telemetry):
    """Every otpy runtime event, as (event, measurements, metadata), while the test runs."""
    return capture_telemetry(("otpy", "process"), ("otpy", "supervisor"), ("otpy", "mailbox"))


def of(events, *name):
    return [(m, md) for e, m, md in events if e == ("otpy", *name)]


class Crasher(otpy.GenServer):
    def handle_call(self, request, caller):
        match request:
            case "crash":
                raise ValueError("boom")
            case "stop":
                raise otpy.Stop("shutdown", reply="ok")
            case "ping":
                return "pong"


class TestProcessCrash:
    def test_a_body_that_raises_emits_a_crash(self, runtime, events):
        pid, ref = otpy.spawn_monitor(lambda: 1 / 0)
        reason = assert_receive(down_of(ref), WAIT).reason
        wait_until(lambda: of(events, "process", "crash"))  # emitted just after the Down
        (m, md) = of(events, "process", "crash")[0]
        assert m == {} and md == {"pid": pid, "name": None, "reason": reason}

    def test_a_gen_server_crash_emits_one_with_its_name(self, runtime, events):
        pid = Crasher.start(name="crasher")
        ref = otpy.monitor(pid)
        with pytest.raises(otpy.ExitError):
            Crasher.call(pid, "crash")
        reason = assert_receive(down_of(ref), WAIT).reason
        wait_until(lambda: of(events, "process", "crash"))
        assert of(events, "process", "crash") == [({}, {"pid": pid, "name": "crasher", "reason": reason})]

    def test_normal_and_shutdown_exits_and_kills_are_no_crash(self, runtime, events):
        _, ref = otpy.spawn_monitor(lambda: None)
        assert_receive(down_of(ref), WAIT)
        server = Crasher.start()
        ref = otpy.monitor(server)
        assert Crasher.call(server, "stop") == "ok"
        assert_receive(down_of(ref), WAIT)
        victim, ref = otpy.spawn_monitor(otpy.receive)
        otpy.exit(victim, "kill")
        assert_receive(down_of(ref), WAIT)
        assert of(events, "process", "crash") == []


class TestSupervisorEvents:
    def test_a_restart_reports_the_child_old_and_new_pid_and_reason(self, runtime, events):
        sup = otpy.Supervisor.start_link([Crasher.child_spec(id="c")])
        (child,) = otpy.Supervisor.which_children(sup)
        with pytest.raises(otpy.ExitError):
            Crasher.call(child.pid, "crash")
        wait_until(lambda: of(events, "supervisor", "restart"))
        (m, md) = of(events, "supervisor", "restart")[0]
        (new,) = otpy.Supervisor.which_children(sup)
        assert m == {"restarts": 1}
        assert md["supervisor"] == sup and md["child_id"] == "c"
        assert md["pid"] == child.pid and md["new_pid"] == new.pid != child.pid
        assert isinstance(md["reason"], ValueError)

    def test_siblings_restarted_together_are_each_reported(self, runtime, events):
        sup = otpy.Supervisor.start_link(
            [Crasher.child_spec(id="a"), Crasher.child_spec(id="b")], strategy="one_for_all"
        )
        a, b = otpy.Supervisor.which_children(sup)
        otpy.exit(a.pid, "kill")
        wait_until(lambda: len(of(events, "supervisor", "restart")) == 2)
        reported = {md["child_id"]: (md["pid"], md["reason"]) for _, md in of(events, "supervisor", "restart")}
        assert reported == {"a": (a.pid, "killed"), "b": (b.pid, "killed")}

    def test_dynamic_supervisor_restarts_are_reported(self, runtime, events):
        ds = otpy.DynamicSupervisor.start_link()
        pid = otpy.DynamicSupervisor.start_child(ds, Crasher.child_spec(id="dyn"))
        otpy.exit(pid, "kill")
        wait_until(lambda: of(events, "supervisor", "restart"))
        (m, md) = of(events, "supervisor", "restart")[0]
        assert m == {"restarts": 1}
        assert (md["supervisor"], md["child_id"], md["pid"], md["reason"]) == (ds, "dyn", pid, "killed")
        assert md["new_pid"] in [c.pid for c in otpy.DynamicSupervisor.which_children(ds)]

    @pytest.mark.parametrize("kind", ["supervisor", "dynamic"])
    def test_reaching_the_intensity_emits_max_intensity(self, runtime, events, kind):
        otpy.trap_exits(True)
        if kind == "supervisor":
            sup = otpy.Supervisor.start_link([Crasher.child_spec()], max_restarts=1, max_seconds=5)
            pid_of = lambda: otpy.Supervisor.which_children(sup)[0].pid  # noqa: E731
        else:
            sup = otpy.DynamicSupervisor.start_link(max_restarts=1, max_seconds=5)
            otpy.DynamicSupervisor.start_child(sup, Crasher.child_spec())
            pid_of = lambda: otpy.DynamicSupervisor.which_children(sup)[0].pid  # noqa: E731
        ref = otpy.monitor(sup)
        otpy.exit(pid_of(), "kill")
        wait_until(lambda: of(events, "supervisor", "restart"))
        otpy.exit(pid_of(), "kill")
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        assert of(events, "supervisor", "max_intensity") == [
            ({"restarts": 2}, {"supervisor": sup, "max_restarts": 1, "max_seconds": 5.0})
        ]
        otpy.trap_exits(False)


class TestHandlersInTheRuntime:
    def test_a_failing_handler_is_detached_and_the_runtime_goes_on(self, runtime, caplog):
        def bad(event, measurements, metadata, config):
            raise RuntimeError("handler bug")

        telemetry.attach("bad-crash-handler", ("otpy", "process", "crash"), bad)
        try:
            for _ in range(2):
                _, ref = otpy.spawn_monitor(lambda: 1 / 0)
                assert isinstance(assert_receive(down_of(ref), WAIT).reason, ZeroDivisionError)
            assert not any(h.id == "bad-crash-handler" for h in telemetry.list_handlers())
            assert Crasher.call(Crasher.start(), "ping") == "pong"
        finally:
            telemetry.detach("bad-crash-handler")
