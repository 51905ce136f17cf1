"""W12 and W13's brokers: whether they answer, and the stream and the queue each measurement uses.

Redis is ``127.0.0.1:6379`` (database 0) and RabbitMQ ``127.0.0.1:5672``
(``guest``/``guest``, vhost ``/``), the services the test suite uses too.
Whether each answers is probed once per run, with a raw socket (a ``PING``;
the AMQP protocol header), and whether its client library (redis-py, pika)
imports: if not, the row shows n/a for every contender, and the run's notes
give the reason and how to start the broker (``problems``). The benchmark
never fails for a broker that is not there.

Every measurement gets a stream or a queue of its own, filled before the
clock starts and deleted afterwards:

- ``redis_stream(n, ...)``: a new stream ``otpy-bench-<uuid>`` with ``n``
  entries ``{"order": order(i)}`` (``XADD`` in pipelines of 1,000), and a new
  consumer group at id ``0``, so that the group hands out every entry;
- ``rabbitmq_queue(n, ...)``: a new queue ``otpy-bench-<uuid>`` (not durable)
  with ``n`` messages ``order(i)`` (``basic_publish`` in a loop on one channel,
  then passive ``queue_declare``s until the queue counts all of them).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ._contender import QueueSource, StreamSource

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"

RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/%2F"

FIELD = "order"
"""The field of a W12 entry that holds ``order(i)``."""

PROBE_TIMEOUT = 1.0
"""Seconds a broker has to answer the probe."""

_XADD_BATCH = 1_000
_POLL = 0.001
"""Seconds between two looks at ``XPENDING`` while the last acks are on their way (and at a
queue's count while the last publishes arrive)."""

_PUBLISHED = 30.0
"""Seconds RabbitMQ may take to count every message published (the check after publishing)."""


def order(i: int) -> str:
    """The ``i``-th message of W12 and W13: a small JSON order whose ``amount`` is ``i``."""
    return json.dumps({"id": i, "amount": i, "item": "book", "note": "deliver by noon"})


@dataclass(frozen=True)
class Problem:
    """Why a broker's row cannot run: a short note for the cell, the reason for the notes."""

    cell: str
    reason: str


# _lock guards _probed: the runner probes from its one thread, tests may call from others.
_lock = threading.Lock()
_probed: dict[str, Problem | None] = {}


def _answers(host: str, port: int, hello: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            sock.sendall(hello)
            return sock.recv(len(expect)).startswith(expect)
    except OSError:
        return False


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _probe_redis() -> Problem | None:
    if not _installed("redis"):
        return Problem("n/a (redis-py missing)", "redis-py is not installed: pip install redis")
    if not _answers(REDIS_HOST, REDIS_PORT, b"*1\r\n$4\r\nPING\r\n", b"+PONG"):
        return Problem(
            "n/a (Redis not running)",
            f"Redis is not running on {REDIS_HOST}:{REDIS_PORT}: "
            "start it with `redis-server --daemonize yes`",
        )
    return None


def _probe_rabbitmq() -> Problem | None:
    if not _installed("pika"):
        return Problem("n/a (pika missing)", "pika is not installed: pip install pika")
    # A broker answers the protocol header with a Connection.Start method frame (type 1).
    if not _answers(RABBITMQ_HOST, RABBITMQ_PORT, b"AMQP\x00\x00\x09\x01", b"\x01"):
        return Problem(
            "n/a (RabbitMQ not running)",
            f"RabbitMQ is not running on {RABBITMQ_HOST}:{RABBITMQ_PORT}: "
            "start it with `rabbitmq-server -detached`",
        )
    return None


_PROBES = {"Redis": _probe_redis, "RabbitMQ": _probe_rabbitmq}


def problem(broker: str) -> Problem | None:
    """Why ``broker`` (``"Redis"``, ``"RabbitMQ"``) cannot be used, or None; probed once per run."""
    with _lock:
        if broker not in _probed:
            _probed[broker] = _PROBES[broker]()
        return _probed[broker]


def problems() -> dict[str, str]:
    """The reason for every broker probed so far that cannot be used, by broker."""
    with _lock:
        return {broker: found.reason for broker, found in _probed.items() if found is not None}


def _require(broker: str) -> None:
    found = problem(broker)
    if found is not None:
        raise RuntimeError(found.reason)


_names = itertools.count(1)  # next() on itertools.count is atomic


def _name() -> str:
    return f"otpy-bench-{uuid.uuid4().hex[:12]}-{next(_names)}"


# --- Redis -----------------------------------------------------------------------------


def _redis_client() -> Any:
    import redis

    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


@contextmanager
def redis_stream(n: int, workers: int, batch: int) -> Iterator[StreamSource]:
    """A new stream holding ``n`` entries and a new group at id ``0``; both deleted afterwards.

    Raises:
        RuntimeError: Redis cannot be used (``problem``).
    """
    _require("Redis")
    client = _redis_client()
    stream = _name()
    try:
        for first in range(0, n, _XADD_BATCH):
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(first + _XADD_BATCH, n)):
                pipe.xadd(stream, {FIELD: order(i)})
            pipe.execute()
        group = "bench"
        client.xgroup_create(stream, group, id="0")
        yield StreamSource(REDIS_URL, stream, group, workers, batch)
    finally:
        client.delete(stream)
        client.close()


def pending(source: StreamSource) -> int:
    """How many entries ``source``'s group handed out and saw no ``XACK`` for (``XPENDING``)."""
    client = _redis_client()
    try:
        return int(client.xpending(source.stream, source.group)["pending"])
    finally:
        client.close()


def wait_until_acked(source: StreamSource, timeout: float) -> None:
    """Return once ``source``'s group has nothing pending (``XPENDING``), looking every 1 ms.

    Raises:
        TimeoutError: entries were still pending after ``timeout`` seconds.
    """
    client = _redis_client()
    try:
        deadline = time.monotonic() + timeout
        while (left := int(client.xpending(source.stream, source.group)["pending"])) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{left:,} entries still pending after {timeout}s")
            time.sleep(_POLL)
    finally:
        client.close()


# --- RabbitMQ --------------------------------------------------------------------------


def _rabbitmq_do(fn: Any) -> Any:
    """``fn(channel)`` on a connection of its own, closed afterwards (if the broker has not)."""
    import pika  # type: ignore[import-untyped,unused-ignore]

    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        return fn(connection.channel())
    finally:
        if connection.is_open:
            connection.close()


@contextmanager
def rabbitmq_queue(n: int, workers: int, prefetch: int) -> Iterator[QueueSource]:
    """A new queue holding ``n`` messages; deleted afterwards.

    Raises:
        RuntimeError: RabbitMQ cannot be used (``problem``), or the queue does not count
            the ``n`` messages published.
    """
    _require("RabbitMQ")
    queue = _name()

    def publish(channel: Any) -> int:
        channel.queue_declare(queue)
        for i in range(n):
            channel.basic_publish("", queue, order(i).encode())
        # Publishes are asynchronous (no confirms: they would cost a round trip each);
        # the queue counts the last ones a moment later.
        deadline = time.monotonic() + _PUBLISHED
        while True:
            count: int = channel.queue_declare(queue, passive=True).method.message_count
            if count >= n or time.monotonic() > deadline:
                return count
            time.sleep(_POLL)

    try:
        published = _with_retries(lambda: _rabbitmq_do(publish), lambda: _delete(queue))
        if published != n:
            raise RuntimeError(
                f"queue {queue} holds {published:,} messages {_PUBLISHED:g}s after {n:,} were "
                "published"
            )
        yield QueueSource(RABBITMQ_URL, queue, workers, prefetch)
    finally:
        _delete(queue)


def _delete(queue: str) -> None:
    _rabbitmq_do(lambda channel: channel.queue_delete(queue))


_ATTEMPTS = 3
"""How often publishing is tried when the broker closes the connection meanwhile."""


def _with_retries(publish: Callable[[], int], undo: Callable[[], None]) -> int:
    """``publish()``, again from scratch (after ``undo()``) if the broker closed its connection.

    The broker is shared: a test elsewhere may close every connection
    (``rabbitmqctl close_all_connections``) while the benchmark publishes.
    That is the set-up, outside the clock, so it is tried again (said on
    stderr); a consumer's connection closed during the measurement fails it.
    """
    import pika.exceptions  # type: ignore[import-untyped,unused-ignore]

    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return publish()
        except pika.exceptions.AMQPConnectionError as exc:
            if attempt == _ATTEMPTS:
                raise
            print(
                f"note: RabbitMQ closed the publishing connection ({exc!r}); publishing again",
                file=sys.stderr,
            )
            undo()
    raise AssertionError("unreachable")


class Disturbed(Exception):
    """RabbitMQ closed every connection during a measurement: it measured the reconnection."""


class ConnectionWatch:
    """A connection of the benchmark's own, open while W13 measures, to notice a broker-wide close.

    RabbitMQ is shared with the test suite, whose tests close every
    connection (``rabbitmqctl close_all_connections``). That closes the
    consumer's connection too: the pipeline reconnects and RabbitMQ
    redelivers what was unacked (handled twice, so the count check fails),
    the hand-written consumer's thread ends. Either way the measurement is
    void; this connection (heartbeats off: nobody reads it meanwhile) is
    closed then too, and ``closed`` says so.
    """

    def __init__(self) -> None:
        import pika  # type: ignore[import-untyped,unused-ignore]

        self._connection = pika.BlockingConnection(
            pika.URLParameters(f"{RABBITMQ_URL}?heartbeat=0")
        )

    def closed(self) -> bool:
        """Whether the broker has closed this connection (read what it sent meanwhile)."""
        try:
            self._connection.process_data_events(time_limit=0)
        except Exception:  # pika raises its ConnectionClosedByBroker here
            return True
        return not self._connection.is_open

    def check(self) -> None:
        """Raise ``Disturbed`` if the broker has closed this connection.

        Raises:
            Disturbed: it has.
        """
        if self.closed():
            raise Disturbed(
                "RabbitMQ closed every connection during the measurement (something else ran "
                "`rabbitmqctl close_all_connections`?)"
            )

    def close(self) -> None:
        """Close the connection, unless the broker did."""
        if self._connection.is_open:
            self._connection.close()


@contextmanager
def watch_connections() -> Iterator[ConnectionWatch]:
    """A ``ConnectionWatch`` for the ``with`` block."""
    watch = ConnectionWatch()
    try:
        yield watch
    finally:
        watch.close()


def ready(source: QueueSource) -> int:
    """How many messages ``source``'s queue holds ready for delivery (not counting unacked ones)."""
    count: int = _rabbitmq_do(
        lambda channel: channel.queue_declare(source.queue, passive=True).method.message_count
    )
    return count
