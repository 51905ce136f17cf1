"""The benchmark's W10, W11, W15 and W16: the rows, the checks that catch a wrong answer, a quick run.

Most tests call the workload runners in this process with small sizes or
with fake contenders that answer wrongly (a benchmark that loses or garbles
a result must fail, not look fast). ``test_quick_run_of_the_new_workloads``
runs ``python -m bench --quick --only W10,W11,W15,W16`` in a subprocess. No
test judges a timing.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import otpy

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 90.0
"""Generous: the other engineers share the two cores."""

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import _report  # noqa: E402  (the repository root is on sys.path only from here)
from bench.__main__ import WORKLOADS, parse_args  # noqa: E402
from bench._contender import NAMES, load  # noqa: E402
from bench._runner import Results  # noqa: E402
from bench._threads import LockedBucket  # noqa: E402
from bench._workloads import (  # noqa: E402
    FULL,
    QUICK,
    ThreadPeak,
    WrongResult,
    acquires,
    build_cases,
    build_targets,
    gathered_calls,
    granted_rate,
    round_trips,
    threads_alive,
    transactions,
)

NEW = ("W10", "W11", "W15", "W16")
NEW_ROWS = (
    "W10",
    "W11 calls",
    "W11 rate",
    "W15 inline",
    "W15 mailbox",
    "W16 timer time",
    "W16 timer threads",
    "W16 sleep time",
    "W16 sleep threads",
)


def test_the_new_workloads_are_selectable_and_have_rows_and_targets(runtime: otpy.Runtime):
    assert set(NEW) <= set(WORKLOADS)
    assert parse_args(["--only", "w10,W16"]).only == ["W10", "W16"]
    for sizes in (QUICK, FULL):
        keys = [case.key for case in build_cases(sizes)]
        assert [key for key in keys if key.split()[0] in NEW] == list(NEW_ROWS)
        assert {case.workload for case in build_cases(sizes)} == set(WORKLOADS)
        targets = {target.row: target for target in build_targets(sizes)}
        assert set(targets) >= {"W10", "W11 calls", "W11 rate", "W15 inline", "W16 timer time"}
        assert "W15 mailbox" not in targets and "W16 sleep time" not in targets
    (w16,) = [t for t in build_targets(FULL) if t.row == "W16 timer time"]
    assert w16.bound == pytest.approx(2.0)  # 2 x the ideal: 10,000 / 100 x 10 ms
    assert QUICK.gather_ideal == pytest.approx(0.1)


def test_the_asyncio_column_takes_part_in_w1_to_w7_w15_and_w16(runtime: otpy.Runtime):
    assert "asyncio" in NAMES
    asyncio_ = load("asyncio")
    cases = build_cases(QUICK)
    notes = {case.key: case.skip(asyncio_) for case in cases}
    takes_part = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W15", "W16")
    assert all(notes[key] is None for key in notes if key.split()[0] in takes_part)
    assert all(notes[key] for key in notes if key.split()[0] not in takes_part)
    threads = load("threads")
    skipped = {case.key for case in cases if case.skip(threads)}
    assert skipped >= {"W11 rate", "W15 inline", "W16 timer time"}
    assert "W10" not in skipped and "W11 calls" not in skipped


def test_a_deviation_target_judges_the_magnitude_and_shows_the_sign(runtime: otpy.Runtime):
    (rate,) = [t for t in build_targets(QUICK) if t.row == "W11 rate"]
    results = Results()
    results.samples[("W11 rate", "otpy")] = [-1.5]
    verdict = _report.evaluate(rate, results)
    assert verdict is not None and verdict.passed and str(verdict) == "PASS (-1.5)"
    results.samples[("W11 rate", "otpy")] = [-2.5]
    verdict = _report.evaluate(rate, results)
    assert verdict is not None and not verdict.passed
    (case,) = [c for c in build_cases(QUICK) if c.key == "W11 rate"]
    assert case.unit.arrow == "→0"


def test_the_locked_bucket_refuses_when_empty(runtime: otpy.Runtime):
    bucket = LockedBucket(rate=1e-9, capacity=2)
    assert [bucket.try_acquire(1) for _ in range(3)] == [True, True, False]


def fake(**parts: Any) -> Any:
    """A contender with only the parts a workload needs."""
    return SimpleNamespace(name="fake", session=nullcontext, **parts)


def test_pool_transactions_run_on_both_pools(runtime: otpy.Runtime):
    for name in ("otpy", "threads"):
        assert transactions(load(name), threads=3, per_thread=50, size=2) > 0


def test_a_pool_that_lends_more_workers_than_it_has_fails_w10(runtime: otpy.Runtime):
    @contextmanager
    def overflowing(size: int) -> Iterator[Callable[[Callable[[Any], Any]], Any]]:
        yield lambda fn: fn(object())  # a new worker every time

    with pytest.raises(WrongResult, match="distinct workers"):
        transactions(fake(worker_pool=overflowing), threads=2, per_thread=10, size=4)


def test_a_bucket_that_refuses_with_tokens_to_spare_fails_w11(runtime: otpy.Runtime):
    @contextmanager
    def stingy(rate: float, capacity: float) -> Iterator[Callable[[int], bool]]:
        yield LockedBucket(rate=1e-9, capacity=5).try_acquire

    with pytest.raises(WrongResult, match="refused"):
        acquires(fake(bucket=stingy), threads=2, per_thread=10)


def test_try_acquire_runs_on_both_buckets_and_otpy_grants_tokens(runtime: otpy.Runtime):
    for name in ("otpy", "threads"):
        assert acquires(load(name), threads=2, per_thread=100) > 0
    # -100 % would be a bucket that granted nothing (it starts full, with 10 tokens).
    assert granted_rate(load("otpy"), threads=2, window=0.1) > -100


class WrongServers:
    """Async servers whose replies are off by one from the 5th call on."""

    def __init__(self) -> None:
        self.calls = 0

    def start(self, logic: Any, serving: str, delay: float) -> object:
        return object()

    async def call(self, server: object, request: Any) -> Any:
        self.calls += 1
        return request + (1 if self.calls < 5 else 2)

    async def call_within(self, server: object, request: Any, timeout: float) -> Any:
        return await self.call(server, request)

    async def stop(self, server: object) -> None:
        pass


def test_wrong_replies_fail_w15_and_w16(runtime: otpy.Runtime):
    with pytest.raises(WrongResult, match="did not reply"):
        round_trips(fake(aio=WrongServers()), n=10, serving="inline")
    with pytest.raises(WrongResult, match="were not request"):
        gathered_calls(fake(aio=WrongServers()), n=10, servers_n=2, serving="timer", key="k")


def test_awaited_calls_run_on_every_way_of_serving(runtime: otpy.Runtime):
    otpy_, asyncio_ = load("otpy"), load("asyncio")
    for serving in ("inline", "mailbox"):
        assert round_trips(otpy_, 20, serving) > 0
        assert round_trips(asyncio_, 20, serving) > 0
    for serving in ("timer", "sleep"):
        for contender in (otpy_, asyncio_):
            key = f"W16 {serving} time"
            # 20 calls to 4 servers: 5 waits of 10 ms one after the other on each
            # (the bound leaves 2 ms for timers that fire a hair early).
            assert gathered_calls(contender, 20, 4, serving, key) >= 0.048
            assert threads_alive(contender, key) >= 2  # at least the caller and the sampler
    with pytest.raises(RuntimeError, match="no thread count"):
        threads_alive(otpy_, "W16 timer time")  # taken already


def test_thread_peak_counts_a_thread_alive_at_the_end(runtime: otpy.Runtime):
    release = threading.Event()
    extra = threading.Thread(target=release.wait, name="bench-test-extra")
    try:
        with ThreadPeak() as peak:
            extra.start()
            alive = threading.active_count()  # this thread, the sampler, the extra one, ...
    finally:
        release.set()
        extra.join()
    assert peak.peak >= alive - 1  # the sampler has ended by the last look


def test_the_asyncio_server_answers_a_late_call_with_a_timeout(runtime: otpy.Runtime):
    servers = load("asyncio").aio

    class Slow:
        def on_call(self, request: Any) -> Any:
            return request

    async def main() -> None:
        server = servers.start(Slow(), "timer", 0.2)
        with pytest.raises(TimeoutError, match="no reply"):
            await servers.call_within(server, 1, 0.01)
        assert await servers.call_within(server, 2, 5.0) == 2  # the late one was skipped
        await servers.stop(server)

    asyncio.run(main())


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


def rows_by_title(stdout: str) -> tuple[list[str], list[list[str]]]:
    """The text table's header and rows, cells split on 2+ spaces."""
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    split = re.compile(r"\s{2,}")
    body = []
    for line in lines[at + 2 :]:
        if line.startswith("* "):
            break
        body.append(split.split(line.strip()))
    return split.split(lines[at].strip()), body


def test_quick_run_of_the_new_workloads(runtime: otpy.Runtime):
    done = run_bench("--quick", "--only", ",".join(NEW))
    assert done.returncode == 0, done.stderr
    header, body = rows_by_title(done.stdout)
    assert [row[0].split()[0] for row in body] == [key.split()[0] for key in NEW_ROWS]
    column = {name: header.index(name) for name in NAMES}
    number = re.compile(r"-?[\d.,]+[kM]?( \(.*\))?")
    for row, key in zip(body, NEW_ROWS, strict=True):
        assert len(row) >= len(header) - 2, row  # the target and result cells may be empty
        measured = ["otpy"]
        measured += ["threads"] if key in ("W10", "W11 calls") else []
        measured += ["asyncio"] if key.startswith(("W15", "W16")) else []
        for name in NAMES:
            cell = row[column[name]]
            if name in measured:
                assert number.fullmatch(cell), (key, name, cell)
            else:
                assert cell.startswith("n/a"), (key, name, cell)
    assert re.search(r"targets: \d+ PASS, \d+ FAIL, 0 n/a", done.stdout), done.stdout
    assert "error in" not in done.stdout
    assert "still running" not in done.stdout  # no measurement left a thread behind


def test_a_base_without_otpy_pool_and_aio_shows_their_rows_as_na(
    runtime: otpy.Runtime, tmp_path: Path
):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD", "otpy"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip("the repository is not a git checkout")
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    (tmp_path / "otpy" / "pool.py").unlink()
    (tmp_path / "otpy" / "aio.py").unlink()
    done = run_bench("--quick", "--only", "W10,W15", "--base", str(tmp_path))
    assert done.returncode == 0, done.stderr
    header, body = rows_by_title(done.stdout)
    base = header.index("otpy@base")
    assert [row[base] for row in body] == [
        "n/a (otpy.pool missing)",
        "n/a (otpy.aio missing)",
        "n/a (otpy.aio missing)",
    ]
    assert all(re.fullmatch(r"[\d.,]+[kM]?( \(.*\))?", row[header.index("otpy")]) for row in body)
    assert "otpy.pool does not import" in done.stderr and "otpy.aio does not import" in done.stderr
