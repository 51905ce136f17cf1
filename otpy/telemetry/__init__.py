"""Telemetry: named events that handlers subscribe to, and spans around work.

Example::

    import logging
    from otpy import telemetry

    def on_restart(event, measurements, metadata, config):
        config.warning("%s restarted %r (%d restarts)", metadata["supervisor"],
                       metadata["child_id"], measurements["restarts"])

    telemetry.attach("log-restarts", ("otpy", "supervisor", "restart"), on_restart,
                     config=logging.getLogger("app"))

    telemetry.execute(("myapp", "import", "done"), {"rows": 3}, {"file": "a.csv"})

    with telemetry.span(("myapp", "job"), {"job": "import"}) as meta:
        meta["rows"] = import_rows()       # goes to the stop event's metadata

    @telemetry.span(("myapp", "report"))
    def report(): ...

    telemetry.detach("log-restarts")       # True; False if no such handler

This is Elixir's ``:telemetry`` for otpy: a library (or otpy itself) emits
events, an application attaches handlers to the ones it cares about, and
nothing happens when nobody listens.

Events and handlers:
    An event name is a non-empty tuple of ``str`` such as
    ``("otpy", "supervisor", "restart")``; an emission carries two dicts,
    *measurements* (numbers: a duration, a count) and *metadata* (context: a
    pid, a name). A handler is ``function(event, measurements, metadata,
    config)`` attached under an id (any hashable, usually a ``str``) to one
    event (:func:`attach`) or several (:func:`attach_many`); it gets exactly
    the events it was attached to, not longer ones starting with them. Ids are
    unique: attaching an id that is attached raises ``ValueError``, and
    :func:`detach` removes an id from all its events. :func:`list_handlers`
    shows who listens. Handlers share the dicts of an emission: read them,
    do not change them.

Which thread runs a handler:
    The emitter's, synchronously, inside :func:`execute`: a handler of a
    supervisor's restart event runs in the supervisor's process, one after
    another in attach order. Keep handlers short (count, log, forward a
    message to a process) and never block in them. A handler attached or
    detached while an emission is under way may miss, or still get, that one
    emission; every later one sees the change.

Handlers that fail:
    A handler that raises an ``Exception`` is detached from all its events,
    logged with its traceback on the ``otpy.telemetry`` logger, and
    ``("telemetry", "handler", "failure")`` is emitted with measurements
    ``monotonic_time`` and ``system_time`` and metadata ``handler_id``,
    ``event`` and ``exception``. The other handlers of the emission still
    run and the emitter never sees the exception. A handler of the failure
    event that fails is detached and logged, but causes no further failure
    event. ``BaseException`` (``KeyboardInterrupt``, the interrupt otpy sends
    to a dead process's code) is not caught.

Spans:
    :func:`span` measures a block or a function call: it emits
    ``prefix + ("start",)`` with ``monotonic_time`` and ``system_time``, then
    ``prefix + ("stop",)`` with ``duration`` (seconds) and ``monotonic_time``,
    or, if the block raises, ``prefix + ("exception",)`` with the same
    measurements and metadata ``kind`` (the exception's class), ``reason``
    (the exception) and ``stacktrace`` (a ``traceback.StackSummary``), and
    the exception goes on.

Cost:
    With no handler attached to an event, :func:`execute` does one dictionary
    lookup and returns: the handler table is a dict from event to a tuple of
    handlers that attach and detach replace whole under a lock, and emitters
    read without one. For the same reason ``execute`` checks its arguments
    only when a handler is attached to the event (:func:`attach` always
    checks the event name, so a malformed name can never have a handler).

The events otpy emits are listed in API.md (process crash, supervisor restart
and max intensity, mailbox drop, pool, rate limiter, retry and pipeline
events). Two optional bridges turn them into the usual tools:
``otpy.telemetry.otel`` (OpenTelemetry spans and metrics, extra ``otel``) and
``otpy.telemetry.prometheus`` (a ``prometheus_client`` collector, extra
``prometheus``).

Why a hand-written event bus: ``opentelemetry-api`` is an API for traces and
metrics that need an SDK and exporters behind them, not a synchronous
in-process dispatcher of events to handlers attached and detached by id, and
nothing on PyPI offers that with the guarantees a process runtime needs
(handlers in the emitting process, a failing handler detached instead of
crashing the emitter, a free no-listener path, correctness without the GIL).
The bridges connect this bus to OpenTelemetry and Prometheus.

For the runtime: ``_handlers_for(event)`` returns the tuple of handlers
attached to ``event`` (empty if none) at the cost of one dictionary lookup, so
that a hot path can skip building measurements and metadata nobody reads::

    if telemetry._handlers_for(_CRASH):
        telemetry.execute(_CRASH, {}, {"pid": pid, "name": name, "reason": reason})

This module imports nothing from otpy, so the core can import it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Iterable
from types import TracebackType
from typing import Any, TypeAlias, TypeVar, cast

import attrs

__all__ = [
    "Event",
    "Handler",
    "HandlerFunction",
    "attach",
    "attach_many",
    "detach",
    "execute",
    "list_handlers",
    "span",
]

Event: TypeAlias = tuple[str, ...]
"""An event name: a non-empty tuple of ``str``, e.g. ``("otpy", "process", "crash")``."""

HandlerFunction: TypeAlias = Callable[[Event, dict[str, Any], dict[str, Any], Any], object]
"""``function(event, measurements, metadata, config)``; what it returns is ignored."""

_F = TypeVar("_F", bound=Callable[..., Any])

_FAILURE: Event = ("telemetry", "handler", "failure")

_log = logging.getLogger("otpy.telemetry")


@attrs.frozen
class Handler:
    """One handler attached to one event, as :func:`list_handlers` reports it.

    An id attached with :func:`attach_many` to three events is three
    ``Handler`` values with the same ``id``.

    Example::

        telemetry.attach("audit", ("myapp", "login"), on_login, config={"level": 1})
        [h] = telemetry.list_handlers(("myapp",))
        h.id, h.event, h.function, h.config   # ('audit', ('myapp', 'login'), on_login, {...})
    """

    id: Hashable
    event: Event
    function: HandlerFunction
    config: Any


Handler.__module__ = "otpy.telemetry"

# _lock guards _by_id and every replacement of _table.
# _table is copy-on-write: it maps an event to the tuple of its handlers in
# attach order; attach and detach build a new dict and publish it with one
# assignment, so execute() reads whichever dict is current without a lock and
# never sees one half-changed. Neither the dict nor its tuples change after
# they are published.
# _by_id maps a handler id to its Handler values (one per event), in attach
# order; read and changed only under _lock.
_lock = threading.Lock()
_table: dict[Event, tuple[Handler, ...]] = {}
_by_id: dict[Hashable, tuple[Handler, ...]] = {}


# -- checks ------------------------------------------------------------------------


def _check_event(event: object, what: str, *, prefix: bool = False) -> Event:
    allowed = "a tuple of str" if prefix else "a non-empty tuple of str"
    example = "(), ('myapp',)" if prefix else "('myapp', 'job', 'done')"
    if not isinstance(event, tuple):
        raise TypeError(
            f"{what} needs {allowed}, such as {example}; got {event!r} of type {type(event).__name__}"
        )
    if not event and not prefix:
        raise ValueError(f"{what} needs {allowed}, such as {example}; got ()")
    for item in event:
        if not isinstance(item, str):
            raise TypeError(
                f"{what} needs {allowed}, such as {example}; got {event!r}, "
                f"whose item {item!r} is a {type(item).__name__}"
            )
    return tuple(event)


def _check_id(handler_id: object, what: str) -> None:
    try:
        hash(handler_id)
    except TypeError:
        raise TypeError(
            f"{what} needs a hashable handler id, usually a str; got {handler_id!r} "
            f"of type {type(handler_id).__name__}"
        ) from None


def _check_function(function: object, what: str) -> None:
    if not callable(function):
        raise TypeError(
            f"{what} needs a handler function(event, measurements, metadata, config); "
            f"got {function!r} of type {type(function).__name__}"
        )


def _check_dict(value: object, name: str, what: str) -> None:
    if not isinstance(value, dict):
        raise TypeError(
            f"{what} needs {name} as a dict; got {value!r} of type {type(value).__name__}"
        )


# -- attaching -----------------------------------------------------------------------


def attach(
    handler_id: Hashable, event: Event, function: HandlerFunction, config: Any = None
) -> None:
    """Attach ``function`` under ``handler_id`` to ``event``.

    Example::

        def count(event, measurements, metadata, counter):
            counter.add(measurements["count"])

        telemetry.attach("drops", ("otpy", "mailbox", "drop"), count, config=my_counter)

    Args:
        handler_id: the handler's unique id (any hashable; a str is usual).
        event: the exact event name the handler gets.
        function: called as ``function(event, measurements, metadata, config)``
            in the emitting thread.
        config: passed to ``function`` as is.

    Raises:
        ValueError: ``handler_id`` is already attached, or ``event`` is ``()``.
        TypeError: ``event`` is not a tuple of str, ``function`` is not
            callable, or ``handler_id`` is not hashable.
    """
    _check_id(handler_id, "telemetry.attach")
    event = _check_event(event, "telemetry.attach")
    _check_function(function, "telemetry.attach")
    _attach(handler_id, [event], function, config)


def attach_many(
    handler_id: Hashable, events: Iterable[Event], function: HandlerFunction, config: Any = None
) -> None:
    """Attach ``function`` under one ``handler_id`` to each of ``events``.

    Example::

        telemetry.attach_many(
            "metrics",
            [("otpy", "process", "crash"), ("otpy", "supervisor", "restart")],
            record,
        )
        telemetry.detach("metrics")   # from both events

    An event listed twice is attached once.

    Raises:
        ValueError: ``handler_id`` is already attached, ``events`` is empty,
            or one of them is ``()``.
        TypeError: ``events`` is a single event or not an iterable of events,
            an event is not a tuple of str, ``function`` is not callable, or
            ``handler_id`` is not hashable.
    """
    _check_id(handler_id, "telemetry.attach_many")
    if isinstance(events, (str, bytes)) or (
        isinstance(events, tuple) and events and all(isinstance(e, str) for e in events)
    ):
        raise TypeError(
            f"telemetry.attach_many needs a list of events; got {events!r}, which is one "
            "event: pass [event], or use telemetry.attach"
        )
    try:
        given = list(events)
    except TypeError:
        raise TypeError(
            f"telemetry.attach_many needs a list of events; got {events!r} "
            f"of type {type(events).__name__}"
        ) from None
    if not given:
        raise ValueError("telemetry.attach_many needs at least one event; got none")
    checked: list[Event] = []
    for event in given:
        event = _check_event(event, "telemetry.attach_many")
        if event not in checked:
            checked.append(event)
    _check_function(function, "telemetry.attach_many")
    _attach(handler_id, checked, function, config)


def _attach(
    handler_id: Hashable, events: list[Event], function: HandlerFunction, config: Any
) -> None:
    global _table
    handlers = tuple(Handler(handler_id, event, function, config) for event in events)
    with _lock:
        attached = _by_id.get(handler_id)
        if attached is not None:
            raise ValueError(
                f"a telemetry handler with id {handler_id!r} is already attached "
                f"(to {', '.join(map(repr, (h.event for h in attached)))}); "
                "detach it first or use another id"
            )
        table = dict(_table)
        for handler in handlers:
            table[handler.event] = (*table.get(handler.event, ()), handler)
        _by_id[handler_id] = handlers
        _table = table


def detach(handler_id: Hashable) -> bool:
    """Detach the handler ``handler_id`` from all its events.

    Example::

        telemetry.detach("log-restarts")   # True
        telemetry.detach("log-restarts")   # False: no longer attached

    Returns:
        Whether a handler with that id was attached.

    Raises:
        TypeError: ``handler_id`` is not hashable.
    """
    _check_id(handler_id, "telemetry.detach")
    return _detach(handler_id, None)


def _detach(handler_id: Hashable, only: Handler | None) -> bool:
    """Detach ``handler_id``; if ``only`` is given, only if that Handler is still one of its own."""
    global _table
    with _lock:
        handlers = _by_id.get(handler_id)
        if handlers is None or (only is not None and not any(h is only for h in handlers)):
            return False
        del _by_id[handler_id]
        table = dict(_table)
        for handler in handlers:
            kept = tuple(h for h in table[handler.event] if h is not handler)
            if kept:
                table[handler.event] = kept
            else:
                del table[handler.event]
        _table = table
    return True


def list_handlers(prefix: tuple[str, ...] = ()) -> list[Handler]:
    """The attached handlers whose event starts with ``prefix``, one per (id, event).

    Example::

        telemetry.list_handlers()                         # everything
        telemetry.list_handlers(("otpy", "supervisor"))   # restart and max_intensity handlers
        telemetry.list_handlers(("otpy", "supervisor", "restart"))   # an event is its own prefix

    Handlers come in attach order.

    Raises:
        TypeError: ``prefix`` is not a tuple of str.
    """
    prefix = _check_event(prefix, "telemetry.list_handlers", prefix=True)
    n = len(prefix)
    with _lock:
        attached = list(_by_id.values())
    return [h for handlers in attached for h in handlers if h.event[:n] == prefix]


def _handlers_for(event: Event) -> tuple[Handler, ...]:
    """The handlers attached to ``event`` (empty if none): one dict lookup, for hot paths."""
    return _table.get(event, ())


# -- emitting ------------------------------------------------------------------------


def execute(
    event: Event, measurements: dict[str, Any], metadata: dict[str, Any] | None = None
) -> None:
    """Emit ``event``: call each handler attached to it, in attach order, in this thread.

    Example::

        telemetry.execute(("myapp", "job", "done"), {"rows": 3}, {"job": "import"})

    A handler that raises is detached and logged (see the module
    documentation); its exception does not reach the caller.

    Args:
        event: the event name, a non-empty tuple of str.
        measurements: a dict of measurements (numbers, usually).
        metadata: a dict of context; ``{}`` if omitted.

    Raises:
        TypeError: ``measurements`` or ``metadata`` is not a dict (checked
            only when a handler is attached to ``event``), or ``event`` is
            not hashable. Another malformed event name is not reported here,
            as no handler can be attached to it: :func:`attach` refuses it.
    """
    try:
        handlers = _table.get(event)
    except TypeError:
        _check_event(event, "telemetry.execute")  # raises the clear error
        raise
    if not handlers:
        return
    _check_dict(measurements, "measurements", "telemetry.execute")
    if metadata is None:
        metadata = {}
    else:
        _check_dict(metadata, "metadata", "telemetry.execute")
    for handler in handlers:
        try:
            handler.function(event, measurements, metadata, handler.config)
        except Exception as exc:
            _failed(handler, event, exc)


def _failed(handler: Handler, event: Event, exc: Exception) -> None:
    # Detach only this very attachment: if another thread detached the id and
    # someone attached the same id again meanwhile, the new handler stays.
    _detach(handler.id, handler)
    _log.error(
        "telemetry handler %r failed on event %r and was detached from all its events",
        handler.id,
        event,
        exc_info=exc,
    )
    if event != _FAILURE:
        execute(
            _FAILURE,
            {"monotonic_time": time.monotonic(), "system_time": time.time()},
            {"handler_id": handler.id, "event": event, "exception": exc},
        )


# -- spans ---------------------------------------------------------------------------


def span(prefix: Event, metadata: dict[str, Any] | None = None) -> _Span:
    """Emit start and stop (or exception) events around a block or a function call.

    Example::

        with telemetry.span(("myapp", "job"), {"job": "import"}) as meta:
            meta["rows"] = 3

        @telemetry.span(("myapp", "report"), {"kind": "daily"})
        def report(): ...

    ``prefix + ("start",)`` gets measurements ``monotonic_time`` and
    ``system_time`` and a copy of ``metadata``. The ``with`` block gets
    another copy: what it adds goes to ``prefix + ("stop",)``, emitted with
    ``duration`` (seconds) and ``monotonic_time``. If the block raises,
    ``prefix + ("exception",)`` is emitted instead, with the same
    measurements and the metadata plus ``kind``, ``reason`` and
    ``stacktrace`` (a ``traceback.StackSummary`` from the span to the raise),
    and the exception propagates.

    As a decorator, every call is a span of its own (coroutine functions
    too: the span covers the awaited call); as a context manager, the object
    is used for one ``with`` block, as ``contextlib.contextmanager``'s are.

    Raises:
        ValueError: ``prefix`` is ``()``.
        TypeError: ``prefix`` is not a tuple of str, or ``metadata`` is not a dict.
    """
    try:
        events = _span_events.get(prefix)
    except TypeError:  # not hashable, so not a tuple of str
        events = None
    if events is None:
        events = _new_span_events(prefix)
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        _check_dict(metadata, "metadata", "telemetry.span")
    return _Span(events, metadata)


# _span_lock guards replacing _span_events, which maps a checked prefix to
# its three event names so that a span of a known prefix builds no tuples.
# Copy-on-write like _table; it stops growing at _SPAN_CACHE_SIZE prefixes.
_span_lock = threading.Lock()
_span_events: dict[Event, tuple[Event, Event, Event]] = {}
_SPAN_CACHE_SIZE = 1024


def _new_span_events(prefix: object) -> tuple[Event, Event, Event]:
    global _span_events
    checked = _check_event(prefix, "telemetry.span")
    events = ((*checked, "start"), (*checked, "stop"), (*checked, "exception"))
    with _span_lock:
        if len(_span_events) < _SPAN_CACHE_SIZE:
            _span_events = {**_span_events, checked: events}
    return events


class _Span:
    """What :func:`span` returns: a one-use context manager, or a decorator."""

    __slots__ = ("_entered", "_events", "_meta", "_metadata", "_start")

    def __init__(self, events: tuple[Event, Event, Event], metadata: dict[str, Any]) -> None:
        self._events = events
        self._metadata = metadata
        self._entered = False
        self._start = 0.0
        self._meta: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"telemetry.span({self._events[0][:-1]!r}, {self._metadata!r})"

    def __enter__(self) -> dict[str, Any]:
        if self._entered:
            raise RuntimeError(
                f"{self!r} was already used for a with block; call telemetry.span() "
                "again for another one"
            )
        self._entered = True
        self._start = start = time.monotonic()
        if _table.get(self._events[0]):
            execute(
                self._events[0],
                {"monotonic_time": start, "system_time": time.time()},
                dict(self._metadata),
            )
        self._meta = dict(self._metadata)
        return self._meta

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            if _table.get(self._events[1]):
                now = time.monotonic()
                measurements = {"duration": now - self._start, "monotonic_time": now}
                execute(self._events[1], measurements, self._meta)
        elif _table.get(self._events[2]):
            now = time.monotonic()
            measurements = {"duration": now - self._start, "monotonic_time": now}
            stacktrace = traceback.StackSummary.extract(traceback.walk_tb(tb), lookup_lines=False)
            metadata = {**self._meta, "kind": exc_type, "reason": exc, "stacktrace": stacktrace}
            execute(self._events[2], measurements, metadata)

    def __call__(self, fn: _F) -> _F:
        if not callable(fn):
            raise TypeError(f"{self!r} decorates a function; got {fn!r}")
        events, metadata = self._events, self._metadata
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with _Span(events, metadata):
                    return await fn(*args, **kwargs)

            return cast(_F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with _Span(events, metadata):
                return fn(*args, **kwargs)

        return cast(_F, run)
