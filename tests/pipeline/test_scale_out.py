"""Scale-out through the broker: two OS processes run the same pipeline, one is SIGKILLed.

Each copy is a small script (written into the test's tmp_path) that runs a pipeline under
``otpy.run``: a RedisStreamProducer on one stream and consumer group (each copy its default,
distinct consumer name) or a RabbitMQProducer on one queue, rate limited so that the run
lasts long enough to be interrupted. Its batch processor appends the key of every message
it handles to the copy's own file (one ``write`` per batch, before the ack), then returns.

The test feeds 5,000 entries, kills one copy with SIGKILL once it has handled some, and
checks that the survivor finishes everything: every entry was handled at least once; the
only entries handled twice are ones the killed copy held unacknowledged (Redis: pending for
its consumer when it died, claimed by the survivor after ``claim_idle``; RabbitMQ: its
unacked deliveries, redelivered to the survivor with ``redelivered=True``); nothing is left
pending (Redis) or ready and unacked (RabbitMQ); and the survivor stops cleanly on SIGTERM
(``otpy.run`` drains and exits 0).
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pika
import pytest
import redis
from brokers import require_rabbitmq, require_redis
from conftest import wait_until

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
N = 5_000
KILL_AFTER = 1_000
"""The first copy is killed once it has handled this many entries."""
CLAIM_IDLE = 1.0
START_TIMEOUT = 20.0
FINISH_TIMEOUT = 20.0

SCRIPT = '''
"""One copy of the scaled-out pipeline: python scale_out_copy.py BROKER URL NAME OUT CLAIM_IDLE."""
import os
import sys

import otpy
import otpy.pipeline as pl

broker, url, name, out_path, claim_idle = sys.argv[1:6]


class Out:
    """The keys of the messages this copy handled: one os.write per batch (a SIGKILL can
    only cut the last line, which the test ignores: it has no newline)."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, lines):
        os.write(self.fd, "".join(f"{line}\\n" for line in lines).encode())


if broker == "redis":
    producer = (pl.RedisStreamProducer, {
        "stream": name, "group": "g", "url": url,
        "claim_idle": float(claim_idle), "block": 0.1,
    })

    def key(message):
        return message.data["n"]
else:
    producer = (pl.RabbitMQProducer, {"queue": name, "url": url})

    def key(message):
        return f"{message.data.decode()} {int(message.metadata['redelivered'])}"


class Record(pl.Pipeline):
    def handle_message(self, processor, message, context):
        return message

    def handle_batch(self, batcher, messages, batch_info, context):
        context.write([key(m) for m in messages])
        return messages


class Ready(otpy.GenServer):
    """Started after the pipeline: says so."""

    def init(self):
        print("ready", flush=True)


raise SystemExit(otpy.run([
    Record.child_spec(
        name="scale",
        producer={"module": producer,
                  "rate_limiting": {"allowed_messages": 200, "interval": 0.1}},
        processors={"default": {"concurrency": 2, "max_demand": 20}},
        batchers={"default": {"batch_size": 50, "batch_timeout": 0.05}},
        context=Out(out_path),
        shutdown=10.0,
    ),
    Ready.child_spec(),
], shutdown=15.0))
'''


class Copy:
    """One OS process running the script; its handled keys are in ``out``."""

    def __init__(self, tmp_path: Path, label: str, *args: str) -> None:
        script = tmp_path / "scale_out_copy.py"
        if not script.exists():
            script.write_text(SCRIPT)
        self.label = label
        self.out = tmp_path / f"{label}.out"
        self.err_path = tmp_path / f"{label}.err"
        self._err: IO[str] = self.err_path.open("w")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args, str(self.out), str(CLAIM_IDLE)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self.pid = self.proc.pid

    def stderr(self) -> str:
        self._err.flush()
        return self.err_path.read_text()

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=START_TIMEOUT):
                pytest.fail(
                    f"copy {self.label} did not start within {START_TIMEOUT}s:\n{self.stderr()}"
                )
        line = self.proc.stdout.readline()
        assert line == "ready\n", f"copy {self.label} said {line!r}:\n{self.stderr()}"

    def handled(self) -> list[str]:
        """The keys it wrote, complete lines only."""
        if not self.out.exists():
            return []
        return self.out.read_text().split("\n")[:-1]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        """SIGTERM: otpy.run drains the pipeline and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout=FINISH_TIMEOUT)
        assert status == 0, f"copy {self.label} exited with {status}:\n{self.stderr()}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


@pytest.fixture
def copies() -> Iterator[list[Copy]]:
    """The copies a test starts; whatever is still running at the end is killed."""
    started: list[Copy] = []
    yield started
    for copy in started:
        copy.close()


def test_redis_survivor_claims_what_the_killed_copy_held(runtime, tmp_path, copies):
    url = require_redis()
    r = redis.Redis.from_url(url, decode_responses=True)
    stream = f"otpy-test-scale-{uuid.uuid4().hex}"
    try:
        r.xgroup_create(stream, "g", id="0", mkstream=True)
        a = Copy(tmp_path, "a", "redis", url, stream)
        b = Copy(tmp_path, "b", "redis", url, stream)
        copies += [a, b]
        a.wait_ready()
        b.wait_ready()

        pipe = r.pipeline(transaction=False)
        for i in range(N):
            pipe.xadd(stream, {"n": str(i)})
        number_of = {entry_id: int(n) for n, entry_id in enumerate(pipe.execute())}

        wait_until(lambda: len(a.handled()) >= KILL_AFTER, timeout=FINISH_TIMEOUT)
        consumers = [c["name"] for c in r.xinfo_consumers(stream, "g")]
        (consumer_a,) = [c for c in consumers if c.rsplit("-", 3)[1] == str(a.pid)]

        def pending_of_a() -> set[int]:
            entries = r.xpending_range(stream, "g", "-", "+", 10 * N, consumername=consumer_a)
            return {number_of[e["message_id"]] for e in entries}

        before = pending_of_a()
        b_before_kill = len(b.handled())
        a.kill()
        after = pending_of_a()  # what a held when it died (minus any already claimed)
        assert after, "the killed copy held no pending entries: there was nothing to claim"
        held = before | after

        def finished() -> bool:
            handled = {int(k) for k in a.handled()} | {int(k) for k in b.handled()}
            return len(handled) == N and int(r.xpending(stream, "g")["pending"]) == 0

        wait_until(finished, timeout=FINISH_TIMEOUT, interval=0.05)
        b.stop()

        assert int(r.xpending(stream, "g")["pending"]) == 0
        in_a = Counter(int(k) for k in a.handled())
        in_b = Counter(int(k) for k in b.handled())
        assert set(in_a) | set(in_b) == set(range(N)), "some entries were never handled"
        assert max(in_b.values()) == 1, "the survivor handled an entry twice"
        assert max(in_a.values()) == 1, "the killed copy handled an entry twice"
        twice = set(in_a) & set(in_b)
        assert twice <= held, (
            f"handled twice but not held by the killed copy: {sorted(twice - held)[:10]}"
        )
        # Everything the dead consumer had pending was claimed and handled by the survivor.
        assert after <= set(in_b)
        # Both copies took part before the kill: the group shared the work.
        assert b_before_kill > 0
    finally:
        r.delete(stream)
        r.close()


def rabbitmqctl(*args: str) -> str:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH: this test reads the queue's unacked count with it")
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def ready_and_unacked(queue: str) -> tuple[int, int]:
    out = rabbitmqctl(
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    )
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {queue!r} not listed by rabbitmqctl: {out!r}")


def _channel_do(url: str, fn: Any) -> Any:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return fn(connection.channel())
    finally:
        connection.close()


def test_rabbitmq_survivor_gets_the_killed_copys_unacked_messages(runtime, tmp_path, copies):
    url = require_rabbitmq()
    rabbitmqctl("status")  # skip early without it
    queue = f"otpy-test-scale-{uuid.uuid4().hex}"
    _channel_do(url, lambda ch: ch.queue_declare(queue))
    try:
        a = Copy(tmp_path, "a", "rabbitmq", url, queue)
        b = Copy(tmp_path, "b", "rabbitmq", url, queue)
        copies += [a, b]
        a.wait_ready()
        b.wait_ready()

        def publish(ch: Any) -> None:
            for i in range(N):
                ch.basic_publish("", queue, str(i).encode())

        _channel_do(url, publish)

        wait_until(lambda: len(a.handled()) >= KILL_AFTER, timeout=FINISH_TIMEOUT)
        b_before_kill = len(b.handled())
        a.kill()

        def handled(copy: Copy) -> list[tuple[int, bool]]:
            return [(int(n), flag == "1") for n, flag in (k.split() for k in copy.handled())]

        def finished() -> bool:
            seen = {n for n, _ in handled(a)} | {n for n, _ in handled(b)}
            return len(seen) == N and ready_and_unacked(queue) == (0, 0)

        wait_until(finished, timeout=FINISH_TIMEOUT, interval=0.2)
        b.stop()
        # The survivor's connection is closed now: anything it left unacked would be ready again.
        left = _channel_do(
            url, lambda ch: ch.queue_declare(queue, passive=True).method.message_count
        )
        assert left == 0

        in_a = Counter(n for n, _ in handled(a))
        in_b = Counter(n for n, _ in handled(b))
        redelivered = {n for n, again in handled(b) if again}
        assert set(in_a) | set(in_b) == set(range(N)), "some messages were never handled"
        assert max(in_b.values()) == 1, "the survivor handled a message twice"
        assert max(in_a.values()) == 1, "the killed copy handled a message twice"
        assert redelivered, "the killed copy held no unacked messages: nothing was redelivered"
        twice = set(in_a) & set(in_b)
        assert twice <= redelivered, (
            f"handled twice but not redelivered: {sorted(twice - redelivered)[:10]}"
        )
        assert b_before_kill > 0, "the survivor had handled nothing: the queue was not shared"
    finally:
        _channel_do(url, lambda ch: ch.queue_delete(queue))
