"""Interleaved rounds: every contender runs every case in each round; medians at the end."""

from __future__ import annotations

import faulthandler
import functools
import gc
import os
import statistics
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter

from ._contender import Contender
from ._workloads import Case

Cell = tuple[str, str]
"""``(case key, contender name)``."""


@dataclass
class Results:
    """Samples per cell, and a note for every cell that has none (skipped, failed)."""

    samples: dict[Cell, list[float]] = field(default_factory=dict)
    notes: dict[Cell, str] = field(default_factory=dict)
    errors: dict[Cell, str] = field(default_factory=dict)
    """The exception of every failed cell, for the report's footnotes."""
    leftovers: dict[Cell, str] = field(default_factory=dict)
    """Threads a measurement left running (``THREAD_GRACE`` after it ended), for the footnotes."""

    def median(self, cell: Cell) -> float | None:
        """The median over rounds, or ``None`` if the cell has no sample."""
        values = self.samples.get(cell)
        return statistics.median(values) if values else None

    def spread(self, cell: Cell) -> tuple[float, float] | None:
        """Min and max over rounds, or ``None`` with fewer than two samples."""
        values = self.samples.get(cell)
        return (min(values), max(values)) if values and len(values) > 1 else None


Progress = Callable[[str], None]


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_rounds(
    cases: Sequence[Case],
    contenders: Sequence[Contender],
    rounds: int,
    watchdog: float,
    on_hang: Callable[[Results], None],
    progress: Progress = _to_stderr,
) -> Results:
    """Measure every case for every contender, ``rounds`` times, interleaved.

    The contender order rotates from round to round, so that none always runs
    first (on a cold machine) or last. A cell that fails is not retried in
    later rounds; its error goes to stderr at once and into ``Results``.

    Every measurement must end the threads it started (otpy: leaving its
    ``Runtime``), so that none competes with the next one, another
    contender's or another otpy version's: threads still alive
    ``THREAD_GRACE`` seconds after it are reported (stderr, footnotes).

    A measurement still running after ``watchdog`` seconds is a hang, a bug
    to report rather than wait out: every thread's stack goes to stderr, the
    cell is marked "hung", ``on_hang`` gets the results so far (to print
    them), and the process exits with status 3.
    """
    results = Results()
    for round_index in range(rounds):
        shift = round_index % len(contenders) if contenders else 0
        order = [*contenders[shift:], *contenders[:shift]]
        for case in cases:
            if case.once and round_index > 0:
                continue
            for contender in order:
                cell = (case.key, contender.name)
                if cell in results.notes:
                    continue
                note = contender.missing.get(case.workload) or case.skip(contender)
                if note is not None:
                    results.notes[cell] = note
                    continue
                label = f"[round {round_index + 1}/{rounds}] {case.key} {contender.name}"
                before = set(threading.enumerate())
                with _watchdog(
                    watchdog, functools.partial(_hung, cell, watchdog, results, on_hang)
                ):
                    value = _measure(case, contender, label, results, progress)
                left = _threads_left(before, THREAD_GRACE)  # the watchdog's timer too
                if left:
                    names = ", ".join(sorted(thread.name for thread in left))
                    results.leftovers[cell] = f"{len(left)} thread(s) still running: {names}"
                    progress(f"{label}: WARNING: left {results.leftovers[cell]}")
                if value is not None:
                    results.samples.setdefault(cell, []).append(value)
    return results


def _measure(
    case: Case, contender: Contender, label: str, results: Results, progress: Progress
) -> float | None:
    gc.collect()
    started = perf_counter()
    try:
        value = case.measure(contender)
    except Exception as exc:
        cell = (case.key, contender.name)
        results.notes[cell] = "error"
        results.errors[cell] = f"{type(exc).__name__}: {exc}"
        progress(f"{label}: FAILED after {perf_counter() - started:.1f}s")
        progress(traceback.format_exc())
        return None
    progress(f"{label}: {value:.6g} {case.unit.label} ({perf_counter() - started:.1f}s)")
    return value


THREAD_GRACE = 5.0
"""Seconds a measurement's threads get to end after it before they count as left behind."""


def _threads_left(before: set[threading.Thread], grace: float) -> list[threading.Thread]:
    """The threads not in ``before`` still alive after waiting up to ``grace`` seconds for them."""
    deadline = perf_counter() + grace
    left = []
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - perf_counter()))
        if thread.is_alive():
            left.append(thread)
    return left


_LAST_RESORT = 60.0
"""Extra seconds after which faulthandler ends the process, should the watchdog thread never run."""


@contextmanager
def _watchdog(seconds: float, on_expiry: Callable[[], None]) -> Iterator[None]:
    timer = threading.Timer(seconds, on_expiry)
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(seconds + _LAST_RESORT, exit=True)
    try:
        yield
    finally:
        timer.cancel()
        faulthandler.cancel_dump_traceback_later()


def _hung(cell: Cell, seconds: float, results: Results, on_hang: Callable[[Results], None]) -> None:
    print(f"\n{cell[0]} / {cell[1]} still running after {seconds:g}s; the stacks:", file=sys.stderr)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    results.notes[cell] = "hung"
    results.errors[cell] = f"still running after {seconds:g}s (stacks on stderr)"
    on_hang(results)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(3)
