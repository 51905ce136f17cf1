"""OpenTelemetry bridge: otpy spans become OpenTelemetry spans, durations histograms.

Example::

    from opentelemetry.sdk.trace import TracerProvider
    from otpy.telemetry import otel

    instrumentation = otel.instrument(
        tracer_provider=TracerProvider(),         # default: the global one
        spans=[("myapp", "job")],                 # your own telemetry.span prefixes
        counters={("myapp", "job", "done"): ("rows",)},
    )
    ...
    instrumentation.uninstrument()

Needs the ``otel`` extra (``pip install 'otpy[otel]'``, which brings
``opentelemetry-api``); an SDK and exporters are the application's choice.

What becomes what:
    * A span prefix's ``start`` event starts an OpenTelemetry span named
      after the prefix (``"otpy.pipeline.processor.message"``), at the
      event's ``system_time``, with the metadata as attributes; its ``stop``
      event ends it ``duration`` seconds later with the stop metadata and
      other measurements added; its ``exception`` event records the
      exception on the span and sets the status to ``ERROR``. The duration
      also goes to a histogram ``<prefix>.duration`` (unit ``s``).
    * A counted event adds 1 per emission to a counter named after the event
      (``"otpy.process.crash"``), or, for each measurement named in
      ``counters``, adds that measurement to ``<event>.<measurement>``
      (``"otpy.pipeline.ack.successful"``).

Which events: :data:`OTPY_SPANS` and :data:`OTPY_COUNTERS` (the events otpy
emits, as in API.md) unless ``otpy_events=False``, plus the ``spans`` and
``counters`` you name.

Attributes: a metadata value that is a ``str``, ``bool``, ``int`` or
``float`` is kept as it is, ``None`` is left out, anything else (a pid, a
tuple) becomes its ``repr``. Span attributes take all the metadata (without
an exception event's ``kind``, ``reason`` and ``stacktrace``, which the
recorded exception carries). Metric attributes take only the metadata keys in
``metric_attributes`` (default :data:`METRIC_ATTRIBUTES`, names that identify
a pipeline, pool or limiter, not one message), plus ``error.type`` for a
failed span or a counted event whose ``reason`` or ``exception`` is an
exception.

Nesting: an otpy span is made the current OpenTelemetry span between its
start and stop events, so spans started meanwhile in the same thread (otpy's
or your own, or those of an instrumented HTTP client) become its children,
and its parent is whatever span was current at its start. Start and stop are
paired per thread (per ``contextvars`` context, so per asyncio task too): a
stop ends the innermost open span of its prefix; spans started inside it and
never stopped are ended with it. A stop whose start came before
:func:`instrument` is ignored. An emitter that starts spans and never stops
them leaves them open and current in its thread; past 128 open spans in one
thread the oldest is ended, so memory stays bounded.

The handlers run in the emitting thread like every telemetry handler; if one
raises, the whole instrumentation is detached and logged (see
``otpy.telemetry``), and a new :func:`instrument` call is needed.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Collection, Iterable, Mapping
from contextvars import Token
from types import TracebackType
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised by the bridge test
    raise ImportError(
        "otpy.telemetry.otel needs the 'otel' extra: pip install 'otpy[otel]'"
    ) from exc

import attrs

from . import Event, _check_event, attach_many, detach

__all__ = [
    "METRIC_ATTRIBUTES",
    "OTPY_COUNTERS",
    "OTPY_SPANS",
    "Instrumentation",
    "instrument",
]

OTPY_SPANS: tuple[Event, ...] = (
    ("otpy", "pool", "checkout"),
    ("otpy", "pipeline", "processor", "message"),
    ("otpy", "pipeline", "batch_processor"),
    ("otpy", "pipeline", "drain"),
)
"""The span prefixes otpy emits (API.md's table)."""

OTPY_COUNTERS: Mapping[Event, tuple[str, ...]] = {
    ("otpy", "process", "crash"): (),
    ("otpy", "supervisor", "restart"): (),
    ("otpy", "supervisor", "max_intensity"): (),
    ("otpy", "mailbox", "drop"): ("count",),
    ("otpy", "ratelimit", "reject"): (),
    ("otpy", "retry", "scheduled"): (),
    ("otpy", "retry", "exhausted"): (),
    ("otpy", "pipeline", "ack"): ("successful", "failed"),
}
"""The plain events otpy emits: event -> measurements to sum (``()``: count emissions)."""

METRIC_ATTRIBUTES: tuple[str, ...] = ("pipeline", "processor", "pool", "limiter", "name")
"""Metadata keys copied to metric attributes by default."""

_MAX_OPEN = 128
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_SPAN_MEASUREMENTS = frozenset({"duration", "monotonic_time", "system_time"})
_EXCEPTION_METADATA = frozenset({"kind", "reason", "stacktrace"})
_NOT_IN_NAMES = re.compile(r"[^-_./a-zA-Z0-9]")


def _safe(value: object) -> str | bool | int | float:
    if isinstance(value, (str, bool, int, float)):
        return value
    return repr(value)


def _attributes(metadata: Mapping[str, Any], leave_out: Collection[str] = ()) -> dict[str, Any]:
    return {
        str(key): _safe(value)
        for key, value in metadata.items()
        if value is not None and key not in leave_out
    }


def _name(event: Event) -> str:
    name = _NOT_IN_NAMES.sub("_", ".".join(event))
    return name if name[:1].isalpha() else f"e{name}"


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


@attrs.frozen
class _Open:
    """A span between its start and stop events."""

    prefix: Event
    span: trace.Span
    token: Token[Context]
    start_ns: int
    start_monotonic: float


class Instrumentation:
    """What :func:`instrument` returns: the attached bridge, until :meth:`uninstrument`.

    Example::

        with otel.instrument(tracer_provider=provider) as instrumentation:
            run_pipeline()
        # the same as instrumentation.uninstrument() at the end

    Attributes:
        handler_id: the telemetry handler id the bridge is attached under.
    """

    __module__ = "otpy.telemetry.otel"

    def __init__(
        self,
        tracer: trace.Tracer,
        meter: metrics.Meter,
        spans: list[Event],
        counters: dict[Event, tuple[str, ...]],
        metric_attributes: tuple[str, ...],
    ) -> None:
        self.handler_id = f"otpy.telemetry.otel-{id(self):x}"
        self._tracer = tracer
        self._metric_attributes = metric_attributes
        # Read-only after __init__: emitters in many threads read them without a lock.
        self._routes: dict[Event, tuple[str, Event]] = {}
        self._histograms: dict[Event, metrics.Histogram] = {}
        self._counters: dict[Event, list[tuple[str | None, metrics.Counter]]] = {}
        # The open spans of the current thread (context), innermost last; each
        # context sees its own tuple, replaced, never changed.
        self._open: contextvars.ContextVar[tuple[_Open, ...]] = contextvars.ContextVar(
            self.handler_id, default=()
        )
        for event, measurements in counters.items():
            self._routes[event] = ("count", event)
            name = _name(event)
            if measurements:
                self._counters[event] = [
                    (
                        m,
                        meter.create_counter(
                            f"{name}.{_name((m,))}", description=f"{m} of {event}"
                        ),
                    )
                    for m in measurements
                ]
            else:
                self._counters[event] = [
                    (None, meter.create_counter(name, description=f"emissions of {event}"))
                ]
        for prefix in spans:
            for suffix in ("start", "stop", "exception"):
                event = (*prefix, suffix)
                self._routes[event] = (suffix, prefix)
            self._histograms[prefix] = _histogram(meter, f"{_name(prefix)}.duration", prefix)
        attach_many(self.handler_id, list(self._routes), self._handle)

    def __repr__(self) -> str:
        return (
            f"<otpy.telemetry.otel.Instrumentation {self.handler_id} of {len(self._routes)} events>"
        )

    def uninstrument(self) -> bool:
        """Detach the bridge; False if it was already detached (or detached itself by failing)."""
        return detach(self.handler_id)

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstrument()

    # -- the handler ---------------------------------------------------------

    def _handle(
        self, event: Event, measurements: dict[str, Any], metadata: dict[str, Any], _: Any
    ) -> None:
        kind, key = self._routes[event]
        if kind == "start":
            self._start(key, measurements, metadata)
        elif kind == "count":
            self._count(key, measurements, metadata)
        else:
            self._finish(key, measurements, metadata, failed=kind == "exception")

    def _start(self, prefix: Event, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        system_time = _number(measurements.get("system_time"))
        start_ns = time.time_ns() if system_time is None else int(system_time * 1e9)
        monotonic = _number(measurements.get("monotonic_time"))
        span = self._tracer.start_span(
            ".".join(prefix), attributes=_attributes(metadata), start_time=start_ns
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        opened = _Open(
            prefix, span, token, start_ns, time.monotonic() if monotonic is None else monotonic
        )
        stack = self._open.get()
        if len(stack) >= _MAX_OPEN:  # an emitter that starts spans and never stops them
            stack[0].span.end()
            stack = stack[1:]
        self._open.set((*stack, opened))

    def _finish(
        self,
        prefix: Event,
        measurements: dict[str, Any],
        metadata: dict[str, Any],
        *,
        failed: bool,
    ) -> None:
        stack = self._open.get()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i].prefix == prefix:
                break
        else:
            return  # its start came before instrument()
        opened = stack[i]
        self._open.set(stack[:i])
        for unfinished in reversed(stack[i + 1 :]):  # started inside it, never stopped
            unfinished.span.end()
            otel_context.detach(unfinished.token)
        duration = _number(measurements.get("duration"))
        if duration is None:
            now = _number(measurements.get("monotonic_time"))
            duration = (time.monotonic() if now is None else now) - opened.start_monotonic
        span = opened.span
        span.set_attributes(_attributes(metadata, _EXCEPTION_METADATA if failed else ()))
        span.set_attributes(
            {
                key: value
                for key, value in measurements.items()
                if key not in _SPAN_MEASUREMENTS and _number(value) is not None
            }
        )
        metric_attributes = self._metric_attributes_of(metadata)
        if failed:
            reason, kind = metadata.get("reason"), metadata.get("kind")
            error_type = kind.__qualname__ if isinstance(kind, type) else type(reason).__qualname__
            if isinstance(reason, BaseException):
                span.record_exception(reason, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {reason}"))
            metric_attributes["error.type"] = error_type
        span.end(end_time=opened.start_ns + int(max(duration, 0.0) * 1e9))
        otel_context.detach(opened.token)
        self._histograms[prefix].record(duration, attributes=metric_attributes)

    def _count(self, event: Event, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        attributes = self._metric_attributes_of(metadata)
        for key in ("reason", "exception"):
            if isinstance(metadata.get(key), BaseException):
                attributes["error.type"] = type(metadata[key]).__qualname__
                break
        for measurement, counter in self._counters[event]:
            if measurement is None:
                counter.add(1, attributes=attributes)
                continue
            value = _number(measurements.get(measurement))
            if value is not None and value > 0:
                counter.add(value, attributes=attributes)

    def _metric_attributes_of(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return _attributes({k: metadata[k] for k in self._metric_attributes if k in metadata})


def _histogram(meter: metrics.Meter, name: str, prefix: Event) -> metrics.Histogram:
    description = f"duration of {prefix} spans"
    try:
        return meter.create_histogram(
            name,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
    except TypeError:  # opentelemetry-api before 1.23 has no bucket advice
        return meter.create_histogram(name, unit="s", description=description)


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    *,
    spans: Iterable[Event] = (),
    counters: Mapping[Event, Iterable[str]] | Iterable[Event] = (),
    otpy_events: bool = True,
    metric_attributes: Iterable[str] = METRIC_ATTRIBUTES,
) -> Instrumentation:
    """Turn telemetry spans into OpenTelemetry spans and histograms, events into counters.

    Example::

        instrumentation = otel.instrument(spans=[("myapp", "job")])
        with telemetry.span(("myapp", "job"), {"job": "import"}):
            ...                     # an OpenTelemetry span "myapp.job"
        instrumentation.uninstrument()

    Args:
        tracer_provider: where spans go; default the global tracer provider.
        meter_provider: where metrics go; default the global meter provider.
        spans: span prefixes to trace besides otpy's (see ``otpy_events``).
        counters: events to count besides otpy's: a list of events (each
            emission adds 1) or a mapping from event to the measurements to
            add up.
        otpy_events: also :data:`OTPY_SPANS` and :data:`OTPY_COUNTERS`
            (default True).
        metric_attributes: the metadata keys that become metric attributes
            (default :data:`METRIC_ATTRIBUTES`).

    Returns:
        An :class:`Instrumentation`; call its ``uninstrument()`` to stop.

    Raises:
        ValueError: an event is both a span event and a counted one, or
            ``()``; or nothing is left to instrument.
        TypeError: an event or prefix is not a tuple of str.
    """
    span_list: list[Event] = list(OTPY_SPANS) if otpy_events else []
    for prefix in spans:
        prefix = _check_event(prefix, "otel.instrument(spans=...)")
        if prefix not in span_list:
            span_list.append(prefix)
    counter_map: dict[Event, tuple[str, ...]] = dict(OTPY_COUNTERS) if otpy_events else {}
    given = counters.items() if isinstance(counters, Mapping) else ((e, ()) for e in counters)
    for event, measurements in given:
        event = _check_event(event, "otel.instrument(counters=...)")
        if isinstance(measurements, str):
            measurements = (measurements,)
        counter_map[event] = tuple(str(m) for m in measurements)
    span_events = {
        (*prefix, suffix) for prefix in span_list for suffix in ("start", "stop", "exception")
    }
    both = sorted(span_events & counter_map.keys())
    if both:
        raise ValueError(
            f"otel.instrument: {both[0]!r} is both a span event and a counted event; "
            "name it in spans= or in counters=, not both"
        )
    if not span_list and not counter_map:
        raise ValueError(
            "otel.instrument has nothing to instrument: otpy_events=False and no spans or counters"
        )
    tracer = trace.get_tracer("otpy", tracer_provider=tracer_provider)
    meter = metrics.get_meter("otpy", meter_provider=meter_provider)
    return Instrumentation(tracer, meter, span_list, counter_map, tuple(metric_attributes))
