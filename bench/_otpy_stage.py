"""W8 on otpy: a producer, a producer_consumer and a consumer from ``otpy.stage``.

The stages are started unlinked, as W1-W5's servers are: a ``stage.Producer``
in ``demand="accumulate"`` mode, so that nothing flows before the clock
starts (``go`` is ``stage.demand(producer, "forward")``), a
``stage.ProducerConsumer`` and a ``stage.Consumer``, each subscribed with
``max_demand`` ``IN_FLIGHT`` (GenStage's default ``min_demand``, half of it,
so events move in batches of up to 500). Only the public API is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import otpy
import otpy.stage as stage

from ._contender import IN_FLIGHT, Go, Sink
from ._otpy import started


class _Numbers(stage.Producer):
    """W8's producer: the ints ``0 .. n-1``, as many at a time as its consumer asks for."""

    def init(self, n: int) -> None:
        self.next = 0
        self.end = n

    def handle_demand(self, demand: int) -> list[int]:
        first = self.next
        self.next = min(first + demand, self.end)
        return list(range(first, self.next))


class _Double(stage.ProducerConsumer):
    """W8's producer_consumer: doubles every event."""

    def handle_events(self, events: list[int], from_: Any) -> list[int]:
        return [2 * event for event in events]


class _Feed(stage.Consumer):
    """W8's consumer: hands every batch to the benchmark's ``Sink``."""

    def init(self, sink: Sink) -> None:
        self.sink = sink

    def handle_events(self, events: list[int], from_: Any) -> None:
        self.sink.add_all(events)


@contextmanager
def pipeline(n: int, batch: int, sink: Sink) -> Iterator[Go]:
    """W8 on otpy: three stages; ``batch`` is the baseline's, the demand protocol decides here."""
    subscription = {"max_demand": IN_FLIGHT}
    producer = started(_Numbers.start(n, demand="accumulate"), "Producer")
    middle = started(_Double.start(subscribe_to=[(producer, subscription)]), "ProducerConsumer")
    consumer = started(_Feed.start(sink, subscribe_to=[(middle, subscription)]), "Consumer")

    def go() -> None:
        stage.demand(producer, "forward")

    yield go
    for pid in (consumer, middle, producer):
        otpy.GenServer.stop(pid)
