"""Batchers: the three triggers, BatchInfo, batch keys, routing, partition_by order, failures."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import otpy
import otpy.pipeline as pl

from .pipeline_helpers import DUMMY, ListProducer, Recorder, ack_of

pytestmark = pytest.mark.timeout(30)


class Batches(pl.Pipeline):
    """Routes by ``context["route"](message)`` and records every batch it handles."""

    def handle_message(self, processor, message, context):
        route = context.get("route")
        return message if route is None else route(message)

    def handle_batch(self, batcher, messages, batch_info, context):
        with context["lock"]:
            context["batches"].append(
                (batcher, [m.data for m in messages], batch_info, otpy.self())
            )
        fn = context.get("batch")
        return messages if fn is None else fn(messages, batch_info)


def start(batchers, *, route=None, batch=None, rec=None, count=None, **options):
    context: dict[str, Any] = {
        "lock": threading.Lock(),
        "batches": [],
        "route": route,
        "batch": batch,
    }
    producer = {"module": (ListProducer, {"count": count, "recorder": rec})} if rec else dict(DUMMY)
    options.setdefault("processors", {"default": {"concurrency": 2}})
    Batches.start_link(name="p", producer=producer, batchers=batchers, context=context, **options)
    return context


def batches_of(context):
    with context["lock"]:
        return list(context["batches"])


class TestTriggers:
    def test_a_batch_leaves_when_it_has_batch_size_messages(self, runtime):
        context = start({"default": {"batch_size": 5, "batch_timeout": 30.0}})
        ack = ack_of(pl.Pipeline.test_batch("p", list(range(20))))
        assert len(ack.successful) == 20
        seen = batches_of(context)
        assert len(seen) == 4
        for batcher, data, info, _ in seen:
            assert batcher == "default"
            assert len(data) == 5
            assert info == pl.BatchInfo("default", "default", None, 5, "size")
        pl.Pipeline.stop("p")

    def test_a_batch_leaves_batch_timeout_after_its_first_message(self, runtime):
        context = start({"default": {"batch_size": 100, "batch_timeout": 0.05}})
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2, 3]))
        assert len(ack.successful) == 3
        [(_, data, info, _)] = batches_of(context)
        assert sorted(data) == [1, 2, 3]
        assert (info.size, info.trigger) == (3, "timeout")
        pl.Pipeline.stop("p")

    def test_a_flush_mode_message_makes_its_batch_leave_at_once(self, runtime):
        """batch_timeout is 30 s: the batch can only have left because of the flush."""
        context = start(
            {"default": {"batch_size": 100, "batch_timeout": 30.0}},
            processors={"default": {"concurrency": 1}},
        )
        bulk = pl.Pipeline.test_batch("p", [1, 2])
        flush = pl.Pipeline.test_message("p", 3)
        ack_of(flush)
        ack_of(bulk)
        [(_, data, info, _)] = batches_of(context)
        assert data == [1, 2, 3]
        assert (info.size, info.trigger) == (3, "flush")
        pl.Pipeline.stop("p")

    def test_a_batch_filled_by_a_flush_mode_message_has_trigger_flush(self, runtime):
        context = start(
            {"default": {"batch_size": 3, "batch_timeout": 30.0}},
            processors={"default": {"concurrency": 1}},
        )
        bulk = pl.Pipeline.test_batch("p", [1, 2])
        ack_of(pl.Pipeline.test_message("p", 3))
        ack_of(bulk)
        assert [(data, info.trigger) for _, data, info, _ in batches_of(context)] == [
            ([1, 2, 3], "flush")
        ]
        pl.Pipeline.stop("p")

    def test_each_flush_mode_message_makes_its_batch_leave(self, runtime):
        context = start(
            {"default": {"batch_size": 10, "batch_timeout": 30.0}},
            processors={"default": {"concurrency": 1}},
        )
        ack_of(pl.Pipeline.test_batch("p", [1, 2], batch_mode="flush"))
        assert [(data, info.trigger) for _, data, info, _ in batches_of(context)] == [
            ([1], "flush"),
            ([2], "flush"),
        ]
        pl.Pipeline.stop("p")


class TestBatchKeys:
    def test_messages_are_batched_by_batch_key(self, runtime):
        context = start(
            {"default": {"batch_size": 3, "batch_timeout": 0.05}},
            route=lambda m: m.put_batch_key(m.data % 3),
        )
        ack = ack_of(pl.Pipeline.test_batch("p", list(range(30))))
        assert len(ack.successful) == 30
        seen = batches_of(context)
        assert sum(len(data) for _, data, _, _ in seen) == 30
        for _, data, info, _ in seen:
            assert {d % 3 for d in data} == {info.batch_key}
            assert info.size == len(data)
        pl.Pipeline.stop("p")


class TestRouting:
    def test_each_message_goes_to_the_batcher_it_names(self, runtime):
        context = start(
            {"even": {"batch_size": 4}, "odd": {"batch_size": 4, "concurrency": 2}},
            route=lambda m: m.put_batcher("even" if m.data % 2 == 0 else "odd"),
        )
        ack = ack_of(pl.Pipeline.test_batch("p", list(range(16))))
        assert len(ack.successful) == 16
        evens = {otpy.whereis("p.BatchProcessor_even_0")}
        odds = {otpy.whereis(f"p.BatchProcessor_odd_{i}") for i in range(2)}
        for batcher, data, info, pid in batches_of(context):
            assert info.batcher == batcher
            if batcher == "even":
                assert all(d % 2 == 0 for d in data) and pid in evens
            else:
                assert all(d % 2 == 1 for d in data) and pid in odds
                assert info.partition in (0, 1)  # concurrency > 1: the batch processor's index
                assert otpy.whereis(f"p.BatchProcessor_odd_{info.partition}") == pid
        pl.Pipeline.stop("p")

    def test_an_unknown_batcher_fails_the_message_in_the_processor(self, runtime):
        context = start(
            {"db": {"batch_size": 1}}, route=lambda m: m.put_batcher("db" if m.data else "dbb")
        )
        ack = ack_of(pl.Pipeline.test_batch("p", [0, 1]))
        [failed] = ack.failed
        assert failed.data == 0
        reason = failed.status[1]
        assert isinstance(reason, ValueError)
        assert "'dbb'" in str(reason) and "['db']" in str(reason)
        assert [data for _, data, _, _ in batches_of(context)] == [[1]]
        pl.Pipeline.stop("p")

    def test_without_put_batcher_messages_go_to_the_default_batcher(self, runtime):
        context = start({"default": {"batch_size": 2}})
        ack_of(pl.Pipeline.test_batch("p", [1, 2]))
        assert [b for b, _, _, _ in batches_of(context)] == ["default"]
        pl.Pipeline.stop("p")


class TestBatchFailures:
    def test_an_exception_in_handle_batch_fails_that_batch_only(self, runtime):
        def batch(messages, info):
            if info.batch_key == "bad":
                raise OSError("disk full")
            return messages

        start(
            {"default": {"batch_size": 2, "batch_timeout": 0.05}},
            route=lambda m: m.put_batch_key("bad" if m.data < 2 else "good"),
            batch=batch,
        )
        ack = ack_of(pl.Pipeline.test_batch("p", [0, 1, 2, 3]))
        assert sorted(m.data for m in ack.failed) == [0, 1]
        assert all(isinstance(m.status[1], OSError) for m in ack.failed)
        assert sorted(m.data for m in ack.successful) == [2, 3]
        pl.Pipeline.stop("p")

    def test_handle_batch_must_return_every_message(self, runtime):
        start({"default": {"batch_size": 3}}, batch=lambda messages, info: messages[:1])
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2, 3]))
        assert sorted(m.data for m in ack.failed) == [1, 2, 3]
        assert "must return the 3 messages" in str(ack.failed[0].status[1])
        pl.Pipeline.stop("p")

    def test_messages_handle_batch_marks_failed_are_acked_as_failed(self, runtime):
        start(
            {"default": {"batch_size": 2}},
            batch=lambda messages, info: [messages[0].failed("no"), messages[1]],
        )
        ack = ack_of(pl.Pipeline.test_batch("p", [1, 2], batch_mode="bulk"))
        assert len(ack.failed) == 1 and len(ack.successful) == 1
        pl.Pipeline.stop("p")


class TestPartitionBy:
    def test_same_key_is_handled_in_order_by_one_processor_and_one_batch_processor(self, runtime):
        rec = Recorder()
        lock = threading.Lock()
        handled: dict[int, list[tuple[int, otpy.Pid]]] = {}

        def route(message):
            with lock:
                handled.setdefault(message.data % 6, []).append((message.data, otpy.self()))
            return message

        context = start(
            {"default": {"batch_size": 7, "batch_timeout": 0.02, "concurrency": 3}},
            route=route,
            rec=rec,
            count=600,
            processors={"default": {"concurrency": 4, "max_demand": 5}},
            partition_by=lambda m: m.data % 6,
        )
        rec.wait_for(600)
        processors = [otpy.whereis(f"p.Processor_default_{i}") for i in range(4)]
        pl.Pipeline.stop("p")
        rec.check()
        for key, seen in handled.items():
            assert [d for d, _ in seen] == sorted(d for d, _ in seen), f"key {key} out of order"
            assert len({pid for _, pid in seen}) == 1, f"key {key} on several processors"
            assert seen[0][1] == processors[key % 4]
        per_key: dict[int, list[int]] = {}
        bp_of_key: dict[int, set[otpy.Pid]] = {}
        for _, data, info, pid in batches_of(context):
            assert info.partition in (0, 1, 2)
            for d in data:
                assert d % 6 % 3 == info.partition
                per_key.setdefault(d % 6, []).append(d)
                bp_of_key.setdefault(d % 6, set()).add(pid)
        for key, data in per_key.items():
            assert data == sorted(data), f"key {key} out of order in the batch processors"
            assert len(bp_of_key[key]) == 1
        assert sum(len(d) for d in per_key.values()) == 600

    def test_a_partition_by_that_raises_fails_the_message(self, runtime):
        def partition_by(message):
            if message.data == "bad":
                raise KeyError("no key")
            return 0

        start({"default": {"batch_size": 1}}, partition_by=partition_by)
        ack = ack_of(pl.Pipeline.test_batch("p", ["good", "bad"]))
        assert [m.data for m in ack.successful] == ["good"]
        [failed] = ack.failed
        assert isinstance(failed.status[1], KeyError)
        pl.Pipeline.stop("p")

    def test_partition_by_must_return_an_int(self, runtime):
        start({"default": {"batch_size": 1}}, partition_by=lambda m: "x")
        ack = ack_of(pl.Pipeline.test_message("p", 1))
        [failed] = ack.failed
        assert isinstance(failed.status[1], TypeError)
        assert "must return an int" in str(failed.status[1])
        pl.Pipeline.stop("p")
