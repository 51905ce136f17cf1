"""The benchmark's asyncio column for W1-W7: tasks on one loop, a supervisor task, gather.

The runners run in this process with small sizes on the asyncio contender,
and with fakes that answer wrongly (the benchmark must fail then);
``test_quick_run_of_w1_to_w7_has_the_asyncio_column`` runs ``python -m
bench --quick`` in a subprocess. No test judges a timing.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
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

from bench import _workloads  # noqa: E402  (the repository root is on sys.path only from here)
from bench._asyncio import TaskSupervisor  # noqa: E402
from bench._contender import NAMES, load  # noqa: E402
from bench._memory import kb_per_process  # noqa: E402
from bench._workloads import (  # noqa: E402
    FULL,
    WrongResult,
    build_targets,
    calls,
    casts,
    concurrent_casts,
    pool_map,
    restarts,
    ring,
    spawn_call_stop,
)

ASYNCIO_TARGETS = {
    "W1": ("≤", 0.5),
    "W2": ("≥", 1),
    "W3": ("≥", 1),
    "W4 time 100000": ("≤", 0.3),
    "W5": ("≤", 0.5),
    "W6 kill": ("≤", 1),
    "W6 raise": ("≤", 1),
    "W7": ("≥", 2),
}


def test_the_issue_12_targets_are_otpy_over_asyncio(runtime: otpy.Runtime):
    targets = build_targets(FULL)
    versus_asyncio = [t for t in targets if t.reference is not None and t.reference[1] == "asyncio"]
    against = {t.row: (t.comparison, t.bound) for t in versus_asyncio if t.row[:3] != "W15"}
    assert against == ASYNCIO_TARGETS
    assert all(t.reference == (t.row, "asyncio") for t in versus_asyncio)  # the same row
    assert all(t.subject == (t.row, "otpy") for t in versus_asyncio)
    memory = [t for t in targets if t.row == "W4 memory 100000"]
    assert sorted(t.bound for t in memory) == [0.8, 2.0]  # absolute KB per otpy process
    assert all(t.reference is None and t.subject[1] == "otpy" for t in memory)


def test_w1_to_w5_run_as_coroutines(runtime: otpy.Runtime):
    contender = load("asyncio")
    assert not contender.serves_threads
    assert calls(contender, 50) > 0
    assert casts(contender, 500) > 0
    assert concurrent_casts(contender, 4, 100) > 0
    assert spawn_call_stop(contender, 200) > 0
    assert ring(contender, 10, 3) > 0


def test_w4_sees_every_task_alive_before_the_memory_probe(runtime: otpy.Runtime):
    readings: list[int] = []

    def probe(moment: str) -> None:
        if moment == "all alive":
            # Each server task has run up to its first ``await inbox.get()``.
            waiting = [
                t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith("_serve")
            ]
            readings.append(sum(1 for t in waiting if t.get_stack()))

    spawn_call_stop(load("asyncio"), 30, probe)
    assert readings == [30]


def test_memory_probe_runs_asyncio_in_its_fresh_interpreter(runtime: otpy.Runtime):
    assert kb_per_process("asyncio", 200) > 0


@pytest.mark.parametrize("how", ["kill", "raise"])
def test_the_supervisor_task_restarts_its_worker_every_time(runtime: otpy.Runtime, how: str):
    assert restarts(load("asyncio"), 20, how) > 0  # it checks the count: 21 with the warm-up


def test_the_supervisor_stops_with_its_worker(runtime: otpy.Runtime):
    async def main() -> tuple[bool, bool, int]:
        supervisor = TaskSupervisor()
        first = await supervisor.next_worker(5.0)
        supervisor.crash(first, "raise")
        second = await supervisor.next_worker(5.0)
        await supervisor.stop()
        with pytest.raises(TimeoutError, match="no worker task"):
            await supervisor.next_worker(0.05)
        return first.task.done(), second.task.cancelled(), supervisor.restarts()

    first_done, second_cancelled, count = asyncio.run(main())
    assert first_done and second_cancelled and count == 1  # the stop is not a restart


class Forgetful:
    """An async supervisor that restarts its worker but forgets to count one restart."""

    def __init__(self) -> None:
        self.workers = 0

    async def next_worker(self, timeout: float) -> int:
        self.workers += 1
        return self.workers

    def crash(self, worker: int, how: str) -> None:
        pass

    def restarts(self) -> int:
        return self.workers - 2


def test_w6_fails_a_supervisor_that_miscounts(runtime: otpy.Runtime):
    @asynccontextmanager
    async def supervise() -> AsyncIterator[Forgetful]:
        yield Forgetful()

    contender = SimpleNamespace(
        name="fake", session=nullcontext, supervise=None, async_supervise=supervise
    )
    with pytest.raises(WrongResult, match="counted 10 restarts, expected 11"):
        restarts(contender, 10, "kill")


class DroppingServers:
    """Async servers that lose every cast (the ring's token never comes round)."""

    def start(self, logic: Any, serving: str, delay: float) -> object:
        return object()

    def cast(self, server: object, message: Any) -> None:
        pass

    async def call(self, server: object, request: Any) -> Any:
        return request + 1

    async def call_within(self, server: object, request: Any, timeout: float) -> Any:
        return 0  # the count of casts: none arrived

    async def stop(self, server: object) -> None:
        pass


def test_lost_casts_fail_w2_w3_and_w5_on_a_loop(
    runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(_workloads, "CONFIRM_TIMEOUT", 0.05)
    contender = SimpleNamespace(
        name="fake", session=nullcontext, serves_threads=False, aio=DroppingServers()
    )
    with pytest.raises(WrongResult, match="counted 0 casts, expected 10"):
        casts(contender, 10)
    with pytest.raises(WrongResult, match="counted 0 casts, expected 6"):
        concurrent_casts(contender, 3, 2)
    with pytest.raises(WrongResult, match="did not finish 12 hops"):
        ring(contender, 4, 3)


def test_w7_is_gather_under_a_semaphore_in_order(runtime: otpy.Runtime):
    contender = load("asyncio")
    assert contender.pool_map is not None
    assert contender.pool_map(lambda x: x * 2, range(5)) == [0, 2, 4, 6, 8]
    assert pool_map(contender, 1_000) > 0


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


def test_quick_run_of_w1_to_w7_has_the_asyncio_column(runtime: otpy.Runtime):
    done = run_bench("--quick", "--only", "W1,W2,W3,W5,W6,W7")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    split = re.compile(r"\s{2,}")
    header = split.split(lines[at].strip())
    body = [split.split(line.strip()) for line in lines[at + 2 :] if line.startswith("W")]
    assert [row[0].split()[0] for row in body] == ["W1", "W2", "W3", "W5", "W6", "W6", "W7"]
    number = re.compile(r"[\d.,]+[kM]?( \(.*\))?")
    for row in body:
        assert number.fullmatch(row[header.index("asyncio")]), row
        assert number.fullmatch(row[header.index("otpy/asyncio")]), row
        assert "otpy/asyncio" in row[-2], row  # the issue 12 target of the row
    assert set(NAMES) <= set(header)
    assert re.search(r"targets: \d+ PASS, \d+ FAIL, 0 n/a", done.stdout), done.stdout
    assert "error in" not in done.stdout
