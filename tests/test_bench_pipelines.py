"""The benchmark's W12-W14: pipelines against Redis, RabbitMQ and a producer in the process.

Most tests call the runners in this process with small sizes, or with fake
consumers that lose or garble something (the benchmark must fail then, not
look fast). Those against a broker skip when it does not answer (or fail
with ``OTPY_REQUIRE_BROKERS=1``, per ``tests/brokers.py``);
``test_a_broker_that_is_not_running_makes_its_row_na_with_the_reason`` points
the benchmark at ports where nothing listens. ``test_quick_run_of_w12_to_w14``
runs ``python -m bench --quick --only W12,W13,W14`` in a subprocess. No test
judges a timing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from brokers import require_rabbitmq, require_redis

import otpy

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 90.0
"""Generous: the other engineers share the two cores."""

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import _brokers, _workloads  # noqa: E402  (the root is on sys.path only from here)
from bench.__main__ import WORKLOADS, main  # noqa: E402
from bench._contender import NAMES, load  # noqa: E402
from bench._workloads import (  # noqa: E402
    FULL,
    QUICK,
    Acks,
    Orders,
    WrongResult,
    build_cases,
    build_targets,
    pipeline_overhead,
    queue_messages,
    stream_entries,
    touch,
)

ROWS = ("W12", "W13", "W14")


def fake(**parts: Any) -> Any:
    """A contender with only the parts a workload needs."""
    from contextlib import nullcontext

    return SimpleNamespace(name="fake", session=nullcontext, **parts)


@pytest.fixture
def brokers_probed_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget what the benchmark's probes found (in this process) for the test's duration."""
    monkeypatch.setattr(_brokers, "_probed", {})


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- rows, targets, who takes part ------------------------------------------------------


def test_the_pipeline_rows_are_selectable_with_their_targets(runtime: otpy.Runtime):
    assert set(ROWS) <= set(WORKLOADS)
    for sizes in (QUICK, FULL):
        cases = {case.key: case for case in build_cases(sizes)}
        assert set(ROWS) <= set(cases)
        assert cases["W13"].once and not cases["W12"].once and not cases["W14"].once
        assert sizes.stream_entries % sizes.read_batch == 0  # no batch waits for its timeout
        targets = {t.row: t for t in build_targets(sizes) if t.row in ROWS}
        assert {row: (t.reference, t.comparison, t.bound) for row, t in targets.items()} == {
            "W12": (("W12", "threads"), "≥", 1),
            "W13": (("W13", "threads"), "≥", 1),
            "W14": (("W14", "threads"), "≥", 0.5),
        }
    assert (FULL.stream_entries, FULL.queue_messages) == (100_000, 100_000)
    assert (FULL.pipeline_workers, FULL.read_batch) == (8, 100)


def test_only_otpy_and_the_hand_written_column_take_part(
    runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(_brokers, "problem", lambda broker: None)  # as if both answered
    cases = [case for case in build_cases(QUICK) if case.key in ROWS]
    for name in NAMES:
        contender = load(name)
        notes = [case.skip(contender) for case in cases]
        if name in ("otpy", "threads"):
            assert notes == [None, None, None]
        else:
            assert notes == ["n/a (no pipelines)"] * 3


# --- a broker that is not there ----------------------------------------------------------


def test_a_broker_that_is_not_running_makes_its_row_na_with_the_reason(
    runtime: otpy.Runtime,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    brokers_probed_afresh: None,
):
    monkeypatch.setattr(_brokers, "REDIS_PORT", unused_port())
    monkeypatch.setattr(_brokers, "RABBITMQ_PORT", unused_port())
    assert main(["--quick", "--only", "W12,W13"]) == 0  # not a failure, and no crash
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("W12 ", "W13 "))]
    assert len(rows) == 2
    assert rows[0].count("n/a (Redis not running)") == 2  # otpy and threads
    assert rows[1].count("n/a (RabbitMQ not running)") == 2
    assert "start it with `redis-server --daemonize yes`" in out
    assert "start it with `rabbitmq-server -detached`" in out
    assert "targets: 0 PASS, 0 FAIL, 2 n/a" in out


def test_a_client_library_that_is_missing_is_named(
    runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch, brokers_probed_afresh: None
):
    monkeypatch.setattr(_brokers, "_installed", lambda module: module != "pika")
    rabbitmq = _brokers.problem("RabbitMQ")
    assert rabbitmq is not None and rabbitmq.cell == "n/a (pika missing)"
    assert "pip install pika" in _brokers.problems()["RabbitMQ"]
    (w13,) = [case for case in build_cases(QUICK) if case.key == "W13"]
    assert w13.skip(load("threads")) == "n/a (pika missing)"


# --- W14: no broker -----------------------------------------------------------------------


def test_w14_runs_on_the_pipeline_and_on_the_loop(runtime: otpy.Runtime):
    for name in ("otpy", "threads"):
        assert pipeline_overhead(load(name), 2_000) > 0


def test_w14_fails_a_flow_that_acks_one_as_failed(runtime: otpy.Runtime):
    @contextmanager
    def one_fails(n: int, handle: Callable[[int], None], acks: Acks) -> Iterator[None]:
        for i in range(n):
            handle(i)
            acks.ack(None, [] if i == 3 else [i], [i] if i == 3 else [])
        yield

    with pytest.raises(WrongResult, match="1 as failed"):
        pipeline_overhead(fake(message_flow=one_fails), 10)


def test_the_pipeline_acks_in_groups(runtime: otpy.Runtime):
    acks = Acks(1_000)
    with load("otpy").message_flow(1_000, touch, acks):
        assert acks.done.wait(30)
    assert acks.acked == 1_000
    assert acks.calls < 1_000  # one ack call per processor batch, not per message


def test_orders_check_counts_and_sums(runtime: otpy.Runtime):
    orders = Orders(3)
    for i in (0, 1, 1):  # one lost, one twice
        orders.take(_brokers.order(i))
    assert orders.done.is_set()
    with pytest.raises(WrongResult, match="summing to 2"):
        orders.check("fake", 3)
    assert json.loads(_brokers.order(7))["amount"] == 7


# --- W12: Redis ----------------------------------------------------------------------------


def test_w12_runs_on_the_pipeline_and_by_hand_and_cleans_up(runtime: otpy.Runtime):
    require_redis()
    import redis

    client = redis.Redis.from_url(_brokers.REDIS_URL, decode_responses=True)
    try:
        before = set(client.scan_iter("otpy-bench-*"))
        for name in ("otpy", "threads"):
            assert stream_entries(load(name), n=1_000, workers=4, batch=100) > 0
        assert set(client.scan_iter("otpy-bench-*")) == before  # every stream was deleted
    finally:
        client.close()


def test_w12_fails_a_consumer_that_never_acks(
    runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch
):
    require_redis()
    monkeypatch.setattr(_workloads, "CONFIRM_TIMEOUT", 0.3)
    import redis

    @contextmanager
    def never_acks(source: Any, handle: Callable[[dict[str, str]], None]) -> Iterator[None]:
        client = redis.Redis.from_url(source.url, decode_responses=True)
        try:
            ((_, entries),) = client.xreadgroup(
                source.group, "forgetful", {source.stream: ">"}, count=10_000
            )
            for _, fields in entries:
                handle(fields)
            yield
        finally:
            client.close()

    with pytest.raises(TimeoutError, match="50 entries still pending"):
        stream_entries(fake(stream_consumer=never_acks), n=50, workers=1, batch=10)


# --- W13: RabbitMQ -------------------------------------------------------------------------


def test_w13_runs_on_the_pipeline_and_by_hand(runtime: otpy.Runtime):
    require_rabbitmq()
    for name in ("otpy", "threads"):
        assert queue_messages(load(name), n=500, workers=4, prefetch=40) > 0


def test_w13_fails_a_consumer_that_closes_with_deliveries_unacked(runtime: otpy.Runtime):
    require_rabbitmq()
    import pika

    @contextmanager
    def never_acks(source: Any, handle: Callable[[bytes], None]) -> Iterator[None]:
        connection = pika.BlockingConnection(pika.URLParameters(source.url))
        try:
            channel = connection.channel()
            while True:
                method, _, body = channel.basic_get(source.queue, auto_ack=False)
                if method is None:
                    break
                handle(body)
            yield
        finally:
            connection.close()  # RabbitMQ requeues the 30 unacked deliveries

    with pytest.raises(WrongResult, match="30 messages were not acknowledged"):
        queue_messages(fake(queue_consumer=never_acks), n=30, workers=1, prefetch=10)


# --- the whole command ---------------------------------------------------------------------


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


def rows_by_key(stdout: str) -> tuple[list[str], dict[str, list[str]]]:
    """The text table's header and rows (by workload id), cells split on 2+ spaces."""
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    split = re.compile(r"\s{2,}")
    rows = {}
    for line in lines[at + 2 :]:
        if line.startswith("* "):
            break
        cells = split.split(line.strip())
        rows[cells[0].split()[0]] = cells
    return split.split(lines[at].strip()), rows


def test_quick_run_of_w12_to_w14(runtime: otpy.Runtime):
    require_redis()
    require_rabbitmq()
    done = run_bench("--quick", "--only", ",".join(ROWS))
    assert done.returncode == 0, done.stderr
    header, rows = rows_by_key(done.stdout)
    assert list(rows) == list(ROWS)
    number = re.compile(r"[\d.,]+[kM]?( \(.*\))?")
    for key in ROWS:
        row = rows[key]
        for name in NAMES:
            cell = row[header.index(name)]
            if name in ("otpy", "threads"):
                assert number.fullmatch(cell), (key, name, cell)
            else:
                assert cell == "n/a (no pipelines)", (key, name, cell)
        assert number.fullmatch(row[header.index("otpy/threads")]), row
        assert re.fullmatch(r"(PASS|FAIL) \(.*\)", row[-1]), row
    assert "targets: " in done.stdout and " 0 n/a" in done.stdout
    assert "still running" not in done.stdout  # no measurement left a thread behind


def test_a_base_without_otpy_pipeline_shows_its_rows_as_na(runtime: otpy.Runtime, tmp_path: Path):
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
    shutil.rmtree(tmp_path / "otpy" / "pipeline")
    done = run_bench("--quick", "--only", "W14", "--base", str(tmp_path))
    assert done.returncode == 0, done.stderr
    header, rows = rows_by_key(done.stdout)
    assert rows["W14"][header.index("otpy@base")] == "n/a (otpy.pipeline missing)"
    assert re.fullmatch(r"[\d.,]+[kM]?( \(.*\))?", rows["W14"][header.index("otpy")])
    assert "otpy.pipeline does not import" in done.stderr


def test_publishing_starts_again_when_the_broker_closes_the_connection(
    runtime: otpy.Runtime, capsys: pytest.CaptureFixture[str]
):
    exceptions = pytest.importorskip("pika.exceptions")
    attempts: list[str] = []

    def publish() -> int:
        attempts.append("publish")
        if len(attempts) == 1:
            raise exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - test")
        return 7

    assert _brokers._with_retries(publish, lambda: attempts.append("undo")) == 7
    assert attempts == ["publish", "undo", "publish"]
    assert "publishing again" in capsys.readouterr().err

    def always_closed() -> int:
        raise exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - test")

    with pytest.raises(exceptions.ConnectionClosedByBroker):
        _brokers._with_retries(always_closed, lambda: None)


class Watch:
    """A ``ConnectionWatch`` stand-in: says the broker closed everything during the first ``n``."""

    measurements = 0

    def __init__(self, disturbed: int) -> None:
        Watch.measurements += 1
        self.disturbed = Watch.measurements <= disturbed

    def check(self) -> None:
        if self.disturbed:
            raise _brokers.Disturbed("RabbitMQ closed every connection (a test's stand-in)")


def test_w13_measures_again_when_the_broker_closed_every_connection(
    runtime: otpy.Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    require_rabbitmq()
    with _brokers.watch_connections() as real:
        assert not real.closed()  # nothing closed it
    monkeypatch.setattr(Watch, "measurements", 0)
    monkeypatch.setattr(_workloads, "remeasured", Counter())

    @contextmanager
    def watch_disturbing(times: int) -> Iterator[Watch]:
        yield Watch(times)

    monkeypatch.setattr(_brokers, "watch_connections", lambda: watch_disturbing(1))
    assert queue_messages(load("threads"), n=50, workers=2, prefetch=10) > 0
    assert Watch.measurements == 2
    assert "measuring again" in capsys.readouterr().err
    assert _workloads.remeasured == {"threads": 1}  # for the run's notes

    monkeypatch.setattr(Watch, "measurements", 0)
    monkeypatch.setattr(_brokers, "watch_connections", lambda: watch_disturbing(99))
    with pytest.raises(WrongResult, match=r"closed every connection .*, 3 times"):
        queue_messages(load("threads"), n=20, workers=2, prefetch=10)
