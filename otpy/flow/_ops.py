"""A flow's operations, and how one stage runs them.

The operations of a layer (the stages between two partitions) are recorded
in order and split when the flow runs: the mappers before ``reduce`` run on
every batch of events a stage receives; ``reduce`` folds them into the
window's accumulator; ``emit``/``on_trigger`` choose what a trigger emits;
the mappers after them run on the emitted events. Mappers are fused: a batch
goes through all of them in one stage, one operation after the other.
"""

from __future__ import annotations

import copy
import heapq
import itertools
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Literal, TypeAlias, cast

import attrs

from ._window import TriggerInfo, Where, emit_items

__all__ = [
    "Emit",
    "Layer",
    "Mapper",
    "OnTrigger",
    "Op",
    "Reduce",
    "TopN",
    "split",
]

MapperKind = Literal["map", "flat_map", "filter", "reject", "each"]
EmitMode = Literal["events", "state", "nothing"]
Batch = Callable[[list[Any]], list[Any]]


@attrs.frozen
class Mapper:
    kind: MapperKind
    fn: Callable[[Any], Any]


@attrs.frozen
class Reduce:
    acc_factory: Callable[[], Any]
    reducer: Callable[[Any, Any], Any]


@attrs.frozen
class Emit:
    mode: EmitMode


@attrs.frozen
class OnTrigger:
    fn: Callable[[Any, TriggerInfo], Any]


Op: TypeAlias = Mapper | Reduce | Emit | OnTrigger


@attrs.frozen
class TopN:
    """take_sort's tagging: each partition sends its ``n`` first events in sort order."""

    n: int
    key: Callable[[Any], Any] | None
    reverse: bool


Tag: TypeAlias = Literal["state", "each"] | TopN
"""How a layer before ``departition`` labels what it emits (see :class:`LayerFold`)."""


@attrs.frozen
class Layer:
    """A layer's operations, split around its reduce."""

    pre: tuple[Mapper, ...] = ()
    reduce: Reduce | None = None
    emit: Emit | OnTrigger | None = None
    post: tuple[Mapper, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.pre and self.reduce is None


def split(ops: Sequence[Op]) -> Layer:
    """Split a layer's operations (already validated when they were added)."""
    pre: list[Mapper] = []
    post: list[Mapper] = []
    reduce: Reduce | None = None
    emit: Emit | OnTrigger | None = None
    for op in ops:
        if isinstance(op, Mapper):
            (pre if reduce is None else post).append(op)
        elif isinstance(op, Reduce):
            reduce = op
        else:
            emit = op
    return Layer(tuple(pre), reduce, emit, tuple(post))


def _step(op: Mapper) -> Batch:
    fn = op.fn
    if op.kind == "map":
        return lambda events: [fn(e) for e in events]
    if op.kind == "filter":
        return lambda events: [e for e in events if fn(e)]
    if op.kind == "reject":
        return lambda events: [e for e in events if not fn(e)]
    if op.kind == "flat_map":
        return lambda events: [x for e in events for x in _iterable(fn(e), fn)]

    def each(events: list[Any]) -> list[Any]:
        for e in events:
            fn(e)
        return events

    return each


def _iterable(value: Any, fn: Callable[[Any], Any]) -> Iterable[Any]:
    if isinstance(value, Iterable):
        return value
    raise TypeError(
        f"the function given to flat_map must return an iterable; {fn!r} returned {value!r}"
    )


def compile_mappers(ops: Sequence[Mapper]) -> Batch | None:
    """One function that runs ``ops`` in order on a batch; None when there are none."""
    steps = [_step(op) for op in ops]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def run(events: list[Any]) -> list[Any]:
        for step in steps:
            if not events:
                break
            events = step(events)
        return events

    return run


class Tagged:
    """What a layer before ``departition`` emits: a state, its partition, its trigger."""

    __slots__ = ("info", "partition", "state")

    def __init__(self, state: Any, partition: int, info: TriggerInfo) -> None:
        self.state = state
        self.partition = partition
        self.info = info

    def __repr__(self) -> str:
        return f"Tagged({self.state!r}, {self.partition!r}, {self.info!r})"


class LayerFold:
    """A stage's reduce: folds events, and turns a trigger into events (see ``Fold``).

    On a trigger: ``on_trigger(acc, info)`` returns ``(events, acc)``; without
    it, ``emit`` picks the events (``"events"``: the accumulator's items,
    ``"state"``: the accumulator itself, ``"nothing"``) and the accumulator is
    kept. A trigger other than ``"done"`` keeps the accumulator, which the
    reducer may go on changing in place, so the built-in modes emit a deep
    copy then. The mappers after the reduce run on the events; before a
    departition, the events are tagged with the partition and the trigger.
    """

    __slots__ = (
        "_acc_factory",
        "_emit",
        "_on_trigger",
        "_partition",
        "_partitions",
        "_post",
        "_reducer",
        "_tag",
    )

    def __init__(self, layer: Layer, partition: int, partitions: int, tag: Tag | None) -> None:
        assert layer.reduce is not None
        self._acc_factory = layer.reduce.acc_factory
        self._reducer = layer.reduce.reducer
        self._on_trigger = layer.emit.fn if isinstance(layer.emit, OnTrigger) else None
        self._emit: EmitMode = layer.emit.mode if isinstance(layer.emit, Emit) else "events"
        self._post = compile_mappers(layer.post)
        self._partition = partition
        self._partitions = partitions
        if tag == "state" and (layer.emit is not None or layer.post):
            tag = "each"  # what the user chose to emit is what gets merged
        self._tag = tag

    def new(self) -> Any:
        return self._acc_factory()

    def reduce(self, events: list[Any], acc: Any, where: Where) -> tuple[list[Any], Any]:
        reducer = self._reducer
        for event in events:
            acc = reducer(event, acc)
        return [], acc

    def trigger(self, acc: Any, where: Where, name: Any) -> tuple[list[Any], Any]:
        info = TriggerInfo(self._partition, self._partitions, where[0], where[1], name)
        snapshot = name != "done"
        if self._tag == "state":
            return [Tagged(copy.deepcopy(acc) if snapshot else acc, self._partition, info)], acc
        if self._on_trigger is not None:
            result = self._on_trigger(acc, info)
            if type(result) is not tuple or len(result) != 2:
                raise TypeError(
                    "on_trigger must return a tuple (events, accumulator); "
                    f"{self._on_trigger!r} returned {result!r}"
                )
            events, new_acc = result
            if isinstance(events, (str, bytes, dict)) or not isinstance(events, Iterable):
                raise TypeError(
                    f"on_trigger must return (events, accumulator) with a list of events; "
                    f"got events {events!r}"
                )
            events = list(events)
        elif self._emit == "events":
            events, new_acc = emit_items(acc, snapshot), acc
        elif self._emit == "state":
            events, new_acc = [copy.deepcopy(acc) if snapshot else acc], acc
        else:
            events, new_acc = [], acc
        if self._post is not None and events:
            events = self._post(events)
        tag = self._tag
        if tag is None:
            return events, new_acc
        if tag == "each":
            return [Tagged(e, self._partition, info) for e in events], new_acc
        assert isinstance(tag, TopN)
        top = sorted(events, key=tag.key, reverse=tag.reverse)[: tag.n]
        return [Tagged(top, self._partition, info)], new_acc


class Departitioner:
    """Merges what the partitions of the layer before emit, per window, as Flow's departition.

    A window's accumulator (``acc_factory()``) takes ``merge(state, acc)`` of
    every state a partition emits for it; once every partition has sent its
    ``"done"`` for the window, ``done(acc)`` is emitted. Windows still open
    when the input ends are emitted then, in window order.
    """

    __slots__ = ("_acc_factory", "_done", "_merge", "_partitions", "_windows")

    def __init__(
        self,
        partitions: int,
        acc_factory: Callable[[], Any],
        merge: Callable[[Any, Any], Any],
        done: Callable[[Any], Any],
    ) -> None:
        self._partitions = partitions
        self._acc_factory = acc_factory
        self._merge = merge
        self._done = done
        self._windows: dict[tuple[str, Hashable], list[Any]] = {}  # -> [waiting partitions, acc]

    def events(self, tagged: list[Any]) -> list[Any]:
        out: list[Any] = []
        windows = self._windows
        for item in tagged:
            info: TriggerInfo = item.info
            key = (info.window_type, info.window)
            entry = windows.get(key)
            if entry is None:
                entry = windows[key] = [set(range(self._partitions)), self._acc_factory()]
            if info.name == "done":
                entry[0].discard(item.partition)
            entry[1] = self._merge(item.state, entry[1])
            if not entry[0]:
                del windows[key]
                out.append(self._done(entry[1]))
        return out

    def done(self) -> list[Any]:
        entries = list(self._windows.items())
        self._windows.clear()
        if all(isinstance(w, (int, float)) for (_, w), _ in entries):
            entries.sort(key=lambda kv: cast(float, kv[0][1]))
        return [self._done(acc) for _, (_, acc) in entries]


def merge_top(n: int, key: Callable[[Any], Any] | None, reverse: bool) -> Callable[[Any, Any], Any]:
    """take_sort's merge: the first ``n`` of two sorted lists."""

    def merge(state: list[Any], acc: list[Any]) -> list[Any]:
        return list(itertools.islice(heapq.merge(acc, state, key=key, reverse=reverse), n))

    return merge
