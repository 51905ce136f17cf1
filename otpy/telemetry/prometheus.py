"""Prometheus bridge: a ``prometheus_client`` collector of otpy's processes and events.

Example::

    from prometheus_client import REGISTRY, start_http_server
    from otpy.telemetry.prometheus import Collector

    collector = Collector()              # the current runtime
    REGISTRY.register(collector)         # or Collector(registry=REGISTRY)
    start_http_server(9100)
    ...
    collector.close()                    # detach its handlers, leave the registry

Needs the ``prometheus`` extra (``pip install 'otpy[prometheus]'``, which
brings ``prometheus-client``).

Metrics:
    Read from the runtime at each scrape (public otpy API only:
    ``Runtime.processes()`` and ``otpy.process_info``):

    * ``otpy_processes{status}``: live processes by status (``running``,
      ``runnable``, ``waiting``);
    * ``otpy_mailbox_messages``: messages waiting in all mailboxes;
    * ``otpy_mailbox_max_messages``: messages in the longest mailbox;
    * ``otpy_process_mailbox_messages{name}``: messages waiting, per
      registered name (unnamed processes count only in the totals above).

    Counted from telemetry events since the collector was made:

    * ``otpy_process_crashes_total`` (``("otpy", "process", "crash")``);
    * ``otpy_supervisor_restarts_total`` (``("otpy", "supervisor", "restart")``);
    * ``otpy_supervisor_max_intensity_total`` (supervisors that gave up,
      ``("otpy", "supervisor", "max_intensity")``);
    * ``otpy_mailbox_dropped_messages_total`` (the ``count`` of
      ``("otpy", "mailbox", "drop")``);
    * ``otpy_pipeline_acked_messages_total{pipeline, result}`` (``result`` is
      ``successful`` or ``failed``, from ``("otpy", "pipeline", "ack")``).

A scrape takes a snapshot of every live process, one at a time (each under
its own lock, never all at once): it costs time in proportion to the number
of processes, and the numbers are not one instant's. The counters' handlers
run in the emitting processes and only add under the collector's lock.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised by the bridge test
    raise ImportError(
        "otpy.telemetry.prometheus needs the 'prometheus' extra: pip install 'otpy[prometheus]'"
    ) from exc

import otpy

from . import Event, attach_many, detach

__all__ = ["Collector"]

_CRASH: Event = ("otpy", "process", "crash")
_RESTART: Event = ("otpy", "supervisor", "restart")
_MAX_INTENSITY: Event = ("otpy", "supervisor", "max_intensity")
_DROP: Event = ("otpy", "mailbox", "drop")
_ACK: Event = ("otpy", "pipeline", "ack")
_STATUSES = ("running", "runnable", "waiting")


def _number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 0.0


class Collector:
    """A ``prometheus_client`` collector of one otpy runtime's processes and events.

    Example::

        registry = prometheus_client.CollectorRegistry()
        collector = Collector(registry=registry)
        prometheus_client.generate_latest(registry)   # b'# HELP otpy_processes ...'
        collector.close()

    Args:
        runtime: the runtime whose processes are counted; default the one
            that is current when the collector is made (``Runtime.current()``).
        registry: if given, the collector registers itself there (and
            :meth:`close` unregisters it); otherwise register it yourself.

    The event counters count every emission in the Python process (telemetry
    is not per runtime), from the moment the collector is made until
    :meth:`close`.
    """

    __module__ = "otpy.telemetry.prometheus"

    def __init__(
        self, runtime: otpy.Runtime | None = None, *, registry: CollectorRegistry | None = None
    ) -> None:
        self._runtime = otpy.Runtime.current() if runtime is None else runtime
        self._registry = registry
        self.handler_id = f"otpy.telemetry.prometheus-{id(self):x}"
        # _lock guards _counts and _acks, added to by handlers in many threads.
        self._lock = threading.Lock()
        self._counts: dict[Event, float] = dict.fromkeys(
            (_CRASH, _RESTART, _MAX_INTENSITY, _DROP), 0.0
        )
        self._acks: dict[tuple[str, str], float] = {}
        attach_many(self.handler_id, [_CRASH, _RESTART, _MAX_INTENSITY, _DROP, _ACK], self._handle)
        if registry is not None:
            try:
                registry.register(self)
            except BaseException:
                detach(self.handler_id)
                raise

    def __repr__(self) -> str:
        return f"<otpy.telemetry.prometheus.Collector of {self._runtime!r}>"

    def close(self) -> None:
        """Detach the event handlers and leave the registry given at construction."""
        detach(self.handler_id)
        if self._registry is not None:
            registry, self._registry = self._registry, None
            registry.unregister(self)

    def __enter__(self) -> Collector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _handle(
        self, event: Event, measurements: dict[str, Any], metadata: dict[str, Any], _: Any
    ) -> None:
        if event == _ACK:
            pipeline = str(metadata.get("pipeline"))
            successful = _number(measurements.get("successful"))
            failed = _number(measurements.get("failed"))
            with self._lock:
                for result, n in (("successful", successful), ("failed", failed)):
                    key = (pipeline, result)
                    self._acks[key] = self._acks.get(key, 0.0) + n
            return
        n = _number(measurements.get("count")) if event == _DROP else 1.0
        with self._lock:
            self._counts[event] += n

    # -- prometheus_client's collector protocol --------------------------------

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (lets a registry check names without a scrape)."""
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        """The metric families with their samples, read now."""
        return self._families(self._sample())

    def _sample(
        self,
    ) -> tuple[list[otpy.ProcessInfo], dict[Event, float], dict[tuple[str, str], float]]:
        infos: list[otpy.ProcessInfo] = []
        for pid in self._runtime.processes():
            info = otpy.process_info(pid)
            if info is not None:  # it died since processes() listed it
                infos.append(info)
        with self._lock:
            return infos, dict(self._counts), dict(self._acks)

    def _families(
        self,
        sample: tuple[list[otpy.ProcessInfo], dict[Event, float], dict[tuple[str, str], float]]
        | None,
    ) -> Iterator[Metric]:
        processes = GaugeMetricFamily(
            "otpy_processes", "Live otpy processes by status", labels=["status"]
        )
        total = GaugeMetricFamily("otpy_mailbox_messages", "Messages waiting in all mailboxes")
        longest = GaugeMetricFamily(
            "otpy_mailbox_max_messages", "Messages waiting in the longest mailbox"
        )
        named = GaugeMetricFamily(
            "otpy_process_mailbox_messages",
            "Messages waiting in the mailbox of a registered process",
            labels=["name"],
        )
        crashes = CounterMetricFamily("otpy_process_crashes", "Processes that crashed")
        restarts = CounterMetricFamily(
            "otpy_supervisor_restarts", "Children restarted by supervisors"
        )
        max_intensity = CounterMetricFamily(
            "otpy_supervisor_max_intensity",
            "Supervisors that reached their restart intensity and gave up",
        )
        drops = CounterMetricFamily(
            "otpy_mailbox_dropped_messages", "Messages dropped by full mailboxes"
        )
        acks = CounterMetricFamily(
            "otpy_pipeline_acked_messages",
            "Pipeline messages acknowledged, by pipeline and result",
            labels=["pipeline", "result"],
        )
        if sample is not None:
            infos, counts, acked = sample
            statuses = collections.Counter(info.status for info in infos)
            for status in sorted(set(_STATUSES) | set(statuses)):
                processes.add_metric([status], statuses[status])
            lengths = [info.message_queue_len for info in infos]
            total.add_metric([], sum(lengths))
            longest.add_metric([], max(lengths, default=0))
            for info in infos:
                if info.name is not None:
                    named.add_metric([info.name], info.message_queue_len)
            crashes.add_metric([], counts[_CRASH])
            restarts.add_metric([], counts[_RESTART])
            max_intensity.add_metric([], counts[_MAX_INTENSITY])
            drops.add_metric([], counts[_DROP])
            for (pipeline, result), n in sorted(acked.items()):
                acks.add_metric([pipeline, result], n)
        yield from (processes, total, longest, named, crashes, restarts, max_intensity, drops, acks)
