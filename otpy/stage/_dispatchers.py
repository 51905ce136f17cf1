"""Dispatchers: how a producer shares its events among its consumers.

A dispatcher belongs to one producer and runs inside it (no locks: the
producer's process owns it). The producer tells it about subscriptions,
cancellations and demand, and hands it the events to send; the dispatcher
answers with the demand the producer should satisfy, and with the events it
could not send yet (which go to the producer's buffer).

* :class:`DemandDispatcher` (the default): each event goes to one consumer,
  the one with the most pending demand.
* :class:`BroadcastDispatcher`: every event goes to every consumer (that
  accepts it: a subscription may pass ``selector=`` a predicate); the producer
  moves at the pace of the slowest consumer.
* :class:`PartitionDispatcher`: each event goes to the consumer of its
  partition (``partition=`` in the subscription), chosen by ``hash=``.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

from .._core import Pid, Ref

__all__ = [
    "BroadcastDispatcher",
    "DemandDispatcher",
    "Dispatcher",
    "Outbox",
    "PartitionDispatcher",
    "Subscription",
    "send_by_demand",
]

Subscription = tuple[Pid, Ref]
"""A subscription as a producer sees it: (consumer pid, subscription ref)."""


class Outbox(Protocol):
    """What a producer offers its dispatcher to reach the consumers."""

    def send(self, sub: Subscription, events: list[Any]) -> None:
        """Outbox ``events`` to one subscription."""

    def reask(self, sub: Subscription, n: int) -> None:
        """Count ``n`` more demand for ``sub``, as if it had asked (after this dispatch)."""


class Dispatcher(Protocol):
    """What a producer needs from a dispatcher (the pluggable seam)."""

    options: frozenset[str]
    """The subscription options this dispatcher understands (besides max/min_demand, cancel)."""

    def subscribe(self, opts: dict[str, Any], sub: Subscription) -> None:
        """A consumer subscribed; raise ValueError for options it cannot take."""

    def cancel(self, sub: Subscription) -> int:
        """A consumer left; how many more events the producer should make now (usually 0)."""

    def ask(self, demand: int, sub: Subscription, out: Outbox) -> int:
        """``sub`` asked for ``demand`` more; how many more events the producer should make."""

    def dispatch(self, events: list[Any], out: Outbox) -> list[Any]:
        """Outbox what the demand allows; the events left over, for the producer's buffer."""


def send_by_demand(
    demands: dict[Any, int], subs: dict[Any, Subscription], events: list[Any], out: Outbox
) -> list[Any]:
    """Send ``events`` to the subscriptions with the most demand first; the ones left over.

    ``demands`` and ``subs`` are keyed by subscription ref (unique, hashed at C
    speed): the demand still pending, and the subscription itself. Demand is
    used up as events go out.
    """
    while events and demands:
        ref = max(demands, key=demands.__getitem__)
        want = demands[ref]
        if want <= 0:
            break
        batch, events = events[:want], events[want:]
        demands[ref] = want - len(batch)
        out.send(subs[ref], batch)
    return events


def fresh(dispatcher: Dispatcher) -> Dispatcher:
    """A copy for one producer, so one instance passed to two producers is not shared."""
    return copy.deepcopy(dispatcher)


class DemandDispatcher:
    """Outboxs each event to one consumer: the one with the most pending demand.

    Example::

        Numbers.start_link(0, dispatcher=stage.DemandDispatcher())
    """

    __module__ = "otpy.stage"
    options: frozenset[str] = frozenset()

    def __init__(self) -> None:
        # Keyed by the subscription's ref (unique, hashed at C speed), in subscription
        # order; _subs maps it back to the subscription.
        self._demands: dict[Any, int] = {}
        self._subs: dict[Any, Subscription] = {}

    def __repr__(self) -> str:
        return "stage.DemandDispatcher()"

    def subscribe(self, opts: dict[str, Any], sub: Subscription) -> None:
        self._demands[sub[1]] = 0
        self._subs[sub[1]] = sub

    def cancel(self, sub: Subscription) -> int:
        self._demands.pop(sub[1], None)
        self._subs.pop(sub[1], None)
        return 0

    def ask(self, demand: int, sub: Subscription, out: Outbox) -> int:
        ref = sub[1]
        if ref in self._demands:
            self._demands[ref] += demand
        return demand

    def dispatch(self, events: list[Any], out: Outbox) -> list[Any]:
        return send_by_demand(self._demands, self._subs, events, out)


class BroadcastDispatcher:
    """Outboxs every event to every consumer; demand is that of the slowest one.

    A subscription may pass ``selector=`` a predicate on events: that consumer
    then gets only the events it accepts (the others give their demand back).

    Example::

        Events.start_link(dispatcher=stage.BroadcastDispatcher())
        Audit.start_link(subscribe_to=[(events, {"selector": lambda e: e.kind == "login"})])
    """

    __module__ = "otpy.stage"
    options = frozenset({"selector"})

    def __init__(self) -> None:
        self._demands: dict[Subscription, int] = {}
        self._selectors: dict[Subscription, Callable[[Any], bool] | None] = {}

    def __repr__(self) -> str:
        return "stage.BroadcastDispatcher()"

    def _floor(self) -> int:
        return min(self._demands.values()) if self._demands else 0

    def subscribe(self, opts: dict[str, Any], sub: Subscription) -> None:
        selector = opts.get("selector")
        if selector is not None and not callable(selector):
            raise ValueError(f"selector must be a predicate on events; got {selector!r}")
        # A newcomer has no demand yet: the others wait for it (events made for their
        # demand meanwhile wait in the producer's buffer), as in GenStage.
        self._demands[sub] = 0
        self._selectors[sub] = selector

    def cancel(self, sub: Subscription) -> int:
        before = self._floor()
        self._demands.pop(sub, None)
        self._selectors.pop(sub, None)
        # The slowest consumer may have left: the others' demand is free now.
        return max(0, self._floor() - before)

    def ask(self, demand: int, sub: Subscription, out: Outbox) -> int:
        if sub not in self._demands:
            return 0
        before = self._floor()
        self._demands[sub] += demand
        return self._floor() - before

    def dispatch(self, events: list[Any], out: Outbox) -> list[Any]:
        n = min(len(events), self._floor())
        if n == 0:
            return events
        batch, rest = events[:n], events[n:]
        for sub in list(self._demands):
            self._demands[sub] -= n
            selector = self._selectors.get(sub)
            chosen = batch if selector is None else [e for e in batch if selector(e)]
            if chosen:
                out.send(sub, chosen)
            if len(chosen) < n:  # events it did not want must not use up its demand (GenStage)
                out.reask(sub, n - len(chosen))
        return rest


class PartitionDispatcher:
    """Outboxs each event to the consumer of its partition.

    Options:
        partitions: how many partitions (numbered 0..n-1), or a sequence of
            partition names.
        hash: ``fn(event) -> partition`` (default: a stable hash of the event
            modulo the number of partitions). Returning ``None`` drops the event.
            As in GenStage, a dropped event uses up the demand it was made for:
            a consumer is then sent fewer events than it asked for, and if
            drops eat all of it, it waits for events that never come. To
            filter a stream, filter in a ``ProducerConsumer`` before it.

    Each consumer subscribes with ``partition=`` one of the partitions. The
    producer makes as many events as all partitions asked for together; an
    event for a partition that has no demand left waits in that partition's
    queue inside the dispatcher, and events beyond the total demand wait in
    the producer's buffer (bounded by its ``buffer_size``).

    Example::

        Source.start_link(dispatcher=stage.PartitionDispatcher(partitions=2,
                                                               hash=lambda e: e["user"] % 2))
        Sink.start_link(subscribe_to=[(source, {"partition": 0})])
    """

    __module__ = "otpy.stage"
    options = frozenset({"partition"})

    def __init__(
        self,
        partitions: int | Sequence[Hashable] = 2,
        hash: Callable[[Any], Hashable | None] | None = None,
    ) -> None:
        if isinstance(partitions, bool):
            raise TypeError(
                f"partitions must be an int >= 1 or a sequence of names; got {partitions!r}"
            )
        if isinstance(partitions, int):
            if partitions < 1:
                raise ValueError(
                    f"partitions must be an int >= 1 or a sequence of names; got {partitions!r}"
                )
            names: list[Hashable] = list(range(partitions))
        elif (
            isinstance(partitions, (str, bytes))
            or not isinstance(partitions, Sequence)
            or not partitions
        ):
            raise TypeError(
                f"partitions must be an int >= 1 or a sequence of names; got {partitions!r}"
            )
        else:
            names = list(partitions)
            if len(set(names)) != len(names):
                raise ValueError(f"partition names must be unique; got {partitions!r}")
        if hash is not None and not callable(hash):
            raise TypeError(f"hash must be a function of an event; got {hash!r}")
        self._names = names
        self._hash = hash
        self._queues: dict[Hashable, deque[Any]] = {name: deque() for name in names}
        self._owner: dict[Hashable, Subscription] = {}
        self._partition_of: dict[Subscription, Hashable] = {}
        self._demands: dict[Hashable, int] = dict.fromkeys(names, 0)
        self._waiting = 0  # demand asked for over all partitions, not yet met

    def __repr__(self) -> str:
        return f"stage.PartitionDispatcher(partitions={self._names!r})"

    @property
    def partitions(self) -> list[Hashable]:
        return list(self._names)

    def subscribe(self, opts: dict[str, Any], sub: Subscription) -> None:
        if "partition" not in opts:
            raise ValueError(
                f"a subscription to a PartitionDispatcher needs partition= one of {self._names!r}"
            )
        name = opts["partition"]
        if name not in self._queues:
            raise ValueError(f"unknown partition {name!r}; the partitions are {self._names!r}")
        if name in self._owner:
            raise ValueError(f"partition {name!r} already has a consumer")
        self._owner[name] = sub
        self._partition_of[sub] = name
        self._demands[name] = 0

    def cancel(self, sub: Subscription) -> int:
        name = self._partition_of.pop(sub, None)
        if name is not None:
            del self._owner[name]
            self._waiting -= self._demands[name]
            self._demands[name] = 0
        return 0

    def ask(self, demand: int, sub: Subscription, out: Outbox) -> int:
        name = self._partition_of.get(sub)
        if name is None:
            return 0
        queue = self._queues[name]
        if queue:
            n = min(demand, len(queue))
            out.send(sub, [queue.popleft() for _ in range(n)])
            demand -= n
        self._demands[name] += demand
        self._waiting += demand
        return demand

    def _partition(self, event: Any) -> Hashable | None:
        if self._hash is not None:
            name = self._hash(event)
            if name is not None and name not in self._queues:
                raise ValueError(
                    f"hash returned {name!r}, not one of the partitions {self._names!r}"
                )
            return name
        from .._partition_supervisor import stable_hash

        return self._names[stable_hash(event) % len(self._names)]

    def dispatch(self, events: list[Any], out: Outbox) -> list[Any]:
        # Only as many events as were asked for (over all partitions) are taken; the
        # rest go back to the producer's buffer, where buffer_size bounds them. Taken
        # events for a partition without demand wait in that partition's queue.
        now, later = events[: self._waiting], events[self._waiting :]
        self._waiting -= len(now)
        batches: dict[Hashable, list[Any]] = {}
        for event in now:
            name = self._partition(event)
            if name is None:
                continue
            if self._demands[name] > 0 and not self._queues[name]:
                self._demands[name] -= 1
                batches.setdefault(name, []).append(event)
            else:
                self._queues[name].append(event)
        for name, batch in batches.items():
            out.send(self._owner[name], batch)
        return later
