"""The plugin's fixtures used directly: otpy_runtime, start_supervised, capture_telemetry.

What only shows at teardown (errors, stop order, detaching) is tested in
sessions of their own in test_testing_plugin.py.
"""

from __future__ import annotations

import ast
import pathlib
import threading

import pytest
from conftest import WAIT, down_of, wait_until

import otpy
from otpy import telemetry
from otpy.retry import RetryPolicy
from otpy.testing import ANY, assert_receive, refute_receive
from otpy.testing.plugin import OTPY_EVENTS, _runtime_threads

pytestmark = pytest.mark.timeout(30)


class Child(otpy.GenServer):
    """Tells ``to`` it is ready (with its pid) from init."""

    def init(self, to, tag="ready"):
        otpy.send(to, (tag, otpy.self()))

    def handle_call(self, request, caller):
        return ("echo", request)


class Ignored(otpy.GenServer):
    def init(self):
        return otpy.IGNORE


class Broken(otpy.GenServer):
    def init(self):
        raise ValueError("no config")


class TestOtpyRuntime:
    def test_the_runtimes_threads_are_the_ones_the_leak_check_looks_for(self, otpy_runtime):
        me = otpy.self()
        otpy.spawn(lambda: otpy.send(me, threading.current_thread().name))
        worker = assert_receive(str, WAIT)
        otpy.send_after(60.0, me, "never")  # starts the timer thread
        names = {t.name for t in _runtime_threads(otpy_runtime)}
        assert worker in names
        assert f"otpy-{otpy_runtime.id}-timers" in names

    def test_runtime_is_the_same_fixture(self, runtime, otpy_runtime):
        assert runtime is otpy_runtime
        assert otpy.Runtime.current() is otpy_runtime


class TestStartSupervised:
    def test_it_starts_the_child_under_a_supervisor_of_the_test(self, runtime, start_supervised):
        pid = start_supervised(Child.child_spec(otpy.self()))
        assert assert_receive(("ready", ANY), WAIT) == ("ready", pid)
        sup = otpy.process_info(pid).parent
        assert otpy.process_info(sup).behaviour == "Supervisor"
        assert [(c.id, c.pid) for c in otpy.Supervisor.which_children(sup)] == [(Child, pid)]
        assert otpy.GenServer.call(pid, "hi") == ("echo", "hi")

    def test_the_supervisor_starts_on_first_use_and_is_not_linked_to_the_test(
        self, runtime, start_supervised
    ):
        def supervisors():
            return [
                p for p in otpy.processes() if otpy.process_info(p).behaviour == "Supervisor"
            ]

        assert supervisors() == []
        a = start_supervised(Child.child_spec(otpy.self(), id="a"))
        b = start_supervised(Child.child_spec(otpy.self(), id="b"))
        [sup] = supervisors()
        assert otpy.process_info(a).parent == otpy.process_info(b).parent == sup
        assert otpy.self() not in otpy.process_info(sup).links

    def test_a_killed_child_is_restarted_as_its_spec_says(self, runtime, start_supervised):
        pid = start_supervised(Child.child_spec(otpy.self()))
        assert_receive(("ready", pid), WAIT)
        otpy.exit(pid, "kill")
        _, new = assert_receive(("ready", ANY), WAIT)
        assert new != pid and otpy.is_alive(new)

    def test_a_temporary_child_is_not(self, runtime, start_supervised):
        pid = start_supervised(Child.child_spec(otpy.self()).replace(restart="temporary"))
        assert_receive(("ready", pid), WAIT)
        sup = otpy.process_info(pid).parent
        ref = otpy.monitor(pid)
        otpy.exit(pid, "kill")
        assert_receive(down_of(ref), WAIT)
        assert otpy.Supervisor.which_children(sup) == []  # handled the exit: no restart
        refute_receive(("ready", ANY), timeout=0)

    def test_it_takes_a_class_a_class_and_argument_pair_or_a_spec(
        self, runtime, start_supervised
    ):
        class Plain(otpy.GenServer):
            pass

        assert otpy.is_alive(start_supervised(Plain))
        assert otpy.is_alive(start_supervised((Child, otpy.self())))
        assert_receive(("ready", ANY), WAIT)

    def test_a_child_that_ignores_its_start_gives_none(self, runtime, start_supervised):
        assert start_supervised(Ignored) is None

    def test_a_failing_start_raises_start_error(self, runtime, start_supervised):
        with pytest.raises(otpy.StartError) as info:
            start_supervised(Broken)
        assert isinstance(info.value.reason, ValueError)
        assert info.value.child_id is Broken

    def test_a_second_child_with_the_same_id_raises_already_started(
        self, runtime, start_supervised
    ):
        start_supervised(Child.child_spec(otpy.self()))
        with pytest.raises(otpy.AlreadyStartedError):
            start_supervised(Child.child_spec(otpy.self()))

    def test_something_that_is_no_child_raises_type_error(self, runtime, start_supervised):
        with pytest.raises(TypeError, match=r"a child must be an otpy\.ChildSpec"):
            start_supervised(42)


def always_fails() -> None:
    raise ConnectionError("refused")


NO_WAIT = RetryPolicy(on=ConnectionError, attempts=2, wait_initial=0, wait_jitter=0)


class TestCaptureTelemetry:
    def test_it_records_every_event_under_a_prefix_as_it_is_emitted(
        self, runtime, capture_telemetry
    ):
        events = capture_telemetry(("otpy", "retry"))
        with pytest.raises(ConnectionError):
            otpy.retry.call(always_fails, policy=NO_WAIT)
        assert [(e, m) for e, m, _ in events] == [
            (("otpy", "retry", "scheduled"), {"attempt": 1, "delay": 0.0}),
            (("otpy", "retry", "exhausted"), {"attempts": 2}),
        ]
        assert events[0][2]["target"] is always_fails

    def test_it_keeps_copies_of_the_dicts(self, runtime, capture_telemetry):
        events = capture_telemetry(("myapp", "job", "done"))
        measurements, metadata = {"rows": 3}, {"file": "a.csv"}
        telemetry.execute(("myapp", "job", "done"), measurements, metadata)
        measurements["rows"] = 4
        [(event, m, md)] = events
        assert (event, m, md) == (("myapp", "job", "done"), {"rows": 3}, {"file": "a.csv"})
        assert m is not measurements and md is not metadata

    def test_a_prefix_of_ones_own_catches_the_events_of_a_span_on_it(
        self, runtime, capture_telemetry
    ):
        events = capture_telemetry(("myapp", "job"))
        with telemetry.span(("myapp", "job"), {"job": "import"}):
            pass
        with pytest.raises(KeyError), telemetry.span(("myapp", "job")):
            raise KeyError("x")
        telemetry.execute(("myapp", "job"), {})
        telemetry.execute(("myapp", "job", "deep", "er"), {})  # not known: not caught
        assert [e[-1] for e, _, _ in events] == ["start", "stop", "start", "exception", "job"]

    def test_an_empty_prefix_attaches_to_every_event_otpy_emits(self, runtime, capture_telemetry):
        capture_telemetry(())
        attached = {h.event for h in telemetry.list_handlers() if "capture_telemetry" in str(h.id)}
        assert attached == set(OTPY_EVENTS)

    def test_events_from_other_processes_arrive_as_they_are_emitted(
        self, runtime, capture_telemetry
    ):
        crashes = capture_telemetry(("otpy", "process"), ("otpy", "process", "crash"))
        pid, ref = otpy.spawn_monitor(lambda: 1 / 0)
        reason = assert_receive(down_of(ref), WAIT).reason
        wait_until(lambda: crashes)
        assert crashes == [
            (("otpy", "process", "crash"), {}, {"pid": pid, "name": None, "reason": reason})
        ]

    def test_each_call_has_a_list_of_its_own(self, runtime, capture_telemetry):
        retries = capture_telemetry(("otpy", "retry", "exhausted"))
        everything = capture_telemetry(())
        with pytest.raises(ConnectionError):
            otpy.retry.call(always_fails, policy=NO_WAIT)
        assert [e for e, _, _ in retries] == [("otpy", "retry", "exhausted")]
        assert [e[-1] for e, _, _ in everything] == ["scheduled", "exhausted"]

    @pytest.mark.parametrize(
        "prefixes, error",
        [
            ((), "needs at least one event prefix"),
            (("otpy",), "each a tuple of str"),
            ((["otpy"],), "each a tuple of str"),
            ((("otpy", 1),), "each a tuple of str"),
        ],
    )
    def test_a_malformed_prefix_raises_type_error(
        self, runtime, capture_telemetry, prefixes, error
    ):
        with pytest.raises(TypeError, match=error):
            capture_telemetry(*prefixes)
        assert not [h for h in telemetry.list_handlers() if "capture_telemetry" in str(h.id)]


def test_the_event_list_has_every_event_otpy_emits(runtime):
    """Every ("otpy", ...) tuple literal in otpy's source is an event, or a span prefix, of the list."""
    root = pathlib.Path(otpy.__file__).parent
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Tuple)
                and len(node.elts) >= 3
                and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value.isidentifier()
                    for e in node.elts
                )
                and node.elts[0].value == "otpy"
            ):
                found.add(tuple(e.value for e in node.elts))
    assert {("otpy", "retry", "scheduled"), ("otpy", "pool", "checkout")} <= found
    missing = [t for t in found if not any(e[: len(t)] == t for e in OTPY_EVENTS)]
    assert not missing, f"add these to otpy.testing.plugin.OTPY_EVENTS: {sorted(missing)}"
