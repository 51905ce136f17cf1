"""How messages flow: back-pressure, rate limiting, the drain, and stages that are killed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import WAIT, down_of, in_thread, recv, wait_until

import otpy
import otpy.pipeline as pl
from otpy.pipeline._shared import Allowance

from .pipeline_helpers import DUMMY, Events, ListProducer, Log, Recorder, Tally, ack_of

pytestmark = pytest.mark.timeout(30)

DRAIN = (("otpy", "pipeline", "drain", "start"), ("otpy", "pipeline", "drain", "stop"))


class Flow(pl.Pipeline):
    """handle_message runs ``context["message"]`` if given; batches are recorded."""

    def handle_message(self, processor, message, context):
        fn = context.get("message")
        message = message if fn is None else fn(message)
        route = context.get("route")
        return message if route is None else route(message)

    def handle_batch(self, batcher, messages, batch_info, context):
        with context["lock"]:
            context["batches"].append((batch_info, [m.data for m in messages]))
        return messages


def new_context(**fns: Any) -> dict[str, Any]:
    return {"lock": threading.Lock(), "batches": [], **fns}


def list_producer(rec, count=None, **options):
    return {"module": (ListProducer, {"count": count, "recorder": rec, **options})}


class TestBackPressure:
    def test_the_producer_is_asked_for_no_more_than_the_processors_demand(self, runtime):
        """Two processors with max_demand 4 block on their first message: the producer is
        asked for 8 messages, and for nothing more until they go on."""
        rec = Recorder()
        tally = Tally()
        blocked = threading.Event()
        blocked.set()
        bound = 2 * 4
        worst = Log()

        def message(m):
            demanded, _ = tally.read()
            worst.add(demanded - rec.count())
            if blocked.is_set():
                otpy.receive(match=lambda x: x == "go")
            return m

        Flow.start_link(
            name="p",
            producer=list_producer(rec, count=None, observer=otpy.self(), tally=tally),
            processors={"default": {"concurrency": 2, "max_demand": 4}},
            context=new_context(message=message),
        )
        total = 0
        while total < bound:
            _, _, n = recv(lambda m: type(m) is tuple and m[0] == "demand")
            total += n
        assert total == bound
        with pytest.raises(otpy.Timeout):
            recv(lambda m: type(m) is tuple and m[0] == "demand", timeout=0.2)
        assert tally.read() == (bound, bound)
        blocked.clear()
        for i in range(2):
            otpy.send(otpy.whereis(f"p.Processor_default_{i}"), "go")
        rec.wait_for(2000)
        pl.Pipeline.stop("p")
        assert max(worst.items()) <= bound  # asked for minus acked, seen in every handle_message
        rec.check()

    def test_with_batchers_the_bound_includes_what_the_batchers_ask_for(self, runtime):
        rec = Recorder()
        tally = Tally()
        worst = Log()
        gate = threading.Event()
        me = otpy.self()

        def batch_blocking(m):
            demanded, _ = tally.read()
            worst.add(demanded - rec.count())
            return m

        class Slow(Flow):
            def handle_batch(self, batcher, messages, batch_info, context):
                if not gate.is_set():
                    otpy.send(me, "blocked")
                    otpy.receive(match=lambda x: x == "go")
                return messages

        Slow.start_link(
            name="p",
            producer=list_producer(rec, count=None, tally=tally),
            processors={"default": {"concurrency": 2, "max_demand": 4}},
            batchers={"default": {"batch_size": 5, "batch_timeout": 0.01}},
            context=new_context(message=batch_blocking),
        )
        # What the pipeline may hold while the batch processor is blocked: the processors'
        # demand (2 x 4), what the batcher asked each processor for (2 x 5), what a
        # processor handles beyond the batcher's demand in one go (2 x 2), and batches:
        # one open, one timed out waiting in the batcher, one in the batch processor.
        bound = 2 * 4 + 2 * 5 + 2 * 2 + 3 * 5
        recv(lambda m: m == "blocked")
        gate.set()
        otpy.send(otpy.whereis("p.BatchProcessor_default_0"), "go")
        rec.wait_for(1000)
        pl.Pipeline.stop("p")
        assert max(worst.items()) <= bound
        rec.check()


class TestRateLimiting:
    def test_messages_per_interval_are_bounded_across_producers(self, runtime):
        rec = Recorder()
        tally = Tally()
        allowed, interval = 20, 0.1
        started = time.monotonic()
        Flow.start_link(
            name="p",
            producer={
                **list_producer(rec, count=None, tally=tally, observer=otpy.self()),
                "concurrency": 2,
                "rate_limiting": {"allowed_messages": allowed, "interval": interval},
            },
            processors={"default": {"concurrency": 2}},
            context=new_context(),
        )
        rec.wait_for(5 * allowed)
        got = rec.count()
        elapsed = time.monotonic() - started
        assert got <= allowed * (elapsed / interval + 1)
        pl.Pipeline.stop("p")
        # both producers were asked, and each stops being asked once it is limited
        indexes = set()
        while True:
            try:
                _, index, _ = recv(lambda m: type(m) is tuple and m[0] == "demand", timeout=0)
            except otpy.Timeout:
                break
            indexes.add(index)
        assert indexes == {0, 1}
        rec.check()

    def test_update_rate_limiting_changes_it_live(self, runtime):
        rec = Recorder()
        Flow.start_link(
            name="p",
            producer={
                **list_producer(rec, count=None),
                "concurrency": 2,
                "rate_limiting": {"allowed_messages": 3, "interval": 60.0},
            },
            processors={"default": {"concurrency": 2}},
            context=new_context(),
        )
        assert pl.Pipeline.get_rate_limiting("p") == {"allowed_messages": 3, "interval": 60.0}
        rec.wait_for(3)
        time.sleep(0.2)  # noqa: SLEEP001 nothing more may come within the interval
        assert rec.count() == 3
        pl.Pipeline.update_rate_limiting("p", allowed_messages=500)
        assert pl.Pipeline.get_rate_limiting("p") == {"allowed_messages": 500, "interval": 60.0}
        rec.wait_for(500)
        time.sleep(0.1)  # noqa: SLEEP001 nothing more may come within the interval
        assert rec.count() == 500
        pl.Pipeline.update_rate_limiting("p", interval=0.05)  # a new interval, at once
        rec.wait_for(1000)
        with pytest.raises(ValueError, match="allowed_messages'\\] must be an int >= 1"):
            pl.Pipeline.update_rate_limiting("p", allowed_messages=0)
        with pytest.raises(TypeError, match="interval"):
            pl.Pipeline.update_rate_limiting("p", interval="1")  # type: ignore[arg-type]
        pl.Pipeline.stop("p")
        rec.check()

    def test_test_messages_are_not_rate_limited(self, runtime):
        Flow.start_link(
            name="p",
            producer={**DUMMY, "rate_limiting": {"allowed_messages": 1, "interval": 60.0}},
            processors={"default": {"concurrency": 1}},
            context=new_context(),
        )
        ack = ack_of(pl.Pipeline.test_batch("p", list(range(10))))
        assert len(ack.successful) == 10
        pl.Pipeline.stop("p")

    def test_the_allowance_counts_what_was_used(self):
        allowance = Allowance(10, 1.0)
        assert allowance.take(4) == 4
        assert allowance.take(10) == 6
        assert allowance.take(1) == 0
        assert allowance.update(15, None) is False
        assert allowance.available() == 5  # 10 used of 15
        allowance.update(5, None)
        assert allowance.available() == 0
        assert allowance.update(None, 2.0) is True
        allowance.refill()
        assert allowance.available() == 5
        assert allowance.limits() == (5, 2.0)


class TestDrain:
    def test_stop_flushes_open_batches_and_acks_everything(self, runtime):
        rec = Recorder()
        tally = Tally()
        events = Events(*DRAIN)
        context = new_context()
        try:
            Flow.start_link(
                name="p",
                producer=list_producer(rec, count=250, tally=tally, observer=otpy.self()),
                processors={"default": {"concurrency": 2}},
                batchers={"default": {"batch_size": 100, "batch_timeout": 30.0}},
                context=context,
            )
            wait_until(lambda: tally.read()[1] == 250)  # all made, 50 of them in an open batch
            rec.wait_for(200)
            pl.Pipeline.stop("p")
        finally:
            events.close()
        assert otpy.whereis("p") is None and otpy.whereis("p.Supervisor") is None
        assert sorted(rec.snapshot()) == list(range(250))
        rec.check()
        triggers = sorted(info.trigger for info, _ in context["batches"])
        assert triggers == ["flush", "size", "size"]
        assert recv(lambda m: type(m) is tuple and m[0] == "draining") == ("draining", 0)
        [(_, start_md)] = events.of(DRAIN[0])
        [(stop_m, stop_md)] = events.of(DRAIN[1])
        assert start_md == stop_md == {"pipeline": "p"}
        assert stop_m["unacked"] == 0
        assert stop_m["duration"] >= 0

    def test_in_flight_messages_finish_before_the_pipeline_stops(self, runtime):
        """Processors are busy when the drain starts: what they hold is handled and acked,
        and the producer is asked for nothing more."""
        rec = Recorder()
        tally = Tally()

        def slow(m):
            otpy.sleep(0.002)  # noqa: SLEEP001 a handler that takes time
            return m

        Flow.start_link(
            name="p",
            producer=list_producer(rec, count=None, tally=tally),
            processors={"default": {"concurrency": 3, "max_demand": 6}},
            context=new_context(message=slow),
        )
        rec.wait_for(20)
        pl.Pipeline.stop("p")
        _, made = tally.read()
        assert rec.count() == made
        rec.check()

    def test_a_parent_supervisor_shutdown_drains(self, runtime):
        rec = Recorder()
        tally = Tally()
        context = new_context()
        events = Events(*DRAIN)
        try:
            spec = Flow.child_spec(
                name="p",
                producer=list_producer(rec, count=None, tally=tally),
                processors={"default": {"concurrency": 2}},
                batchers={"default": {"batch_size": 1000, "batch_timeout": 30.0}},
                context=context,
            )
            sup = otpy.Supervisor.start_link([spec])
            wait_until(lambda: tally.read()[1] >= 100)
            otpy.Supervisor.stop(sup)
        finally:
            events.close()
        _, made = tally.read()
        assert rec.count() == made
        assert [info.trigger for info, _ in context["batches"]][-1] == "flush"
        [(stop_m, _)] = events.of(DRAIN[1])
        assert stop_m["unacked"] == 0
        rec.check()

    def test_leaving_a_runtime_drains(self, runtime):
        rec = Recorder()
        tally = Tally()
        context = new_context()
        events = Events(*DRAIN)

        def run():
            with otpy.Runtime():
                Flow.start_link(
                    name="p",
                    producer=list_producer(rec, count=None, tally=tally),
                    processors={"default": {"concurrency": 2}},
                    batchers={"default": {"batch_size": 1000, "batch_timeout": 30.0}},
                    context=context,
                )
                wait_until(lambda: tally.read()[1] >= 100)

        try:
            in_thread(run)
        finally:
            events.close()
        _, made = tally.read()
        assert rec.count() == made
        assert [info.trigger for info, _ in context["batches"]][-1] == "flush"
        [(stop_m, _)] = events.of(DRAIN[1])
        assert stop_m["unacked"] == 0
        rec.check()

    def test_a_drain_that_takes_too_long_stops_at_shutdown(self, runtime):
        """A handler that never finishes: the drain gives up after shutdown seconds; that
        message stays unacked, the pipeline stops anyway."""
        events = Events(*DRAIN)
        started = threading.Event()

        def stuck(m):
            started.set()
            otpy.receive(match=lambda x: x == "never")
            return m

        try:
            Flow.start_link(
                name="p",
                producer=dict(DUMMY),
                processors={"default": {"concurrency": 1}},
                context=new_context(message=stuck),
                shutdown=0.2,
            )
            ref = pl.Pipeline.test_message("p", 1)
            wait_until(started.is_set)
            t = time.monotonic()
            pl.Pipeline.stop("p")
            assert time.monotonic() - t < WAIT
        finally:
            events.close()
        with pytest.raises(otpy.Timeout):
            ack_of(ref, timeout=0.05)
        [(stop_m, _)] = events.of(DRAIN[1])
        assert stop_m["unacked"] == 1
        assert stop_m["duration"] >= 0.2

    def test_test_messages_are_refused_after_the_drain(self, runtime):
        Flow.start_link(
            name="p",
            producer=dict(DUMMY),
            processors={"default": {"concurrency": 1}},
            context=new_context(),
        )
        otpy.send(otpy.whereis("p.Producer_0"), _drain())
        wait_until(_refused)
        pl.Pipeline.stop("p")


def _drain():
    from otpy.pipeline._producer import Drain

    return Drain()


def _refused():
    try:
        pl.Pipeline.test_message("p", 1)
    except RuntimeError:
        return True
    return False


class TestKilledStages:
    def test_a_killed_processor_is_not_acked_for_what_it_held_and_comes_back(self, runtime):
        events = Events(*DRAIN)
        me = otpy.self()

        def hold(m):
            if m.data == "hold":
                otpy.send(me, ("holding", otpy.self()))
                otpy.receive(match=lambda x: x == "never")
            return m

        try:
            Flow.start_link(
                name="p",
                producer=dict(DUMMY),
                processors={"default": {"concurrency": 2}},
                context=new_context(message=hold),
                partition_by=lambda m: 0 if m.data in ("hold", "after") else 1,
                resubscribe_interval=0.01,
            )
            held = pl.Pipeline.test_message("p", "hold")
            _, pid = recv(lambda m: type(m) is tuple and m[0] == "holding")
            assert pid == otpy.whereis("p.Processor_default_0")
            ref = otpy.monitor(pid)
            otpy.exit(pid, "kill")
            recv(down_of(ref))
            wait_until(lambda: otpy.whereis("p.Processor_default_0") not in (None, pid))
            ack = ack_of(pl.Pipeline.test_message("p", "after"))  # through the new processor 0
            assert [m.data for m in ack.successful] == ["after"]
            with pytest.raises(otpy.Timeout):
                ack_of(held, timeout=0.1)
            pl.Pipeline.stop("p")
        finally:
            events.close()
        [(stop_m, _)] = events.of(DRAIN[1])
        assert stop_m["unacked"] == 1

    def test_batchers_and_batch_processors_come_back_for_killed_neighbours(self, runtime):
        context = new_context()
        Flow.start_link(
            name="p",
            producer=dict(DUMMY),
            processors={"default": {"concurrency": 1}},
            batchers={"default": {"batch_size": 2, "batch_timeout": 0.05}},
            context=context,
            resubscribe_interval=0.01,
        )
        for name in ("p.Processor_default_0", "p.BatchProcessor_default_0", "p.Batcher_default"):
            old = otpy.whereis(name)
            ref = otpy.monitor(old)
            otpy.exit(old, "kill")
            recv(down_of(ref))
            wait_until(lambda n=name, o=old: otpy.whereis(n) not in (None, o))

            def flows():
                try:
                    ack = ack_of(pl.Pipeline.test_batch("p", [1, 2]), timeout=0.5)
                except otpy.Timeout:
                    return False
                return len(ack.successful) == 2

            wait_until(flows, timeout=WAIT)
        pl.Pipeline.stop("p")

    def test_a_killed_producer_comes_back_and_processors_subscribe_again(self, runtime):
        rec = Recorder()
        tally = Tally()
        Flow.start_link(
            name="p",
            producer=list_producer(rec, count=None, tally=tally),
            processors={"default": {"concurrency": 2}},
            context=new_context(),
            resubscribe_interval=0.01,
        )
        rec.wait_for(100)
        old = otpy.whereis("p.Producer_0")
        ref = otpy.monitor(old)
        otpy.exit(old, "kill")
        recv(down_of(ref))
        wait_until(lambda: otpy.whereis("p.Producer_0") not in (None, old), timeout=WAIT)
        count = rec.count()
        rec.wait_for(count + 100)  # the new producer's messages
        pl.Pipeline.stop("p")
        rec.check()
