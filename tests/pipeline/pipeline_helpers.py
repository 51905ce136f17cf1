"""In-process producers and acknowledgers for the pipeline tests (no broker)."""

from __future__ import annotations

import threading
from typing import Any

from conftest import WAIT, wait_until

import otpy
import otpy.pipeline as pl
import otpy.stage as stage
from otpy import telemetry

__all__ = [
    "DUMMY",
    "Events",
    "ListProducer",
    "Log",
    "Recorder",
    "Tally",
    "ack_of",
    "base_options",
]

DUMMY = {"module": (pl.DummyProducer, {})}


def base_options(**changes: Any) -> dict[str, Any]:
    """Valid start_link options (a DummyProducer, one processor), with ``changes``."""
    options: dict[str, Any] = {
        "name": "p",
        "producer": dict(DUMMY),
        "processors": {"default": {"concurrency": 1}},
    }
    options.update(changes)
    return options


def ack_of(ref: otpy.Ref, timeout: float = WAIT) -> pl.Ack:
    """The pl.Ack of a test_message / test_batch call."""
    return otpy.receive(timeout=timeout, match=lambda m: isinstance(m, pl.Ack) and m.ref == ref)


class Recorder:
    """An acknowledger that records every ack call under a lock.

    A message is known by ``metadata["id"]``; one acked a second time lands in
    ``twice`` (an exception here would only be logged by ack_messages), and
    :meth:`check` fails the test for it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[Any, list[Any], list[Any]]] = []  # (ack_ref, ok ids, failed ids)
        self.acked: dict[Any, pl.Message] = {}
        self.order: list[Any] = []
        self.twice: list[Any] = []

    def ack(self, ack_ref: Any, successful: list[pl.Message], failed: list[pl.Message]) -> None:
        with self.lock:
            self.calls.append(
                (
                    ack_ref,
                    [m.metadata["id"] for m in successful],
                    [m.metadata["id"] for m in failed],
                )
            )
            for message in (*successful, *failed):
                key = message.metadata["id"]
                if key in self.acked:
                    self.twice.append(key)
                self.acked[key] = message
                self.order.append(key)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_for(self, n: int, timeout: float = WAIT) -> None:
        wait_until(lambda: self.count() >= n, timeout=timeout)

    def snapshot(self) -> dict[Any, pl.Message]:
        with self.lock:
            return dict(self.acked)

    def failed_ids(self) -> set[Any]:
        with self.lock:
            return {k for k, m in self.acked.items() if m.status != "ok"}

    def check(self) -> None:
        with self.lock:
            assert not self.twice, f"acked more than once: {self.twice[:20]}"


class Log:
    """A list that several stages append to, under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._items: list[Any] = []

    def add(self, item: Any) -> None:
        with self.lock:
            self._items.append(item)

    def items(self) -> list[Any]:
        with self.lock:
            return list(self._items)


class Tally:
    """What the ListProducers of a pipeline were asked for and made, under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.demanded = 0
        self.made = 0
        self.starts: dict[int, int] = {}

    def start(self, index: int) -> int:
        """Count a start of producer ``index``; how many times it started before."""
        with self.lock:
            before = self.starts.get(index, 0)
            self.starts[index] = before + 1
            return before

    def add(self, demanded: int, made: int) -> None:
        with self.lock:
            self.demanded += demanded
            self.made += made

    def read(self) -> tuple[int, int]:
        with self.lock:
            return self.demanded, self.made


class ListProducer(stage.Producer):
    """Emits ``count`` messages on demand (``None``: without end), acked to ``recorder``.

    Producer ``i`` of ``n`` emits the data ``i * count + k`` for ``k`` in
    0..count-1, with ``metadata["id"]`` the same number. It asks the pipeline
    for its index with ``pipeline_options``. With ``observer`` (a pid) it
    reports each demand as ``("demand", index, n)``; with ``tally`` (a
    :class:`Tally`) it counts what it was asked for and made, and a restarted
    producer makes other ids than the ones before it. ``ack_refs`` are the
    ack_refs of the messages, in turn (default ``["list"]``).
    """

    pipeline_options = frozenset({"_index"})

    def init(self, options: dict[str, Any]) -> None:
        self.index = options.get("_index", 0)
        self.count = options.get("count")
        self.recorder = options["recorder"]
        self.observer = options.get("observer")
        self.tally = options.get("tally")
        self.ack_refs = options.get("ack_refs", ["list"])
        self.base = self.index * (self.count or 1_000_000_000)
        if self.tally is not None:  # a restarted producer makes new ids
            self.base += self.tally.start(self.index) * 100_000_000_000
        self.made = 0
        self.demanded = 0
        self.drained = False

    def handle_demand(self, demand: int) -> list[pl.Message]:
        self.demanded += demand
        if self.observer is not None:
            otpy.send(self.observer, ("demand", self.index, demand))
        n = demand if self.count is None else min(demand, self.count - self.made)
        start = self.base + self.made
        self.made += n
        if self.tally is not None:
            self.tally.add(demand, n)
        refs = self.ack_refs
        return [
            pl.Message(
                i, metadata={"id": i}, acknowledger=(self.recorder, refs[i % len(refs)], None)
            )
            for i in range(start, start + n)
        ]

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "stats":
            return {"demanded": self.demanded, "made": self.made, "drained": self.drained}
        return super().handle_call(request, caller)

    def prepare_for_draining(self) -> None:
        self.drained = True
        if self.observer is not None:
            otpy.send(self.observer, ("draining", self.index))


class Events:
    """Collects telemetry events (event, measurements, metadata) while attached."""

    def __init__(self, *events: tuple[str, ...]) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]] = []
        self.id = f"pipeline-test-{id(self)}"
        telemetry.attach_many(self.id, list(events), self._handle)

    def _handle(self, event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        with self.lock:
            self.seen.append((event, dict(measurements), dict(metadata)))

    def of(self, event: tuple[str, ...]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        with self.lock:
            return [(m, md) for e, m, md in self.seen if e == event]

    def close(self) -> None:
        telemetry.detach(self.id)
