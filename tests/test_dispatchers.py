"""Acceptance tests for the stage dispatchers of API.md ("Stages (GenStage)").

DemandDispatcher (the default: each event to one consumer, the one with the
most pending demand), BroadcastDispatcher (every event to every consumer that
accepts it, at the pace of the slowest), PartitionDispatcher (each event to the
consumer of its partition; bad subscriptions cancelled with a clear error), and
the dispatcher seam itself.
"""

from __future__ import annotations

import logging

import pytest
from conftest import WAIT, down_of, exit_from, tagged
from stage_helpers import Numbers, no_message, settle

import otpy
import otpy.stage as stage
from otpy.testing import assert_receive, refute_receive

pytestmark = pytest.mark.timeout(60)


# --- helpers -----------------------------------------------------------------------------------


class Source(stage.Producer):
    """Emits only what it is cast; reports demand to an observer."""

    def init(self, observer=None):
        self.observer = observer

    def handle_demand(self, demand):
        if self.observer is not None:
            otpy.send(self.observer, ("demand", demand))
        return None

    def handle_cast(self, request):
        match request:
            case ("emit", events):
                return events
        raise AssertionError(f"unexpected cast {request!r}")

    def handle_call(self, request, caller):
        return "pong"


class Recorder(stage.Consumer):
    """Reports every batch and cancellation to an observer; may ask by hand."""

    def init(self, observer, manual=False, crash_on=None):
        self.observer = observer
        self.manual = manual
        self.crash_on = crash_on
        self.from_ = None

    def handle_subscribe(self, kind, opts, from_):
        self.from_ = from_
        return "manual" if self.manual else "automatic"

    def handle_events(self, events, from_):
        otpy.send(self.observer, ("events", otpy.self(), list(events)))
        if self.crash_on is not None and self.crash_on in events:
            raise RuntimeError(f"crashed on {self.crash_on!r}")

    def handle_cancel(self, reason, from_):
        otpy.send(self.observer, ("cancel", otpy.self(), reason))

    def handle_call(self, request, caller):
        match request:
            case ("ask", n):
                stage.ask(self.from_, n)
                return "asked"
            case "ping":
                return "pong"
        raise AssertionError(f"unexpected call {request!r}")


def events_of(consumer, n, timeout=WAIT):
    """The events ``consumer`` reports, until there are ``n`` of them."""
    got = []
    while len(got) < n:
        msg = assert_receive(lambda m: tagged("events")(m) and m[1] == consumer, timeout)
        got.extend(msg[2])
    return got


def cancel_of(consumer, timeout=WAIT):
    """The reason ``consumer``'s handle_cancel reports."""
    return assert_receive(lambda m: tagged("cancel")(m) and m[1] == consumer, timeout)[2]


def no_events_for(consumer):
    return no_message(lambda m: tagged("events")(m) and m[1] == consumer)


# --- DemandDispatcher --------------------------------------------------------------------------


class TestDemandDispatcher:
    def test_it_is_the_default_and_each_event_goes_to_exactly_one_consumer(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(600)
        consumers = [
            Recorder.start_link(me, subscribe_to=[(numbers, {"max_demand": 10})]) for _ in range(3)
        ]
        got = []
        while len(got) < 600:
            msg = assert_receive(tagged("events"), WAIT)
            assert msg[1] in consumers
            got.extend(msg[2])
        assert sorted(got) == list(range(600))
        settle(*consumers, numbers)
        refute_receive(tagged("events"), timeout=0)

    def test_explicit_demand_dispatcher_behaves_like_the_default(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(5, dispatcher=stage.DemandDispatcher())
        consumer = Recorder.start_link(me, subscribe_to=[numbers])
        assert events_of(consumer, 5) == [0, 1, 2, 3, 4]

    def test_events_go_to_the_consumer_with_the_most_pending_demand(self, runtime):
        me = otpy.self()
        source = Source.start_link(me)
        small = Recorder.start_link(me, manual=True, subscribe_to=[source])
        large = Recorder.start_link(me, manual=True, subscribe_to=[source])
        otpy.GenServer.call(small, ("ask", 3))
        otpy.GenServer.call(large, ("ask", 10))
        assert sorted(assert_receive(tagged("demand"), WAIT)[1] for _ in range(2)) == [3, 10]
        otpy.GenServer.cast(source, ("emit", [1, 2, 3, 4, 5]))
        assert events_of(large, 5) == [1, 2, 3, 4, 5]  # pending: large 10, small 3
        otpy.GenServer.cast(source, ("emit", [6, 7, 8, 9]))
        assert events_of(large, 4) == [6, 7, 8, 9]  # pending: large 5, small 3
        otpy.GenServer.cast(source, ("emit", [10, 11]))
        assert events_of(small, 2) == [10, 11]  # pending: large 1, small 3
        settle(source, small, large)
        refute_receive(tagged("events"), timeout=0)

    def test_a_batch_larger_than_one_consumers_demand_is_split_among_consumers(self, runtime):
        me = otpy.self()
        source = Source.start_link(me)
        first = Recorder.start_link(me, manual=True, subscribe_to=[source])
        second = Recorder.start_link(me, manual=True, subscribe_to=[source])
        otpy.GenServer.call(first, ("ask", 4))
        otpy.GenServer.call(second, ("ask", 2))
        for _ in range(2):
            assert_receive(tagged("demand"), WAIT)
        otpy.GenServer.cast(source, ("emit", list(range(8))))
        assert events_of(first, 4) == [0, 1, 2, 3]
        assert events_of(second, 2) == [4, 5]
        otpy.GenServer.call(second, ("ask", 5))
        assert events_of(second, 2) == [6, 7]  # the rest waited in the producer's buffer

    def test_the_producer_is_asked_for_each_consumers_demand(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(30, me)
        first = Recorder.start_link(me, subscribe_to=[(numbers, {"max_demand": 10})])
        second = Recorder.start_link(me, subscribe_to=[(numbers, {"max_demand": 20})])
        assert [assert_receive(tagged("demand"), WAIT)[1] for _ in range(2)] == [10, 20]
        assert sorted(events_of(first, 10) + events_of(second, 20)) == list(range(30))

    def test_a_crashed_consumer_gets_no_more_events_and_the_others_get_them_all(self, runtime):
        me = otpy.self()
        source = Source.start_link(me)
        crashing = Recorder.start(me, crash_on="boom", subscribe_to=[(source, {"max_demand": 50})])
        ref = otpy.monitor(crashing)
        assert_receive(tagged("demand"), WAIT)
        otpy.GenServer.cast(source, ("emit", ["boom"]))
        assert_receive(down_of(ref), WAIT)
        survivor = Recorder.start_link(me, subscribe_to=[(source, {"max_demand": 5})])
        assert_receive(tagged("demand"), WAIT)
        otpy.GenServer.cast(source, ("emit", [1, 2, 3]))
        assert events_of(survivor, 3) == [1, 2, 3]


# --- BroadcastDispatcher -----------------------------------------------------------------------


class TestBroadcastDispatcher:
    def test_every_consumer_gets_every_event_in_order(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(
            100, dispatcher=stage.BroadcastDispatcher(), demand="accumulate"
        )
        consumers = [
            Recorder.start_link(me, subscribe_to=[(numbers, {"max_demand": m})])
            for m in (7, 30, 1000)
        ]
        settle(*consumers)
        stage.demand(numbers, "forward")
        for consumer in consumers:
            assert events_of(consumer, 100) == list(range(100))
        settle(numbers, *consumers)
        refute_receive(tagged("events"), timeout=0)

    def test_the_producer_moves_at_the_pace_of_the_slowest_consumer(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(
            None, me, dispatcher=stage.BroadcastDispatcher(), demand="accumulate"
        )
        slow = Recorder.start_link(me, manual=True, subscribe_to=[numbers])
        fast = Recorder.start_link(
            me, subscribe_to=[(numbers, {"max_demand": 10, "min_demand": 5})]
        )
        settle(slow, fast)
        stage.demand(numbers, "forward")
        settle(numbers)
        refute_receive(tagged("demand"), timeout=0)  # the slow one asked for nothing
        otpy.GenServer.call(slow, ("ask", 3))
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 3)
        assert events_of(slow, 3) == [0, 1, 2]
        assert events_of(fast, 3) == [0, 1, 2]  # it asked for 10 but gets 3
        settle(fast, numbers)
        assert no_events_for(fast)
        otpy.GenServer.call(slow, ("ask", 4))
        assert events_of(slow, 4) == [3, 4, 5, 6]
        assert events_of(fast, 4) == [3, 4, 5, 6]
        settle(slow, fast, numbers)
        refute_receive(tagged("events"), timeout=0)
        assert sum(otpy.GenServer.call(numbers, "demands")) == 7

    def test_a_selector_gives_a_consumer_only_the_events_it_accepts(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(
            40, dispatcher=stage.BroadcastDispatcher(), demand="accumulate"
        )
        evens = Recorder.start_link(
            me,
            subscribe_to=[(numbers, {"max_demand": 6, "selector": lambda e: e % 2 == 0})],
        )
        odds = Recorder.start_link(me)
        stage.sync_subscribe(odds, to=numbers, max_demand=6, selector=lambda e: e % 2 == 1)
        every = Recorder.start_link(me, subscribe_to=[(numbers, {"max_demand": 6})])
        stage.demand(numbers, "forward")
        assert events_of(evens, 20) == list(range(0, 40, 2))
        assert events_of(odds, 20) == list(range(1, 40, 2))
        assert events_of(every, 40) == list(range(40))

    def test_events_rejected_by_a_selector_do_not_use_up_its_demand(self, runtime):
        me = otpy.self()
        source = Source.start_link(me, dispatcher=stage.BroadcastDispatcher())
        picky = Recorder.start_link(
            me, manual=True, subscribe_to=[(source, {"selector": lambda e: e == "wanted"})]
        )
        other = Recorder.start_link(me, subscribe_to=[source])
        otpy.GenServer.call(picky, ("ask", 2))
        otpy.GenServer.cast(source, ("emit", ["no", "no"]))
        assert events_of(other, 2) == ["no", "no"]
        otpy.GenServer.cast(source, ("emit", ["wanted", "wanted"]))
        assert events_of(picky, 2) == ["wanted", "wanted"]

    def test_a_selector_that_is_not_callable_cancels_the_subscription_naming_it(self, runtime):
        me = otpy.self()
        source = Source.start_link(dispatcher=stage.BroadcastDispatcher())
        consumer = Recorder.start_link(me)
        stage.sync_subscribe(consumer, to=source, cancel="temporary", selector="evens")
        kind, reason = cancel_of(consumer)
        assert kind == "cancel"
        assert isinstance(reason, (ValueError, TypeError))
        assert "evens" in str(reason)

    def test_a_late_consumer_gets_only_the_events_made_after_it_subscribed(self, runtime):
        me = otpy.self()
        source = Source.start_link(dispatcher=stage.BroadcastDispatcher())
        early = Recorder.start_link(me, subscribe_to=[source])
        otpy.GenServer.cast(source, ("emit", ["before"]))
        assert events_of(early, 1) == ["before"]
        late = Recorder.start_link(me, subscribe_to=[source])
        otpy.GenServer.cast(source, ("emit", ["after"]))
        assert events_of(early, 1) == ["after"]
        assert events_of(late, 1) == ["after"]

    def test_a_crashed_consumer_is_forgotten_and_no_longer_holds_the_others_back(self, runtime):
        me = otpy.self()
        source = Source.start_link(me, dispatcher=stage.BroadcastDispatcher())
        crashing = Recorder.start(me, manual=True, crash_on="boom", subscribe_to=[source])
        ref = otpy.monitor(crashing)
        survivor = Recorder.start_link(me, subscribe_to=[source])
        otpy.GenServer.call(crashing, ("ask", 2))
        otpy.GenServer.cast(source, ("emit", ["x", "boom"]))
        assert events_of(survivor, 2) == ["x", "boom"]
        assert_receive(down_of(ref), WAIT)
        # The crashed one had no demand left: were it remembered, this would wait forever.
        otpy.GenServer.cast(source, ("emit", ["y"]))
        assert events_of(survivor, 1) == ["y"]

    def test_when_the_slowest_consumer_leaves_the_producer_gets_the_demand_it_held_back(
        self, runtime
    ):
        me = otpy.self()
        numbers = Numbers.start_link(10, me, dispatcher=stage.BroadcastDispatcher())
        slow = Recorder.start(me, manual=True, subscribe_to=[numbers])
        ref = otpy.monitor(slow)
        fast = Recorder.start_link(me, subscribe_to=[(numbers, {"max_demand": 10})])
        settle(slow, fast, numbers)
        refute_receive(tagged("demand"), timeout=0)
        otpy.exit(slow, "kill")
        assert_receive(down_of(ref), WAIT)
        assert events_of(fast, 10, timeout=1.0) == list(range(10))


# --- PartitionDispatcher -----------------------------------------------------------------------


def parity(event):
    return event % 2


class TestPartitionDispatcher:
    def test_each_event_goes_to_the_consumer_of_its_partition(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(
            50, dispatcher=stage.PartitionDispatcher(partitions=2, hash=parity)
        )
        even = Recorder.start_link(me, subscribe_to=[(numbers, {"partition": 0, "max_demand": 8})])
        odd = Recorder.start_link(me, subscribe_to=[(numbers, {"partition": 1, "max_demand": 8})])
        assert events_of(even, 25) == list(range(0, 50, 2))
        assert events_of(odd, 25) == list(range(1, 50, 2))
        settle(numbers, even, odd)
        refute_receive(tagged("events"), timeout=0)

    def test_partitions_may_be_named(self, runtime):
        me = otpy.self()
        dispatcher = stage.PartitionDispatcher(
            partitions=["even", "odd"], hash=lambda e: "odd" if e % 2 else "even"
        )
        numbers = Numbers.start_link(10, dispatcher=dispatcher)
        odd = Recorder.start_link(me, subscribe_to=[(numbers, {"partition": "odd"})])
        even = Recorder.start_link(me)
        stage.sync_subscribe(even, to=numbers, partition="even")
        assert events_of(odd, 5) == [1, 3, 5, 7, 9]
        assert events_of(even, 5) == [0, 2, 4, 6, 8]

    def test_the_default_hash_sends_each_event_to_one_partition_and_always_the_same(self, runtime):
        me = otpy.self()
        source = Source.start_link(dispatcher=stage.PartitionDispatcher(partitions=3))
        consumers = [
            Recorder.start_link(me, subscribe_to=[(source, {"partition": p})]) for p in range(3)
        ]
        words = [f"word-{i}" for i in range(60)]

        def spread():
            seen = {}
            otpy.GenServer.cast(source, ("emit", words))
            while sum(len(v) for v in seen.values()) < len(words):
                msg = assert_receive(tagged("events"), WAIT)
                seen.setdefault(msg[1], []).extend(msg[2])
            return seen

        first = spread()
        second = spread()
        assert first == second
        assert sorted(e for got in first.values() for e in got) == sorted(words)
        assert set(first) <= set(consumers)
        assert len(first) > 1

    def test_events_for_a_partition_without_a_consumer_wait_for_one(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(
            20, dispatcher=stage.PartitionDispatcher(partitions=2, hash=parity)
        )
        even = Recorder.start_link(me, subscribe_to=[(numbers, {"partition": 0})])
        assert events_of(even, 10) == list(range(0, 20, 2))
        odd = Recorder.start_link(me, subscribe_to=[(numbers, {"partition": 1})])
        assert events_of(odd, 10) == list(range(1, 20, 2))

    def test_a_consumer_gets_no_more_than_its_partitions_demand(self, runtime):
        me = otpy.self()
        source = Source.start_link(
            me, dispatcher=stage.PartitionDispatcher(partitions=2, hash=parity)
        )
        even = Recorder.start_link(me, manual=True, subscribe_to=[(source, {"partition": 0})])
        odd = Recorder.start_link(me, subscribe_to=[(source, {"partition": 1})])
        otpy.GenServer.call(even, ("ask", 2))
        otpy.GenServer.cast(source, ("emit", list(range(10))))
        assert events_of(odd, 5) == [1, 3, 5, 7, 9]
        assert events_of(even, 2) == [0, 2]
        settle(source, even)
        assert no_events_for(even)
        otpy.GenServer.call(even, ("ask", 10))
        assert events_of(even, 3) == [4, 6, 8]

    def test_a_hash_returning_none_drops_the_event(self, runtime):
        me = otpy.self()
        dispatcher = stage.PartitionDispatcher(
            partitions=1, hash=lambda e: None if e == "drop" else 0
        )
        source = Source.start_link(dispatcher=dispatcher)
        consumer = Recorder.start_link(me, subscribe_to=[(source, {"partition": 0})])
        otpy.GenServer.cast(source, ("emit", ["keep", "drop", "also"]))
        assert events_of(consumer, 2) == ["keep", "also"]
        settle(source, consumer)
        refute_receive(tagged("events"), timeout=0)

    def test_a_subscription_without_partition_is_cancelled_with_a_clear_error(self, runtime):
        me = otpy.self()
        source = Source.start_link(dispatcher=stage.PartitionDispatcher(partitions=2))
        consumer = Recorder.start_link(me)
        stage.sync_subscribe(consumer, to=source, cancel="temporary")
        kind, reason = cancel_of(consumer)
        assert kind == "cancel"
        assert isinstance(reason, ValueError)
        assert "partition" in str(reason)
        assert otpy.GenServer.call(consumer, "ping") == "pong"
        assert otpy.GenServer.call(source, "ping") == "pong"

    def test_a_permanent_consumer_without_partition_exits_with_the_error(self, runtime, trap):
        me = otpy.self()
        source = Source.start_link(dispatcher=stage.PartitionDispatcher(partitions=2))
        consumer = Recorder.start_link(me, subscribe_to=[source])  # linked: it may die at once
        reason = assert_receive(exit_from(consumer), WAIT).reason
        assert isinstance(reason, ValueError)
        assert "partition" in str(reason)
        assert otpy.is_alive(source)

    @pytest.mark.parametrize("partition", [2, -1, "zero", None])
    def test_a_subscription_to_an_unknown_partition_is_cancelled_naming_it(
        self, runtime, partition
    ):
        me = otpy.self()
        source = Source.start_link(dispatcher=stage.PartitionDispatcher(partitions=2))
        consumer = Recorder.start_link(
            me, subscribe_to=[(source, {"partition": partition, "cancel": "temporary"})]
        )
        kind, reason = cancel_of(consumer)
        assert kind == "cancel"
        assert isinstance(reason, ValueError)
        assert repr(partition) in str(reason)

    def test_a_partition_takes_one_consumer_only(self, runtime):
        me = otpy.self()
        source = Source.start_link(dispatcher=stage.PartitionDispatcher(partitions=2, hash=parity))
        first = Recorder.start_link(me, subscribe_to=[(source, {"partition": 0})])
        second = Recorder.start_link(
            me, subscribe_to=[(source, {"partition": 0, "cancel": "temporary"})]
        )
        kind, reason = cancel_of(second)
        assert kind == "cancel"
        assert isinstance(reason, ValueError)
        assert "0" in str(reason)
        otpy.GenServer.cast(source, ("emit", [2, 4]))
        assert events_of(first, 2) == [2, 4]

    def test_a_partition_freed_by_a_crashed_consumer_takes_a_new_one(self, runtime):
        me = otpy.self()
        source = Source.start_link(dispatcher=stage.PartitionDispatcher(partitions=2, hash=parity))
        crashing = Recorder.start(me, crash_on=0, subscribe_to=[(source, {"partition": 0})])
        ref = otpy.monitor(crashing)
        otpy.GenServer.cast(source, ("emit", [0]))
        assert_receive(down_of(ref), WAIT)
        replacement = Recorder.start_link(me, subscribe_to=[(source, {"partition": 0})])
        otpy.GenServer.cast(source, ("emit", [2, 3, 4]))
        assert events_of(replacement, 2) == [2, 4]

    @pytest.mark.parametrize(
        "kwargs, error, named",
        [
            ({"partitions": 0}, ValueError, "0"),
            ({"partitions": -3}, ValueError, "-3"),
            ({"partitions": "ab"}, TypeError, "'ab'"),
            ({"partitions": []}, (TypeError, ValueError), "[]"),
            ({"partitions": [1, 1]}, ValueError, "[1, 1]"),
            ({"partitions": 2, "hash": "modulo"}, TypeError, "modulo"),
        ],
    )
    def test_bad_partitions_or_hash_are_rejected_naming_the_value(
        self, runtime, kwargs, error, named
    ):
        with pytest.raises(error) as info:
            stage.PartitionDispatcher(**kwargs)
        assert named in str(info.value)

    def test_a_hash_returning_an_unknown_partition_crashes_the_producer_naming_it(self, runtime):
        source = Source.start(dispatcher=stage.PartitionDispatcher(partitions=2, hash=lambda e: 7))
        ref = otpy.monitor(source)
        # The hash is asked once there is demand to dispatch to.
        Recorder.start(otpy.self(), subscribe_to=[(source, {"partition": 0})])
        otpy.GenServer.cast(source, ("emit", ["x"]))
        reason = assert_receive(down_of(ref), WAIT).reason
        assert isinstance(reason, ValueError)
        assert "7" in str(reason)

    def test_events_without_demand_wait_in_the_producer_buffer_bounded_by_buffer_size(
        self, runtime, caplog
    ):
        me = otpy.self()
        source = Source.start_link(
            dispatcher=stage.PartitionDispatcher(partitions=2, hash=parity), buffer_size=4
        )
        with caplog.at_level(logging.WARNING):
            otpy.GenServer.cast(source, ("emit", list(range(10))))
            settle(source)
        assert [r for r in caplog.records if r.levelno == logging.WARNING]
        even = Recorder.start_link(me, subscribe_to=[(source, {"partition": 0})])
        odd = Recorder.start_link(me, subscribe_to=[(source, {"partition": 1})])
        assert events_of(even, 2) == [6, 8]
        assert events_of(odd, 2) == [7, 9]
        settle(source, even, odd)
        refute_receive(tagged("events"), timeout=0)


# --- the dispatcher seam -----------------------------------------------------------------------


class RoundRobin:
    """A user-defined dispatcher: one event at a time to each consumer with demand in turn."""

    options = frozenset()

    def __init__(self):
        self.demand = {}
        self.order = []
        self.turn = 0

    def subscribe(self, opts, sub):
        self.demand[sub] = 0
        self.order.append(sub)

    def cancel(self, sub):
        self.demand.pop(sub, None)
        self.order.remove(sub)

    def ask(self, demand, sub, out):
        self.demand[sub] += demand
        return demand

    def dispatch(self, events, out):
        events = list(events)
        while events:
            ready = [sub for sub in self.order if self.demand[sub] > 0]
            if not ready:
                break
            sub = ready[self.turn % len(ready)]
            self.turn += 1
            self.demand[sub] -= 1
            out.send(sub, [events.pop(0)])
        return events


class TestDispatcherSeam:
    def test_a_user_defined_dispatcher_is_used(self, runtime):
        me = otpy.self()
        source = Source.start_link(me, dispatcher=RoundRobin())
        first = Recorder.start_link(me, subscribe_to=[source])
        second = Recorder.start_link(me, subscribe_to=[source])
        for _ in range(2):
            assert_receive(tagged("demand"), WAIT)
        otpy.GenServer.cast(source, ("emit", [0, 1, 2, 3, 4, 5]))
        assert events_of(first, 3) == [0, 2, 4]
        assert events_of(second, 3) == [1, 3, 5]

    def test_one_dispatcher_instance_given_to_two_producers_is_not_shared(self, runtime):
        me = otpy.self()
        dispatcher = stage.PartitionDispatcher(partitions=2, hash=parity)
        one = Numbers.start_link(4, dispatcher=dispatcher)
        two = Numbers.start_link(4, dispatcher=dispatcher)
        first = Recorder.start_link(me, subscribe_to=[(one, {"partition": 0})])
        second = Recorder.start_link(me, subscribe_to=[(two, {"partition": 0})])
        assert events_of(first, 2) == [0, 2]
        assert events_of(second, 2) == [0, 2]

    def test_an_object_that_is_not_a_dispatcher_is_rejected_naming_it(self, runtime):
        with pytest.raises(TypeError, match="NotADispatcher"):
            Source.start_link(dispatcher=NotADispatcher())
        with pytest.raises(TypeError, match="'broadcast'"):
            Source.start_link(dispatcher="broadcast")

    def test_a_dispatcher_class_instead_of_an_instance_is_rejected_at_start_or_works(self, runtime):
        me = otpy.self()
        try:
            source = Source.start(dispatcher=stage.BroadcastDispatcher)
        except TypeError as exc:
            assert "BroadcastDispatcher" in str(exc)
            return
        consumer = Recorder.start_link(me, subscribe_to=[(source, {"cancel": "temporary"})])
        otpy.GenServer.cast(source, ("emit", ["x"]))
        assert events_of(consumer, 1, timeout=1.0) == ["x"]


class NotADispatcher:
    def __repr__(self):
        return "NotADispatcher()"
