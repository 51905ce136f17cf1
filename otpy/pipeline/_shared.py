"""What the stages of one pipeline share, and how they finish messages.

A :class:`Shared` is made once per ``start_link`` and handed to every stage
of that pipeline (it survives their restarts): the checked options, the
process names, the drain flag, the rate limiter's allowance and the counters
of messages emitted and acked. :func:`finish` is the one place where
finished messages are acked: ``handle_failed`` first, then one
``ack_messages`` call (one ``ack`` per ``(acknowledger, ack_ref)`` group),
the ``("otpy", "pipeline", "ack")`` events, and the count.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from .. import telemetry
from .._core import Pid
from ._message import Message, ack_messages
from ._options import Config

__all__ = ["ACK", "Allowance", "Shared", "fail_all", "finish", "run_handle_failed"]

_log = logging.getLogger("otpy.pipeline")

ACK = ("otpy", "pipeline", "ack")


class Allowance:
    """The messages the producers of one pipeline may still emit in this interval.

    Shared by the producers (which take from it) and the rate limiter process
    (which refills it every interval and retunes it).
    """

    # _lock guards _allowed, _interval and _remaining.
    # Invariant: 0 <= _remaining <= _allowed.
    def __init__(self, allowed: int, interval: float) -> None:
        self._lock = threading.Lock()
        self._allowed = allowed
        self._interval = interval
        self._remaining = allowed

    def take(self, n: int) -> int:
        """Take up to ``n`` messages' worth; how many were granted (0 when exhausted)."""
        with self._lock:
            granted = min(n, self._remaining)
            self._remaining -= granted
            return granted

    def available(self) -> int:
        with self._lock:
            return self._remaining

    def refill(self) -> None:
        """A new interval: the full allowance again."""
        with self._lock:
            self._remaining = self._allowed

    def limits(self) -> tuple[int, float]:
        with self._lock:
            return self._allowed, self._interval

    def update(self, allowed: int | None, interval: float | None) -> bool:
        """Retune; True if the interval changed (the caller then starts a new interval).

        A new ``allowed_messages`` counts from now: what this interval already
        used stays used (raising the limit by 10 allows 10 more now; lowering it
        below what was used allows nothing more until the next interval).
        """
        with self._lock:
            if allowed is not None:
                used = self._allowed - self._remaining
                self._allowed = allowed
                self._remaining = max(0, allowed - used)
            changed = interval is not None and interval != self._interval
            if interval is not None:
                self._interval = interval
            return changed


class Shared:
    """The state every stage of one pipeline shares (see the module documentation)."""

    def __init__(self, config: Config, topology: Pid) -> None:
        self.config = config
        self.name = config.name
        self.module: type[Any] = config.module
        self.topology = topology
        # Set once the drain starts; never cleared (a drained pipeline stops).
        self.draining = threading.Event()
        self.allowance = (
            Allowance(*config.rate_limiting) if config.rate_limiting is not None else None
        )
        name = config.name
        key = config.processor_key
        self.supervisor_name = f"{name}.Supervisor"
        self.rate_limiter_name = f"{name}.RateLimiter"
        self.producer_names = [f"{name}.Producer_{i}" for i in range(config.producer_concurrency)]
        self.processor_names = [
            f"{name}.Processor_{key}_{i}" for i in range(config.processor_concurrency)
        ]
        self.batcher_names = {b.name: f"{name}.Batcher_{b.name}" for b in config.batchers}
        self.batch_processor_names = {
            b.name: [f"{name}.BatchProcessor_{b.name}_{i}" for i in range(b.concurrency)]
            for b in config.batchers
        }
        # _lock guards _emitted, _acked and _next_producer.
        self._lock = threading.Lock()
        self._emitted = 0
        self._acked = 0
        self._next_producer = 0

    def __repr__(self) -> str:
        return f"<otpy.pipeline {self.name!r}>"

    def count_emitted(self, n: int) -> None:
        with self._lock:
            self._emitted += n

    def count_acked(self, n: int) -> None:
        with self._lock:
            self._acked += n

    def unacked(self) -> int:
        """Messages the producers emitted that were not acked (yet, or ever)."""
        with self._lock:
            return self._emitted - self._acked

    def next_producer(self) -> str:
        """The name of a producer, round robin (where test messages go)."""
        with self._lock:
            i = self._next_producer
            self._next_producer = (i + 1) % len(self.producer_names)
        return self.producer_names[i]

    @property
    def last_stages(self) -> list[str]:
        """The stages that finish messages last: the drain waits for them."""
        if self.config.batchers:
            return [n for names in self.batch_processor_names.values() for n in names]
        return list(self.processor_names)

    @property
    def member_stages(self) -> list[str]:
        """Every stage but the producers."""
        names = list(self.processor_names) + list(self.batcher_names.values())
        for batch_processors in self.batch_processor_names.values():
            names += batch_processors
        return names


def _overrides(module: type[Any], method: str) -> bool:
    from ._pipeline import Pipeline

    return getattr(module, method) is not getattr(Pipeline, method)


def run_handle_failed(instance: Any, failed: list[Message], context: Any) -> list[Message]:
    """``handle_failed`` on messages that failed (when the pipeline defines it).

    What it returns is what gets acked; if it raises or returns something
    else than as many messages, the error is logged and the originals are acked.
    """
    if not failed or not _overrides(type(instance), "handle_failed"):
        return failed
    try:
        result = instance.handle_failed(list(failed), context)
    except Exception:
        _log.exception(
            "%s.handle_failed raised; acking the %d failed message(s) as they were",
            type(instance).__qualname__,
            len(failed),
        )
        return failed
    if (
        not isinstance(result, list)
        or len(result) != len(failed)
        or not all(isinstance(m, Message) for m in result)
    ):
        _log.error(
            "%s.handle_failed must return the %d messages it got (as pl.Message); got %r; "
            "acking them as they were",
            type(instance).__qualname__,
            len(failed),
            result,
        )
        return failed
    return result


def finish(shared: Shared, successful: Sequence[Message], failed: Sequence[Message]) -> None:
    """Ack finished messages: one ``ack`` per group, the ack events, and the count."""
    n = len(successful) + len(failed)
    if not n:
        return
    if telemetry._handlers_for(ACK):
        groups: dict[tuple[int, Any], tuple[Any, list[Message], list[Message]]] = {}
        for messages, side in ((successful, 1), (failed, 2)):
            for message in messages:
                acknowledger, ack_ref, _ = message.acknowledger
                try:
                    key = (id(acknowledger), ack_ref)
                    hash(key)
                except TypeError:
                    key = (id(acknowledger), id(ack_ref))
                group = groups.get(key)
                if group is None:
                    group = groups[key] = (acknowledger, [], [])
                group[side].append(message)
        for acknowledger, ok, bad in groups.values():
            ack_messages(ok, bad)
            telemetry.execute(
                ACK,
                {"successful": len(ok), "failed": len(bad)},
                {"pipeline": shared.name, "acknowledger": acknowledger},
            )
    else:
        ack_messages(successful, failed)
    shared.count_acked(n)


def fail_all(messages: Sequence[Message], reason: Any) -> list[Message]:
    """The messages, each marked failed with ``reason``."""
    return [m.failed(reason) for m in messages]
