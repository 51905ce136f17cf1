"""Acceptance tests for stage.ConsumerSupervisor (API.md, "Stages (GenStage)").

One child per event (the event appended to the child's start arguments),
temporary and transient children (permanent ones rejected), the number of
running children kept within max_demand (counted, not timed), restarts of
transient children and the restart intensity, which_children/count_children,
shutdown, supervision, and bad arguments.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from conftest import WAIT, down_of, tagged, wait_until
from stage_helpers import Numbers

import otpy
import otpy.stage as stage
from otpy.testing import assert_receive, refute_receive

pytestmark = pytest.mark.timeout(60)

ConsumerSupervisor = stage.ConsumerSupervisor


# --- helpers -----------------------------------------------------------------------------------


def task_spec(fn, *args, restart="temporary"):
    """A child spec whose child runs ``fn(*args, event)`` as a Task."""
    return otpy.ChildSpec(id="job", start=(otpy.Task.start_link, (fn, *args), {}), restart=restart)


def report(observer, tag, event):
    """A child: tell the observer it ran for ``event``."""
    otpy.send(observer, ("ran", tag, event, otpy.self()))


def blocked(observer, event):
    """A child that reports it started, then works until told "go"."""
    otpy.send(observer, ("started", event, otpy.self()))
    otpy.receive(match=lambda m: m == "go")


class Gauge:
    """Children running at once, counted under a lock; the events done."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.done = []


def measured(gauge, pause, event):
    """A child that counts itself as running for ``pause`` seconds."""
    with gauge.lock:
        gauge.running += 1
        gauge.max_running = max(gauge.max_running, gauge.running)
    time.sleep(pause)  # noqa: SLEEP001 sleep is the behaviour (a child at work)
    with gauge.lock:
        gauge.running -= 1
        gauge.done.append(event)


class Attempts:
    """How many times each event's child ran, counted under a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, event):
        with self.lock:
            self.counts[event] = self.counts.get(event, 0) + 1
            return self.counts[event]


def fails_first_time_if_even(attempts, observer, event):
    attempt = attempts.add(event)
    if event % 2 == 0 and attempt == 1:
        raise RuntimeError(f"first attempt at {event} failed")
    otpy.send(observer, ("ok", event, attempt))


def always_fails(attempts, event):
    attempts.add(event)
    raise RuntimeError(f"{event} always fails")


def started(n, timeout=WAIT):
    """The next ``n`` "started" reports: (event, pid) pairs."""
    return [assert_receive(tagged("started"), timeout)[1:] for _ in range(n)]


class Job(otpy.GenServer):
    """A GenServer child: reports its event from handle_continue, then stops normally."""

    def init(self, observer, event):
        self.observer = observer
        self.event = event
        return otpy.Continue("work")

    def handle_continue(self, arg):
        otpy.send(self.observer, ("job", self.event, otpy.self()))
        raise otpy.Stop("normal")


# --- starting ----------------------------------------------------------------------------------


class TestStartLink:
    def test_a_permanent_child_is_rejected_with_value_error(self, runtime):
        spec = task_spec(report, otpy.self(), "x", restart="permanent")
        with pytest.raises(ValueError, match="permanent"):
            ConsumerSupervisor.start_link([spec])

    def test_a_genserver_child_spec_with_its_default_permanent_restart_is_rejected(self, runtime):
        with pytest.raises(ValueError, match="permanent"):
            ConsumerSupervisor.start_link([Job.child_spec(otpy.self())])

    @pytest.mark.parametrize("restart", ["temporary", "transient"])
    def test_temporary_and_transient_children_are_accepted(self, runtime, restart):
        sup = ConsumerSupervisor.start_link([task_spec(report, otpy.self(), "x", restart=restart)])
        assert otpy.is_alive(sup)
        otpy.GenServer.stop(sup)

    @pytest.mark.parametrize("children", [[], "not a list"])
    def test_anything_but_exactly_one_child_spec_is_rejected(self, runtime, children):
        with pytest.raises((ValueError, TypeError)):
            ConsumerSupervisor.start_link(children)

    def test_two_child_specs_are_rejected(self, runtime):
        spec = task_spec(report, otpy.self(), "x")
        with pytest.raises(ValueError):
            ConsumerSupervisor.start_link([spec, spec])

    @pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one", "simple"])
    def test_a_strategy_other_than_one_for_one_is_rejected_naming_it(self, runtime, strategy):
        with pytest.raises(ValueError, match=strategy):
            ConsumerSupervisor.start_link([task_spec(report, otpy.self(), "x")], strategy=strategy)

    @pytest.mark.parametrize(
        "opts, named",
        [
            ({"max_demand": -5}, "-5"),
            ({"max_demand": 4, "min_demand": 4}, "4"),
            ({"cancel": "never"}, "never"),
            ({"partitions": 2}, "partitions"),
        ],
    )
    def test_bad_subscription_options_raise_at_start_link(self, runtime, opts, named):
        numbers = Numbers.start_link(0)
        with pytest.raises((ValueError, TypeError)) as info:
            ConsumerSupervisor.start_link(
                [task_spec(report, otpy.self(), "x")], subscribe_to=[(numbers, opts)]
            )
        assert named in str(info.value)

    @pytest.mark.parametrize(
        "kwargs, named", [({"max_restarts": -1}, "-1"), ({"max_seconds": 0}, "0")]
    )
    def test_a_bad_restart_intensity_is_rejected_naming_it(self, runtime, kwargs, named):
        with pytest.raises(ValueError) as info:
            ConsumerSupervisor.start_link([task_spec(report, otpy.self(), "x")], **kwargs)
        assert named in str(info.value)


# --- a child per event -------------------------------------------------------------------------


class TestChildPerEvent:
    def test_each_event_starts_one_child_with_the_event_as_its_last_argument(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(10)
        ConsumerSupervisor.start_link(
            [task_spec(report, me, "tag")], subscribe_to=[(numbers, {"max_demand": 4})]
        )
        runs = [assert_receive(tagged("ran"), WAIT) for _ in range(10)]
        assert sorted(run[2] for run in runs) == list(range(10))
        assert {run[1] for run in runs} == {"tag"}
        assert len({run[3] for run in runs}) == 10  # a process each

    def test_a_genserver_child_gets_the_event_appended_to_its_init_arguments(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(5)
        ConsumerSupervisor.start_link(
            [Job.child_spec(me, restart="temporary")], subscribe_to=[numbers]
        )
        assert sorted(assert_receive(tagged("job"), WAIT)[1] for _ in range(5)) == [0, 1, 2, 3, 4]

    def test_sync_subscribe_works_on_a_consumer_supervisor(self, runtime):
        me = otpy.self()
        sup = ConsumerSupervisor.start_link([task_spec(report, me, "late")], name="jobs")
        numbers = Numbers.start_link(3)
        stage.sync_subscribe("jobs", to=numbers, max_demand=2, min_demand=1)
        assert sorted(assert_receive(tagged("ran"), WAIT)[2] for _ in range(3)) == [0, 1, 2]
        assert otpy.whereis("jobs") == sup

    def test_running_children_never_exceed_max_demand_and_every_event_is_processed(self, runtime):
        gauge = Gauge()
        total = 300
        numbers = Numbers.start_link(total)
        ConsumerSupervisor.start_link(
            [task_spec(measured, gauge, 0.002)],
            subscribe_to=[(numbers, {"max_demand": 10, "min_demand": 3})],
        )
        wait_until(lambda: len(gauge.done) == total, timeout=20)
        assert sorted(gauge.done) == list(range(total))
        assert gauge.max_running <= 10
        assert gauge.max_running > 3  # it did run children side by side

    def test_each_producer_gets_its_own_max_demand_of_children(self, runtime):
        gauge = Gauge()
        first = Numbers.start_link(100)
        second = Numbers.start_link(100)
        ConsumerSupervisor.start_link(
            [task_spec(measured, gauge, 0.002)],
            subscribe_to=[(first, {"max_demand": 4}), (second, {"max_demand": 6})],
        )
        wait_until(lambda: len(gauge.done) == 200, timeout=20)
        assert sorted(gauge.done) == sorted(list(range(100)) * 2)
        assert gauge.max_running <= 4 + 6

    def test_it_asks_for_more_events_only_as_children_end(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(None, me)
        sup = ConsumerSupervisor.start_link(
            [task_spec(blocked, me)],
            subscribe_to=[(numbers, {"max_demand": 6, "min_demand": 2})],
        )
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 6)
        first = started(6)
        assert sorted(event for event, _ in first) == [0, 1, 2, 3, 4, 5]
        assert ConsumerSupervisor.count_children(sup).active == 6
        otpy.GenServer.call(numbers, "ping")
        refute_receive(tagged("demand"), timeout=0)
        refute_receive(tagged("started"), timeout=0)

        # Three end: 3 running, above min_demand, so no new demand yet.
        for _, pid in first[:3]:
            otpy.send(pid, "go")
        wait_until(lambda: ConsumerSupervisor.count_children(sup).active == 3)
        otpy.GenServer.call(numbers, "ping")
        refute_receive(tagged("demand"), timeout=0)
        refute_receive(tagged("started"), timeout=0)

        # The fourth brings it down to min_demand: it asks for the 4 that ended.
        otpy.send(first[3][1], "go")
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 4)
        assert sorted(event for event, _ in started(4)) == [6, 7, 8, 9]
        assert ConsumerSupervisor.count_children(sup).active == 6
        otpy.GenServer.stop(sup)

    def test_a_child_whose_start_function_returns_none_counts_as_done(self, runtime):
        me = otpy.self()

        def start(event):
            if event % 2:
                return None
            return otpy.Task.start_link(report, me, "even", event)

        numbers = Numbers.start_link(10)
        ConsumerSupervisor.start_link(
            [otpy.ChildSpec(id="job", start=(start, (), {}), restart="temporary")],
            subscribe_to=[(numbers, {"max_demand": 2, "min_demand": 0})],
        )
        assert sorted(assert_receive(tagged("ran"), WAIT)[2] for _ in range(5)) == [0, 2, 4, 6, 8]

    def test_a_child_that_fails_to_start_is_logged_and_counts_as_done(self, runtime, caplog):
        me = otpy.self()

        def start(event):
            if event == 3:
                raise ValueError("cannot start for 3")
            return otpy.Task.start_link(report, me, "ok", event)

        numbers = Numbers.start_link(8)
        with caplog.at_level(logging.ERROR):
            ConsumerSupervisor.start_link(
                [otpy.ChildSpec(id="job", start=(start, (), {}), restart="temporary")],
                subscribe_to=[(numbers, {"max_demand": 2, "min_demand": 0})],
            )
            assert sorted(assert_receive(tagged("ran"), WAIT)[2] for _ in range(7)) == [0, 1, 2, 4, 5, 6, 7]
        assert any("cannot start for 3" in r.getMessage() for r in caplog.records), caplog.text


# --- restarts ----------------------------------------------------------------------------------


class TestRestart:
    def test_a_temporary_child_that_crashes_is_not_restarted_and_counts_as_done(self, runtime):
        attempts = Attempts()
        numbers = Numbers.start_link(12)
        sup = ConsumerSupervisor.start_link(
            [task_spec(always_fails, attempts)],
            subscribe_to=[(numbers, {"max_demand": 2, "min_demand": 0})],
        )
        # max_demand 2: the later events come only because crashed children count as done.
        wait_until(lambda: len(attempts.counts) == 12)
        wait_until(lambda: ConsumerSupervisor.count_children(sup).active == 0)
        assert attempts.counts == dict.fromkeys(range(12), 1)

    def test_a_transient_child_is_restarted_after_an_abnormal_exit(self, runtime):
        me = otpy.self()
        attempts = Attempts()
        numbers = Numbers.start_link(10)
        ConsumerSupervisor.start_link(
            [task_spec(fails_first_time_if_even, attempts, me, restart="transient")],
            max_restarts=100,
            subscribe_to=[(numbers, {"max_demand": 4})],
        )
        done = dict(assert_receive(tagged("ok"), WAIT)[1:] for _ in range(10))
        assert done == {e: (2 if e % 2 == 0 else 1) for e in range(10)}

    def test_a_transient_child_that_exits_normally_is_not_restarted(self, runtime):
        me = otpy.self()
        attempts = Attempts()
        numbers = Numbers.start_link(6)
        sup = ConsumerSupervisor.start_link(
            [task_spec(fails_first_time_if_even, attempts, me, restart="transient")],
            max_restarts=100,
            subscribe_to=[(numbers, {"max_demand": 2, "min_demand": 0})],
        )
        for _ in range(6):
            assert_receive(tagged("ok"), WAIT)
        wait_until(lambda: ConsumerSupervisor.count_children(sup).active == 0)
        assert attempts.counts == {0: 2, 1: 1, 2: 2, 3: 1, 4: 2, 5: 1}

    def test_a_transient_childs_event_is_not_done_until_it_succeeds(self, runtime):
        me = otpy.self()
        attempts = Attempts()
        numbers = Numbers.start_link(3)
        ConsumerSupervisor.start_link(
            [task_spec(fails_first_time_if_even, attempts, me, restart="transient")],
            max_restarts=100,
            subscribe_to=[(numbers, {"max_demand": 1, "min_demand": 0})],
        )
        # max_demand 1: one event at a time; 0 fails once and is retried before 1 comes.
        assert [assert_receive(tagged("ok"), WAIT)[1:] for _ in range(3)] == [(0, 2), (1, 1), (2, 2)]

    def test_too_many_restarts_shut_the_supervisor_and_its_children_down(self, runtime, trap):
        attempts = Attempts()
        numbers = Numbers.start_link(1)
        sup = ConsumerSupervisor.start_link(
            [task_spec(always_fails, attempts, restart="transient")],
            max_restarts=2,
            max_seconds=30,
            subscribe_to=[numbers],
        )
        ref = otpy.monitor(sup)
        assert assert_receive(down_of(ref), WAIT).reason == "shutdown"
        assert attempts.counts == {0: 3}  # the first run and two restarts
        assert otpy.is_alive(numbers)


# --- inspection and shutdown -------------------------------------------------------------------


class TestChildren:
    def test_which_children_and_count_children_show_the_running_children(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(5)
        sup = ConsumerSupervisor.start_link(
            [task_spec(blocked, me)], subscribe_to=[(numbers, {"max_demand": 10})]
        )
        pids = {pid for _, pid in started(5)}
        children = ConsumerSupervisor.which_children(sup)
        assert {child.pid for child in children} == pids
        assert {child.type for child in children} == {"worker"}
        count = ConsumerSupervisor.count_children(sup)
        assert (count.active, count.workers, count.supervisors) == (5, 5, 0)
        for pid in pids:
            otpy.send(pid, "go")
        wait_until(lambda: ConsumerSupervisor.count_children(sup).active == 0)
        assert ConsumerSupervisor.which_children(sup) == []

    def test_count_children_counts_one_spec(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(3)
        sup = ConsumerSupervisor.start_link([task_spec(blocked, me)], subscribe_to=[numbers])
        started(3)
        assert ConsumerSupervisor.count_children(sup).specs == 1

    def test_stopping_the_supervisor_stops_its_children(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(4)
        sup = ConsumerSupervisor.start_link([task_spec(blocked, me)], subscribe_to=[numbers])
        refs = [otpy.monitor(pid) for _, pid in started(4)]
        otpy.GenServer.stop(sup)
        for ref in refs:
            assert assert_receive(down_of(ref), WAIT).reason in ("shutdown", "killed")
        assert otpy.is_alive(numbers)

    def test_a_permanent_subscription_takes_the_supervisor_and_its_children_down_with_the_producer(
        self, runtime, trap
    ):
        me = otpy.self()
        numbers = Numbers.start(3)
        sup = ConsumerSupervisor.start_link([task_spec(blocked, me)], subscribe_to=[numbers])
        sup_ref = otpy.monitor(sup)
        refs = [otpy.monitor(pid) for _, pid in started(3)]
        otpy.GenServer.stop(numbers, reason="shutdown")
        assert assert_receive(down_of(sup_ref), WAIT).reason == "shutdown"
        for ref in refs:
            assert_receive(down_of(ref), WAIT)

    def test_a_temporary_subscription_outlives_its_producer(self, runtime):
        me = otpy.self()
        numbers = Numbers.start(2)
        sup = ConsumerSupervisor.start_link(
            [task_spec(report, me, "x")], subscribe_to=[(numbers, {"cancel": "temporary"})]
        )
        for _ in range(2):
            assert_receive(tagged("ran"), WAIT)
        ref = otpy.monitor(numbers)
        otpy.GenServer.stop(numbers, reason="shutdown")
        assert_receive(down_of(ref), WAIT)
        wait_until(lambda: ConsumerSupervisor.count_children(sup).active == 0)
        again = Numbers.start_link(2)
        stage.sync_subscribe(sup, to=again)
        assert sorted(assert_receive(tagged("ran"), WAIT)[2] for _ in range(2)) == [0, 1]


class TestSupervision:
    def test_a_consumer_supervisor_runs_under_a_supervisor(self, runtime):
        me = otpy.self()
        Numbers.start_link(None, name="numbers")
        spec = otpy.ChildSpec(
            id="jobs",
            start=(
                ConsumerSupervisor.start_link,
                ([task_spec(blocked, me)],),
                {"subscribe_to": [("numbers", {"max_demand": 2, "min_demand": 1})]},
            ),
            type="supervisor",
            shutdown=None,
        )
        root = otpy.Supervisor.start_link([spec])
        first = otpy.Supervisor.which_children(root)[0].pid
        children = [pid for _, pid in started(2)]
        refs = [otpy.monitor(pid) for pid in children]
        otpy.exit(first, "kill")
        for ref in refs:
            assert_receive(down_of(ref), WAIT)  # its children went with it (they are linked)
        assert sorted(event for event, _ in started(2)) == [2, 3]  # the new one subscribed again
        assert otpy.Supervisor.which_children(root)[0].pid != first
        otpy.Supervisor.stop(root)

    def test_child_spec_describes_a_supervisor(self, runtime):
        spec = ConsumerSupervisor.child_spec([task_spec(report, otpy.self(), "x")])
        assert spec.type == "supervisor"
        assert spec.shutdown is None
