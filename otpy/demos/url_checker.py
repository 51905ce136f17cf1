"""Check 20 fake URLs, five at a time, with ``otpy.Task.async_stream``; give up on the slow ones.

Run it::

    python -m otpy demo url_checker           # or: python examples/url_checker.py
    python -m otpy demo url_checker --seed 3  # another draw of latencies and failures

What it shows:

* **Bounded concurrency.** ``Task.async_stream(urls, check, max_concurrency=5)`` runs ``check``
  for every URL in a task of its own, never more than five at a time, and yields the results
  lazily, in input order (``ordered=True``, the default).
* **A timeout per item.** With ``timeout=0.3`` and ``on_timeout="kill_task"``, a check that takes
  longer is killed and yields ``("exit", "timeout")``; the stream goes on with the next URL.
  (With the default ``on_timeout="exit"`` the first slow URL would raise ``otpy.Timeout``.)
* **Results as values.** Every other item yields ``("ok", value)``. A URL that is down is a
  normal outcome of a check, so ``check`` *returns* ``("down", reason)`` instead of raising: the
  stream's tasks are linked to the caller, and an exception in one of them would crash the caller
  (``otpy.ExitError`` out of the iterator). Supervised, unlinked variants that turn a crash into
  ``("exit", exception)`` are ``otpy.TaskSupervisor.async_stream_nolink``.
* **Why bother.** The demo ends with the wall time of the whole stream next to the sum of all
  latencies, which is what checking the URLs one after another would cost.

The "network" is ``time.sleep`` with a latency drawn from a seeded ``random.Random``: 14 URLs
answer within 0.02-0.2s, 3 are down (refused after a short delay), and 3 hang for a full second.
The same ``--seed`` gives the same plan and the same results; only the timings vary a little.

A note on the hanging checks: Python cannot interrupt a thread blocked in ``time.sleep`` (or in a
socket read). otpy kills the task's *process* at once, so the stream moves on and nothing it does
later is seen, but its thread finishes the sleep in the background before the runtime can join
it at shutdown.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import otpy

URL_COUNT = 20
DOWN_COUNT = 3
HANG_COUNT = 3
MAX_CONCURRENCY = 5
TIMEOUT = 0.3
"""Seconds each check may take before it is killed."""
HANG_SECONDS = 1.0
"""How long a hanging URL keeps its check blocked: well past TIMEOUT."""

Kind = Literal["up", "down", "hang"]
Outcome = tuple[Literal["up", "down"], str]


@dataclass(frozen=True)
class Site:
    """A fake URL and how the fake network will treat it."""

    url: str
    kind: Kind
    latency: float


def plan_sites(seed: int) -> list[Site]:
    """Draw which URLs are up, down or hanging, and their latencies, from ``seed``."""
    rng = random.Random(seed)
    how_many: dict[Kind, int] = {
        "hang": HANG_COUNT,
        "down": DOWN_COUNT,
        "up": URL_COUNT - HANG_COUNT - DOWN_COUNT,
    }
    kinds = [kind for kind, count in how_many.items() for _ in range(count)]
    rng.shuffle(kinds)
    sites = []
    for number, kind in enumerate(kinds, start=1):
        match kind:
            case "up":
                latency = round(rng.uniform(0.02, 0.2), 3)
            case "down":
                latency = round(rng.uniform(0.01, 0.05), 3)
            case "hang":
                latency = HANG_SECONDS
        sites.append(Site(f"https://service-{number:02d}.example/health", kind, latency))
    return sites


def check(site: Site) -> Outcome:
    """Fake an HTTP health check of ``site``: block like real I/O, then report.

    A site that is down is reported as a value, not raised: see the module docstring.
    """
    time.sleep(site.latency)
    if site.kind == "down":
        return ("down", "connection refused")
    return ("up", f"200 OK after {site.latency:.3f}s")


def check_all(sites: list[Site]) -> Iterator[tuple[Site, tuple[str, object]]]:
    """Yield each site with its ``async_stream`` result, in input order, as results arrive."""
    results = otpy.Task.async_stream(
        sites,
        check,
        max_concurrency=MAX_CONCURRENCY,
        timeout=TIMEOUT,
        on_timeout="kill_task",
    )
    # ordered=True (the default): the n-th result belongs to the n-th site.
    yield from zip(sites, results, strict=True)


def main(argv: list[str]) -> int:
    """Check every URL, print each result as it comes, then the totals."""
    parser = argparse.ArgumentParser(
        prog="python -m otpy demo url_checker",
        description="Check 20 fake URLs, five at a time, with Task.async_stream.",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="seed for latencies and failures (default: 7)"
    )
    args = parser.parse_args(argv)

    sites = plan_sites(args.seed)
    print(
        f"checking {len(sites)} URLs (seed {args.seed}), at most {MAX_CONCURRENCY} at a time, "
        f"{TIMEOUT}s each"
    )
    counts = {"up": 0, "down": 0, "timeout": 0}
    with otpy.Runtime():
        start = time.monotonic()
        for site, result in check_all(sites):
            elapsed = time.monotonic() - start
            print(f"  [{elapsed:5.2f}s] {site.url}  {result!r}")
            match result:
                case ("ok", (status, _)):
                    counts[str(status)] += 1
                case ("exit", "timeout"):
                    counts["timeout"] += 1
        wall = time.monotonic() - start
        print(
            f"{counts['up']} up, {counts['down']} down, {counts['timeout']} timed out "
            f"(killed after {TIMEOUT}s)"
        )
        sequential = sum(site.latency for site in sites)
        print(
            f"wall time {wall:.2f}s with {MAX_CONCURRENCY} at a time; "
            f"one after another: {sequential:.2f}s (the sum of all latencies)"
        )
        print("leaving the runtime: it waits for the threads still sleeping in hung checks")
    return 0
