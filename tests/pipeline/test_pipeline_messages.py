"""What happens to each message: the callbacks, failures, acks, test messages, retries, telemetry.

The contract (API.md, Pipelines): every message a processor or batch processor
finishes is acked exactly once, in one ack call per (acknowledger, ack_ref)
group of what that stage finished together; an exception fails only what the
callback was given; failed messages go through handle_failed first.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
import pytest
from conftest import wait_until

import otpy
import otpy.pipeline as pl
from otpy.retry import RetryPolicy

from .pipeline_helpers import DUMMY, Events, ListProducer, Log, Recorder, ack_of

pytestmark = pytest.mark.timeout(30)


class Scripted(pl.Pipeline):
    """Callbacks that do what ``context`` says (a dict of functions), or pass messages on."""

    def handle_message(self, processor, message, context):
        fn = context.get("message")
        return message if fn is None else fn(processor, message)

    def handle_batch(self, batcher, messages, batch_info, context):
        fn = context.get("batch")
        return messages if fn is None else fn(batcher, messages, batch_info)


class WithFailed(Scripted):
    def handle_failed(self, messages, context):
        return context["failed"](messages)


class WithPrepare(Scripted):
    def prepare_messages(self, messages, context):
        return context["prepare"](messages)


def start(
    cls: type[pl.Pipeline] = Scripted,
    *,
    rec: Recorder | None = None,
    count: int | None = None,
    context: dict[str, Any] | None = None,
    concurrency: int = 2,
    producer: dict[str, Any] | None = None,
    **options: Any,
) -> otpy.Pid:
    if producer is None:
        producer = (
            {"module": (ListProducer, {"count": count, "recorder": rec})}
            if rec is not None
            else dict(DUMMY)
        )
    options.setdefault("processors", {"default": {"concurrency": concurrency}})
    return cls.start_link(name="p", producer=producer, context=context or {}, **options)


def fails_on(predicate, exc_type=ValueError):
    """A handle_message function that raises exc_type for data matching predicate."""

    def handle(processor, message):
        if predicate(message.data):
            raise exc_type(f"bad {message.data}")
        return message

    return handle


class TestHandleMessage:
    def test_it_runs_in_a_processor_with_the_processor_key_and_context(self, runtime):
        seen = Log()
        context: dict[str, Any] = {
            "message": lambda processor, m: seen.add((processor, otpy.self())) or m
        }
        start(context=context, concurrency=3)
        ack = ack_of(pl.Pipeline.test_batch("p", list(range(30))))
        assert len(ack.successful) == 30
        processors = {otpy.whereis(f"p.Processor_default_{i}") for i in range(3)}
        assert {p for _, p in seen.items()} <= processors
        assert {key for key, _ in seen.items()} == {"default"}
        pl.Pipeline.stop("p")

    def test_what_it_returns_is_what_is_acked(self, runtime):
        start(context={"message": lambda _, m: m.update_data(lambda d: d * 10)})
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2, 3], metadata={"k": "v"}))
        assert sorted(m.data for m in ack.successful) == [10, 20, 30]
        assert all(m.metadata == {"k": "v"} for m in ack.successful)
        assert ack.failed == []
        pl.Pipeline.stop("p")

    def test_an_exception_fails_only_that_message_with_the_exception_as_reason(self, runtime):
        rec = Recorder()
        start(rec=rec, count=200, context={"message": fails_on(lambda d: d % 5 == 0)})
        rec.wait_for(200)
        acked = rec.snapshot()
        assert sorted(acked) == list(range(200))
        for i, message in acked.items():
            if i % 5 == 0:
                kind, reason = message.status
                assert kind == "failed"
                assert isinstance(reason, ValueError) and str(reason) == f"bad {i}"
            else:
                assert message.status == "ok"
        rec.check()
        pl.Pipeline.stop("p")

    def test_a_returned_failed_message_is_acked_as_failed(self, runtime):
        start(context={"message": lambda _, m: m.failed("nope") if m.data == 2 else m})
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2, 3]))
        assert [m.status for m in ack.failed] == [("failed", "nope")]
        assert sorted(m.data for m in ack.successful) == [1, 3]
        pl.Pipeline.stop("p")

    def test_returning_something_else_than_a_message_fails_it(self, runtime):
        start(context={"message": lambda _, m: m.data})
        ack = ack_of(pl.Pipeline.test_message("p", "x"))
        [failed] = ack.failed
        assert isinstance(failed.status[1], TypeError)
        assert "must return a pl.Message" in str(failed.status[1])
        pl.Pipeline.stop("p")

    def test_ack_immediately_acks_once_and_the_pipeline_does_not_ack_again(self, runtime):
        rec = Recorder()
        start(rec=rec, count=20, context={"message": lambda _, m: pl.ack_immediately(m)})
        rec.wait_for(20)
        wait_until(lambda: otpy.whereis("p") is not None)
        pl.Pipeline.stop("p")
        assert sorted(rec.snapshot()) == list(range(20))
        rec.check()


class TestAcks:
    def test_each_message_is_acked_once_in_one_call_per_group(self, runtime):
        """Messages with two ack_refs: each handle_events batch makes one call per ack_ref,
        with its successful and failed messages together."""
        rec = Recorder()
        producer = {
            "module": (ListProducer, {"count": 400, "recorder": rec, "ack_refs": ["a", "b"]})
        }
        start(
            rec=rec,
            producer=producer,
            context={"message": fails_on(lambda d: d % 3 == 0)},
            processors={"default": {"concurrency": 2, "max_demand": 8}},
        )
        rec.wait_for(400)
        pl.Pipeline.stop("p")
        rec.check()
        with rec.lock:
            calls = list(rec.calls)
        for ack_ref, ok, failed in calls:
            ids = ok + failed
            assert ids, "an ack call with no message"
            assert all(i % 2 == (0 if ack_ref == "a" else 1) for i in ids)
            assert all(i % 3 == 0 for i in failed) and all(i % 3 for i in ok)
        mixed = [c for c in calls if c[1] and c[2]]
        assert mixed, "successful and failed messages of a batch are acked in one call"
        # max_demand 8, min_demand 4: batches of at most 4 messages, so at most 2 per ack_ref
        assert max(len(ok) + len(failed) for _, ok, failed in calls) <= 4
        assert len(calls) < 400

    def test_an_acknowledger_that_raises_is_logged_and_the_stage_goes_on(self, runtime, caplog):
        class Broken:
            def ack(self, ack_ref, successful, failed):
                raise RuntimeError("broker gone")

        start()
        messages = [pl.Message(i, acknowledger=(Broken(), "r", None)) for i in range(3)]
        otpy.GenServer.call("p.Producer_0", _push(messages))
        wait_until(lambda: "broker gone" in caplog.text)
        ack = ack_of(pl.Pipeline.test_message("p", "after"))
        assert len(ack.successful) == 1
        pl.Pipeline.stop("p")


def _push(messages):
    from otpy.pipeline._producer import Push

    return Push(messages)


class TestHandleFailed:
    def test_failed_messages_go_through_it_and_what_it_returns_is_acked(self, runtime):
        seen = Log()

        def failed(messages):
            seen.add((otpy.self(), [m.data for m in messages]))
            return [m.put_data(("handled", m.data)) for m in messages]

        start(WithFailed, context={"message": fails_on(lambda d: d > 1), "failed": failed})
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2, 3]))
        assert sorted(m.data for m in ack.failed) == [("handled", 2), ("handled", 3)]
        assert [m.data for m in ack.successful] == [1]
        assert seen.items() and all(pid in _processors(2) for pid, _ in seen.items())
        pl.Pipeline.stop("p")

    def test_it_is_not_called_without_failures(self, runtime):
        seen = Log()
        start(WithFailed, context={"failed": lambda ms: seen.add(ms) or ms})
        ack_of(pl.Pipeline.test_batch("p", [1, 2]))
        assert seen.items() == []
        pl.Pipeline.stop("p")

    @pytest.mark.parametrize("how", ["raises", "returns fewer"])
    def test_when_it_misbehaves_the_originals_are_acked(self, runtime, how, caplog):
        def failed(messages):
            if how == "raises":
                raise RuntimeError("handle_failed broke")
            return messages[:-1]

        start(WithFailed, context={"message": fails_on(lambda d: True), "failed": failed})
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2]))
        assert sorted(m.data for m in ack.failed) == [1, 2]
        assert all(isinstance(m.status[1], ValueError) for m in ack.failed)
        assert "handle_failed" in caplog.text
        pl.Pipeline.stop("p")

    def test_it_runs_in_the_batch_processor_for_a_failed_batch(self, runtime):
        seen = Log()

        def failed(messages):
            seen.add(otpy.self())
            return messages

        def batch(batcher, messages, info):
            raise OSError("disk full")

        start(
            WithFailed,
            context={"batch": batch, "failed": failed},
            batchers={"default": {"batch_size": 2}},
        )
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2]))
        assert len(ack.failed) == 2
        assert seen.items() == [otpy.whereis("p.BatchProcessor_default_0")]
        pl.Pipeline.stop("p")


def _processors(n):
    return {otpy.whereis(f"p.Processor_default_{i}") for i in range(n)}


class TestPrepareMessages:
    def test_it_runs_on_each_received_batch_before_handle_message(self, runtime):
        rec = Recorder()
        batches = []
        lock = threading.Lock()

        def prepare(messages):
            with lock:
                batches.append(len(messages))
            return [m.put_data(("prepared", m.data)) for m in messages]

        def message(_, m):
            assert m.data[0] == "prepared"
            return m

        start(
            WithPrepare,
            rec=rec,
            count=100,
            context={"prepare": prepare, "message": message},
            processors={"default": {"concurrency": 2, "max_demand": 10, "min_demand": 5}},
        )
        rec.wait_for(100)
        pl.Pipeline.stop("p")
        assert all(m.status == "ok" for m in rec.snapshot().values())
        assert sum(batches) == 100
        assert max(batches) <= 5  # max_demand - min_demand per batch
        rec.check()

    @pytest.mark.parametrize("how", ["raises", "returns fewer"])
    def test_when_it_fails_all_its_messages_fail(self, runtime, how):
        called = Log()

        def prepare(messages):
            if how == "raises":
                raise KeyError("lookup")
            return messages[1:]

        start(
            WithPrepare,
            context={"prepare": prepare, "message": lambda _, m: called.add(m) or m},
            concurrency=1,
        )
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2, 3]))
        assert sorted(m.data for m in ack.failed) == [1, 2, 3]
        reason = ack.failed[0].status[1]
        assert isinstance(reason, KeyError if how == "raises" else ValueError)
        assert called.items() == []
        pl.Pipeline.stop("p")


class TestTestMessages:
    def test_test_message_is_in_flush_mode_and_acks_the_caller(self, runtime):
        modes = Log()
        start(context={"message": lambda _, m: modes.add(m.batch_mode) or m})
        ref = pl.Pipeline.test_message("p", {"id": 1}, metadata={"source": "test"})
        assert isinstance(ref, otpy.Ref)
        ack = ack_of(ref)
        assert ack.ref == ref
        [message] = ack.successful
        assert (message.data, message.metadata) == ({"id": 1}, {"source": "test"})
        assert modes.items() == ["flush"]
        pl.Pipeline.stop("p")

    def test_test_batch_sends_one_ack_once_all_are_acked(self, runtime):
        """Its messages are acked by several batch processors, in several groups: one Ack."""
        start(
            context={"message": lambda _, m: m.put_batch_key(m.data % 4)},
            batchers={"default": {"concurrency": 3, "batch_size": 2, "batch_timeout": 0.05}},
        )
        ref = pl.Pipeline.test_batch("p", list(range(40)))
        ack = ack_of(ref)
        assert sorted(m.data for m in ack.successful) == list(range(40))
        with pytest.raises(otpy.Timeout):
            ack_of(ref, timeout=0.1)  # no second Ack
        pl.Pipeline.stop("p")

    def test_failed_test_messages_are_in_the_ack(self, runtime):
        start(context={"message": fails_on(lambda d: d == "bad")})
        ack = ack_of(pl.Pipeline.test_batch("p", ["good", "bad"], batch_mode="flush"))
        assert [m.data for m in ack.successful] == ["good"]
        assert [m.data for m in ack.failed] == ["bad"]
        pl.Pipeline.stop("p")

    def test_they_work_with_any_producer(self, runtime):
        rec = Recorder()
        start(rec=rec, count=None)
        ack = ack_of(pl.Pipeline.test_batch("p", ["a", "b"]))
        assert sorted(m.data for m in ack.successful) == ["a", "b"]
        assert rec.count() > 0
        pl.Pipeline.stop("p")
        rec.check()


class TestRetry:
    def test_a_selected_exception_is_retried_until_it_succeeds(self, runtime):
        calls: dict[Any, int] = {}
        lock = threading.Lock()

        def flaky(_, m):
            with lock:
                n = calls[m.data] = calls.get(m.data, 0) + 1
            if n < 3:
                raise ConnectionError(f"try {n}")
            return m

        policy = RetryPolicy(on=ConnectionError, attempts=3, wait_initial=0.001, wait_jitter=0)
        start(
            context={"message": flaky},
            processors={"default": {"concurrency": 2, "retry": policy}},
        )
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2, 3]))
        assert sorted(m.data for m in ack.successful) == [1, 2, 3]
        assert calls == {1: 3, 2: 3, 3: 3}
        pl.Pipeline.stop("p")

    def test_the_last_exception_fails_the_message_and_others_are_not_retried(self, runtime):
        calls: dict[Any, int] = {}
        lock = threading.Lock()

        def failing(_, m):
            with lock:
                calls[m.data] = calls.get(m.data, 0) + 1
            raise (ConnectionError if m.data == "net" else KeyError)(m.data)

        policy = RetryPolicy(on=ConnectionError, attempts=2, wait_initial=0.001, wait_jitter=0)
        start(
            context={"message": failing},
            processors={"default": {"concurrency": 1, "retry": policy}},
        )
        ack = ack_of(pl.Pipeline.test_batch("p", ["net", "key"]))
        reasons = {m.data: m.status[1] for m in ack.failed}
        assert isinstance(reasons["net"], ConnectionError)
        assert isinstance(reasons["key"], KeyError)
        assert calls == {"net": 2, "key": 1}
        pl.Pipeline.stop("p")

    def test_a_processor_waiting_to_retry_does_not_hold_up_the_others(self, runtime):
        """Data 0 goes to processor 0, which waits 1 s before its retry; processor 1
        meanwhile handles all the rest."""
        order = []
        lock = threading.Lock()
        tried = set()

        def handle(_, m):
            with lock:
                first = m.data not in tried
                tried.add(m.data)
            if m.data == 0 and first:
                raise ConnectionError("later")
            with lock:
                order.append(m.data)
            return m

        policy = RetryPolicy(on=ConnectionError, attempts=2, wait_initial=1.0, wait_jitter=0)
        start(
            context={"message": handle},
            processors={"default": {"concurrency": 2, "retry": policy}},
            partition_by=lambda m: 0 if m.data == 0 else 1,
        )
        refs = [pl.Pipeline.test_message("p", i) for i in range(20)]
        for ref in refs:
            ack_of(ref)
        assert order[-1] == 0
        assert sorted(order[:-1]) == list(range(1, 20))
        pl.Pipeline.stop("p")


class TestTelemetry:
    def test_a_span_per_message_in_the_processor(self, runtime):
        events = Events(
            ("otpy", "pipeline", "processor", "message", "start"),
            ("otpy", "pipeline", "processor", "message", "stop"),
            ("otpy", "pipeline", "processor", "message", "exception"),
        )
        try:
            start(context={"message": fails_on(lambda d: d == "bad")}, concurrency=1)
            ack_of(pl.Pipeline.test_batch("p", ["good", "bad"]))
            pl.Pipeline.stop("p")
        finally:
            events.close()
        starts = events.of(("otpy", "pipeline", "processor", "message", "start"))
        stops = events.of(("otpy", "pipeline", "processor", "message", "stop"))
        exceptions = events.of(("otpy", "pipeline", "processor", "message", "exception"))
        assert [md["message"].data for _, md in starts] == ["good", "bad"]
        for measurements, metadata in starts:
            assert set(measurements) == {"monotonic_time", "system_time"}
            assert (metadata["pipeline"], metadata["processor"]) == ("p", "default")
        [(measurements, metadata)] = stops
        assert measurements["duration"] >= 0 and "monotonic_time" in measurements
        assert metadata["message"].data == "good"
        [(measurements, metadata)] = exceptions
        assert measurements["duration"] >= 0
        assert metadata["kind"] is ValueError and str(metadata["reason"]) == "bad bad"
        assert metadata["message"].data == "bad" and metadata["stacktrace"]

    def test_batch_processor_start_and_stop(self, runtime):
        events = Events(
            ("otpy", "pipeline", "batch_processor", "start"),
            ("otpy", "pipeline", "batch_processor", "stop"),
        )

        def batch(batcher, messages, info):
            return [m.failed("odd") if m.data % 2 else m for m in messages]

        try:
            start(
                context={"batch": batch, "message": lambda _, m: m.put_batcher("db")},
                batchers={"db": {"batch_size": 3}},
            )
            ack_of(pl.Pipeline.test_batch("p", [1, 2, 3]))
            pl.Pipeline.stop("p")
        finally:
            events.close()
        [(start_m, start_md)] = events.of(("otpy", "pipeline", "batch_processor", "start"))
        [(stop_m, stop_md)] = events.of(("otpy", "pipeline", "batch_processor", "stop"))
        assert set(start_m) == {"monotonic_time", "system_time"}
        assert (stop_m["successful"], stop_m["failed"]) == (1, 2)
        assert stop_m["duration"] >= 0
        info = stop_md["batch_info"]
        assert (stop_md["pipeline"], info.batcher, info.size, info.trigger) == (
            "p",
            "db",
            3,
            "size",
        )
        assert start_md["batch_info"] == info

    def test_an_ack_event_per_ack_call(self, runtime):
        events = Events(("otpy", "pipeline", "ack"))
        rec = Recorder()
        try:
            producer = {
                "module": (ListProducer, {"count": 30, "recorder": rec, "ack_refs": ["a", "b"]})
            }
            start(rec=rec, producer=producer, context={"message": fails_on(lambda d: d < 10)})
            rec.wait_for(30)
            pl.Pipeline.stop("p")
        finally:
            events.close()
        seen = events.of(("otpy", "pipeline", "ack"))
        with rec.lock:
            calls = len(rec.calls)
        assert len(seen) == calls
        assert sum(m["successful"] for m, _ in seen) == 20
        assert sum(m["failed"] for m, _ in seen) == 10
        assert all(md == {"pipeline": "p", "acknowledger": rec} for _, md in seen)

    def test_nothing_is_built_for_telemetry_nobody_listens_to(self, runtime):
        """With no handler, the stages skip the span objects: handle_message sees no span."""
        import otpy.pipeline._stages as stages

        made = Log()
        real = stages.telemetry.span

        def spy(*args, **kwargs):
            made.add(args)
            return real(*args, **kwargs)

        stages.telemetry.span = spy  # type: ignore[assignment]
        try:
            start()
            ack_of(pl.Pipeline.test_batch("p", [1, 2, 3]))
            pl.Pipeline.stop("p")
        finally:
            stages.telemetry.span = real  # type: ignore[assignment]
        assert made.items() == []


class TestMessageValues:
    """``pl.Message``'s own checks (its ``__init__`` is written by hand, for speed)."""

    class Acker:
        def ack(self, ack_ref, successful, failed):
            pass

    def test_defaults_and_fields(self):
        m = pl.Message(b"x")
        assert (m.data, m.metadata, m.batcher, m.batch_key, m.batch_mode, m.status) == (
            b"x",
            {},
            "default",
            "default",
            "bulk",
            "ok",
        )
        assert m.acknowledger == (pl.NOOP, None, None)
        assert pl.Message(1).metadata is not pl.Message(1).metadata  # one dict each
        assert attrs.has(pl.Message)
        assert pl.Message(1, {"k": 1}) == pl.Message(1, metadata={"k": 1})

    def test_it_is_frozen_and_evolves(self):
        m = pl.Message(1)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            m.data = 2
        assert attrs.evolve(m, data=2).data == 2
        assert m.put_batcher("db").batcher == "db" and m.batcher == "default"
        match m.failed("boom"):
            case pl.Message(data=1, status=("failed", "boom")):
                pass
            case other:
                pytest.fail(f"no match: {other!r}")

    @pytest.mark.parametrize(
        "kwargs, error",
        [
            ({"metadata": [1]}, TypeError),
            ({"acknowledger": (1, 2)}, TypeError),
            ({"acknowledger": "ack"}, TypeError),
            ({"acknowledger": (object(), None, None)}, TypeError),
            ({"batch_mode": "soon"}, ValueError),
            ({"status": "bad"}, ValueError),
            ({"status": ("failed",)}, ValueError),
        ],
    )
    def test_bad_values_are_refused_naming_them(self, kwargs, error):
        with pytest.raises(error, match="got "):  # and what it got
            pl.Message(1, **kwargs)

    def test_an_instance_that_shadows_ack_is_refused_after_its_type_was_seen(self):
        good = self.Acker()
        pl.Message(1, acknowledger=(good, None, None))  # the type is known from now on
        bad = self.Acker()
        bad.ack = None
        with pytest.raises(TypeError, match="needs an ack"):
            pl.Message(1, acknowledger=(bad, None, None))
