"""Acceptance tests for otpy.ChildSpec and the child_spec() constructors of API.md.

Fields and defaults, validation at construction (with messages that name the
offending value), ``replace``, and the specs that GenServer, Supervisor,
DynamicSupervisor, PartitionSupervisor and TaskSupervisor classes produce.
"""

from __future__ import annotations

import math

import attrs
import pytest

import otpy

pytestmark = pytest.mark.timeout(60)


# --- helpers -----------------------------------------------------------------------------------


def start_nothing(*args, **kwargs):
    return None


class Worker(otpy.GenServer):
    def init(self, *args, **kwargs):
        self.args = (args, kwargs)

    def handle_call(self, request, caller):
        return self.args


class App(otpy.Supervisor):
    def init(self, arg):
        return otpy.supervise([])


START = (start_nothing, (), {})


# --- ChildSpec ---------------------------------------------------------------------------------


class TestChildSpec:
    def test_a_spec_keeps_its_id_and_start_and_has_otp_defaults(self, runtime):
        spec = otpy.ChildSpec(id="cache", start=(start_nothing, (1,), {"a": 2}))
        assert spec.id == "cache"
        assert spec.start == (start_nothing, (1,), {"a": 2})
        assert spec.restart == "permanent"
        assert spec.shutdown == 5.0
        assert spec.type == "worker"

    def test_all_fields_can_be_given_by_keyword(self, runtime):
        spec = otpy.ChildSpec(
            id="cache", start=START, restart="transient", shutdown=1.5, type="worker"
        )
        assert (spec.restart, spec.shutdown, spec.type) == ("transient", 1.5, "worker")

    def test_a_supervisor_child_waits_forever_by_default(self, runtime):
        spec = otpy.ChildSpec(id="sup", start=START, type="supervisor")
        assert spec.shutdown is None

    def test_a_supervisor_child_can_still_have_a_shutdown_time(self, runtime):
        spec = otpy.ChildSpec(id="sup", start=START, type="supervisor", shutdown=2.0)
        assert spec.shutdown == 2.0

    @pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
    def test_every_restart_value_of_otp_is_accepted(self, runtime, restart):
        assert otpy.ChildSpec(id="c", start=START, restart=restart).restart == restart

    @pytest.mark.parametrize("shutdown", [0, 0.5, 7, None, otpy.BRUTAL_KILL, math.inf])
    def test_seconds_brutal_kill_and_none_are_valid_shutdown_values(self, runtime, shutdown):
        assert otpy.ChildSpec(id="c", start=START, shutdown=shutdown).shutdown == shutdown

    @pytest.mark.parametrize("kind", ["worker", "supervisor"])
    def test_worker_and_supervisor_are_the_child_types(self, runtime, kind):
        assert otpy.ChildSpec(id="c", start=START, type=kind).type == kind

    def test_the_id_may_be_any_hashable_value(self, runtime):
        for child_id in ["name", 3, ("pool", 1), Worker, None]:
            assert otpy.ChildSpec(id=child_id, start=START).id == child_id

    def test_a_spec_is_an_immutable_value(self, runtime):
        spec = otpy.ChildSpec(id="c", start=START)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            spec.restart = "temporary"
        assert spec == otpy.ChildSpec(id="c", start=START)

    def test_a_spec_without_a_start_function_raises_at_once_naming_start(self, runtime):
        with pytest.raises(TypeError) as info:
            otpy.ChildSpec(id="c")
        assert "start" in str(info.value)

    @pytest.mark.parametrize(
        "start",
        [
            None,
            "Worker.start_link",
            (start_nothing,),
            (start_nothing, ()),
            (start_nothing, [], {}),
            (start_nothing, (), []),
            (42, (), {}),
            (start_nothing, (), {}, "extra"),
        ],
    )
    def test_a_bad_start_raises_type_error_naming_the_value_and_the_shape(self, runtime, start):
        with pytest.raises(TypeError) as info:
            otpy.ChildSpec(id="c", start=start)
        message = str(info.value)
        assert repr(start) in message
        assert "(fn, args, kwargs)" in message

    @pytest.mark.parametrize("restart", ["sometimes", "Permanent", None, 1])
    def test_an_unknown_restart_value_raises_value_error_naming_it(self, runtime, restart):
        with pytest.raises(ValueError) as info:
            otpy.ChildSpec(id="c", start=START, restart=restart)
        message = str(info.value)
        assert repr(restart) in message
        assert "permanent" in message and "transient" in message and "temporary" in message

    @pytest.mark.parametrize("shutdown", [-1, -0.1, math.nan, "soon", "infinity", True, [1]])
    def test_an_unknown_shutdown_value_raises_value_error_naming_it(self, runtime, shutdown):
        with pytest.raises(ValueError) as info:
            otpy.ChildSpec(id="c", start=START, shutdown=shutdown)
        message = str(info.value)
        assert repr(shutdown) in message
        assert "BRUTAL_KILL" in message

    @pytest.mark.parametrize("kind", ["process", "Supervisor", None])
    def test_an_unknown_type_raises_value_error_naming_it(self, runtime, kind):
        with pytest.raises(ValueError) as info:
            otpy.ChildSpec(id="c", start=START, type=kind)
        message = str(info.value)
        assert repr(kind) in message
        assert "worker" in message and "supervisor" in message

    def test_an_unhashable_id_raises_type_error_naming_it(self, runtime):
        with pytest.raises(TypeError) as info:
            otpy.ChildSpec(id=["not", "hashable"], start=START)
        assert "['not', 'hashable']" in str(info.value)

    def test_a_backoff_that_is_not_a_backoff_raises_type_error(self, runtime):
        with pytest.raises(TypeError) as info:
            otpy.ChildSpec(id="c", start=START, backoff=0.5)
        assert "0.5" in str(info.value)

    def test_brutal_kill_is_a_string_constant(self, runtime):
        assert isinstance(otpy.BRUTAL_KILL, str)


class TestReplace:
    def test_replace_returns_a_changed_copy_and_leaves_the_original(self, runtime):
        spec = otpy.ChildSpec(id="a", start=START)
        other = spec.replace(id="b", restart="temporary", shutdown=otpy.BRUTAL_KILL)
        assert (other.id, other.restart, other.shutdown) == ("b", "temporary", otpy.BRUTAL_KILL)
        assert other.start == spec.start
        assert (spec.id, spec.restart, spec.shutdown) == ("a", "permanent", 5.0)

    def test_replace_validates_the_new_values(self, runtime):
        spec = otpy.ChildSpec(id="a", start=START)
        with pytest.raises(ValueError, match="'never'"):
            spec.replace(restart="never")
        with pytest.raises(ValueError, match="-3"):
            spec.replace(shutdown=-3)

    def test_replace_can_set_a_backoff(self, runtime):
        backoff = otpy.Backoff(min=0.01, max=0.1)
        spec = otpy.ChildSpec(id="a", start=START).replace(backoff=backoff)
        assert spec.backoff == backoff


# --- child_spec() of the behaviours ----------------------------------------------------------


class TestGenServerChildSpec:
    def test_defaults_are_the_class_as_id_permanent_five_seconds_and_worker(self, runtime):
        spec = Worker.child_spec()
        assert spec.id is Worker
        assert spec.start == (Worker.start_link, (), {})
        assert (spec.restart, spec.shutdown, spec.type) == ("permanent", 5.0, "worker")

    def test_arguments_and_name_go_to_start_link(self, runtime):
        spec = Worker.child_spec(1, 2, key="v", name="w")
        assert spec.start == (Worker.start_link, (1, 2), {"key": "v", "name": "w"})

    def test_id_restart_and_shutdown_override_the_defaults_and_are_not_passed_on(self, runtime):
        spec = Worker.child_spec(1, id="w1", restart="transient", shutdown=otpy.BRUTAL_KILL)
        assert (spec.id, spec.restart, spec.shutdown) == ("w1", "transient", otpy.BRUTAL_KILL)
        assert spec.start == (Worker.start_link, (1,), {})

    def test_shutdown_none_is_an_override_not_the_default(self, runtime):
        assert Worker.child_spec(shutdown=None).shutdown is None

    def test_a_bad_override_raises_value_error_naming_it(self, runtime):
        with pytest.raises(ValueError, match="'eventually'"):
            Worker.child_spec(restart="eventually")

    def test_the_spec_starts_the_server_with_the_arguments(self, runtime):
        spec = Worker.child_spec(1, key="v")
        fn, args, kwargs = spec.start
        pid = fn(*args, **kwargs)
        assert otpy.GenServer.call(pid, "args") == ((1,), {"key": "v"})


class TestSupervisorChildSpecs:
    def test_a_class_form_supervisor_is_a_supervisor_child_that_waits_forever(self, runtime):
        spec = App.child_spec("arg")
        assert spec.id is App
        assert spec.type == "supervisor"
        assert spec.shutdown is None
        assert spec.restart == "permanent"
        assert spec.start[0] == App.start_link
        assert spec.start[1] == ("arg",)

    def test_a_supervisor_spec_takes_overrides(self, runtime):
        spec = App.child_spec("arg", id="app", restart="transient", shutdown=3.0)
        assert (spec.id, spec.restart, spec.shutdown) == ("app", "transient", 3.0)

    @pytest.mark.parametrize(
        "cls", [otpy.DynamicSupervisor, otpy.TaskSupervisor, otpy.PartitionSupervisor]
    )
    def test_the_other_supervisors_give_supervisor_specs(self, runtime, cls):
        spec = cls.child_spec(name="x")
        assert spec.id is cls
        assert spec.type == "supervisor"
        assert spec.shutdown is None
        assert spec.start[2]["name"] == "x"
        assert cls.child_spec(id="other").id == "other"
