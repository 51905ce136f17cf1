"""Log aggregation with Flow windows: errors per service per 10 seconds of event time.

Run it::

    python -m otpy demo log_aggregation          # or: python examples/log_aggregation.py
    python -m otpy demo log_aggregation --lines 500000 --seed 5 --window 30

What it shows:

* **Event-time windows.** Each log line carries its own timestamp. The flow
  parses the lines and keeps the errors in a first layer of stages, then
  ``partition(key=service, window=Window.fixed(10, "seconds", by=timestamp))``
  routes each error to the stage of its service, where ``reduce`` counts
  errors per service in each 10-second window of *event* time, whatever the
  time it is processed at.
* **Watermarks close windows while the input is still being read.** A stage
  knows a window is complete once every stage feeding it has sent an error of
  a later window; it then emits that window (``on_trigger`` turns the counts
  into ``(window start, service, errors)`` rows) and drops it, so memory
  holds only the open windows. The demo counts how many rows arrived before
  the source had read its last line.
* **The same result as a sequential count.** The lines come in time order, as
  a log does, so no error is late; the demo compares the flow's table with a
  plain loop and a ``Counter`` and exits with status 1 if they differ.

The log is generated from ``--seed``: six services, mostly INFO lines, a few
WARN and ERROR, and an incident during which one service fails often.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import NamedTuple, cast

import otpy
from otpy.flow import Flow, TriggerInfo, Window

SERVICES = ("auth", "billing", "catalog", "gateway", "payments", "search")
START = 1_700_000_000.0
"""The first line's time, seconds since the epoch (2023-11-14 22:13:20 UTC)."""

MESSAGES = {
    "INFO": ("request served in {ms} ms", "cache refreshed", "user {n} signed in"),
    "WARN": ("slow response: {ms} ms", "retrying upstream call", "queue depth {n}"),
    "ERROR": ("timeout after {ms} ms", "connection refused by db-{n}", "unhandled exception"),
}


class LogEvent(NamedTuple):
    time: float
    level: str
    service: str


def iso(t: float) -> str:
    stamp = datetime.fromtimestamp(t, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def make_log(lines: int, seed: int) -> list[str]:
    """``lines`` log lines in time order, the same for the same ``seed``."""
    rng = random.Random(seed)
    incident_service = rng.choice(SERVICES)
    incident_start = START + lines * 0.005 * rng.uniform(0.3, 0.6)
    incident_end = incident_start + 60.0
    out = []
    t = START
    for _ in range(lines):
        t += rng.expovariate(200.0)  # about 200 lines a second
        service = rng.choice(SERVICES)
        error_rate = (
            0.25 if service == incident_service and incident_start <= t < incident_end else 0.02
        )
        roll = rng.random()
        level = "ERROR" if roll < error_rate else "WARN" if roll < error_rate + 0.08 else "INFO"
        text = rng.choice(MESSAGES[level]).format(ms=rng.randint(5, 3000), n=rng.randint(1, 99))
        out.append(f"{iso(t)} {level:<5} {service}: {text}")
    return out


def parse(line: str) -> LogEvent:
    """``2023-11-14T22:13:20.123Z ERROR payments: text`` -> LogEvent."""
    stamp, level, service, _ = line.split(None, 3)
    when = datetime.fromisoformat(stamp[:-1] + "+00:00")  # Python 3.10 reads no "Z"
    return LogEvent(when.timestamp(), level, service.rstrip(":"))


def count_service(event: LogEvent, acc: dict[str, int]) -> dict[str, int]:
    acc[event.service] = acc.get(event.service, 0) + 1
    return acc


def rows(
    acc: dict[str, int], info: TriggerInfo
) -> tuple[list[tuple[float, str, int]], dict[str, int]]:
    """on_trigger: a window's counts as (window start, service, errors) rows."""
    start = cast(float, info.window)  # a fixed window's id is its start time
    return [(start, service, n) for service, n in acc.items()], acc


def error_flow(
    lines: Iterable[str], window_seconds: float, stages: int | None
) -> Flow[tuple[float, str, int]]:
    """Errors per service per fixed window of event time, as a flow of rows."""
    window = Window.fixed(window_seconds, "seconds", lambda event: event.time)
    return (
        Flow.from_enumerable(lines, stages=stages)
        .map(parse)
        .filter(lambda event: event.level == "ERROR")
        .partition(key=lambda event: event.service, window=window, stages=stages)
        .reduce(dict, count_service)
        .on_trigger(rows)
    )


def sequential_errors(lines: Sequence[str], window_seconds: float) -> Counter[tuple[float, str]]:
    """The same table with a plain loop: the reference the flow must match."""
    table: Counter[tuple[float, str]] = Counter()
    for line in lines:
        event = parse(line)
        if event.level == "ERROR":
            table[((event.time // window_seconds) * window_seconds, event.service)] += 1
    return table


class Tracked:
    """Iterates the lines and notes whether the last one has been read yet."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = lines
        self.finished = False

    def __iter__(self) -> Iterator[str]:
        yield from self.lines
        self.finished = True


def main(argv: list[str]) -> int:
    """Aggregate the errors of a generated log with a flow and check against a plain loop."""
    parser = argparse.ArgumentParser(
        prog="python -m otpy demo log_aggregation",
        description="Count errors per service per fixed window of event time with otpy.flow.",
    )
    parser.add_argument("--lines", type=int, default=200_000, help="log lines (default: 200000)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the log (default: 3)")
    parser.add_argument(
        "--window", type=float, default=10.0, help="window length in seconds (default: 10)"
    )
    parser.add_argument(
        "--stages", type=int, default=None, help="stages per layer (default: CPU count)"
    )
    args = parser.parse_args(argv)

    lines = make_log(args.lines, args.seed)
    first, last = parse(lines[0]).time, parse(lines[-1]).time
    print(
        f"log aggregation: {len(lines):,} log lines (seed {args.seed}) from "
        f"{iso(first)} to {iso(last)}"
    )
    print(
        f"errors per service per {args.window:g}s window of event time "
        f"(Window.fixed({args.window:g}, 'seconds', by=time)):"
    )

    start = time.perf_counter()
    expected = sequential_errors(lines, args.window)
    sequential_time = time.perf_counter() - start

    source = Tracked(lines)
    table: Counter[tuple[float, str]] = Counter()
    early = 0
    with otpy.Runtime():
        start = time.perf_counter()
        for window_start, service, n in error_flow(source, args.window, args.stages):
            table[(window_start, service)] += n
            early += not source.finished
        flow_time = time.perf_counter() - start

    windows = sorted({w for w, _ in table})
    print("  window (UTC)  " + "".join(f"{s:>9}" for s in SERVICES))
    for w in windows[:6]:
        counts = "".join(f"{table[(w, s)]:>9}" for s in SERVICES)
        print(f"  {iso(w)[11:19]}      {counts}")
    print(f"  ... ({len(windows)} windows in all)")
    (busiest_window, busiest_service), most = max(table.items(), key=lambda kv: (kv[1], kv[0]))
    print(
        f"busiest: {busiest_service} with {most} errors in the window from "
        f"{iso(busiest_window)[11:19]}"
    )
    totals = Counter[str]()
    for (_, service), n in table.items():
        totals[service] += n
    print("errors per service: " + ", ".join(f"{s} {totals[s]:,}" for s in SERVICES))
    print(
        f"rows that arrived before the source had read its last line: {early} of {sum(1 for _ in table)}"
    )
    print(f"timings: flow {flow_time:.2f}s, sequential loop {sequential_time:.2f}s")
    same = table == expected
    print(f"same result as a sequential count: {same}")
    return 0 if same else 1
