"""W12-W14 on otpy: ``otpy.pipeline.Pipeline`` over Redis, RabbitMQ and a producer in the process.

Each measurement starts one pipeline, linked to the benchmark's process,
under a name of its own, and stops it with ``Pipeline.stop`` (which drains).
Only the public API is used; the broker producers are
``pl.RedisStreamProducer`` and ``pl.RabbitMQProducer``, which import their
client library (redis-py, pika) on first use.

- W12 (``stream_consumer``): ``RedisStreamProducer`` on the prepared stream
  and group (``block`` 0.1 s, so the stop after the clock does not wait a
  whole second for an idle read; a read with entries waiting never blocks),
  ``source.workers`` processors (``handle_message`` calls ``handle(data)``) and
  one batcher of ``batch_size`` ``source.batch`` whose ``handle_batch``
  returns the batch: the batch processor acks every batch, and the
  producer's ack thread sends the XACKs (coalesced).
- W13 (``queue_consumer``): ``RabbitMQProducer`` with ``prefetch_count``
  ``source.prefetch``, ``source.workers`` processors, no batchers: each
  processor acks what it handled, and the producer's connection thread sends
  the ``basic_ack``s. The stop (drain, then the connection closes) is part
  of W13's clock.
- W14 (``message_flow``): ``_Numbers``, a ``stage.Producer`` that emits
  ``pl.Message(i, acknowledger=(acknowledger, None, None))`` for the ints
  ``0 .. n-1`` as demand comes, and the default processors (Broadway's: 2 x
  CPU count, ``max_demand`` 10), no batchers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import otpy.pipeline as pl
import otpy.stage as stage

from ._contender import Acknowledger, QueueSource, StreamSource

_names = itertools.count(1)  # next() on itertools.count is atomic


def _name(workload: str) -> str:
    return f"bench-{workload}-{next(_names)}"


class _Handle(pl.Pipeline):
    """Calls the workload's ``handle(data)`` (the ``context``) for every message, in a processor."""

    def handle_message(self, processor: str, message: pl.Message, context: Any) -> pl.Message:
        context(message.data)
        return message

    def handle_batch(
        self, batcher: str, messages: list[pl.Message], batch_info: Any, context: Any
    ) -> list[pl.Message]:
        return messages


@contextmanager
def _running(name: str, **options: Any) -> Iterator[None]:
    _Handle.start_link(name=name, **options)
    try:
        yield
    finally:
        pl.Pipeline.stop(name)


@contextmanager
def stream_consumer(
    source: StreamSource, handle: Callable[[dict[str, str]], None]
) -> Iterator[None]:
    """W12 on otpy: a pipeline reading ``source`` with processors and one batcher."""
    options = {"stream": source.stream, "group": source.group, "url": source.url, "block": 0.1}
    with _running(
        _name("W12"),
        producer={"module": (pl.RedisStreamProducer, options)},
        processors={"default": {"concurrency": source.workers}},
        batchers={"default": {"batch_size": source.batch}},
        context=handle,
    ):
        yield


@contextmanager
def queue_consumer(source: QueueSource, handle: Callable[[bytes], None]) -> Iterator[None]:
    """W13 on otpy: a pipeline consuming ``source`` with processors that ack what they handled."""
    options = {"queue": source.queue, "url": source.url, "prefetch_count": source.prefetch}
    with _running(
        _name("W13"),
        producer={"module": (pl.RabbitMQProducer, options)},
        processors={"default": {"concurrency": source.workers}},
        context=handle,
    ):
        yield


class _Numbers(stage.Producer):
    """W14's producer: ``pl.Message(i)`` for the ints ``0 .. n-1``, as many as demanded."""

    def init(self, options: dict[str, Any]) -> None:
        self.next = 0
        self.end: int = options["n"]
        self.acknowledger = (options["acknowledger"], None, None)

    def handle_demand(self, demand: int) -> list[pl.Message]:
        first = self.next
        self.next = min(first + demand, self.end)
        acknowledger = self.acknowledger
        return [pl.Message(i, acknowledger=acknowledger) for i in range(first, self.next)]


@contextmanager
def message_flow(
    n: int, handle: Callable[[int], None], acknowledger: Acknowledger
) -> Iterator[None]:
    """W14 on otpy: ``_Numbers`` and the default processors."""
    with _running(
        _name("W14"),
        producer={"module": (_Numbers, {"n": n, "acknowledger": acknowledger})},
        processors={"default": {}},
        context=handle,
    ):
        yield
