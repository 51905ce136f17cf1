"""Acceptance tests for the Errors section of API.md.

Every exception of the table is provoked through the public API, checked to
derive from ``otpy.OtpError``, and its message checked for naming the value
that caused it.
"""

from __future__ import annotations

import math

import pytest
from conftest import WAIT, idle, raise_

import otpy
from otpy.testing import assert_receive

pytestmark = pytest.mark.timeout(30)


ALL_ERRORS = [
    "Timeout",
    "NoProcError",
    "ExitError",
    "StartError",
    "AlreadyStartedError",
    "AlreadyRegisteredError",
    "MaxChildrenError",
    "NotFoundError",
]


def needs(*names: str) -> None:
    missing = [n for n in names if not hasattr(otpy, n)]
    if missing:
        pytest.skip(f"otpy has no {', '.join(missing)} yet")


class Server(otpy.GenServer):
    def init(self, fail=None):
        if fail is not None:
            raise fail

    def handle_call(self, request, caller):
        match request:
            case ("raise", exc):
                raise exc
            case ("sleep", seconds):
                otpy.sleep(seconds)
                return seconds
        return request


class TestHierarchy:
    @pytest.mark.parametrize("name", ALL_ERRORS)
    def test_every_error_derives_from_otp_error(self, runtime, name):
        error = getattr(otpy, name)
        assert issubclass(error, otpy.OtpError)
        assert issubclass(otpy.OtpError, Exception)

    def test_timeout_is_also_a_builtin_timeout_error(self, runtime):
        assert issubclass(otpy.Timeout, TimeoutError)

    def test_exit_error_keeps_its_reason(self, runtime):
        assert otpy.ExitError("why").reason == "why"


class TestTimeout:
    def test_receive_timeout_names_the_timeout(self, runtime):
        with pytest.raises(otpy.Timeout) as info:
            otpy.receive(timeout=0.02)
        assert isinstance(info.value, otpy.OtpError)
        assert "0.02" in str(info.value)

    def test_call_timeout_names_the_timeout(self, runtime):
        pid = Server.start_link()
        with pytest.raises(otpy.Timeout) as info:
            otpy.GenServer.call(pid, ("sleep", 0.5), timeout=0.03)
        assert isinstance(info.value, otpy.OtpError)
        assert "0.03" in str(info.value)

    def test_await_timeout_names_the_timeout(self, runtime):
        task = otpy.Task.async_(otpy.sleep, 1.0)
        with pytest.raises(otpy.Timeout) as info:
            task.await_(timeout=0.04)
        assert "0.04" in str(info.value)
        task.shutdown(otpy.BRUTAL_KILL)


class TestNoProcError:
    def test_send_to_an_unregistered_name_names_it(self, runtime):
        with pytest.raises(otpy.NoProcError) as info:
            otpy.send("ghost_name", "hi")
        assert isinstance(info.value, otpy.OtpError)
        assert "ghost_name" in str(info.value)

    def test_call_to_an_unregistered_name_names_it(self, runtime):
        with pytest.raises(otpy.NoProcError) as info:
            otpy.GenServer.call("ghost_server", "hi")
        assert "ghost_server" in str(info.value)

    def test_call_to_a_dead_pid_names_the_pid(self, runtime):
        pid = Server.start()
        otpy.GenServer.stop(pid)
        with pytest.raises(otpy.NoProcError) as info:
            otpy.GenServer.call(pid, "hi")
        assert repr(pid) in str(info.value)


class TestExitError:
    def test_call_to_a_crashing_server_carries_and_names_the_reason(self, runtime):
        pid = Server.start()
        error = ArithmeticError("boom-reason-17")
        with pytest.raises(otpy.ExitError) as info:
            otpy.GenServer.call(pid, ("raise", error))
        assert isinstance(info.value, otpy.OtpError)
        assert info.value.reason is error
        assert "boom-reason-17" in str(info.value)

    def test_await_of_a_crashed_task_carries_the_reason(self, runtime, trap):
        error = ArithmeticError("task-reason-23")
        with pytest.raises(otpy.ExitError) as info:
            otpy.Task.async_(raise_, error).await_()
        assert info.value.reason is error
        assert "task-reason-23" in str(info.value)


class TestStartError:
    def test_failing_init_carries_and_names_the_reason(self, runtime):
        error = ValueError("bad-config-99")
        with pytest.raises(otpy.StartError) as info:
            Server.start_link(error)
        assert isinstance(info.value, otpy.OtpError)
        assert info.value.reason is error
        assert hasattr(info.value, "child_id")
        assert "bad-config-99" in str(info.value)

    def test_a_supervisor_child_that_fails_to_start_names_the_child(self, runtime):
        needs("Supervisor", "ChildSpec")
        spec = otpy.ChildSpec(
            id="flaky_child", start=(Server.start_link, (ValueError("child-fail"),), {})
        )
        with pytest.raises(otpy.StartError) as info:
            otpy.Supervisor.start_link([spec], strategy="one_for_one")
        assert info.value.child_id == "flaky_child"
        assert isinstance(info.value.reason, ValueError)
        assert "flaky_child" in str(info.value)


class TestAlreadyStartedError:
    def test_a_taken_server_name_carries_the_holder_and_names_the_name(self, runtime):
        holder = Server.start_link(name="taken_name")
        with pytest.raises(otpy.AlreadyStartedError) as info:
            Server.start_link(name="taken_name")
        assert isinstance(info.value, otpy.OtpError)
        assert info.value.pid == holder
        assert "taken_name" in str(info.value)

    def test_register_of_a_taken_name(self, runtime):
        holder = otpy.spawn(idle)
        otpy.register("reg_name", holder)
        with pytest.raises(otpy.AlreadyStartedError) as info:
            otpy.register("reg_name", otpy.self())
        assert info.value.pid == holder
        assert "reg_name" in str(info.value)
        otpy.send(holder, "stop")


class TestAlreadyRegisteredError:
    def test_a_taken_unique_registry_key(self, runtime):
        needs("Registry")
        otpy.Registry.start_link(keys="unique", name="errors_registry")
        otpy.Registry.register("errors_registry", "the_key", "mine")
        me = otpy.self()

        def intruder():
            try:
                otpy.Registry.register("errors_registry", "the_key", "theirs")
            except Exception as exc:
                otpy.send(me, ("raised", exc))
            else:
                otpy.send(me, ("raised", None))

        otpy.spawn(intruder)
        _, error = assert_receive(lambda m: type(m) is tuple and m[0] == "raised", WAIT)
        assert isinstance(error, otpy.AlreadyRegisteredError)
        assert isinstance(error, otpy.OtpError)
        assert error.pid == me
        assert "the_key" in str(error)


class TestSupervisorErrors:
    def test_a_full_dynamic_supervisor_raises_max_children_error(self, runtime):
        needs("DynamicSupervisor")
        ds = otpy.DynamicSupervisor.start_link(max_children=1)
        otpy.DynamicSupervisor.start_child(ds, Server.child_spec())
        with pytest.raises(otpy.MaxChildrenError) as info:
            otpy.DynamicSupervisor.start_child(ds, Server.child_spec())
        assert isinstance(info.value, otpy.OtpError)
        assert str(info.value)

    def test_terminating_an_unknown_child_raises_not_found_error_naming_it(self, runtime):
        needs("DynamicSupervisor")
        ds = otpy.DynamicSupervisor.start_link()
        stranger = otpy.spawn(idle)
        with pytest.raises(otpy.NotFoundError) as info:
            otpy.DynamicSupervisor.terminate_child(ds, stranger)
        assert isinstance(info.value, otpy.OtpError)
        assert repr(stranger) in str(info.value)
        otpy.send(stranger, "stop")


class TestBadArguments:
    @pytest.mark.parametrize("bad", [-1, -0.5, math.nan])
    def test_a_bad_timeout_raises_value_error_naming_it(self, runtime, bad):
        with pytest.raises(ValueError) as info:
            otpy.receive(timeout=bad)
        assert str(bad) in str(info.value) or repr(bad) in str(info.value)

    def test_a_timeout_that_is_not_a_number_raises_type_error_naming_it(self, runtime):
        with pytest.raises(TypeError) as info:
            otpy.receive(timeout="ten")
        assert "ten" in str(info.value)

    def test_a_name_that_is_not_a_string_raises_naming_it(self, runtime):
        with pytest.raises((TypeError, ValueError)) as info:
            otpy.register(12345, otpy.self())
        assert "12345" in str(info.value)
