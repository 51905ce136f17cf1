"""Windows and triggers: how a reducing stage splits its events, and when it emits.

Example::

    from otpy.flow import Flow, Window

    # Errors per service in 10-second windows of event time (``e.ts`` in seconds).
    window = Window.fixed(10, "seconds", lambda e: e.ts)
    flow = (
        Flow.from_enumerable(log_events)
        .filter(lambda e: e.level == "ERROR")
        .partition(key=lambda e: e.service, window=window)
        .reduce(dict, lambda e, acc: {**acc, e.service: acc.get(e.service, 0) + 1})
        .on_trigger(lambda acc, info: ([(info.window, acc)], acc))
    )
    for window_start, counts in flow:
        ...

A window belongs to one layer of a flow (the stages after one ``partition``,
or the first stages after ``from_enumerable``/``from_stages``); it only
matters to a layer that reduces (``reduce``/``group_by``). Every stage of the
layer keeps its own windows: windows are partitioned across stages like the
data.

Window types (each stage reduces each window into an accumulator of its own,
made by the reduce's ``acc_factory``):

* ``Window.global_()`` (the default): all events belong to one window, which
  is done when the input ends.
* ``Window.fixed(count, unit, by)``: windows of ``count`` ``unit`` of event
  time, where ``by(event)`` returns the event's time in seconds (any real
  number; ``Window.fixed(10, by)`` means 10 seconds). An event belongs to
  window ``by(event) // duration``, identified by its start,
  ``(by(event) // duration) * duration``. A stage assumes each of its
  producers sends events in time order: window ``i`` is done once every
  producer of the stage has sent an event of a later window (a watermark),
  or when the input ends. An event for a window that is already done is
  dropped, unless ``allowed_lateness`` keeps the window open: then the window
  first emits a ``"watermark"`` trigger, goes on accepting late events, and
  is done (``"done"``) after the allowed lateness, in processing time, or at
  the end of input. Windows are dense: between the first and the last window
  a stage has seen, every window triggers, also an empty one.
* ``Window.periodic(count, unit="second")``: windows of processing time: a
  stage closes its current window (``"done"``) every ``count`` ``unit``,
  counted from the stage's start, and opens the next.
* ``Window.count(n)``: a window per ``n`` events a stage receives; at the end
  of input the current (possibly empty) window is done too.

Triggers emit a window's accumulator before the window is done, keeping it
(or whatever ``on_trigger`` returns) for the rest of the window:

* ``.trigger_every(n)``: after every ``n`` events of a window; named
  ``("every", n)``.
* ``.trigger_periodically(count, unit="second")``: every ``count`` ``unit``
  of processing time, per stage, for every window the stage keeps; named
  ``("periodically", count, unit)``.
* ``.trigger(acc_factory, fn)``: punctuation, for any other rule (see
  :meth:`Window.trigger`).

What a trigger emits is chosen by the layer's ``emit`` (the accumulator's
items by default) or ``on_trigger``, which also gets a :class:`TriggerInfo`
naming the partition, the window and the trigger (``"done"``,
``"watermark"``, ``("every", n)``, ...). Time units are seconds, as
everywhere in otpy; ``unit`` may be ``"millisecond"``, ``"second"``,
``"minute"``, ``"hour"`` (singular or plural) or a number of seconds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from numbers import Real
from typing import Any, Literal, NamedTuple, Protocol

import attrs

__all__ = ["TimeUnit", "TriggerInfo", "Window", "WindowType"]

WindowType = Literal["global", "fixed", "periodic", "count"]
TimeUnit = Literal[
    "millisecond",
    "milliseconds",
    "second",
    "seconds",
    "minute",
    "minutes",
    "hour",
    "hours",
]
_UNITS = {"millisecond": 0.001, "second": 1.0, "minute": 60.0, "hour": 3600.0}

Where = tuple[str, Hashable]
"""A window as a stage sees it: (window type, window id)."""

PunctuationFn = Callable[[list[Any], Any], tuple[Any, ...]]


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{what} must be a number > 0; got {value!r}")
    number = float(value)
    if not 0 < number < math.inf:
        raise ValueError(f"{what} must be a finite number > 0; got {value!r}")
    return number


def _unit_seconds(unit: object) -> float:
    if isinstance(unit, str):
        name = unit[:-1] if unit.endswith("s") else unit
        if name in _UNITS:
            return _UNITS[name]
        raise ValueError(
            f"unknown time unit {unit!r}; use 'millisecond', 'second', 'minute', 'hour' "
            "or a number of seconds"
        )
    return _positive(unit, "a time unit given as a number of seconds")


def _seconds(count: object, unit: object, what: str) -> float:
    return _positive(count, what) * _unit_seconds(unit)


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an int >= 1; got {value!r}")
    return value


class TriggerInfo(NamedTuple):
    """What ``on_trigger`` learns about a trigger, as Elixir Flow's window info.

    Attributes:
        partition: the index of the stage in its layer (0-based).
        partitions: how many stages the layer has.
        window_type: ``"global"``, ``"fixed"``, ``"periodic"`` or ``"count"``.
        window: ``"global"``; the window's start time (fixed windows); the
            window's number, from 0 (periodic and count windows).
        name: ``"done"`` (the window is complete; its accumulator is dropped
            after this trigger), ``"watermark"`` (a fixed window with allowed
            lateness reached its end), ``("every", n)``,
            ``("periodically", count, unit)``, or a punctuation's own name.
    """

    partition: int
    partitions: int
    window_type: str
    window: Hashable
    name: Any


TriggerInfo.__module__ = "otpy.flow"


@attrs.frozen
class Window:
    """A window (with triggers) for a layer of a flow; build one with the static methods.

    Example::

        Window.global_().trigger_every(1000)
        Window.fixed(1, "minute", lambda event: event["time"]).allowed_lateness(5)
        Window.periodic(2.5)
        Window.count(100)

    Windows are immutable: the trigger methods return a new window. See the
    module documentation of ``otpy.flow._window`` for the semantics of each
    window type and trigger.
    """

    kind: WindowType
    duration: float | None = None
    by: Callable[[Any], Any] | None = None
    lateness: float = 0.0
    size: int | None = None
    punctuation: tuple[Callable[[], Any], PunctuationFn] | None = None
    periodically: tuple[tuple[float, Any], ...] = ()

    # -- the window types --------------------------------------------------------------

    @staticmethod
    def global_() -> Window:
        """The global window: all events in one window, done when the input ends (the default)."""
        return Window("global")

    @staticmethod
    def fixed(
        count: float,
        unit: float | TimeUnit | Callable[[Any], Any],
        by: Callable[[Any], Any] | None = None,
    ) -> Window:
        """Windows of ``count`` ``unit`` of event time; ``by(event)`` gives the time in seconds.

        ``Window.fixed(10, "seconds", by)``, ``Window.fixed(10, 1.0, by)`` and
        ``Window.fixed(10, by)`` are the same window.

        Raises:
            ValueError: ``count`` or ``unit`` is not positive, or the unit is unknown.
            TypeError: ``by`` is not callable.
        """
        if by is None and callable(unit):
            by, unit = unit, 1.0
        if not callable(by):
            raise TypeError(
                f"Window.fixed needs by=, a function of an event returning its time; got {by!r}"
            )
        duration = _seconds(count, unit, "the duration of a fixed window")
        return Window("fixed", duration=duration, by=by)

    @staticmethod
    def periodic(count: float, unit: float | TimeUnit = "second") -> Window:
        """Windows of ``count`` ``unit`` of processing time, per stage.

        Raises:
            ValueError: ``count`` or ``unit`` is not positive, or the unit is unknown.
        """
        return Window("periodic", duration=_seconds(count, unit, "the period of a window"))

    @staticmethod
    def count(n: int) -> Window:
        """A window per ``n`` events a stage receives.

        Raises:
            ValueError: ``n`` is not an int >= 1.
        """
        return Window("count", size=_count(n, "the size of a count window"))

    # -- options and triggers -------------------------------------------------------------

    def allowed_lateness(self, count: float, unit: float | TimeUnit = "second") -> Window:
        """Keep a fixed window open ``count`` ``unit`` of processing time after its watermark.

        Raises:
            ValueError: this is not a fixed window, or the duration is not positive.
        """
        if self.kind != "fixed":
            raise ValueError(
                f"allowed_lateness is only for fixed windows; this is a {self.kind} window"
            )
        return attrs.evolve(self, lateness=_seconds(count, unit, "the allowed lateness"))

    def trigger(self, acc_factory: Callable[[], Any], fn: PunctuationFn) -> Window:
        """A punctuation trigger: ``fn(events, trigger_acc)`` decides, per batch of a window.

        ``acc_factory()`` makes the trigger's own accumulator at the start of
        every window. ``fn`` gets each batch of events a window receives and
        returns one of:

        * ``("cont", trigger_acc)``: reduce the events, no trigger;
        * ``("cont", events, trigger_acc)``: reduce only ``events``;
        * ``("trigger", name, pre, post, trigger_acc)``: reduce ``pre``,
          trigger ``name``, then give ``post`` to ``fn`` again.

        A window has at most one punctuation (``trigger_every`` is one).

        Raises:
            ValueError: the window has a punctuation already.
            TypeError: an argument is not callable.
        """
        if not callable(acc_factory) or not callable(fn):
            raise TypeError(
                "Window.trigger needs acc_factory() and fn(events, acc), both callable; "
                f"got {acc_factory!r} and {fn!r}"
            )
        if self.punctuation is not None:
            raise ValueError(
                "a window takes one trigger()/trigger_every(); this one has one already"
            )
        return attrs.evolve(self, punctuation=(acc_factory, fn))

    def trigger_every(self, n: int) -> Window:
        """Trigger ``("every", n)`` after every ``n`` events of a window.

        Raises:
            ValueError: ``n`` is not an int >= 1, or the window has a punctuation already.
        """
        n = _count(n, "trigger_every's count")
        name = ("every", n)

        def every(events: list[Any], left: int) -> tuple[Any, ...]:
            if len(events) >= left:
                return ("trigger", name, events[:left], events[left:], n)
            return ("cont", left - len(events))

        return self.trigger(lambda: n, every)

    def trigger_periodically(self, count: float, unit: float | TimeUnit = "second") -> Window:
        """Trigger ``("periodically", count, unit)`` every ``count`` ``unit``, per stage.

        Raises:
            ValueError: ``count`` or ``unit`` is not positive, or the unit is unknown.
        """
        seconds = _seconds(count, unit, "the period of a trigger")
        return attrs.evolve(
            self, periodically=(*self.periodically, (seconds, ("periodically", count, unit)))
        )

    @property
    def is_plain(self) -> bool:
        """The global window without triggers: nothing to materialize."""
        return self.kind == "global" and self.punctuation is None and not self.periodically


Window.__module__ = "otpy.flow"


# -- inside a stage ------------------------------------------------------------------------------


class Fold(Protocol):
    """What a window drives: a layer's reduce and what its triggers emit."""

    def new(self) -> Any:
        """A fresh accumulator."""

    def reduce(self, events: list[Any], acc: Any, where: Where) -> tuple[list[Any], Any]:
        """Fold ``events`` into ``acc``; the events to emit now (usually none), the new acc."""

    def trigger(self, acc: Any, where: Where, name: Any) -> tuple[list[Any], Any]:
        """The events a trigger ``name`` emits, and the accumulator to go on with."""


Schedule = Callable[[float, Hashable], None]
"""Asks the stage to call its window's ``timer(token)`` after so many seconds."""


def emit_items(acc: Any, snapshot: bool) -> list[Any]:
    """The default events of a trigger: a mapping's items, or an iterable's elements."""
    if isinstance(acc, Mapping):
        items = list(acc.items())
    elif isinstance(acc, (str, bytes)) or not isinstance(acc, Iterable):
        raise TypeError(
            f"the accumulator {acc!r} cannot be emitted as events (only a mapping's items or "
            "an iterable's elements can); call emit('state') or on_trigger(...) after reduce"
        )
    else:
        items = list(acc)
    return copy.deepcopy(items) if snapshot else items


class _Punctuated:
    """A fold whose accumulator is ``[trigger_acc, acc]``, triggered by a punctuation."""

    __slots__ = ("_fn", "_inner", "_new")

    def __init__(self, inner: Fold, new: Callable[[], Any], fn: PunctuationFn) -> None:
        self._inner = inner
        self._new = new
        self._fn = fn

    def new(self) -> Any:
        return [self._new(), self._inner.new()]

    def reduce(self, events: list[Any], acc: Any, where: Where) -> tuple[list[Any], Any]:
        state, inner_acc = acc
        out: list[Any] = []
        inner = self._inner
        while True:
            result = self._fn(events, state)
            if type(result) is not tuple or not result or result[0] not in ("cont", "trigger"):
                raise TypeError(
                    "a window trigger function must return ('cont', acc), ('cont', events, acc) "
                    f"or ('trigger', name, pre, post, acc); got {result!r}"
                )
            if result[0] == "trigger" and len(result) == 5:
                _, name, pre, post, state = result
                emitted, inner_acc = inner.reduce(list(pre), inner_acc, where)
                out += emitted
                emitted, inner_acc = inner.trigger(inner_acc, where, name)
                out += emitted
                events = list(post)
                continue
            if len(result) == 2:
                state = result[1]
            elif len(result) == 3:
                _, events, state = result
                events = list(events)
            else:
                raise TypeError(f"a window trigger function returned {result!r}")
            emitted, inner_acc = inner.reduce(events, inner_acc, where)
            out += emitted
            return out, [state, inner_acc]

    def trigger(self, acc: Any, where: Where, name: Any) -> tuple[list[Any], Any]:
        events, inner_acc = self._inner.trigger(acc[1], where, name)
        return events, [acc[0], inner_acc]


class WindowState(Protocol):
    """One stage's windows: reduces events into them and emits what triggers."""

    def events(self, producer: int, events: list[Any]) -> list[Any]:
        """Events from upstream producer number ``producer``; returns events to emit."""

    def trigger(self, name: Any) -> list[Any]:
        """A named trigger (periodic) for every window the stage keeps."""

    def timer(self, token: Hashable) -> list[Any]:
        """A timer the window scheduled has fired."""

    def producer_done(self, producer: int) -> list[Any]:
        """Upstream producer number ``producer`` has no more events."""

    def done(self) -> list[Any]:
        """The input has ended: every window is done."""


_GLOBAL: Where = ("global", "global")


class _GlobalState:
    __slots__ = ("_acc", "_fold")

    def __init__(self, fold: Fold) -> None:
        self._fold = fold
        self._acc = fold.new()

    def events(self, producer: int, events: list[Any]) -> list[Any]:
        out, self._acc = self._fold.reduce(events, self._acc, _GLOBAL)
        return out

    def trigger(self, name: Any) -> list[Any]:
        out, self._acc = self._fold.trigger(self._acc, _GLOBAL, name)
        return out

    def timer(self, token: Hashable) -> list[Any]:
        return []

    def producer_done(self, producer: int) -> list[Any]:
        return []

    def done(self) -> list[Any]:
        return self._fold.trigger(self._acc, _GLOBAL, "done")[0]


class _CountState:
    __slots__ = ("_acc", "_fold", "_left", "_size", "_window")

    def __init__(self, fold: Fold, size: int) -> None:
        self._fold = fold
        self._size = size
        self._window = 0
        self._left = size
        self._acc = fold.new()

    def events(self, producer: int, events: list[Any]) -> list[Any]:
        fold = self._fold
        out: list[Any] = []
        while events:
            chunk, events = events[: self._left], events[self._left :]
            self._left -= len(chunk)
            emitted, self._acc = fold.reduce(chunk, self._acc, ("count", self._window))
            out += emitted
            if self._left == 0:
                out += fold.trigger(self._acc, ("count", self._window), "done")[0]
                self._window += 1
                self._left = self._size
                self._acc = fold.new()
        return out

    def trigger(self, name: Any) -> list[Any]:
        out, self._acc = self._fold.trigger(self._acc, ("count", self._window), name)
        return out

    def timer(self, token: Hashable) -> list[Any]:
        return []

    def producer_done(self, producer: int) -> list[Any]:
        return []

    def done(self) -> list[Any]:
        return self._fold.trigger(self._acc, ("count", self._window), "done")[0]


_TICK = ("periodic window",)


class _PeriodicState:
    __slots__ = ("_acc", "_duration", "_fold", "_schedule", "_window")

    def __init__(self, fold: Fold, duration: float, schedule: Schedule) -> None:
        self._fold = fold
        self._duration = duration
        self._schedule = schedule
        self._window = 0
        self._acc = fold.new()
        schedule(duration, _TICK)

    def events(self, producer: int, events: list[Any]) -> list[Any]:
        out, self._acc = self._fold.reduce(events, self._acc, ("periodic", self._window))
        return out

    def trigger(self, name: Any) -> list[Any]:
        out, self._acc = self._fold.trigger(self._acc, ("periodic", self._window), name)
        return out

    def timer(self, token: Hashable) -> list[Any]:
        if token != _TICK:
            return []
        out = self._fold.trigger(self._acc, ("periodic", self._window), "done")[0]
        self._window += 1
        self._acc = self._fold.new()
        self._schedule(self._duration, _TICK)
        return out

    def producer_done(self, producer: int) -> list[Any]:
        return []

    def done(self) -> list[Any]:
        return self._fold.trigger(self._acc, ("periodic", self._window), "done")[0]


class _FixedState:
    """Fixed windows of event time, as Elixir Flow's: per-producer watermarks, dense windows.

    ``_windows`` maps a window's index to its accumulator; ``_recent`` holds,
    per producer still running, the index of the latest window it sent
    (``None`` before its first event); ``_current`` is the first window not
    yet past its watermark (``None`` until every producer has sent an event).
    """

    __slots__ = (
        "_by",
        "_current",
        "_duration",
        "_fold",
        "_lateness",
        "_recent",
        "_schedule",
        "_windows",
    )

    def __init__(self, fold: Fold, window: Window, producers: int, schedule: Schedule) -> None:
        assert window.duration is not None and window.by is not None
        self._fold = fold
        self._by = window.by
        self._duration = window.duration
        self._lateness = window.lateness
        self._schedule = schedule
        self._windows: dict[int, Any] = {}
        self._recent: dict[int, int | None] = dict.fromkeys(range(producers))
        self._current: int | None = None

    def _where(self, index: int) -> Where:
        start = index * self._duration
        return ("fixed", int(start) if start.is_integer() else start)

    def _index(self, event: Any) -> int:
        t = self._by(event)
        if isinstance(t, bool) or not isinstance(t, Real):
            raise TypeError(
                f"the event-time function of Window.fixed must return a number of seconds; "
                f"got {t!r} for event {event!r}"
            )
        return int(float(t) // self._duration)

    def events(self, producer: int, events: list[Any]) -> list[Any]:
        fold = self._fold
        windows = self._windows
        recent = self._recent.get(producer)
        indexes = [self._index(e) for e in events]
        out: list[Any] = []
        start = 0
        n = len(events)
        while start < n:
            index = indexes[start]
            end = start + 1
            while end < n and indexes[end] == index:
                end += 1
            if index in windows:
                acc = windows[index]
                recent = index if recent is None else max(recent, index)
            elif recent is None or index >= recent:
                acc = fold.new()
                recent = index
            else:  # late, for a window this stage already closed: dropped, as in Flow
                start = end
                continue
            emitted, windows[index] = fold.reduce(events[start:end], acc, self._where(index))
            out += emitted
            start = end
        if producer in self._recent:
            self._recent[producer] = recent
        out += self._advance()
        return out

    def _advance(self) -> list[Any]:
        """Close the windows that every running producer has moved past."""
        recents = self._recent.values()
        if not recents or None in recents or not self._windows:
            return []
        low = min(r for r in recents if r is not None)
        if self._current is None:
            self._current = min(self._windows)
        out: list[Any] = []
        while self._current < low:
            out += self._close(self._current)
            self._current += 1
        return out

    def _close(self, index: int) -> list[Any]:
        fold = self._fold
        if self._lateness == 0:
            acc = self._windows.pop(index) if index in self._windows else fold.new()
            return fold.trigger(acc, self._where(index), "done")[0]
        acc = self._windows[index] if index in self._windows else fold.new()
        self._schedule(self._lateness, ("lateness", index))
        out, self._windows[index] = fold.trigger(acc, self._where(index), "watermark")
        return out

    def trigger(self, name: Any) -> list[Any]:
        windows = self._windows
        if not windows:
            return []
        fold = self._fold
        out: list[Any] = []
        for index in range(min(windows), max(windows) + 1):
            acc = windows[index] if index in windows else fold.new()
            emitted, windows[index] = fold.trigger(acc, self._where(index), name)
            out += emitted
        return out

    def timer(self, token: Hashable) -> list[Any]:
        if type(token) is tuple and len(token) == 2 and token[0] == "lateness":
            index = token[1]
            if index in self._windows:
                acc = self._windows.pop(index)
                return self._fold.trigger(acc, self._where(index), "done")[0]
        return []

    def producer_done(self, producer: int) -> list[Any]:
        self._recent.pop(producer, None)
        return self._advance()

    def done(self) -> list[Any]:
        windows = self._windows
        if not windows:
            return []
        fold = self._fold
        out: list[Any] = []
        for index in range(min(windows), max(windows) + 1):
            acc = windows.pop(index) if index in windows else fold.new()
            out += fold.trigger(acc, self._where(index), "done")[0]
        return out


def window_state(window: Window, fold: Fold, producers: int, schedule: Schedule) -> WindowState:
    """The windows of one stage, reducing with ``fold``, fed by ``producers`` producers."""
    if window.punctuation is not None:
        fold = _Punctuated(fold, *window.punctuation)
    if window.kind == "global":
        return _GlobalState(fold)
    if window.kind == "count":
        assert window.size is not None
        return _CountState(fold, window.size)
    if window.kind == "periodic":
        assert window.duration is not None
        return _PeriodicState(fold, window.duration, schedule)
    return _FixedState(fold, window, producers, schedule)
