"""Acceptance tests for the Supervisor section of API.md.

Both forms (function and class), child lists (specs, classes, overrides),
the three strategies, the restart values with OTP's meaning of an abnormal
exit, restart intensity and how a give-up climbs the tree, start and stop
order, per-child shutdown, start failures, the child management calls,
restart with backoff, and stress tests of the kill/restart race.
"""

from __future__ import annotations

import itertools
import logging
import random
import time

import pytest
from conftest import WAIT, down_of, exit_from, raise_, wait_until

import otpy
from otpy.testing import assert_receive, assert_received, refute_receive

pytestmark = pytest.mark.timeout(60)


# --- helpers -----------------------------------------------------------------------------------


def event(kind, tag=None):
    """Matches ``(kind, tag, pid, ...)`` messages that Worker sends its observer."""
    return lambda m: (
        type(m) is tuple and len(m) >= 3 and m[0] == kind and (tag is None or m[1] == tag)
    )


def started(tag=None) -> otpy.Pid:
    """Wait until the Worker ``tag`` reports that it started; its pid."""
    return assert_receive(event("started", tag), WAIT)[2]


def fail_with(exc: BaseException):
    """An ``on_init`` for Worker that makes its init raise ``exc``."""
    return lambda server: raise_(exc)


def ignore(server):
    return otpy.IGNORE


class Worker(otpy.GenServer):
    """A child that tells an observer about its life.

    It sends ``("started", tag, pid)`` from init and ``("terminate", tag, pid,
    reason)`` when terminate begins; with ``terminate="block"`` it then waits
    forever, with ``terminate=seconds`` it sleeps that long and then sends
    ``("terminated", tag, pid, reason)``.
    """

    def init(
        self, observer=None, tag=None, *, trap=False, on_init=None, terminate=None, journal=None
    ):
        self.observer = observer
        self.tag = tag
        self.on_terminate = terminate
        self.journal = journal
        if trap:
            otpy.trap_exits(True)
        self.tell("started")
        if on_init is not None:
            return on_init(self)
        return None

    def tell(self, kind, *rest):
        if self.observer is not None:
            otpy.send(self.observer, (kind, self.tag, otpy.self(), *rest))

    def handle_call(self, request, caller):
        match request:
            case ("echo", x):
                return x
        raise AssertionError(f"unexpected call {request!r}")

    def handle_cast(self, request):
        match request:
            case ("stop", reason):
                raise otpy.Stop(reason)
            case ("raise", exc):
                raise exc

    def terminate(self, reason):
        if self.journal is not None:
            self.journal.append((self.tag, reason))
        self.tell("terminate", reason)
        if self.on_terminate == "block":
            otpy.receive(match=lambda m: False)
        elif self.on_terminate is not None:
            otpy.sleep(self.on_terminate)  # noqa: SLEEP001 sleep is the behaviour (a slow terminate)
            self.tell("terminated", reason)


class Flaky(otpy.GenServer):
    """Reports ``("started", "flaky", pid, time)``, then crashes while ``plan`` says "crash".

    ``plan`` is one list shared by every restart, so it runs down as the child restarts.
    """

    def init(self, observer, plan):
        otpy.send(observer, ("started", "flaky", otpy.self(), time.monotonic()))
        if plan and plan.pop(0) == "crash":
            return otpy.Continue("crash")
        return None

    def handle_continue(self, arg):
        raise RuntimeError("the dependency is down")

    def handle_cast(self, request):
        raise RuntimeError("asked to crash")


class Plain(otpy.GenServer):
    """A child that does nothing but answer."""

    def handle_call(self, request, caller):
        return request


def spec(tag, observer, *, restart="permanent", shutdown=5.0, **options):
    """A Worker child spec whose id and tag are ``tag``."""
    return Worker.child_spec(observer, tag, id=tag, restart=restart, shutdown=shutdown, **options)


def children_of(sup) -> list[tuple]:
    return [(c.id, c.pid, c.type) for c in otpy.Supervisor.which_children(sup)]


def pid_of(sup, child_id):
    for info in otpy.Supervisor.which_children(sup):
        if info.id == child_id:
            return info.pid
    raise AssertionError(f"no child {child_id!r} in {otpy.Supervisor.which_children(sup)}")


def ids_of(sup) -> list:
    return [c.id for c in otpy.Supervisor.which_children(sup)]


def crash(pid, exc=None) -> None:
    otpy.GenServer.cast(pid, ("raise", exc or RuntimeError("boom")))


def stop_with(pid, reason) -> None:
    otpy.GenServer.cast(pid, ("stop", reason))


def crash_and_wait(pid) -> None:
    ref = otpy.monitor(pid)
    crash(pid)
    assert_receive(down_of(ref), WAIT)


class App(otpy.Supervisor):
    """The class form: ``init`` gets ``(observer, strategy, options)``."""

    def init(self, arg):
        observer, strategy, options = arg
        self.observer = observer
        return otpy.supervise(
            [spec("a", observer), spec("b", observer)], strategy=strategy, **options
        )


# --- starting ----------------------------------------------------------------------------------


class TestStartLink:
    def test_children_start_in_list_order_and_are_listed_in_that_order(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me), spec("b", me), spec("c", me)])
        order = [assert_receive(event("started"), WAIT)[1] for _ in range(3)]
        assert order == ["a", "b", "c"]
        assert ids_of(sup) == ["a", "b", "c"]
        assert all(otpy.is_alive(pid) for _, pid, _ in children_of(sup))

    def test_start_link_returns_after_every_child_started(self, runtime):
        me = otpy.self()
        otpy.Supervisor.start_link([spec("a", me), spec("b", me)])
        assert_received(event("started", "a"))
        assert_received(event("started", "b"))

    def test_the_supervisor_is_linked_to_the_caller_and_to_its_children(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        child = pid_of(sup, "a")
        assert sup in otpy.process_info(me).links
        assert child in otpy.process_info(sup).links
        assert otpy.process_info(sup).trap_exits is True

    def test_name_registers_the_supervisor(self, runtime):
        sup = otpy.Supervisor.start_link([Plain.child_spec()], name="root")
        assert otpy.whereis("root") == sup
        assert [c.id for c in otpy.Supervisor.which_children("root")] == [Plain]

    def test_a_taken_name_raises_already_started_error(self, runtime):
        sup = otpy.Supervisor.start_link([], name="root")
        with pytest.raises(otpy.AlreadyStartedError) as info:
            otpy.Supervisor.start_link([], name="root")
        assert info.value.pid == sup

    def test_a_supervisor_may_start_with_no_children(self, runtime):
        sup = otpy.Supervisor.start_link([])
        assert otpy.Supervisor.which_children(sup) == []
        assert otpy.Supervisor.count_children(sup) == otpy.ChildCount(0, 0, 0, 0)

    def test_a_class_in_the_list_means_its_child_spec(self, runtime):
        sup = otpy.Supervisor.start_link([Plain])
        [(child_id, pid, kind)] = children_of(sup)
        assert child_id is Plain
        assert kind == "worker"
        assert otpy.GenServer.call(pid, "hello") == "hello"

    def test_a_class_and_argument_pair_means_its_child_spec_of_the_argument(self, runtime):
        me = otpy.self()
        otpy.Supervisor.start_link([(Worker, me)])
        assert assert_receive(event("started"), WAIT)[1] is None

    def test_child_spec_overrides_apply(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [
                Worker.child_spec(me, "w1", id="w1"),
                Worker.child_spec(me, "w2", id="w2", restart="temporary"),
            ]
        )
        assert ids_of(sup) == ["w1", "w2"]
        crash_and_wait(pid_of(sup, "w2"))
        wait_until(lambda: ids_of(sup) == ["w1"])

    def test_a_plain_process_started_with_spawn_link_is_a_child_too(self, runtime, caplog):
        me = otpy.self()

        def body():
            otpy.send(me, ("started", "plain", otpy.self()))
            otpy.receive(match=lambda m: m == "crash")
            raise RuntimeError("plain crash")

        sup = otpy.Supervisor.start_link(
            [otpy.ChildSpec(id="plain", start=(otpy.spawn_link, (body,), {}))]
        )
        old = started("plain")
        assert pid_of(sup, "plain") == old
        otpy.send(old, "crash")
        new = started("plain")
        assert new != old
        wait_until(lambda: pid_of(sup, "plain") == new)

    def test_an_exit_from_a_linked_process_that_is_not_a_child_is_ignored(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        a = started("a")

        def stranger():
            otpy.link(sup)
            raise RuntimeError("not a child")

        _, ref = otpy.spawn_monitor(stranger)
        assert_receive(down_of(ref), WAIT)
        assert otpy.is_alive(sup)
        assert children_of(sup) == [("a", a, "worker")]
        refute_receive(event("started"), timeout=0)

    def test_a_named_child_is_reachable_by_name_and_keeps_the_name_after_a_restart(
        self, runtime, caplog
    ):
        sup = otpy.Supervisor.start_link([Plain.child_spec(name="plain")])
        old = otpy.whereis("plain")
        assert old == pid_of(sup, Plain)
        ref = otpy.monitor(old)
        otpy.exit(old, "kill")
        assert_receive(down_of(ref), WAIT)
        wait_until(lambda: otpy.whereis("plain") not in (None, old))
        assert otpy.whereis("plain") == pid_of(sup, Plain)
        assert otpy.GenServer.call("plain", "still here") == "still here"

    def test_an_unknown_strategy_raises_value_error_naming_it(self, runtime):
        with pytest.raises(ValueError) as info:
            otpy.Supervisor.start_link([], strategy="one_for_none")
        message = str(info.value)
        assert "'one_for_none'" in message
        assert "one_for_one" in message and "rest_for_one" in message

    def test_two_children_with_the_same_id_raise_value_error_naming_the_id(self, runtime):
        otpy.self()
        baseline = set(otpy.processes())
        with pytest.raises(ValueError) as info:
            otpy.Supervisor.start_link(
                [
                    Plain.child_spec(id="twin"),
                    Plain.child_spec(id="other"),
                    Plain.child_spec(id="twin"),
                ]
            )
        assert "'twin'" in str(info.value)
        assert set(otpy.processes()) == baseline

    @pytest.mark.parametrize(
        "options",
        [{"max_restarts": -1}, {"max_restarts": 1.5}, {"max_seconds": -1}, {"max_seconds": 0}],
    )
    def test_bad_restart_intensity_options_raise_value_error_naming_the_value(
        self, runtime, options
    ):
        with pytest.raises(ValueError) as info:
            otpy.Supervisor.start_link([], **options)
        assert repr(next(iter(options.values()))) in str(info.value)

    def test_a_child_that_is_not_a_spec_raises_type_error_naming_it(self, runtime):
        with pytest.raises(TypeError) as info:
            otpy.Supervisor.start_link([42])
        assert "42" in str(info.value)

    def test_a_backoff_that_is_not_a_backoff_raises_type_error(self, runtime):
        with pytest.raises(TypeError):
            otpy.Supervisor.start_link([], backoff=0.1)


class TestStartFailure:
    def test_a_child_failing_to_start_raises_start_error_with_its_id_and_own_reason(self, runtime):
        me = otpy.self()
        error = ValueError("no database")
        with pytest.raises(otpy.StartError) as info:
            otpy.Supervisor.start_link(
                [spec("a", me), spec("b", me, on_init=fail_with(error)), spec("c", me)]
            )
        assert info.value.child_id == "b"
        assert info.value.reason is error
        assert "'b'" in str(info.value)

    def test_the_children_already_started_are_stopped_and_nothing_is_left_running(
        self, runtime, caplog
    ):
        me = otpy.self()
        baseline = set(otpy.processes())
        with pytest.raises(otpy.StartError):
            otpy.Supervisor.start_link(
                [
                    spec("a", me, trap=True),
                    spec("b", me, trap=True),
                    spec("c", me, on_init=fail_with(RuntimeError("no"))),
                    spec("d", me),
                ]
            )
        assert [assert_receive(event("started"), WAIT)[1] for _ in range(3)] == ["a", "b", "c"]
        stops = [assert_receive(event("terminate"), WAIT) for _ in range(2)]
        assert [(tag, reason) for _, tag, _, reason in stops] == [
            ("b", "shutdown"),
            ("a", "shutdown"),
        ]
        refute_receive(event("started", "d"), timeout=0)
        assert set(otpy.processes()) == baseline
        assert otpy.self() == me

    def test_a_stop_reason_from_init_is_the_start_error_reason(self, runtime):
        me = otpy.self()
        with pytest.raises(otpy.StartError) as info:
            otpy.Supervisor.start_link(
                [spec("a", me, on_init=lambda s: raise_(otpy.Stop("bad config")))]
            )
        assert info.value.child_id == "a"
        assert info.value.reason == "bad config"

    def test_a_start_function_that_raises_is_a_start_failure_with_the_exception(self, runtime):
        error = OSError("port in use")
        child = otpy.ChildSpec(id="raw", start=(raise_, (error,), {}))
        with pytest.raises(otpy.StartError) as info:
            otpy.Supervisor.start_link([child])
        assert info.value.child_id == "raw"
        assert info.value.reason is error

    def test_a_start_function_returning_something_else_than_a_pid_is_a_start_failure(self, runtime):
        child = otpy.ChildSpec(id="odd", start=(lambda: "not a pid", (), {}))
        with pytest.raises(otpy.StartError) as info:
            otpy.Supervisor.start_link([child])
        assert info.value.child_id == "odd"
        assert "not a pid" in repr(info.value.reason)

    def test_a_failing_nested_supervisor_reports_its_own_id(self, runtime):
        me = otpy.self()
        error = KeyError("inner")
        inner = otpy.ChildSpec(
            id="inner",
            start=(otpy.Supervisor.start_link, ([spec("x", me, on_init=fail_with(error))],), {}),
            type="supervisor",
        )
        baseline = set(otpy.processes())
        with pytest.raises(otpy.StartError) as info:
            otpy.Supervisor.start_link([spec("a", me), inner])
        assert info.value.child_id == "inner"
        assert set(otpy.processes()) == baseline


class TestIgnore:
    def test_a_child_whose_start_returns_none_is_kept_with_pid_none(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me), spec("ignored", me, on_init=ignore)])
        assert children_of(sup)[1] == ("ignored", None, "worker")
        assert otpy.Supervisor.count_children(sup) == otpy.ChildCount(2, 1, 0, 2)

    def test_an_ignored_child_can_be_restarted_by_hand(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("ignored", me, on_init=ignore)])
        started("ignored")
        assert otpy.Supervisor.restart_child(sup, "ignored") is None
        started("ignored")
        assert pid_of(sup, "ignored") is None

    def test_start_child_of_an_ignoring_child_returns_none_and_keeps_the_spec(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([])
        assert otpy.Supervisor.start_child(sup, spec("ignored", me, on_init=ignore)) is None
        assert children_of(sup) == [("ignored", None, "worker")]


class TestClassForm:
    def test_init_gets_the_argument_and_its_spec_is_used(self, runtime):
        me = otpy.self()
        sup = App.start_link((me, "one_for_one", {}), name="app")
        assert otpy.whereis("app") == sup
        assert ids_of(sup) == ["a", "b"]
        assert [assert_receive(event("started"), WAIT)[1] for _ in range(2)] == ["a", "b"]

    def test_the_strategy_from_supervise_is_used(self, runtime, caplog):
        me = otpy.self()
        sup = App.start_link((me, "one_for_all", {}))
        a, b = started("a"), started("b")
        crash_and_wait(b)
        new_a, new_b = started("a"), started("b")
        assert new_a != a and new_b != b
        assert [pid for _, pid, _ in children_of(sup)] == [new_a, new_b]

    def test_the_restart_intensity_from_supervise_is_used(self, runtime, trap, caplog):
        me = otpy.self()
        sup = App.start_link((me, "one_for_one", {"max_restarts": 0}))
        crash(started("a"))
        assert assert_receive(exit_from(sup), WAIT).reason == "shutdown"

    def test_a_class_form_supervisor_is_a_supervisor_child(self, runtime):
        me = otpy.self()
        root = otpy.Supervisor.start_link([App.child_spec((me, "one_for_one", {}))])
        [(child_id, pid, kind)] = children_of(root)
        assert (child_id, kind) == (App, "supervisor")
        assert ids_of(pid) == ["a", "b"]

    def test_init_raising_makes_start_link_raise_start_error(self, runtime):
        class Broken(otpy.Supervisor):
            def init(self, arg):
                raise LookupError(arg)

        with pytest.raises(otpy.StartError) as info:
            Broken.start_link("config")
        assert isinstance(info.value.reason, LookupError)

    def test_init_returning_something_else_than_supervise_is_a_start_error(self, runtime):
        class Wrong(otpy.Supervisor):
            def init(self, arg):
                return [Plain.child_spec()]

        with pytest.raises(otpy.StartError) as info:
            Wrong.start_link(None)
        assert "supervise" in str(info.value.reason)

    def test_supervise_validates_like_start_link(self, runtime):
        with pytest.raises(ValueError, match="'sideways'"):
            otpy.supervise([], strategy="sideways")
        with pytest.raises(ValueError, match="'x'"):
            otpy.supervise([Plain.child_spec(id="x"), Plain.child_spec(id="x")])


# --- strategies --------------------------------------------------------------------------------


class TestOneForOne:
    def test_only_the_child_that_crashed_is_restarted(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me), spec("b", me), spec("c", me)])
        a, b, c = started("a"), started("b"), started("c")
        crash_and_wait(b)
        new_b = started("b")
        assert new_b != b
        assert [pid for _, pid, _ in children_of(sup)] == [a, new_b, c]
        refute_receive(event("started"), timeout=0)

    def test_one_for_one_is_the_default(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me), spec("b", me)])
        a, b = started("a"), started("b")
        crash_and_wait(a)
        assert started("a") != a
        assert pid_of(sup, "b") == b


class TestOneForAll:
    def test_the_others_stop_in_reverse_order_then_all_start_in_order(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("a", me, trap=True), spec("b", me, trap=True), spec("c", me, trap=True)],
            strategy="one_for_all",
        )
        old = [started("a"), started("b"), started("c")]
        crash(old[1])
        assert assert_receive(event("terminate", "b"), WAIT)[3].args == ("boom",)
        stops = [assert_receive(event("terminate"), WAIT)[1:] for _ in range(2)]
        assert stops == [("c", old[2], "shutdown"), ("a", old[0], "shutdown")]
        new = [assert_receive(event("started"), WAIT)[1:3] for _ in range(3)]
        assert [tag for tag, _ in new] == ["a", "b", "c"]
        assert [pid for _, pid in new] == [pid for _, pid, _ in children_of(sup)]
        assert not set(old) & {pid for _, pid in new}
        assert not any(otpy.is_alive(pid) for pid in old)

    def test_a_normal_exit_of_a_transient_child_restarts_nobody(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("a", me), spec("t", me, restart="transient"), spec("c", me)],
            strategy="one_for_all",
        )
        a, t, c = started("a"), started("t"), started("c")
        ref = otpy.monitor(t)
        stop_with(t, "normal")
        assert_receive(down_of(ref), WAIT)
        wait_until(lambda: pid_of(sup, "t") is None)
        assert children_of(sup) == [("a", a, "worker"), ("t", None, "worker"), ("c", c, "worker")]

    def test_a_temporary_sibling_stopped_for_the_restart_is_not_restarted(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("a", me), spec("tmp", me, restart="temporary"), spec("c", me)],
            strategy="one_for_all",
        )
        a, tmp = started("a"), started("tmp")
        started("c")
        crash_and_wait(a)
        started("a"), started("c")
        assert not otpy.is_alive(tmp)
        assert ids_of(sup) == ["a", "c"]
        refute_receive(event("started", "tmp"), timeout=0)


class TestRestForOne:
    def test_the_later_children_stop_in_reverse_order_then_restart_with_it(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [
                spec("a", me, trap=True),
                spec("b", me, trap=True),
                spec("c", me, trap=True),
                spec("d", me, trap=True),
            ],
            strategy="rest_for_one",
        )
        a, b, c, d = (started(tag) for tag in "abcd")
        crash(b)
        assert_receive(event("terminate", "b"), WAIT)
        stops = [assert_receive(event("terminate"), WAIT)[1:] for _ in range(2)]
        assert stops == [("d", d, "shutdown"), ("c", c, "shutdown")]
        new = [assert_receive(event("started"), WAIT)[1] for _ in range(3)]
        assert new == ["b", "c", "d"]
        pids = [pid for _, pid, _ in children_of(sup)]
        assert pids[0] == a
        assert not {b, c, d} & set(pids)
        refute_receive(event("terminate", "a"), timeout=0)

    def test_a_crash_of_the_last_child_restarts_only_it(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me), spec("b", me)], strategy="rest_for_one")
        a, b = started("a"), started("b")
        crash_and_wait(b)
        new_b = started("b")
        assert [pid for _, pid, _ in children_of(sup)] == [a, new_b]

    def test_a_temporary_later_child_stopped_for_the_restart_is_not_restarted(
        self, runtime, caplog
    ):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("a", me), spec("b", me), spec("tmp", me, restart="temporary")],
            strategy="rest_for_one",
        )
        started("a")
        b, tmp = started("b"), started("tmp")
        crash_and_wait(b)
        started("b")
        assert not otpy.is_alive(tmp)
        assert ids_of(sup) == ["a", "b"]
        refute_receive(event("started", "tmp"), timeout=0)


# --- restart values ----------------------------------------------------------------------------

ABNORMAL = [
    pytest.param(RuntimeError("crash"), id="exception"),
    pytest.param("other", id="other-string"),
    pytest.param(("error", 1), id="tuple"),
    pytest.param("killed", id="killed"),
]
NORMAL = [
    pytest.param("normal", id="normal"),
    pytest.param("shutdown", id="shutdown"),
    pytest.param(("shutdown", "maintenance"), id="shutdown-tuple"),
]


def end_child(pid, reason) -> None:
    """Make a Worker child end with ``reason`` and wait until it is gone."""
    ref = otpy.monitor(pid)
    if reason == "killed":
        otpy.exit(pid, "kill")
    elif isinstance(reason, BaseException):
        crash(pid, reason)
    else:
        stop_with(pid, reason)
    assert assert_receive(down_of(ref), WAIT).reason in (reason, "killed")


class TestRestartValues:
    @pytest.mark.parametrize("reason", ABNORMAL + NORMAL)
    def test_a_permanent_child_is_restarted_whatever_the_reason(self, runtime, caplog, reason):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("p", me)])
        old = started("p")
        end_child(old, reason)
        new = started("p")
        assert new != old
        assert pid_of(sup, "p") == new

    @pytest.mark.parametrize("reason", ABNORMAL)
    def test_a_transient_child_is_restarted_after_an_abnormal_exit(self, runtime, caplog, reason):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("t", me, restart="transient")])
        old = started("t")
        end_child(old, reason)
        new = started("t")
        assert pid_of(sup, "t") == new != old

    @pytest.mark.parametrize("reason", NORMAL)
    def test_a_transient_child_is_not_restarted_after_normal_shutdown_or_shutdown_tuple(
        self, runtime, reason
    ):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("t", me, restart="transient"), spec("x", me)])
        old = started("t")
        end_child(old, reason)
        wait_until(lambda: pid_of(sup, "t") != old)
        assert children_of(sup)[0] == ("t", None, "worker")
        refute_receive(event("started", "t"), timeout=0)

    @pytest.mark.parametrize("reason", ABNORMAL + NORMAL)
    def test_a_temporary_child_is_never_restarted_and_leaves_which_children(
        self, runtime, caplog, reason
    ):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("x", me), spec("tmp", me, restart="temporary")])
        old = started("tmp")
        end_child(old, reason)
        wait_until(lambda: ids_of(sup) == ["x"])
        refute_receive(event("started", "tmp"), timeout=0)
        assert otpy.Supervisor.count_children(sup).specs == 1

    def test_a_normal_exit_of_a_permanent_child_is_not_logged_as_a_crash(self, runtime, caplog):
        caplog.set_level(logging.ERROR, logger="otpy")
        me = otpy.self()
        otpy.Supervisor.start_link([spec("p", me)])
        end_child(started("p"), "normal")
        started("p")
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    def test_a_crash_is_logged_naming_the_child_and_the_reason(self, runtime, caplog):
        caplog.set_level(logging.ERROR, logger="otpy")
        me = otpy.self()
        otpy.Supervisor.start_link([spec("logged-child", me)])
        end_child(started("logged-child"), ZeroDivisionError("bad maths"))
        started("logged-child")
        messages = [r.getMessage() for r in caplog.records if r.name == "otpy.supervisor"]
        assert any("logged-child" in m and "bad maths" in m for m in messages), messages


# --- restart intensity -------------------------------------------------------------------------


class TestRestartIntensity:
    def test_the_default_allows_three_restarts_and_gives_up_on_the_fourth_crash(
        self, runtime, trap, caplog
    ):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("steady", me, trap=True), spec("c", me)])
        started("steady")
        pid = started("c")
        for _ in range(3):
            crash_and_wait(pid)
            pid = started("c")
        assert otpy.is_alive(sup)
        crash(pid)
        assert assert_receive(exit_from(sup), WAIT).reason == "shutdown"
        assert assert_receive(event("terminate", "steady"), WAIT)[3] == "shutdown"
        refute_receive(event("started"), timeout=0)

    def test_giving_up_stops_every_child_and_leaves_nothing_running(self, runtime, trap, caplog):
        me = otpy.self()
        baseline = set(otpy.processes())
        sup = otpy.Supervisor.start_link(
            [spec("a", me, trap=True), spec("b", me, trap=True), spec("c", me)], max_restarts=0
        )
        started("a"), started("b")
        crash(started("c"))
        assert assert_receive(exit_from(sup), WAIT).reason == "shutdown"
        assert_receive(event("terminate", "c"), WAIT)
        stops = [assert_receive(event("terminate"), WAIT)[1] for _ in range(2)]
        assert stops == ["b", "a"]
        wait_until(lambda: set(otpy.processes()) == baseline)

    def test_giving_up_is_logged(self, runtime, trap, caplog):
        caplog.set_level(logging.ERROR, logger="otpy")
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("c", me)], max_restarts=0)
        crash(started("c"))
        assert_receive(exit_from(sup), WAIT)
        assert any(
            r.name == "otpy.supervisor" and "intensity" in r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.ERROR
        ), [r.getMessage() for r in caplog.records]

    def test_a_child_that_keeps_failing_to_restart_exhausts_the_intensity(
        self, runtime, trap, caplog
    ):
        me = otpy.self()
        plan = [None] + [RuntimeError("cannot start")] * 20

        def on_init(server):
            step = plan.pop(0)
            if step is not None:
                raise step

        sup = otpy.Supervisor.start_link([spec("c", me, on_init=on_init)], max_restarts=3)
        crash(started("c"))
        assert assert_receive(exit_from(sup), WAIT).reason == "shutdown"
        assert len(plan) >= 20 - 4, "it kept trying past its restart intensity"

    def test_a_child_that_fails_once_to_restart_is_tried_again(self, runtime, caplog):
        me = otpy.self()
        plan = [None, RuntimeError("cannot start yet"), None]

        def on_init(server):
            step = plan.pop(0)
            if step is not None:
                raise step

        sup = otpy.Supervisor.start_link([spec("c", me, on_init=on_init)], max_restarts=5)
        crash(started("c"))
        started("c")  # the failed attempt
        new = started("c")
        wait_until(lambda: pid_of(sup, "c") == new)

    def test_restarts_older_than_max_seconds_are_forgotten(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("c", me)], max_restarts=1, max_seconds=0.1)
        pid = started("c")
        for _ in range(3):
            crash_and_wait(pid)
            pid = started("c")
            time.sleep(0.15)  # noqa: SLEEP001 sleep is the behaviour (let the restart leave the window)
        assert otpy.is_alive(sup)

    def test_a_one_for_all_restart_of_several_children_counts_once(self, runtime, trap, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("a", me), spec("b", me), spec("c", me)], strategy="one_for_all", max_restarts=1
        )
        started("a"), started("c")
        crash_and_wait(started("b"))
        started("a"), started("c")
        b = started("b")
        assert otpy.is_alive(sup)
        assert all(pid is not None for _, pid, _ in children_of(sup))
        crash(b)
        assert assert_receive(exit_from(sup), WAIT).reason == "shutdown"

    def test_a_rest_for_one_restart_of_several_children_counts_once(self, runtime, trap, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("a", me), spec("b", me), spec("c", me)], strategy="rest_for_one", max_restarts=1
        )
        started("b"), started("c")
        crash_and_wait(started("a"))
        a = started("a")
        started("b"), started("c")
        assert otpy.is_alive(sup)
        crash(a)
        assert assert_receive(exit_from(sup), WAIT).reason == "shutdown"

    def test_the_failure_climbs_to_the_parent_which_restarts_the_child_supervisor(
        self, runtime, caplog
    ):
        me = otpy.self()
        inner = otpy.ChildSpec(
            id="inner",
            start=(otpy.Supervisor.start_link, ([spec("w", me)],), {"max_restarts": 0}),
            type="supervisor",
        )
        root = otpy.Supervisor.start_link([spec("sibling", me), inner])
        sibling = started("sibling")
        old_inner = pid_of(root, "inner")
        ref = otpy.monitor(old_inner)
        crash(started("w"))
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        new_w = started("w")
        new_inner = pid_of(root, "inner")
        assert new_inner not in (None, old_inner)
        assert pid_of(new_inner, "w") == new_w
        assert pid_of(root, "sibling") == sibling

    def test_the_failure_climbs_as_far_as_no_supervisor_can_absorb_it(self, runtime, caplog):
        me = otpy.self()

        def sup_spec(child_id, child, max_restarts):
            return otpy.ChildSpec(
                id=child_id,
                start=(otpy.Supervisor.start_link, ([child],), {"max_restarts": max_restarts}),
                type="supervisor",
            )

        middle = sup_spec("middle", sup_spec("inner", spec("w", me), 0), 0)
        root = otpy.Supervisor.start_link([middle])
        old_middle = pid_of(root, "middle")
        old_inner = pid_of(old_middle, "inner")
        ref = otpy.monitor(old_middle)
        crash(started("w"))
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        started("w")
        new_middle = pid_of(root, "middle")
        assert new_middle != old_middle
        assert pid_of(new_middle, "inner") != old_inner
        assert not otpy.is_alive(old_inner)


# --- stop order and shutdown -------------------------------------------------------------------


class TestStop:
    def test_children_stop_in_reverse_start_order(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec(tag, me, trap=True) for tag in ("a", "b", "c", "d")])
        pids = [started(tag) for tag in "abcd"]
        otpy.Supervisor.stop(sup)
        stops = [assert_receive(event("terminate"), WAIT)[1:] for _ in range(4)]
        assert stops == [
            ("d", pids[3], "shutdown"),
            ("c", pids[2], "shutdown"),
            ("b", pids[1], "shutdown"),
            ("a", pids[0], "shutdown"),
        ]
        assert not otpy.is_alive(sup)
        assert not any(otpy.is_alive(pid) for pid in pids)

    def test_stop_returns_after_the_supervisor_and_its_children_are_gone(self, runtime):
        otpy.self()
        baseline = set(otpy.processes())
        sup = otpy.Supervisor.start_link([Plain.child_spec(id=i) for i in range(5)])
        otpy.Supervisor.stop(sup)
        assert set(otpy.processes()) == baseline

    def test_stop_by_name_with_a_reason_is_seen_by_monitors(self, runtime):
        sup = otpy.Supervisor.start([Plain.child_spec()], name="root")
        ref = otpy.monitor(sup)
        otpy.Supervisor.stop("root", reason="shutdown")
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        assert otpy.whereis("root") is None

    def test_a_supervisor_shut_down_by_its_parent_stops_its_children_in_reverse_order(
        self, runtime
    ):
        me = otpy.self()
        inner = otpy.ChildSpec(
            id="inner",
            start=(otpy.Supervisor.start_link, ([spec(t, me, trap=True) for t in "abc"],), {}),
            type="supervisor",
        )
        root = otpy.Supervisor.start_link(
            [spec("first", me, trap=True), inner, spec("last", me, trap=True)]
        )
        otpy.Supervisor.stop(root)
        stops = [assert_receive(event("terminate"), WAIT)[1] for _ in range(5)]
        assert stops == ["last", "c", "b", "a", "first"]

    def test_runtime_shutdown_stops_a_supervision_tree_in_reverse_order(self, runtime):
        journal = []
        inner = otpy.ChildSpec(
            id="inner",
            start=(
                otpy.Supervisor.start_link,
                ([Worker.child_spec(None, t, id=t, trap=True, journal=journal) for t in "ab"],),
                {},
            ),
            type="supervisor",
        )
        otpy.Supervisor.start_link(
            [
                Worker.child_spec(None, "first", id="first", trap=True, journal=journal),
                inner,
                Worker.child_spec(None, "last", id="last", trap=True, journal=journal),
            ]
        )
        runtime.shutdown()
        assert journal == [
            ("last", "shutdown"),
            ("b", "shutdown"),
            ("a", "shutdown"),
            ("first", "shutdown"),
        ]

    def test_a_child_that_ignores_shutdown_is_killed_after_its_shutdown_time(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("stubborn", me, trap=True, terminate="block", shutdown=0.2)]
        )
        ref = otpy.monitor(started("stubborn"))
        begin = time.monotonic()
        otpy.Supervisor.stop(sup)
        elapsed = time.monotonic() - begin
        assert assert_receive(event("terminate", "stubborn"), WAIT)[3] == "shutdown"
        assert assert_receive(down_of(ref), WAIT).reason == "killed"
        assert 0.2 <= elapsed < 2.0

    def test_brutal_kill_kills_at_once_and_terminate_never_runs(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("brutal", me, trap=True, terminate="block", shutdown=otpy.BRUTAL_KILL)]
        )
        ref = otpy.monitor(started("brutal"))
        begin = time.monotonic()
        otpy.Supervisor.stop(sup)
        assert time.monotonic() - begin < 1.0
        assert assert_receive(down_of(ref), WAIT).reason == "killed"
        refute_receive(event("terminate"), timeout=0)

    def test_shutdown_none_waits_as_long_as_terminate_takes(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("patient", me, trap=True, terminate=0.3, shutdown=None)]
        )
        ref = otpy.monitor(started("patient"))
        begin = time.monotonic()
        otpy.Supervisor.stop(sup)
        assert time.monotonic() - begin >= 0.3
        assert assert_receive(event("terminated", "patient"), WAIT)[3] == "shutdown"
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"

    def test_a_child_that_stops_within_its_shutdown_time_is_not_killed(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("polite", me, trap=True, terminate=0.1, shutdown=2.0)]
        )
        ref = otpy.monitor(started("polite"))
        otpy.Supervisor.stop(sup)
        assert assert_receive(event("terminated", "polite"), WAIT)[3] == "shutdown"
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"

    def test_terminate_child_honours_the_shutdown_value_too(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("stubborn", me, trap=True, terminate="block", shutdown=0.1)]
        )
        ref = otpy.monitor(started("stubborn"))
        otpy.Supervisor.terminate_child(sup, "stubborn")
        assert assert_receive(down_of(ref), WAIT).reason == "killed"
        assert children_of(sup) == [("stubborn", None, "worker")]


# --- managing children -------------------------------------------------------------------------


class TestStartChild:
    def test_start_child_adds_the_child_at_the_end_and_returns_its_pid(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        pid = otpy.Supervisor.start_child(sup, spec("b", me))
        assert pid == started("b")
        assert children_of(sup)[-1] == ("b", pid, "worker")
        assert pid in otpy.process_info(sup).links

    def test_a_started_child_is_supervised_like_the_others(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([])
        pid = otpy.Supervisor.start_child(sup, spec("b", me))
        crash_and_wait(pid)
        started("b")
        assert pid_of(sup, "b") not in (None, pid)

    def test_start_child_takes_a_class(self, runtime):
        sup = otpy.Supervisor.start_link([])
        pid = otpy.Supervisor.start_child(sup, Plain)
        assert children_of(sup) == [(Plain, pid, "worker")]

    def test_a_duplicate_id_raises_already_started_error_with_the_running_pid(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        running = started("a")
        with pytest.raises(otpy.AlreadyStartedError) as info:
            otpy.Supervisor.start_child(sup, spec("a", me))
        assert info.value.pid == running
        refute_receive(event("started"), timeout=0)
        assert children_of(sup) == [("a", running, "worker")]

    def test_a_duplicate_id_of_a_stopped_child_raises_already_started_error(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        otpy.Supervisor.terminate_child(sup, "a")
        with pytest.raises(otpy.AlreadyStartedError):
            otpy.Supervisor.start_child(sup, spec("a", me))

    def test_a_failing_start_raises_start_error_and_the_spec_is_not_added(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        error = ConnectionError("refused")
        with pytest.raises(otpy.StartError) as info:
            otpy.Supervisor.start_child(sup, spec("b", me, on_init=fail_with(error)))
        assert info.value.child_id == "b"
        assert info.value.reason is error
        assert ids_of(sup) == ["a"]
        assert otpy.is_alive(sup)
        # the id is free: a working spec with it starts
        assert otpy.Supervisor.start_child(sup, spec("b", me)) is not None
        assert ids_of(sup) == ["a", "b"]

    def test_a_temporary_child_that_exits_is_removed(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([])
        pid = otpy.Supervisor.start_child(sup, spec("tmp", me, restart="temporary"))
        end_child(pid, "normal")
        wait_until(lambda: ids_of(sup) == [])


class TestTerminateChild:
    def test_the_child_stops_with_shutdown_and_its_spec_stays_with_pid_none(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me, trap=True), spec("b", me)])
        a = started("a")
        ref = otpy.monitor(a)
        assert otpy.Supervisor.terminate_child(sup, "a") is None
        assert assert_receive(event("terminate", "a"), WAIT)[3] == "shutdown"
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        assert children_of(sup)[0] == ("a", None, "worker")
        refute_receive(event("started", "a"), timeout=0)

    def test_a_terminated_permanent_child_is_not_restarted(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        started("a")
        otpy.Supervisor.terminate_child(sup, "a")
        assert otpy.Supervisor.count_children(sup) == otpy.ChildCount(1, 0, 0, 1)
        refute_receive(event("started"), timeout=0)

    def test_terminating_a_temporary_child_removes_its_spec(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me), spec("tmp", me, restart="temporary")])
        otpy.Supervisor.terminate_child(sup, "tmp")
        assert ids_of(sup) == ["a"]
        with pytest.raises(otpy.NotFoundError):
            otpy.Supervisor.restart_child(sup, "tmp")

    def test_terminating_a_transient_child_keeps_its_spec(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("t", me, restart="transient")])
        otpy.Supervisor.terminate_child(sup, "t")
        assert children_of(sup) == [("t", None, "worker")]

    def test_terminating_a_stopped_child_again_is_harmless(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        otpy.Supervisor.terminate_child(sup, "a")
        otpy.Supervisor.terminate_child(sup, "a")
        assert children_of(sup) == [("a", None, "worker")]

    def test_an_unknown_id_raises_not_found_error_and_the_supervisor_lives_on(self, runtime):
        sup = otpy.Supervisor.start_link([Plain.child_spec()])
        with pytest.raises(otpy.NotFoundError) as info:
            otpy.Supervisor.terminate_child(sup, "ghost")
        assert "ghost" in str(info.value)
        assert otpy.is_alive(sup)
        assert len(otpy.Supervisor.which_children(sup)) == 1


class TestRestartChild:
    def test_a_terminated_child_restarts_with_a_new_pid(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me), spec("b", me)])
        old = started("a")
        otpy.Supervisor.terminate_child(sup, "a")
        new = otpy.Supervisor.restart_child(sup, "a")
        assert new == started("a")
        assert new != old
        assert ids_of(sup) == ["a", "b"]
        assert pid_of(sup, "a") == new

    def test_a_restarted_child_is_supervised_again(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        otpy.Supervisor.terminate_child(sup, "a")
        crash_and_wait(otpy.Supervisor.restart_child(sup, "a"))
        started("a"), started("a")
        assert otpy.is_alive(pid_of(sup, "a"))

    def test_restarting_a_running_child_raises_already_started_error(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        running = started("a")
        with pytest.raises(otpy.AlreadyStartedError) as info:
            otpy.Supervisor.restart_child(sup, "a")
        assert info.value.pid == running
        assert pid_of(sup, "a") == running

    def test_restarting_an_unknown_child_raises_not_found_error(self, runtime):
        sup = otpy.Supervisor.start_link([])
        with pytest.raises(otpy.NotFoundError):
            otpy.Supervisor.restart_child(sup, "ghost")

    def test_a_failing_restart_raises_start_error_and_keeps_the_spec(self, runtime, caplog):
        me = otpy.self()
        plan = [None, fail_with(OSError("gone"))]

        def on_init(server):
            step = plan.pop(0)
            return step(server) if step is not None else None

        sup = otpy.Supervisor.start_link([spec("a", me, on_init=on_init)])
        otpy.Supervisor.terminate_child(sup, "a")
        with pytest.raises(otpy.StartError) as info:
            otpy.Supervisor.restart_child(sup, "a")
        assert info.value.child_id == "a"
        assert isinstance(info.value.reason, OSError)
        assert children_of(sup) == [("a", None, "worker")]


class TestDeleteChild:
    def test_a_stopped_child_is_deleted(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me), spec("b", me)])
        otpy.Supervisor.terminate_child(sup, "a")
        assert otpy.Supervisor.delete_child(sup, "a") is None
        assert ids_of(sup) == ["b"]
        with pytest.raises(otpy.NotFoundError):
            otpy.Supervisor.restart_child(sup, "a")

    def test_after_delete_the_id_can_be_used_again(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        otpy.Supervisor.terminate_child(sup, "a")
        otpy.Supervisor.delete_child(sup, "a")
        pid = otpy.Supervisor.start_child(sup, spec("a", me))
        assert children_of(sup) == [("a", pid, "worker")]

    def test_deleting_a_running_child_raises_already_started_error(self, runtime):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me)])
        running = started("a")
        with pytest.raises(otpy.AlreadyStartedError) as info:
            otpy.Supervisor.delete_child(sup, "a")
        assert info.value.pid == running
        assert children_of(sup) == [("a", running, "worker")]

    def test_deleting_an_unknown_child_raises_not_found_error(self, runtime):
        sup = otpy.Supervisor.start_link([])
        with pytest.raises(otpy.NotFoundError) as info:
            otpy.Supervisor.delete_child(sup, "ghost")
        assert "ghost" in str(info.value)


class TestWhichChildren:
    def test_children_are_child_infos_with_id_pid_and_type_in_start_order(self, runtime):
        me = otpy.self()
        inner = otpy.ChildSpec(
            id="inner", start=(otpy.Supervisor.start_link, ([],), {}), type="supervisor"
        )
        sup = otpy.Supervisor.start_link([spec("a", me), inner, spec("b", me)])
        infos = otpy.Supervisor.which_children(sup)
        assert all(isinstance(info, otpy.ChildInfo) for info in infos)
        assert [(i.id, i.type) for i in infos] == [
            ("a", "worker"),
            ("inner", "supervisor"),
            ("b", "worker"),
        ]
        assert infos[0].pid == started("a")
        assert infos[2].pid == started("b")
        assert all(otpy.is_alive(i.pid) for i in infos)

    def test_a_child_info_is_built_from_id_pid_and_type(self, runtime):
        pid = otpy.self()
        info = otpy.ChildInfo("a", pid, "worker")
        assert (info.id, info.pid, info.type) == ("a", pid, "worker")

    def test_a_restart_keeps_the_child_in_its_place(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link([spec("a", me), spec("b", me), spec("c", me)])
        started("a")
        crash_and_wait(started("b"))
        started("b")
        assert ids_of(sup) == ["a", "b", "c"]

    def test_which_children_works_by_name(self, runtime):
        otpy.Supervisor.start_link([Plain.child_spec(id="p")], name="root")
        assert ids_of("root") == ["p"]


class TestCountChildren:
    def test_count_children_counts_specs_active_supervisors_and_workers(self, runtime):
        me = otpy.self()
        inner = otpy.ChildSpec(
            id="inner", start=(otpy.Supervisor.start_link, ([],), {}), type="supervisor"
        )
        sup = otpy.Supervisor.start_link([spec("a", me), spec("b", me), inner])
        count = otpy.Supervisor.count_children(sup)
        assert isinstance(count, otpy.ChildCount)
        assert count == otpy.ChildCount(specs=3, active=3, supervisors=1, workers=2)
        otpy.Supervisor.terminate_child(sup, "b")
        assert otpy.Supervisor.count_children(sup) == otpy.ChildCount(3, 2, 1, 2)
        otpy.Supervisor.terminate_child(sup, "inner")
        assert otpy.Supervisor.count_children(sup) == otpy.ChildCount(3, 1, 1, 2)
        otpy.Supervisor.delete_child(sup, "inner")
        assert otpy.Supervisor.count_children(sup) == otpy.ChildCount(2, 1, 0, 2)

    def test_fields_have_the_api_names(self, runtime):
        count = otpy.ChildCount(1, 2, 3, 4)
        assert (count.specs, count.active, count.supervisors, count.workers) == (1, 2, 3, 4)


# --- backoff -----------------------------------------------------------------------------------


def flaky_starts(count: int) -> list[float]:
    """The start times of the next ``count`` Flaky starts."""
    return [assert_receive(event("started", "flaky"), WAIT)[3] for _ in range(count)]


class TestBackoff:
    @pytest.mark.parametrize("where", ["supervisor", "child"])
    def test_a_crashing_child_restarts_after_growing_delays_without_tripping_intensity(
        self, runtime, caplog, where
    ):
        me = otpy.self()
        backoff = otpy.Backoff(min=0.05, max=0.2, jitter=0.0, reset_after=10.0)
        child = Flaky.child_spec(me, ["crash"] * 5)
        if where == "supervisor":
            sup = otpy.Supervisor.start_link([child], max_restarts=1, backoff=backoff)
        else:
            sup = otpy.Supervisor.start_link([child.replace(backoff=backoff)], max_restarts=1)
        times = flaky_starts(6)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        expected = [0.05, 0.1, 0.2, 0.2, 0.2]
        for gap, delay in zip(gaps, expected, strict=True):
            assert delay * 0.95 <= gap < delay + 0.15, (gaps, expected)
        assert otpy.is_alive(sup)
        assert otpy.is_alive(pid_of(sup, Flaky))

    def test_while_a_child_waits_which_children_shows_restarting(self, runtime, caplog):
        me = otpy.self()
        backoff = otpy.Backoff(min=0.3, max=0.3, jitter=0.0)
        sup = otpy.Supervisor.start_link(
            [Plain.child_spec(id="steady"), Flaky.child_spec(me, ["crash"], id="flaky")],
            backoff=backoff,
        )
        flaky_starts(1)
        wait_until(lambda: pid_of(sup, "flaky") == otpy.RESTARTING)
        assert otpy.RESTARTING == "restarting"
        assert otpy.Supervisor.count_children(sup).active == 1
        new = assert_receive(event("started", "flaky"), WAIT)[2]
        assert pid_of(sup, "flaky") == new
        assert otpy.Supervisor.count_children(sup).active == 2

    def test_the_delay_starts_over_after_the_child_stayed_up_reset_after(self, runtime, caplog):
        me = otpy.self()
        backoff = otpy.Backoff(min=0.04, max=1.0, jitter=0.0, reset_after=0.2)
        otpy.Supervisor.start_link([Flaky.child_spec(me, [])], backoff=backoff)
        pid = assert_receive(event("started", "flaky"), WAIT)[2]
        delays = []
        for stay_up in (0, 0, 0, 0.25):
            if stay_up:
                time.sleep(stay_up)  # noqa: SLEEP001 sleep is the behaviour (stay up past reset_after)
            crashed_at = time.monotonic()
            otpy.GenServer.cast(pid, "crash")
            _, _, pid, at = assert_receive(event("started", "flaky"), WAIT)
            delays.append(at - crashed_at)
        assert 0.04 * 0.95 <= delays[0] < 0.04 + 0.1, delays
        assert 0.08 * 0.95 <= delays[1] < 0.08 + 0.1, delays
        assert 0.16 * 0.95 <= delays[2] < 0.16 + 0.1, delays
        assert delays[3] < 0.2, f"the delay did not start over: {delays}"

    def test_jitter_spreads_the_delays_within_its_fraction(self, runtime):
        backoff = otpy.Backoff(min=1.0, max=1.0, jitter=0.5)
        rng = random.Random(7)
        delays = [backoff.delay(3, rng) for _ in range(200)]
        assert all(0.5 <= d <= 1.5 for d in delays)
        assert max(delays) - min(delays) > 0.5
        assert {otpy.Backoff(min=0.2, max=5.0, jitter=0.0).delay(n, rng) for n in range(3)} == {
            0.2,
            0.4,
            0.8,
        }

    def test_stopping_a_supervisor_while_a_child_waits_leaves_nothing_behind(self, runtime, caplog):
        me = otpy.self()
        baseline = set(otpy.processes())
        sup = otpy.Supervisor.start_link(
            [Flaky.child_spec(me, ["crash"])], backoff=otpy.Backoff(min=0.2, max=0.2, jitter=0.0)
        )
        flaky_starts(1)
        wait_until(lambda: pid_of(sup, Flaky) == otpy.RESTARTING)
        otpy.Supervisor.stop(sup)
        assert set(otpy.processes()) == baseline
        refute_receive(event("started", "flaky"), timeout=0.3)

    def test_terminate_child_cancels_a_pending_restart(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [Flaky.child_spec(me, ["crash"], id="f")],
            backoff=otpy.Backoff(min=0.2, max=0.2, jitter=0.0),
        )
        flaky_starts(1)
        wait_until(lambda: pid_of(sup, "f") == otpy.RESTARTING)
        otpy.Supervisor.terminate_child(sup, "f")
        assert children_of(sup) == [("f", None, "worker")]
        refute_receive(event("started", "flaky"), timeout=0.3)

    def test_a_one_for_all_group_waits_for_the_delay_and_restarts_together(self, runtime, caplog):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("a", me), spec("b", me)],
            strategy="one_for_all",
            backoff=otpy.Backoff(min=0.2, max=0.2, jitter=0.0),
        )
        a, b = started("a"), started("b")
        crash(a)
        wait_until(lambda: [pid for _, pid, _ in children_of(sup)] == [otpy.RESTARTING] * 2)
        assert not otpy.is_alive(b)
        new_a, new_b = started("a"), started("b")
        assert [pid for _, pid, _ in children_of(sup)] == [new_a, new_b]

    def test_restart_child_during_a_group_delay_leaves_no_child_waiting_forever(
        self, runtime, caplog
    ):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("a", me), spec("b", me)],
            strategy="one_for_all",
            backoff=otpy.Backoff(min=0.1, max=0.1, jitter=0.0),
        )
        a = started("a")
        started("b")
        crash(a)
        wait_until(lambda: pid_of(sup, "a") == otpy.RESTARTING)
        otpy.Supervisor.restart_child(sup, "a")
        wait_until(
            lambda: all(isinstance(pid, otpy.Pid) for _, pid, _ in children_of(sup)), timeout=1.0
        )

    def test_terminate_child_of_a_sibling_during_a_group_delay_still_restarts_the_crashed_child(
        self, runtime, caplog
    ):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [spec("a", me), spec("b", me)],
            strategy="one_for_all",
            backoff=otpy.Backoff(min=0.1, max=0.1, jitter=0.0),
        )
        a = started("a")
        started("b")
        crash(a)
        wait_until(lambda: pid_of(sup, "a") == otpy.RESTARTING)
        otpy.Supervisor.terminate_child(sup, "b")
        wait_until(lambda: isinstance(pid_of(sup, "a"), otpy.Pid), timeout=1.0)

    def test_supervise_takes_a_backoff_for_the_class_form(self, runtime):
        backoff = otpy.Backoff(min=0.01)
        assert otpy.supervise([], backoff=backoff).backoff == backoff

    def test_defaults_are_sane(self, runtime):
        backoff = otpy.Backoff()
        assert 0 < backoff.min <= backoff.max
        assert 0 <= backoff.jitter <= 1
        assert backoff.reset_after > 0

    @pytest.mark.parametrize(
        "options, bad",
        [
            ({"min": -0.1}, "-0.1"),
            ({"min": 1.0, "max": 0.5}, "0.5"),
            ({"jitter": 1.5}, "1.5"),
            ({"jitter": -0.1}, "-0.1"),
            ({"reset_after": -1}, "-1"),
            ({"min": float("nan")}, "nan"),
            ({"max": "10"}, "'10'"),
        ],
    )
    def test_invalid_values_raise_value_error_naming_them(self, runtime, options, bad):
        with pytest.raises(ValueError) as info:
            otpy.Backoff(**options)
        assert bad in str(info.value)


# --- stress ------------------------------------------------------------------------------------


def pids_of(sup) -> list:
    return [c.pid for c in otpy.Supervisor.which_children(sup)]


def wait_for_new_pids(sup, index, old_pid, deadline) -> list:
    """Ask the supervisor until child ``index`` runs with a pid other than ``old_pid``."""
    while True:
        pids = pids_of(sup)
        if pids[index] not in (old_pid, None):
            return pids
        if time.monotonic() > deadline:
            pytest.fail(f"child {index} was not restarted: {pids}")


class TestStress:
    @pytest.mark.parametrize("trapping", [False, True], ids=["plain", "trapping"])
    @pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
    def test_a_thousand_kill_restart_cycles_leave_exactly_the_children_and_no_orphan(
        self, runtime, caplog, strategy, trapping
    ):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        me = otpy.self()
        n = 3
        sup = otpy.Supervisor.start_link(
            [Worker.child_spec(None, i, id=i, trap=trapping) for i in range(n)],
            strategy=strategy,
            max_restarts=1_000_000,
            max_seconds=1.0,
        )
        pids = pids_of(sup)
        deadline = time.monotonic() + 20.0
        for cycle in range(1000):
            victim = cycle % n
            old = pids
            otpy.exit(old[victim], "kill")
            pids = wait_for_new_pids(sup, victim, old[victim], deadline)
            if strategy == "one_for_one":
                changed = {victim}
            elif strategy == "one_for_all":
                changed = set(range(n))
            else:
                changed = set(range(victim, n))
            assert {i for i in range(n) if pids[i] != old[i]} == changed, (cycle, old, pids)
            assert set(otpy.processes()) == {sup, me, *pids}, cycle
        assert all(otpy.is_alive(pid) for pid in pids)
        assert len(set(pids)) == n
        assert otpy.Supervisor.count_children(sup) == otpy.ChildCount(n, n, 0, n)

    @pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
    def test_kills_racing_with_restarts_from_two_processes_leave_exactly_the_children(
        self, runtime, caplog, strategy
    ):
        caplog.set_level(logging.CRITICAL + 1, logger="otpy")
        me = otpy.self()
        n = 4
        sup = otpy.Supervisor.start_link(
            [Worker.child_spec(None, i, id=i, trap=True) for i in range(n)],
            strategy=strategy,
            max_restarts=1_000_000,
            max_seconds=1.0,
        )

        def killer(seed):
            rng = random.Random(seed)
            for _ in range(500):
                pid = rng.choice(pids_of(sup))
                if isinstance(pid, otpy.Pid):
                    otpy.exit(pid, "kill")
            otpy.send(me, ("killer done", seed))

        for seed in (1, 2):
            otpy.spawn(killer, seed)
        for _ in range(2):
            assert_receive(lambda m: type(m) is tuple and m[0] == "killer done", timeout=20)
        wait_until(lambda: all(isinstance(p, otpy.Pid) for p in pids_of(sup)))
        pids = pids_of(sup)
        assert all(otpy.is_alive(pid) for pid in pids)
        assert otpy.is_alive(sup)
        wait_until(lambda: set(otpy.processes()) == {sup, me, *pids})
        assert otpy.Supervisor.count_children(sup) == otpy.ChildCount(n, n, 0, n)
