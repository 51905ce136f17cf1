"""The demos' log collector: the runtime's log records, one line each, printed at the demo's pace."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LogCollector", "collected_logs"]


class LogCollector(logging.Handler):
    """Keeps the runtime's log records, so a crash report prints as one line where it belongs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        # The Handler's own lock (self.lock, held around emit) guards _records and _total.
        self._records: list[str] = []
        self._total = 0

    def emit(self, record: logging.LogRecord) -> None:
        # Called with the Handler's lock held. The first line and the reason; no traceback.
        self._records.append(record.getMessage().replace("\n** ", "; "))
        self._total += 1

    def total(self) -> int:
        """How many records came in, drained or not."""
        self.acquire()
        try:
            return self._total
        finally:
            self.release()

    def drain(self) -> list[str]:
        """The records since the last drain, oldest first."""
        self.acquire()
        try:
            records, self._records = self._records, []
        finally:
            self.release()
        return records


@contextmanager
def collected_logs() -> Iterator[LogCollector]:
    """Route the ``otpy`` loggers into a LogCollector (instead of stderr) while the demo runs."""
    logger = logging.getLogger("otpy")
    collector = LogCollector()
    saved = logger.propagate
    logger.addHandler(collector)
    logger.propagate = False
    try:
        yield collector
    finally:
        logger.removeHandler(collector)
        logger.propagate = saved
