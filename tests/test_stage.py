"""Acceptance tests for the stages of API.md ("Stages (GenStage)"): producers,
producer-consumers and consumers.

The callbacks and what they may emit, subscriptions (subscribe_to=, sync and
async, manual demand), the demand protocol (max_demand / min_demand, counted
from what handle_demand and handle_events receive), the producer buffer, the
demand modes, cancellation and exits, supervision, bad options, and
back-pressure counted in events in flight (also over a million events).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import tracemalloc

import pytest
from conftest import WAIT, down_of, tagged, wait_until
from stage_helpers import Numbers, settle

import otpy
import otpy.stage as stage
from otpy.testing import assert_receive, refute_receive

pytestmark = pytest.mark.timeout(60)


# --- helpers -----------------------------------------------------------------------------------


class Source(stage.Producer):
    """Emits only what it is told to (by cast, info or call); reports to an observer."""

    def init(self, observer=None, on_cancel=None):
        self.observer = observer
        self.on_cancel = on_cancel
        self.demands = []

    def tell(self, *msg):
        if self.observer is not None:
            otpy.send(self.observer, msg)

    def handle_demand(self, demand):
        self.demands.append(demand)
        self.tell("demand", demand)
        return None

    def handle_subscribe(self, kind, opts, from_):
        self.tell("subscribed", kind, dict(opts), from_)
        return "automatic"

    def handle_cancel(self, reason, from_):
        self.tell("cancelled", reason, from_)
        return self.on_cancel

    def handle_cast(self, request):
        match request:
            case ("emit", events):
                return events
            case ("raise", exc):
                raise exc
            case "nothing":
                return None
        raise AssertionError(f"unexpected cast {request!r}")

    def handle_info(self, message):
        match message:
            case ("emit", events):
                return events
        return None

    def handle_call(self, request, caller):
        match request:
            case ("emit", events):
                return stage.Reply("emitted", events)
            case ("echo", x):
                return x
            case "demands":
                return list(self.demands)
            case "ping":
                return "pong"
        raise AssertionError(f"unexpected call {request!r}")


class Recorder(stage.Consumer):
    """Reports every batch, subscription and cancellation; may ask by hand."""

    def init(self, observer, manual=False, crash_on=None):
        self.observer = observer
        self.manual = manual
        self.crash_on = crash_on
        self.from_ = None
        self.batches = []

    def handle_subscribe(self, kind, opts, from_):
        self.from_ = from_
        otpy.send(self.observer, ("subscribed", otpy.self(), kind, dict(opts), from_))
        return "manual" if self.manual else "automatic"

    def handle_events(self, events, from_):
        if self.crash_on is not None and self.crash_on in events:
            raise RuntimeError(f"crashed on {self.crash_on!r}")
        self.batches.append(len(events))
        otpy.send(self.observer, ("events", otpy.self(), list(events), from_))

    def handle_cancel(self, reason, from_):
        otpy.send(self.observer, ("cancel", otpy.self(), reason, from_))

    def handle_call(self, request, caller):
        match request:
            case ("ask", n):
                stage.ask(self.from_, n)
                return "asked"
            case "from":
                return self.from_
            case "batches":
                return list(self.batches)
            case "ping":
                return "pong"
        raise AssertionError(f"unexpected call {request!r}")


class Double(stage.ProducerConsumer):
    def handle_events(self, events, from_):
        return [2 * e for e in events]

    def handle_call(self, request, caller):
        return "pong"


def events_of(consumer, n, timeout=WAIT):
    """The events ``consumer`` reports, until there are ``n`` of them."""
    got = []
    while len(got) < n:
        msg = assert_receive(lambda m: tagged("events")(m) and m[1] == consumer, timeout)
        got.extend(msg[2])
    return got


class Ledger:
    """Events produced and consumed, shared by a producer and a consumer under a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.produced = 0
        self.consumed = 0
        self.max_in_flight = 0
        self.memory = []


class Counted(stage.Producer):
    """Makes the demand (plus ``extra``, up to ``total``), counting what it made in the ledger."""

    def init(self, ledger, total, extra=0):
        self.ledger = ledger
        self.total = total
        self.extra = extra  # made beyond the demand each time: they wait in the buffer
        self.next = 0

    def handle_demand(self, demand):
        high = min(self.next + demand + self.extra, self.total)
        events = list(range(self.next, high))
        with self.ledger.lock:
            self.ledger.produced += len(events)
        self.next = high
        return events


class Increment(stage.ProducerConsumer):
    def handle_events(self, events, from_):
        return [e + 1 for e in events]


class Tally(stage.Consumer):
    """Records the events in flight (produced, not yet consumed) at every batch."""

    def init(self, ledger, observer, total, pause=0.0, sample_every=None):
        self.ledger = ledger
        self.observer = observer
        self.total = total
        self.pause = pause
        self.sample_every = sample_every
        self.next_sample = 0

    def handle_events(self, events, from_):
        ledger = self.ledger
        with ledger.lock:
            ledger.max_in_flight = max(ledger.max_in_flight, ledger.produced - ledger.consumed)
            ledger.consumed += len(events)
            consumed = ledger.consumed
        if self.sample_every is not None and consumed >= self.next_sample:
            ledger.memory.append(tracemalloc.get_traced_memory()[0])
            self.next_sample += self.sample_every
        if self.pause:
            time.sleep(self.pause)  # noqa: SLEEP001 sleep is the behaviour (a slow consumer)
        if consumed >= self.total:
            otpy.send(self.observer, ("done", consumed))


# --- callbacks and what they emit --------------------------------------------------------------


class TestProducer:
    def test_the_api_example_pipeline_doubles_the_numbers_in_order(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(20, dispatcher=stage.DemandDispatcher())
        double = Double.start_link(subscribe_to=[numbers])
        printer = Recorder.start_link(
            me, subscribe_to=[(double, {"max_demand": 10, "min_demand": 5})]
        )
        assert events_of(printer, 20) == [2 * n for n in range(20)]

    def test_handle_demand_events_reach_the_consumer(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(7)
        consumer = Recorder.start_link(me, subscribe_to=[numbers])
        assert events_of(consumer, 7) == list(range(7))

    def test_events_returned_by_handle_cast_are_emitted(self, runtime):
        me = otpy.self()
        source = Source.start_link()
        consumer = Recorder.start_link(me, subscribe_to=[source])
        otpy.GenServer.cast(source, ("emit", ["a", "b"]))
        otpy.GenServer.cast(source, "nothing")
        otpy.GenServer.cast(source, ("emit", ["c"]))
        assert events_of(consumer, 3) == ["a", "b", "c"]

    def test_events_returned_by_handle_info_are_emitted(self, runtime):
        me = otpy.self()
        source = Source.start_link()
        consumer = Recorder.start_link(me, subscribe_to=[source])
        otpy.send(source, ("emit", ["from info"]))
        assert events_of(consumer, 1, timeout=1.0) == ["from info"]

    def test_a_producer_consumer_emits_what_its_other_callbacks_return(self, runtime):
        class Relay(stage.ProducerConsumer):
            def handle_events(self, events, from_):
                return events

            def handle_cast(self, request):
                return [("cast", request)]

            def handle_call(self, request, caller):
                return stage.Reply("ok", [("call", request)])

        me = otpy.self()
        source = Source.start_link()
        relay = Relay.start_link(subscribe_to=[source])
        consumer = Recorder.start_link(me, subscribe_to=[relay])
        otpy.GenServer.cast(relay, "a")
        assert otpy.GenServer.call(relay, "b") == "ok"
        otpy.GenServer.cast(source, ("emit", ["c"]))
        assert events_of(consumer, 3) == [("cast", "a"), ("call", "b"), "c"]

    def test_the_return_value_of_handle_call_is_the_reply(self, runtime):
        source = Source.start_link()
        assert otpy.GenServer.call(source, ("echo", {"x": 1})) == {"x": 1}
        assert Source.call(source, ("echo", None)) is None

    def test_handle_call_returning_reply_replies_and_emits(self, runtime):
        me = otpy.self()
        source = Source.start_link()
        consumer = Recorder.start_link(me, subscribe_to=[source])
        assert otpy.GenServer.call(source, ("emit", [1, 2, 3])) == "emitted"
        assert events_of(consumer, 3) == [1, 2, 3]

    def test_reply_takes_any_iterable_of_events(self, runtime):
        reply = stage.Reply("value", (1, 2))
        assert reply.value == "value"
        assert reply.events == [1, 2]
        assert stage.Reply("only a value").events == []

    def test_events_returned_by_handle_cancel_are_emitted_to_the_other_consumers(self, runtime):
        me = otpy.self()
        source = Source.start(on_cancel=["goodbye"])
        stays = Recorder.start(me, subscribe_to=[source])
        leaves = Recorder.start(me, subscribe_to=[(source, {"max_demand": 1, "min_demand": 0})])
        ref = otpy.monitor(leaves)
        otpy.exit(leaves, "kill")
        assert_receive(down_of(ref), WAIT)
        assert events_of(stays, 1) == ["goodbye"]

    def test_a_consumer_callback_that_returns_events_crashes_the_consumer(self, runtime):
        class Emitting(stage.Consumer):
            def handle_cast(self, request):
                return ["not allowed"]

        consumer = Emitting.start()
        ref = otpy.monitor(consumer)
        otpy.GenServer.cast(consumer, "emit")
        reason = assert_receive(down_of(ref), WAIT).reason
        assert isinstance(reason, TypeError)
        assert "not allowed" in str(reason)

    def test_a_stage_is_a_genserver_that_stops_and_runs_terminate(self, runtime):
        me = otpy.self()

        class Stopping(stage.Producer):
            def handle_demand(self, demand):
                return None

            def terminate(self, reason):
                otpy.send(me, ("terminate", reason))

        producer = Stopping.start_link()
        otpy.GenServer.stop(producer, reason="normal")
        assert assert_receive(tagged("terminate"), WAIT) == ("terminate", "normal")
        assert not otpy.is_alive(producer)

    def test_stages_start_with_their_init_arguments_and_a_name(self, runtime):
        me = otpy.self()
        Numbers.start_link(3, name="numbers")
        consumer = Recorder.start_link(me, subscribe_to=["numbers"], name="recorder")
        assert otpy.whereis("recorder") == consumer
        assert events_of(consumer, 3) == [0, 1, 2]


# --- the demand protocol -----------------------------------------------------------------------


class TestDemandProtocol:
    def test_a_consumer_asks_for_max_demand_then_for_the_difference_each_time_it_reaches_min_demand(
        self, runtime
    ):
        me = otpy.self()
        numbers = Numbers.start_link(50)
        consumer = Recorder.start_link(
            me, subscribe_to=[(numbers, {"max_demand": 10, "min_demand": 5})]
        )
        assert events_of(consumer, 50) == list(range(50))
        settle(consumer, numbers)
        # 10 first; then 5 (= 10 - 5) after every batch of 5 handled, which brings the
        # pending demand down to min_demand. The last two asks find the producer exhausted.
        assert otpy.GenServer.call(numbers, "demands") == [10] + [5] * 10
        assert otpy.GenServer.call(consumer, "batches") == [5] * 10

    def test_a_consumer_asks_for_what_brings_pending_demand_back_to_max_demand(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(50)
        consumer = Recorder.start_link(
            me, subscribe_to=[(numbers, {"max_demand": 10, "min_demand": 4})]
        )
        assert events_of(consumer, 50) == list(range(50))
        settle(consumer, numbers)
        # GenStage's split_batches: batches of at most 6; when pending demand falls to 4
        # or below, ask for max_demand - pending. 10 arrive: 6 (pending 4: ask 6), 4
        # (pending 6); 6 arrive: 6 (pending 0: ask 10); and so on.
        assert otpy.GenServer.call(numbers, "demands") == [10, 6, 10, 6, 10, 6, 10]
        assert otpy.GenServer.call(consumer, "batches") == [6, 4, 6, 6, 4, 6, 6, 4, 6, 2]

    def test_the_defaults_are_max_demand_1000_and_min_demand_half_of_it(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(3000)
        consumer = Recorder.start_link(me, subscribe_to=[numbers])
        subscribed = assert_receive(tagged("subscribed"), WAIT)
        assert subscribed[3]["max_demand"] == 1000
        assert subscribed[3]["min_demand"] == 500
        assert subscribed[3]["cancel"] == "permanent"
        assert events_of(consumer, 3000) == list(range(3000))
        settle(consumer, numbers)
        demands = otpy.GenServer.call(numbers, "demands")
        assert demands[0] == 1000
        assert set(demands[1:]) == {500}
        assert otpy.GenServer.call(consumer, "batches") == [500] * 6

    def test_min_demand_defaults_to_half_of_a_given_max_demand(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(40)
        consumer = Recorder.start_link(me, subscribe_to=[(numbers, {"max_demand": 20})])
        assert assert_receive(tagged("subscribed"), WAIT)[3]["min_demand"] == 10
        events_of(consumer, 40)
        settle(consumer, numbers)
        assert otpy.GenServer.call(numbers, "demands")[:3] == [20, 10, 10]
        assert otpy.GenServer.call(consumer, "batches") == [10, 10, 10, 10]

    def test_min_demand_zero_handles_and_asks_in_batches_of_max_demand(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(30)
        consumer = Recorder.start_link(
            me, subscribe_to=[(numbers, {"max_demand": 10, "min_demand": 0})]
        )
        events_of(consumer, 30)
        settle(consumer, numbers)
        assert otpy.GenServer.call(numbers, "demands") == [10, 10, 10, 10]
        assert otpy.GenServer.call(consumer, "batches") == [10, 10, 10]

    def test_max_demand_one_moves_one_event_at_a_time(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(5)
        consumer = Recorder.start_link(
            me, subscribe_to=[(numbers, {"max_demand": 1, "min_demand": 0})]
        )
        assert events_of(consumer, 5) == [0, 1, 2, 3, 4]
        settle(consumer, numbers)
        assert set(otpy.GenServer.call(numbers, "demands")) == {1}
        assert otpy.GenServer.call(consumer, "batches") == [1] * 5

    def test_events_arriving_in_small_chunks_are_asked_for_again_once_pending_demand_reaches_min(
        self, runtime
    ):
        me = otpy.self()
        source = Source.start_link(me)
        consumer = Recorder.start_link(
            me, subscribe_to=[(source, {"max_demand": 10, "min_demand": 5})]
        )
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 10)
        otpy.GenServer.cast(source, ("emit", [1, 2, 3]))
        events_of(consumer, 3)
        settle(consumer, source)
        refute_receive(tagged("demand"), timeout=0)  # pending demand 7 > min_demand 5
        otpy.GenServer.cast(source, ("emit", [4, 5, 6]))
        events_of(consumer, 3)
        # pending 4 <= 5: asks for max_demand - 4 = 6, as GenStage does
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 6)

    def test_a_producer_consumer_handles_input_only_while_downstream_asks(self, runtime):
        # GenStage's rule: input waits in the producer-consumer until downstream asks;
        # then a whole batch (max_demand - min_demand) is handled, what it emits beyond
        # the demand waits in its buffer, and it asks upstream for what it handled.
        me = otpy.self()
        numbers = Numbers.start_link(None, me)
        double = Double.start_link(subscribe_to=[(numbers, {"max_demand": 10, "min_demand": 5})])
        consumer = Recorder.start_link(me, manual=True, subscribe_to=[double])
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 10)
        settle(consumer, double, numbers)
        refute_receive(tagged("demand"), timeout=0)  # the 10 wait in the producer-consumer
        refute_receive(tagged("events"), timeout=0)
        otpy.GenServer.call(consumer, ("ask", 3))
        assert events_of(consumer, 3) == [0, 2, 4]
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 5)  # one batch of 5 handled
        settle(consumer, double, numbers)
        refute_receive(tagged("events"), timeout=0)  # 6 and 8 wait in its buffer
        otpy.GenServer.call(consumer, ("ask", 3))
        assert events_of(consumer, 3) == [6, 8, 10]
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 5)
        settle(consumer, double, numbers)
        refute_receive(tagged("events"), timeout=0)
        assert sum(otpy.GenServer.call(numbers, "demands")) == 20

    def test_events_from_several_producers_come_with_their_own_from(self, runtime):
        me = otpy.self()
        first = Source.start_link()
        second = Source.start_link()
        consumer = Recorder.start_link(me, subscribe_to=[first, (second, {"max_demand": 5})])
        subscriptions = {assert_receive(tagged("subscribed"), WAIT)[4] for _ in range(2)}
        assert {from_[0] for from_ in subscriptions} == {first, second}
        otpy.GenServer.cast(first, ("emit", ["one"]))
        msg = assert_receive(tagged("events"), WAIT)
        assert msg[2] == ["one"] and msg[3][0] == first and msg[3] in subscriptions
        otpy.GenServer.cast(second, ("emit", ["two"]))
        msg = assert_receive(tagged("events"), WAIT)
        assert msg[2] == ["two"] and msg[3][0] == second and msg[3] in subscriptions
        assert msg[1] == consumer


# --- subscriptions -----------------------------------------------------------------------------


class TestSubscribe:
    def test_sync_subscribe_returns_the_subscription_ref_and_events_flow(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(4)
        consumer = Recorder.start_link(me)
        ref = stage.sync_subscribe(consumer, to=numbers, max_demand=2, min_demand=1)
        subscribed = assert_receive(tagged("subscribed"), WAIT)
        assert subscribed[4] == (numbers, ref)
        assert subscribed[3]["max_demand"] == 2
        assert subscribed[3]["min_demand"] == 1
        assert events_of(consumer, 4) == [0, 1, 2, 3]

    def test_sync_subscribe_accepts_a_registered_name(self, runtime):
        me = otpy.self()
        Numbers.start_link(2, name="numbers")
        consumer = Recorder.start_link(me)
        stage.sync_subscribe(consumer, to="numbers")
        assert events_of(consumer, 2) == [0, 1]

    def test_async_subscribe_returns_at_once_and_the_subscription_follows(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(3)
        consumer = Recorder.start_link(me)
        assert stage.async_subscribe(consumer, to=numbers, cancel="transient") is None
        subscribed = assert_receive(tagged("subscribed"), WAIT)
        assert subscribed[3]["cancel"] == "transient"
        assert events_of(consumer, 3) == [0, 1, 2]

    def test_both_sides_see_the_subscription_in_handle_subscribe_with_the_same_ref(self, runtime):
        me = otpy.self()
        source = Source.start_link(me)
        consumer = Recorder.start_link(me, subscribe_to=[(source, {"max_demand": 8})])
        consumer_side = assert_receive(lambda m: tagged("subscribed")(m) and m[1] == consumer, WAIT)
        producer_side = assert_receive(lambda m: tagged("subscribed")(m) and m[1] == "consumer", WAIT)
        assert consumer_side[2] == "producer"
        assert consumer_side[4][0] == source
        assert producer_side[3] == (consumer, consumer_side[4][1])

    def test_a_consumer_can_subscribe_to_several_producers_one_after_another(self, runtime):
        me = otpy.self()
        first = Numbers.start_link(2)
        second = Numbers.start_link(2)
        consumer = Recorder.start_link(me, subscribe_to=[first])
        assert events_of(consumer, 2) == [0, 1]
        stage.sync_subscribe(consumer, to=second)
        assert events_of(consumer, 2) == [0, 1]

    def test_subscribing_to_a_dead_producer_cancels_with_noproc(self, runtime):
        me = otpy.self()
        dead = Source.start()
        otpy.GenServer.stop(dead)
        consumer = Recorder.start_link(me)
        stage.sync_subscribe(consumer, to=dead, cancel="temporary")
        cancel = assert_receive(tagged("cancel"), WAIT)
        assert cancel[2] == ("down", "noproc")
        assert otpy.GenServer.call(consumer, "ping") == "pong"

    def test_a_permanent_subscription_to_a_dead_producer_stops_the_consumer(self, runtime):
        me = otpy.self()
        dead = Source.start()
        otpy.GenServer.stop(dead)
        consumer = Recorder.start(me, subscribe_to=[dead])
        ref = otpy.monitor(consumer)
        assert assert_receive(down_of(ref), WAIT).reason == "noproc"

    def test_a_temporary_subscription_to_an_unregistered_name_leaves_the_consumer_running(
        self, runtime
    ):
        me = otpy.self()
        consumer = Recorder.start(me)
        try:
            stage.sync_subscribe(consumer, to="nobody", cancel="temporary")
        except otpy.NoProcError:
            pass  # raising at the call is a fine translation of GenStage's answer
        assert otpy.is_alive(consumer)

    def test_a_producer_cannot_subscribe(self, runtime):
        source = Source.start_link()
        with pytest.raises(TypeError):
            Source.start_link(subscribe_to=[source])


class TestManualDemand:
    def test_a_manual_consumer_gets_exactly_what_it_asks_for(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(None, me)
        consumer = Recorder.start_link(me, manual=True, subscribe_to=[numbers])
        assert_receive(tagged("subscribed"), WAIT)
        settle(consumer, numbers)
        refute_receive(tagged("demand"), timeout=0)
        assert otpy.GenServer.call(consumer, ("ask", 7)) == "asked"
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 7)
        assert events_of(consumer, 7) == list(range(7))
        settle(consumer, numbers)
        refute_receive(tagged("demand"), timeout=0)  # handling events asks for nothing more
        otpy.GenServer.call(consumer, ("ask", 2))
        assert events_of(consumer, 2) == [7, 8]
        assert otpy.GenServer.call(numbers, "demands") == [7, 2]

    def test_manual_asks_accumulate_at_the_producer(self, runtime):
        me = otpy.self()
        source = Source.start_link(me)
        consumer = Recorder.start_link(me, manual=True, subscribe_to=[source])
        otpy.GenServer.call(consumer, ("ask", 2))
        otpy.GenServer.call(consumer, ("ask", 3))
        assert [assert_receive(tagged("demand"), WAIT)[1] for _ in range(2)] == [2, 3]
        otpy.GenServer.cast(source, ("emit", list(range(9))))
        assert events_of(consumer, 5) == [0, 1, 2, 3, 4]
        settle(source, consumer)
        refute_receive(tagged("events"), timeout=0)  # the other 4 wait in the producer's buffer
        otpy.GenServer.call(consumer, ("ask", 10))
        assert events_of(consumer, 4) == [5, 6, 7, 8]

    @pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
    def test_ask_rejects_a_demand_that_is_not_a_positive_int(self, runtime, bad):
        source = Source.start_link()
        with pytest.raises((ValueError, TypeError)) as info:
            stage.ask((source, None), bad)
        assert repr(bad) in str(info.value)


# --- the producer buffer -----------------------------------------------------------------------


class TestBuffer:
    def test_events_without_demand_wait_in_the_buffer_until_a_consumer_asks(self, runtime):
        me = otpy.self()
        source = Source.start_link()
        otpy.GenServer.cast(source, ("emit", ["a", "b", "c"]))
        consumer = Recorder.start_link(me, subscribe_to=[source])
        assert events_of(consumer, 3) == ["a", "b", "c"]

    def test_buffered_events_go_out_before_newer_ones(self, runtime):
        me = otpy.self()
        source = Source.start_link()
        consumer = Recorder.start_link(me, manual=True, subscribe_to=[source])
        otpy.GenServer.cast(source, ("emit", [1, 2, 3]))
        otpy.GenServer.call(consumer, ("ask", 1))
        assert events_of(consumer, 1) == [1]
        otpy.GenServer.cast(source, ("emit", [4, 5]))
        otpy.GenServer.call(consumer, ("ask", 10))
        assert events_of(consumer, 4) == [2, 3, 4, 5]

    def test_a_full_buffer_keeps_the_last_events_and_logs_a_warning(self, runtime, caplog):
        me = otpy.self()
        source = Source.start_link(buffer_size=3)
        with caplog.at_level(logging.WARNING):
            otpy.GenServer.cast(source, ("emit", [1, 2, 3, 4, 5]))
            otpy.GenServer.call(source, "ping")
        assert any(
            record.levelno == logging.WARNING
            and "buffer" in record.getMessage()
            and re.search(r"\b2\b", record.getMessage())
            for record in caplog.records
        ), caplog.text
        consumer = Recorder.start_link(me, subscribe_to=[source])
        assert events_of(consumer, 3) == [3, 4, 5]
        settle(source, consumer)
        refute_receive(tagged("events"), timeout=0)

    def test_buffer_keep_first_keeps_the_first_events(self, runtime, caplog):
        me = otpy.self()
        source = Source.start_link(buffer_size=3, buffer_keep="first")
        with caplog.at_level(logging.WARNING):
            otpy.GenServer.cast(source, ("emit", [1, 2]))
            otpy.GenServer.cast(source, ("emit", [3, 4, 5]))
            otpy.GenServer.call(source, "ping")
        assert any(record.levelno == logging.WARNING for record in caplog.records)
        consumer = Recorder.start_link(me, subscribe_to=[source])
        assert events_of(consumer, 3) == [1, 2, 3]
        settle(source, consumer)
        refute_receive(tagged("events"), timeout=0)

    def test_the_default_buffer_size_is_ten_thousand(self, runtime, caplog):
        me = otpy.self()
        source = Source.start_link()
        with caplog.at_level(logging.WARNING):
            otpy.GenServer.cast(source, ("emit", list(range(10_000))))
            otpy.GenServer.call(source, "ping")
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
            otpy.GenServer.cast(source, ("emit", [10_000]))
            otpy.GenServer.call(source, "ping")
        assert [r for r in caplog.records if r.levelno == logging.WARNING]
        consumer = Recorder.start_link(me, subscribe_to=[(source, {"max_demand": 10_000})])
        assert events_of(consumer, 10_000) == list(range(1, 10_001))

    def test_a_buffer_of_size_zero_drops_every_event_without_demand(self, runtime, caplog):
        me = otpy.self()
        source = Source.start_link(buffer_size=0)
        with caplog.at_level(logging.WARNING):
            otpy.GenServer.cast(source, ("emit", [1, 2]))
            otpy.GenServer.call(source, "ping")
        assert [r for r in caplog.records if r.levelno == logging.WARNING]
        consumer = Recorder.start_link(me, subscribe_to=[source])
        otpy.GenServer.cast(source, ("emit", [3]))
        assert events_of(consumer, 1) == [3]


class TestDemandMode:
    def test_accumulate_collects_demand_until_the_producer_is_set_to_forward(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(14, me, demand="accumulate")
        assert stage.demand(numbers) == "accumulate"
        consumer = Recorder.start_link(me, subscribe_to=[(numbers, {"max_demand": 10})])
        other = Recorder.start_link(me, subscribe_to=[(numbers, {"max_demand": 4})])
        settle(consumer, other, numbers)
        refute_receive(tagged("demand"), timeout=0)
        refute_receive(tagged("events"), timeout=0)
        assert stage.demand(numbers, "forward") == "forward"
        assert stage.demand(numbers) == "forward"
        total = 0
        while total < 14:  # the accumulated demand, in one call or several
            total += assert_receive(tagged("demand"), WAIT)[1]
        assert total == 14
        got = events_of(consumer, 10) + events_of(other, 4)
        assert sorted(got[:14]) == list(range(14))

    def test_switching_to_accumulate_stops_calling_handle_demand(self, runtime):
        me = otpy.self()
        source = Source.start_link(me)
        consumer = Recorder.start_link(
            me, subscribe_to=[(source, {"max_demand": 4, "min_demand": 2})]
        )
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 4)
        assert stage.demand(source, "accumulate") == "accumulate"
        otpy.GenServer.cast(source, ("emit", [1, 2, 3, 4]))
        events_of(consumer, 4)
        settle(consumer, source)
        refute_receive(tagged("demand"), timeout=0)
        stage.demand(source, "forward")
        assert assert_receive(tagged("demand"), WAIT) == ("demand", 4)

    def test_demand_forward_on_a_forward_producer_changes_nothing(self, runtime):
        me = otpy.self()
        numbers = Numbers.start_link(3, me)
        assert stage.demand(numbers, "forward") == "forward"
        consumer = Recorder.start_link(me, subscribe_to=[numbers])
        assert events_of(consumer, 3) == [0, 1, 2]

    def test_an_unknown_mode_raises_value_error_at_the_call_and_the_producer_lives_on(
        self, runtime
    ):
        source = Source.start()
        with pytest.raises(ValueError, match="bogus"):
            stage.demand(source, "bogus")
        assert otpy.is_alive(source)


# --- cancellation and exits --------------------------------------------------------------------


def stop_producer(producer, reason):
    """Make ``producer`` exit with ``reason`` (an exception: it raises it in a callback)."""
    if isinstance(reason, BaseException):
        otpy.GenServer.cast(producer, ("raise", reason))
    else:
        otpy.GenServer.stop(producer, reason=reason)


class TestCancel:
    @pytest.mark.parametrize(
        "reason",
        ["normal", "shutdown", ("shutdown", "done"), "boom", RuntimeError("producer crashed")],
        ids=["normal", "shutdown", "shutdown-tuple", "abnormal", "crash"],
    )
    def test_a_permanent_consumer_exits_with_the_producers_reason(self, runtime, reason):
        me = otpy.self()
        source = Source.start()
        consumer = Recorder.start(me, subscribe_to=[(source, {"cancel": "permanent"})])
        ref = otpy.monitor(consumer)
        stop_producer(source, reason)
        cancel = assert_receive(tagged("cancel"), WAIT)
        assert cancel[2][0] == "down"
        assert cancel[2][1] is reason or cancel[2][1] == reason
        down = assert_receive(down_of(ref), WAIT).reason
        assert down is reason or down == reason

    @pytest.mark.parametrize(
        "reason, exits",
        [
            ("normal", False),
            ("shutdown", False),
            (("shutdown", "done"), False),
            ("boom", True),
            (RuntimeError("producer crashed"), True),
        ],
        ids=["normal", "shutdown", "shutdown-tuple", "abnormal", "crash"],
    )
    def test_a_transient_consumer_exits_only_when_the_producer_exits_abnormally(
        self, runtime, reason, exits
    ):
        me = otpy.self()
        source = Source.start()
        consumer = Recorder.start(me, subscribe_to=[(source, {"cancel": "transient"})])
        ref = otpy.monitor(consumer)
        stop_producer(source, reason)
        assert assert_receive(tagged("cancel"), WAIT)[2] == ("down", reason)
        if exits:
            down = assert_receive(down_of(ref), WAIT).reason
            assert down is reason or down == reason
        else:
            assert otpy.GenServer.call(consumer, "ping") == "pong"
            refute_receive(down_of(ref), timeout=0)

    @pytest.mark.parametrize(
        "reason", ["normal", "boom", RuntimeError("producer crashed")], ids=str
    )
    def test_a_temporary_consumer_never_exits_with_its_producer(self, runtime, reason):
        me = otpy.self()
        source = Source.start()
        consumer = Recorder.start(me, subscribe_to=[(source, {"cancel": "temporary"})])
        ref = otpy.monitor(consumer)
        stop_producer(source, reason)
        assert assert_receive(tagged("cancel"), WAIT)[2] == ("down", reason)
        assert otpy.GenServer.call(consumer, "ping") == "pong"
        refute_receive(down_of(ref), timeout=0)

    def test_a_temporary_consumer_can_subscribe_again_after_its_producer_died(self, runtime):
        me = otpy.self()
        source = Source.start()
        consumer = Recorder.start_link(me, subscribe_to=[(source, {"cancel": "temporary"})])
        otpy.GenServer.stop(source, reason="shutdown")
        assert_receive(tagged("cancel"), WAIT)
        numbers = Numbers.start_link(2)
        stage.sync_subscribe(consumer, to=numbers)
        assert events_of(consumer, 2) == [0, 1]

    def test_a_crashed_consumer_is_forgotten_and_its_producer_keeps_running(self, runtime):
        me = otpy.self()
        source = Source.start_link(me)
        crashing = Recorder.start(me, crash_on="boom", subscribe_to=[(source, {"max_demand": 100})])
        ref = otpy.monitor(crashing)
        assert_receive(lambda m: tagged("subscribed")(m) and m[1] == "consumer", WAIT)
        otpy.GenServer.cast(source, ("emit", ["boom"]))
        reason = assert_receive(down_of(ref), WAIT).reason
        assert isinstance(reason, RuntimeError)
        cancelled = assert_receive(tagged("cancelled"), WAIT)
        assert cancelled[1][0] == "down"
        assert cancelled[1][1] is reason
        assert cancelled[2][0] == crashing
        assert otpy.is_alive(source)
        # Had the dispatcher kept the dead consumer (99 pending), these would go to it.
        survivor = Recorder.start_link(me, subscribe_to=[(source, {"max_demand": 10})])
        otpy.GenServer.cast(source, ("emit", [1, 2, 3]))
        assert events_of(survivor, 3) == [1, 2, 3]

    def test_stage_cancel_ends_the_subscription_on_both_sides(self, runtime):
        me = otpy.self()
        source = Source.start_link(me)
        consumer = Recorder.start_link(me, subscribe_to=[(source, {"cancel": "temporary"})])
        assert_receive(lambda m: tagged("subscribed")(m) and m[1] == consumer, WAIT)
        from_ = otpy.GenServer.call(consumer, "from")
        stage.cancel(from_, "enough")
        assert assert_receive(tagged("cancel"), WAIT)[2] == ("cancel", "enough")
        assert assert_receive(tagged("cancelled"), WAIT)[1] == ("cancel", "enough")
        assert otpy.GenServer.call(consumer, "ping") == "pong"
        otpy.GenServer.cast(source, ("emit", ["lost?"]))
        settle(source, consumer)
        refute_receive(tagged("events"), timeout=0)
        assert otpy.is_alive(source)

    @pytest.mark.parametrize(
        "mode, reason, exits",
        [
            ("permanent", "normal", True),
            ("permanent", "enough", True),
            ("transient", "normal", False),
            ("transient", "enough", True),
            ("temporary", "enough", False),
        ],
    )
    def test_after_stage_cancel_the_consumer_follows_its_cancel_mode(
        self, runtime, mode, reason, exits
    ):
        me = otpy.self()
        source = Source.start_link()
        consumer = Recorder.start(me, subscribe_to=[(source, {"cancel": mode})])
        ref = otpy.monitor(consumer)
        assert_receive(tagged("subscribed"), WAIT)
        stage.cancel(otpy.GenServer.call(consumer, "from"), reason)
        assert assert_receive(tagged("cancel"), WAIT)[2] == ("cancel", reason)
        if exits:
            assert assert_receive(down_of(ref), WAIT).reason == reason
        else:
            assert otpy.GenServer.call(consumer, "ping") == "pong"
        assert otpy.is_alive(source)

    def test_stage_cancel_defaults_to_reason_normal(self, runtime):
        me = otpy.self()
        source = Source.start_link()
        consumer = Recorder.start_link(me, subscribe_to=[(source, {"cancel": "temporary"})])
        assert_receive(tagged("subscribed"), WAIT)
        stage.cancel(otpy.GenServer.call(consumer, "from"))
        assert assert_receive(tagged("cancel"), WAIT)[2] == ("cancel", "normal")

    def test_a_producer_consumer_exits_with_its_permanent_producer_and_takes_its_consumer(
        self, runtime
    ):
        me = otpy.self()
        source = Source.start()
        double = Double.start(subscribe_to=[source])
        consumer = Recorder.start(me, subscribe_to=[double])
        refs = {otpy.monitor(double): "double", otpy.monitor(consumer): "consumer"}
        crash = RuntimeError("upstream crashed")
        otpy.GenServer.cast(source, ("raise", crash))
        downs = [assert_receive(lambda m: isinstance(m, otpy.Down) and m.ref in refs, WAIT) for _ in range(2)]
        assert {refs[d.ref] for d in downs} == {"double", "consumer"}
        assert all(d.reason is crash for d in downs)


# --- supervision -------------------------------------------------------------------------------


class TestSupervision:
    def test_child_spec_has_the_genserver_defaults(self, runtime):
        spec = Numbers.child_spec(5, name="numbers")
        assert spec.id is Numbers
        assert spec.restart == "permanent"
        assert spec.type == "worker"
        assert spec.shutdown == 5.0
        _fn, args, kwargs = spec.start
        assert args == (5,)
        assert kwargs == {"name": "numbers"}

    def test_a_consumer_child_spec_carries_subscribe_to(self, runtime):
        me = otpy.self()
        Numbers.start_link(3, name="numbers")
        spec = Recorder.child_spec(me, subscribe_to=["numbers"])
        sup = otpy.Supervisor.start_link([spec])
        consumer = otpy.Supervisor.which_children(sup)[0].pid
        assert events_of(consumer, 3) == [0, 1, 2]
        otpy.Supervisor.stop(sup)

    def test_a_killed_producer_is_restarted_and_its_consumer_resubscribes_under_rest_for_one(
        self, runtime
    ):
        me = otpy.self()
        sup = otpy.Supervisor.start_link(
            [
                Numbers.child_spec(10, name="numbers"),
                Recorder.child_spec(
                    me, subscribe_to=[("numbers", {"max_demand": 2, "min_demand": 1})]
                ),
            ],
            strategy="rest_for_one",
        )
        first = [child.pid for child in otpy.Supervisor.which_children(sup)]
        assert events_of(first[1], 4)[:4] == [0, 1, 2, 3]
        refs = [otpy.monitor(pid) for pid in first]
        otpy.exit(first[0], "kill")
        for ref in refs:
            assert_receive(down_of(ref), WAIT)

        def restarted():
            pids = [child.pid for child in otpy.Supervisor.which_children(sup)]
            return all(p is not None and p not in first for p in pids) and pids

        wait_until(restarted)
        producer, consumer = restarted()
        assert otpy.whereis("numbers") == producer
        # The new consumer counts from 0 again: it subscribed to the new producer.
        assert events_of(consumer, 2)[:2] == [0, 1]
        otpy.Supervisor.stop(sup)


# --- bad options -------------------------------------------------------------------------------


BAD_SUBSCRIPTION_OPTIONS = [
    ({"max_demand": -1}, "-1"),
    ({"max_demand": 0}, "0"),
    ({"max_demand": "10"}, "'10'"),
    ({"min_demand": -1}, "-1"),
    ({"max_demand": 10, "min_demand": 10}, "10"),
    ({"max_demand": 10, "min_demand": 20}, "20"),
    ({"min_demand": 1000}, "1000"),
    ({"cancel": "sometimes"}, "sometimes"),
    ({"maxdemand": 10}, "maxdemand"),
]


class TestBadOptions:
    @pytest.mark.parametrize("opts, named", BAD_SUBSCRIPTION_OPTIONS)
    def test_subscribe_to_with_a_bad_option_raises_at_start_link(self, runtime, opts, named):
        source = Source.start_link()
        before = set(otpy.processes())
        with pytest.raises((ValueError, TypeError)) as info:
            Recorder.start_link(otpy.self(), subscribe_to=[(source, opts)])
        assert named in str(info.value)
        assert set(otpy.processes()) <= before

    @pytest.mark.parametrize("opts, named", BAD_SUBSCRIPTION_OPTIONS)
    def test_sync_subscribe_with_a_bad_option_raises_and_leaves_the_consumer_alone(
        self, runtime, opts, named
    ):
        me = otpy.self()
        source = Source.start_link(me)
        consumer = Recorder.start_link(me)
        with pytest.raises((ValueError, TypeError)) as info:
            stage.sync_subscribe(consumer, to=source, **opts)
        assert named in str(info.value)
        assert otpy.GenServer.call(consumer, "from") is None
        settle(source)
        refute_receive(tagged("subscribed"), timeout=0)

    @pytest.mark.parametrize("opts, named", BAD_SUBSCRIPTION_OPTIONS)
    def test_async_subscribe_with_a_bad_option_raises_at_the_call(self, runtime, opts, named):
        me = otpy.self()
        source = Source.start_link()
        consumer = Recorder.start_link(me)
        with pytest.raises((ValueError, TypeError)) as info:
            stage.async_subscribe(consumer, to=source, **opts)
        assert named in str(info.value)
        assert otpy.GenServer.call(consumer, "from") is None

    def test_an_unknown_dispatcher_object_is_rejected_naming_it(self, runtime):
        class NotADispatcher:
            def __repr__(self):
                return "<not a dispatcher>"

        with pytest.raises(TypeError, match="not a dispatcher"):
            Source.start_link(dispatcher=NotADispatcher())
        with pytest.raises(TypeError, match="'demand'"):
            Source.start_link(dispatcher="demand")

    @pytest.mark.parametrize(
        "kwargs, named",
        [
            ({"buffer_size": -1}, "-1"),
            ({"buffer_size": "big"}, "big"),
            ({"buffer_keep": "middle"}, "middle"),
            ({"demand": "lazy"}, "lazy"),
        ],
    )
    def test_bad_producer_options_raise_value_error_naming_the_value(self, runtime, kwargs, named):
        with pytest.raises((ValueError, TypeError)) as info:
            Source.start_link(**kwargs)
        assert named in str(info.value)

    @pytest.mark.parametrize(
        "kwargs",
        [{"dispatcher": stage.DemandDispatcher()}, {"buffer_size": 5}, {"demand": "forward"}],
    )
    def test_a_consumer_takes_no_producer_options(self, runtime, kwargs):
        with pytest.raises(TypeError) as info:
            Recorder.start_link(otpy.self(), **kwargs)
        assert next(iter(kwargs)) in str(info.value)

    def test_subscribe_to_must_be_a_list_of_producers(self, runtime):
        with pytest.raises(TypeError, match="subscribe_to"):
            Recorder.start_link(otpy.self(), subscribe_to="numbers")

    def test_sync_subscribe_to_a_consumer_that_is_not_alive_raises_noproc(self, runtime):
        consumer = Recorder.start(otpy.self())
        otpy.GenServer.stop(consumer)
        source = Source.start_link()
        with pytest.raises(otpy.NoProcError):
            stage.sync_subscribe(consumer, to=source)


# --- back-pressure -----------------------------------------------------------------------------


class TestBackPressure:
    def test_a_fast_producer_never_has_more_than_max_demand_events_in_flight_to_a_slow_consumer(
        self, runtime
    ):
        me = otpy.self()
        ledger = Ledger()
        total = 3000
        producer = Counted.start_link(ledger, total)
        Tally.start_link(
            ledger,
            me,
            total,
            pause=0.0005,
            subscribe_to=[(producer, {"max_demand": 100, "min_demand": 80})],
        )
        assert assert_receive(tagged("done"), timeout=20) == ("done", total)
        assert ledger.produced == ledger.consumed == total
        # In flight: produced and not yet handled, this batch included.
        assert ledger.max_in_flight == 100

    def test_events_made_beyond_demand_wait_in_the_buffer_and_are_counted_against_it(
        self, runtime, caplog
    ):
        me = otpy.self()
        ledger = Ledger()
        total = 3000
        producer = Counted.start_link(ledger, total, extra=7, buffer_size=20)
        with caplog.at_level(logging.WARNING):
            Tally.start_link(
                ledger,
                me,
                total,
                pause=0.0002,
                subscribe_to=[(producer, {"max_demand": 50, "min_demand": 40})],
            )
            assert assert_receive(tagged("done"), timeout=20) == ("done", total)
        assert ledger.produced == ledger.consumed == total
        assert ledger.max_in_flight <= 50 + 20
        assert ledger.max_in_flight > 50  # the buffer was used
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    def test_each_subscription_has_its_own_max_demand_in_flight(self, runtime):
        me = otpy.self()
        ledger = Ledger()
        total = 4000
        producer = Counted.start_link(ledger, total)
        for max_demand in (30, 70):
            Tally.start_link(
                ledger,
                me,
                total,
                pause=0.0002,
                subscribe_to=[(producer, {"max_demand": max_demand})],
            )
        wait_until(lambda: ledger.consumed == total, timeout=20)
        assert ledger.produced == total
        assert ledger.max_in_flight <= 30 + 70

    def test_a_pipeline_holds_at_most_the_max_demand_of_each_subscription(self, runtime):
        me = otpy.self()
        ledger = Ledger()
        total = 20_000
        producer = Counted.start_link(ledger, total)
        middle = Increment.start_link(subscribe_to=[(producer, {"max_demand": 50})])
        Tally.start_link(
            ledger, me, total, pause=0.0001, subscribe_to=[(middle, {"max_demand": 20})]
        )
        assert assert_receive(tagged("done"), timeout=20) == ("done", total)
        # Each subscription's max_demand, plus the middle stage's buffer: at most one
        # input batch (50 - 25) it handled beyond its consumer's demand.
        assert ledger.max_in_flight <= 50 + 20 + 25

    def test_memory_stays_flat_over_a_million_events_through_three_stages(self, runtime):
        me = otpy.self()
        ledger = Ledger()
        total = 1_000_000
        tracemalloc.start()
        try:
            start_memory = tracemalloc.get_traced_memory()[0]
            producer = Counted.start_link(ledger, total)
            middle = Increment.start_link(subscribe_to=[producer])
            Tally.start_link(
                ledger,
                me,
                total,
                sample_every=50_000,
                subscribe_to=[(middle, {"max_demand": 1000})],
            )
            assert assert_receive(tagged("done"), timeout=50) == ("done", total)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert ledger.consumed == total
        assert ledger.max_in_flight <= 2 * 1000
        assert len(ledger.memory) >= 10
        # A million ints held at once would take tens of megabytes.
        assert peak - start_memory < 4_000_000, (peak - start_memory, ledger.memory)
        assert max(ledger.memory) - min(ledger.memory) < 1_000_000, ledger.memory


class _Upto(stage.Producer):
    """Emits 0..n-1 on demand; then stops normally, if asked to."""

    def init(self, n, stop_when_done=False):
        self.i = 0
        self.n = n
        self.stop_when_done = stop_when_done

    def handle_demand(self, demand):
        out = list(range(self.i, min(self.n, self.i + demand)))
        self.i += len(out)
        if self.stop_when_done and self.i >= self.n:
            otpy.send(otpy.self(), "done")
        return out

    def handle_info(self, message):
        raise otpy.Stop("normal")


class _DropAll(stage.ProducerConsumer):
    def init(self, me, n):
        self.me = me
        self.n = n
        self.seen = 0

    def handle_events(self, events, from_):
        self.seen += len(events)
        if self.seen >= self.n:
            otpy.send(self.me, ("seen", self.seen))
        return []


class _Pass(stage.ProducerConsumer):
    def handle_events(self, events, from_):
        return events


class _Count(stage.Consumer):
    def init(self, me):
        self.me = me

    def handle_events(self, events, from_):
        otpy.send(self.me, ("got", len(events)))


class TestProducerConsumerDemand:
    def test_a_stage_that_emits_less_than_it_takes_keeps_taking_input(self, runtime):
        # Downstream demand is used up by the events sent on, as in GenStage.
        source = _Upto.start_link(10_000)
        drop = _DropAll.start_link(
            otpy.self(), 10_000, subscribe_to=[(source, {"max_demand": 100})]
        )
        _Count.start_link(otpy.self(), subscribe_to=[(drop, {"max_demand": 10})])
        assert assert_receive(tagged("seen"), WAIT) == ("seen", 10_000)

    def test_events_queued_before_a_producer_ends_still_reach_the_consumer(self, runtime, trap):
        source = _Upto.start_link(100, stop_when_done=True)
        middle = _Pass.start_link(
            subscribe_to=[(source, {"max_demand": 100, "cancel": "transient"})]
        )
        _Count.start_link(otpy.self(), subscribe_to=[(middle, {"max_demand": 10, "min_demand": 0})])
        got = 0
        while got < 100:
            got += assert_receive(tagged("got"), WAIT)[1]
        assert got == 100
