"""Orders through a pipeline into a database: at-least-once delivery, idempotent upserts.

Run it::

    python -m otpy demo pipeline                  # or: python examples/pipeline.py
    python -m otpy demo pipeline --orders 5000 --seed 3
    python -m otpy demo pipeline --redis redis://127.0.0.1:6379/0
    python -m otpy demo pipeline --rabbitmq amqp://guest:guest@127.0.0.1:5672/%2F
    python -m otpy demo pipeline --db /tmp/orders.sqlite      # keep the database

A feed of orders (JSON, ``--orders`` of them, 50,000 by default, generated from ``--seed``)
goes through an ``otpy.pipeline.Pipeline`` into a SQLite table. Where the orders come from:

* by default, an in-process producer: :class:`FeedProducer`, a ``otpy.stage.Producer`` that
  emits the feed as ``pl.Message``\\ s on demand, with an acknowledger (:class:`AckLog`) that
  records every ack, so the demo can show that each message was acked exactly once;
* with ``--redis URL``, a Redis stream: the demo first ``XADD``\\ s the orders to a stream of
  its own, then reads it with ``pl.RedisStreamProducer`` through a consumer group (failed
  entries are dead-lettered to ``<stream>:dead``); the streams are deleted at the end;
* with ``--rabbitmq URL``, a RabbitMQ queue: the demo declares a queue of its own, publishes
  the orders with pika and consumes them with ``pl.RabbitMQProducer`` (failed messages are
  rejected, not requeued); the queue is deleted at the end.

The pipeline (``Orders``)::

    producer -> 4 processors -> batcher "db" -> 2 batch processors -> pool of 2 connections

* **Processors** parse and validate each order (``handle_message``): a body that is not JSON,
  a quantity below 1, an unknown SKU or a price that is not positive is an
  :class:`InvalidOrder`, and ``handle_message`` returns ``message.failed(exc)``: that message
  fails, the others go on (an unexpected exception would fail it too, logged with its
  traceback). The feed has such orders on purpose, about 2 %, drawn from the seed, so their
  number is known beforehand.
* **handle_failed** counts the failed messages by kind (and logs each at DEBUG on the
  ``otpy.demos.pipeline`` logger) before they are acked as failed.
* **The batcher** groups the valid orders into batches of ``--batch-size`` (500), or what
  came within 0.1 s; the **batch processors** write each batch with one transaction of
  idempotent upserts (``INSERT ... ON CONFLICT (id) DO UPDATE SET ...``), through
  ``otpy.pool.Pool`` of :class:`SqlConn` GenServers, one database connection each.
  A statement carries many rows but stays under the database's limit of bound parameters
  (SQLite's 999, PostgreSQL's 65535): :func:`chunk_rows` computes the rows per statement from
  the number of columns. Rows go in sorted by id, so two connections writing overlapping
  rows lock them in the same order (no deadlock); an error the connection class calls
  transient (a deadlock, a locked SQLite file) is retried with ``otpy.retry``; any other
  fails the batch, whose messages are then acked as failed.
* **Idempotent writes.** Delivery is at-least-once: a batch whose ack did not reach the
  broker (a crash, a lost connection) is delivered and written again. The upsert makes the
  second write change nothing; the feed also resends about 1 % of its orders (a client that
  retried), which end up as one row each. So the table holds exactly the distinct valid
  orders, however often each arrived.

A supervisor (``rest_for_one``) starts the connection pool first and the pipeline after it;
when all orders are acked, the demo stops it: the pipeline drains (what it read is written
and acked), then the connections close.

Back-pressure: the producer makes (or reads) only what the stages ask for, so what the
pipeline holds at once is bounded by the stages' demand (4 processors x 50, the batcher's
demand on each processor, up to a batch in each batch processor), however long the feed
is; the ``in flight`` of the progress lines (messages the in-process producer emitted and
that are not acked yet) shows it.

What it prints: the feed and the topology; a progress line every 0.5 s (acks so far, batches
written, messages in flight for the in-process producer, throughput); and a
summary that checks the invariants: the rows in the table are the distinct valid orders
(with the same sum of totals as the feed), the failures are the seeded ones, and acks ok +
failed = orders in. For one ``--seed`` and ``--orders`` the summary is the same on every run
except the elapsed time, the throughput and the batch counts (a batch leaves when full or
after 0.1 s, which depends on timing); the progress lines depend on timing. The exit status
is 0 when every invariant holds, 1 otherwise.

``examples/orders_to_postgres.py`` runs the same pipeline into PostgreSQL (a subclass of
:class:`SqlConn` for psycopg, and :func:`run`).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

import otpy
import otpy.pipeline as pl
import otpy.retry
import otpy.stage as stage
from otpy import telemetry
from otpy.pool import Pool
from otpy.retry import RetryPolicy

__all__ = [
    "COLUMNS",
    "AckLog",
    "Feed",
    "FeedProducer",
    "InvalidOrder",
    "Orders",
    "SqlConn",
    "SqliteConn",
    "check_table",
    "chunk_rows",
    "chunked",
    "create_table_sql",
    "main",
    "make_feed",
    "make_parser",
    "parse_order",
    "run",
    "safe_url",
    "upsert_sql",
]

_log = logging.getLogger("otpy.demos.pipeline")

PIPELINE: Final = "orders"
"""The pipeline's name (its processes are ``orders.Processor_default_0`` ...)."""
POOL: Final = "orders_db"
"""The registered name of the connection pool."""
PROCESSORS: Final = 4
MAX_DEMAND: Final = 50
BATCH_PROCESSORS: Final = 2
BATCH_TIMEOUT: Final = 0.1
TICK: Final = 0.5
"""Seconds between progress lines."""
MAX_RUN: Final = 120.0
"""The demo gives up (exit status 1) if the orders are not all acked within this many seconds."""

COLUMNS: Final = ("id", "customer", "sku", "qty", "price_cents", "total_cents")
"""The table's columns, in the order of a row tuple."""
SKUS: Final = {f"sku-{n:02d}": 150 + 75 * n for n in range(1, 25)}
"""The catalogue: SKU -> unit price in cents."""
CUSTOMERS: Final = 500
FLAWS: Final = ("bad json", "bad qty", "unknown sku", "bad price")
"""The kinds of invalid orders in the feed."""
INVALID_RATE: Final = 0.02
RESEND_RATE: Final = 0.01
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


# -- the feed -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feed:
    """The generated orders (JSON bodies) and what the pipeline must make of them."""

    bodies: list[bytes]
    seed: int
    flaws: dict[str, int]
    """Invalid orders by kind (see :data:`FLAWS`)."""
    resent: int
    """Bodies that repeat an earlier valid order."""
    distinct_valid: int
    """Distinct valid orders: the rows the table must end up with."""
    total_cents: int
    """The sum of the distinct valid orders' totals."""

    @property
    def invalid(self) -> int:
        return sum(self.flaws.values())

    @property
    def valid(self) -> int:
        """Valid messages, resends included: the ones acked as successful."""
        return len(self.bodies) - self.invalid


def make_feed(orders: int, seed: int) -> Feed:
    """``orders`` JSON bodies drawn from ``random.Random(seed)``: the same for the same seed.

    About 2 % are invalid (one of :data:`FLAWS`), about 1 % resend one of the last 100 valid
    orders (so a resend often lands in the same batch as its original).

    Example::

        feed = make_feed(1000, seed=7)
        feed.bodies[0]        # b'{"id":"o-000001","customer":"c-...","sku":"sku-..",...}'
    """
    if orders < 1:
        raise ValueError(f"orders must be at least 1; got {orders}")
    rng = random.Random(seed)
    names = sorted(SKUS)
    bodies: list[bytes] = []
    flaws: Counter[str] = Counter()
    recent: deque[bytes] = deque(maxlen=100)
    totals: dict[str, int] = {}
    resent = 0
    number = 0
    for _ in range(orders):
        if recent and rng.random() < RESEND_RATE:
            bodies.append(rng.choice(recent))
            resent += 1
            continue
        number += 1
        sku = rng.choice(names)
        order: dict[str, Any] = {
            "id": f"o-{number:06d}",
            "customer": f"c-{rng.randrange(CUSTOMERS):03d}",
            "sku": sku,
            "qty": rng.randint(1, 5),
            "price_cents": SKUS[sku],
        }
        flaw = FLAWS[rng.randrange(len(FLAWS))] if rng.random() < INVALID_RATE else None
        if flaw == "bad qty":
            order["qty"] = rng.choice((0, -1))
        elif flaw == "unknown sku":
            order["sku"] = "sku-99"
        elif flaw == "bad price":
            order["price_cents"] = -order["price_cents"]
        body = json.dumps(order, separators=(",", ":")).encode()
        if flaw == "bad json":
            body = body[: len(body) // 2]  # cut in the middle: the id is still readable
        bodies.append(body)
        if flaw is None:
            totals[order["id"]] = order["qty"] * order["price_cents"]
            recent.append(body)
        else:
            flaws[flaw] += 1
    return Feed(
        bodies=bodies,
        seed=seed,
        flaws={kind: flaws[kind] for kind in FLAWS},
        resent=resent,
        distinct_valid=len(totals),
        total_cents=sum(totals.values()),
    )


class InvalidOrder(ValueError):
    """An order the processors refuse; ``kind`` is one of :data:`FLAWS`.

    Example::

        InvalidOrder("bad qty", "o-000017", "qty must be at least 1, got 0")
    """

    def __init__(self, kind: str, order_id: str, detail: str) -> None:
        super().__init__(f"{order_id}: {detail}")
        self.kind = kind
        self.order_id = order_id
        self.detail = detail


_ID_PREFIX = re.compile(rb'^\{"id":"([^"]+)"')


def parse_order(raw: bytes | str) -> tuple[str, str, str, int, int, int]:
    """One order's JSON body as a row of :data:`COLUMNS`; raises :class:`InvalidOrder`.

    Example::

        parse_order(b'{"id":"o-1","customer":"c-1","sku":"sku-01","qty":2,"price_cents":225}')
        # ('o-1', 'c-1', 'sku-01', 2, 225, 450)
    """
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        order = json.loads(data)
    except json.JSONDecodeError as exc:
        match = _ID_PREFIX.match(data)
        order_id = match.group(1).decode() if match else "?"
        raise InvalidOrder("bad json", order_id, f"not JSON ({exc.msg}, char {exc.pos})") from None
    order_id = str(order.get("id", "?"))
    qty, price, sku = order.get("qty"), order.get("price_cents"), order.get("sku")
    if type(qty) is not int or qty < 1:
        raise InvalidOrder("bad qty", order_id, f"qty must be an int of at least 1, got {qty!r}")
    if sku not in SKUS:
        raise InvalidOrder("unknown sku", order_id, f"unknown sku {sku!r}")
    if type(price) is not int or price <= 0:
        raise InvalidOrder("bad price", order_id, f"price_cents must be positive, got {price!r}")
    return (order_id, str(order["customer"]), sku, qty, price, qty * price)


# -- the database --------------------------------------------------------------------------------


def check_table(table: str) -> str:
    """``table`` if it is a plain SQL identifier (it is put into the SQL text), else ValueError."""
    if not isinstance(table, str) or not _TABLE_NAME.match(table):
        raise ValueError(
            f"a table name is a letter or _ then up to 62 letters, digits or _; got {table!r}"
        )
    return table


def create_table_sql(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the orders table (SQLite and PostgreSQL alike)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {check_table(table)} ("
        "id TEXT PRIMARY KEY, customer TEXT NOT NULL, sku TEXT NOT NULL, "
        "qty INTEGER NOT NULL, price_cents INTEGER NOT NULL, total_cents INTEGER NOT NULL)"
    )


def chunk_rows(max_params: int, columns: int = len(COLUMNS)) -> int:
    """How many rows one multi-row INSERT may carry under ``max_params`` bound parameters.

    Example::

        chunk_rows(999)      # 166: SQLite's limit, 6 columns (996 parameters)
        chunk_rows(65535)    # 10922: PostgreSQL's
    """
    if max_params < columns:
        raise ValueError(f"max_params must be at least the {columns} columns; got {max_params}")
    return max_params // columns


def chunked(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``rows`` in slices of at most ``size``."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def upsert_sql(table: str, rows: int, placeholder: str) -> str:
    """An idempotent multi-row upsert of ``rows`` rows (``placeholder``: ``?`` or ``%s``).

    Writing the same rows again changes nothing: a row whose id is there already is set to
    the values given, which are the ones it has.

    Example::

        upsert_sql("orders", 2, "?")
        # INSERT INTO orders (id, ...) VALUES (?, ...), (?, ...)
        #   ON CONFLICT (id) DO UPDATE SET customer = excluded.customer, ...
    """
    row = "(" + ", ".join([placeholder] * len(COLUMNS)) + ")"
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "id")
    return (
        f"INSERT INTO {check_table(table)} ({', '.join(COLUMNS)}) "
        f"VALUES {', '.join([row] * rows)} ON CONFLICT (id) DO UPDATE SET {updates}"
    )


class SqlConn(otpy.GenServer):
    """One database connection as a process: a worker of the demo's ``otpy.pool.Pool``.

    A subclass says how to connect (:meth:`connect`, a DB-API connection), which errors are
    worth retrying (:meth:`transient`) and the dialect (``placeholder``, ``max_params``);
    everything else is shared. The connection opens in ``init`` and closes in ``terminate``
    (the server traps exits, so a shutdown from the pool runs it).

    An upsert writes its rows sorted by id, so that two connections writing overlapping rows
    lock them in the same order and cannot deadlock. A statement that fails rolls the
    transaction back and :meth:`upsert` raises the database's exception in the caller; the
    connection stays. If even the rollback fails (the connection is gone), the server
    crashes, the caller gets ``otpy.ExitError``, and the pool starts a fresh connection.

    Example::

        SqliteConn.create_table("/tmp/orders.sqlite", "orders")
        pool = Pool.start_link(SqliteConn.child_spec("/tmp/orders.sqlite", "orders"),
                               size=2, max_overflow=0)
        Pool.transaction(pool, lambda conn: SqlConn.upsert(conn, rows))   # statements run
    """

    label: ClassVar[str] = "a database"
    placeholder: ClassVar[str] = "?"
    max_params: ClassVar[int] = 999

    # Owned by the process; no lock.
    db: Any
    table: str

    @classmethod
    def connect(cls, target: str) -> Any:
        """A new DB-API connection to ``target`` (a path, a DSN...)."""
        raise NotImplementedError(f"{cls.__qualname__} must define connect(target)")

    @classmethod
    def create_table(cls, target: str, table: str) -> None:
        """Create the orders table if it does not exist (once, before the pool starts)."""
        db = cls.connect(target)
        try:
            db.cursor().execute(create_table_sql(table))
            db.commit()
        finally:
            db.close()

    @classmethod
    def table_stats(cls, target: str, table: str) -> tuple[int, int]:
        """``(rows, sum of total_cents)`` of the table."""
        db = cls.connect(target)
        try:
            cursor = db.cursor()
            cursor.execute(
                f"SELECT count(*), coalesce(sum(total_cents), 0) FROM {check_table(table)}"
            )
            rows, total = cursor.fetchone()
            db.commit()
            return int(rows), int(total)
        finally:
            db.close()

    @classmethod
    def transient(cls, exc: BaseException) -> bool:
        """Whether a failed upsert is worth trying again (a deadlock, a busy database)."""
        return False

    @staticmethod
    def upsert(conn: otpy.Pid, rows: list[tuple[Any, ...]]) -> int:
        """Upsert ``rows`` through the connection server ``conn`` in one transaction.

        Returns the number of statements it took (chunks of :meth:`chunk_size` rows).

        Raises:
            Exception: the database's error (the transaction was rolled back).
            otpy.ExitError: the connection server died.
        """
        answer = otpy.GenServer.call(conn, ("upsert", rows), timeout=30.0)
        if isinstance(answer, BaseException):
            raise answer
        statements: int = answer
        return statements

    @classmethod
    def chunk_size(cls) -> int:
        return chunk_rows(cls.max_params)

    def init(self, target: str, table: str) -> None:
        otpy.trap_exits(True)  # so that terminate runs, and closes the connection, on shutdown
        self.table = check_table(table)
        self.db = type(self).connect(target)

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case ("upsert", list(rows)):
                return self._upsert(rows)
        raise ValueError(f"{type(self).__name__} does not understand the call {request!r}")

    def _upsert(self, rows: list[tuple[Any, ...]]) -> int | Exception:
        statements = 0
        ordered = sorted(rows, key=lambda row: row[0])  # by id: one lock order for all
        try:
            cursor = self.db.cursor()
            try:
                for chunk in chunked(ordered, self.chunk_size()):
                    params = [value for row in chunk for value in row]
                    cursor.execute(upsert_sql(self.table, len(chunk), self.placeholder), params)
                    statements += 1
            finally:
                cursor.close()
            self.db.commit()
        except Exception as exc:
            self.db.rollback()  # if this raises too, the connection is gone: let it crash
            return exc.with_traceback(None)  # the caller raises it
        return statements

    def terminate(self, reason: Any) -> None:
        self.db.close()


class SqliteConn(SqlConn):
    """A :class:`SqlConn` on a SQLite file (stdlib ``sqlite3``).

    Example::

        SqliteConn.create_table("/tmp/orders.sqlite", "orders")
        conn = SqliteConn.start_link("/tmp/orders.sqlite", "orders")
    """

    label = "SQLite"
    placeholder = "?"
    max_params = 999
    """SQLite's SQLITE_MAX_VARIABLE_NUMBER before 3.32 (32766 since): the bound that always holds."""

    @classmethod
    def connect(cls, target: str) -> Any:
        # The server's callbacks run one at a time, but not always on the same thread.
        db = sqlite3.connect(target, timeout=30.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")  # two writers take turns; readers never wait
        return db

    @classmethod
    def transient(cls, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


# -- the in-process producer ----------------------------------------------------------------------


class AckLog:
    """The in-process producer's acknowledger: records how often each message was acked.

    A message is known by ``metadata["n"]``, its position in the feed. ``ack`` runs in the
    stages that finish messages, several at once.

    Example::

        log = AckLog(3)
        log.ack("feed", [pl.Message(b"", metadata={"n": 0})], [])
        log.counts()          # (ok, failed, twice, never) = (1, 0, 0, 2)
    """

    def __init__(self, size: int) -> None:
        # _lock guards _times, _ok, _failed and _emitted.
        self._lock = threading.Lock()
        self._times = bytearray(size)
        self._ok = 0
        self._failed = 0
        self._emitted = 0

    def emitted(self, n: int) -> None:
        with self._lock:
            self._emitted += n

    def ack(self, ack_ref: Any, successful: list[pl.Message], failed: list[pl.Message]) -> None:
        with self._lock:
            for message in (*successful, *failed):
                n = message.metadata["n"]
                self._times[n] = min(255, self._times[n] + 1)
            self._ok += len(successful)
            self._failed += len(failed)

    def in_flight(self) -> int:
        """Messages emitted and not acked yet: what the pipeline holds now."""
        with self._lock:
            return self._emitted - self._ok - self._failed

    def counts(self) -> tuple[int, int, int, int]:
        """``(ok, failed, acked more than once, never acked)``."""
        with self._lock:
            twice = sum(1 for t in self._times if t > 1)
            never = self._times.count(0)
            return self._ok, self._failed, twice, never

    def made(self) -> int:
        with self._lock:
            return self._emitted


class FeedProducer(stage.Producer):
    """Emits the feed's bodies as ``pl.Message``\\ s, as many as demanded, acked to an AckLog.

    Options: ``bodies`` (the feed), ``log`` (the :class:`AckLog`). Once the feed is out it
    emits nothing more.

    Example::

        producer={"module": (FeedProducer, {"bodies": feed.bodies, "log": AckLog(n)})}
    """

    # Owned by the producer process; no lock.
    bodies: list[bytes]
    log: AckLog
    next: int

    def init(self, options: dict[str, Any]) -> None:
        self.bodies = options["bodies"]
        self.log = options["log"]
        self.next = 0

    def handle_demand(self, demand: int) -> list[pl.Message]:
        start = self.next
        end = min(len(self.bodies), start + demand)
        self.next = end
        self.log.emitted(end - start)
        return [
            pl.Message(self.bodies[n], metadata={"n": n}, acknowledger=(self.log, "feed", None))
            for n in range(start, end)
        ]


# -- the pipeline ------------------------------------------------------------------------------


class Stats:
    """What the stages and the ack events count, for the progress lines and the summary."""

    def __init__(self, expected: int, main: otpy.Pid) -> None:
        self.expected = expected
        self.main = main
        # _lock guards every field below.
        self._lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.batches = 0
        self.largest = 0
        self.statements = 0
        self.kinds: Counter[str] = Counter()
        self.reasons: list[str] = []
        self._told = False

    def acked(self, ok: int, failed: int) -> None:
        """An ack event: tell main once every expected message is acked."""
        with self._lock:
            self.ok += ok
            self.failed += failed
            tell = not self._told and self.ok + self.failed >= self.expected
            self._told = self._told or tell
        if tell:
            otpy.send(self.main, ("all acked", self))

    def batch(self, size: int, statements: int) -> None:
        with self._lock:
            self.batches += 1
            self.largest = max(self.largest, size)
            self.statements += statements

    def failure(self, reason: object) -> None:
        kind = reason.kind if isinstance(reason, InvalidOrder) else type(reason).__name__
        with self._lock:
            self.kinds[kind] += 1
            self.reasons.append(str(reason))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ok": self.ok,
                "failed": self.failed,
                "batches": self.batches,
                "largest": self.largest,
                "statements": self.statements,
                "kinds": dict(self.kinds),
                "reasons": sorted(self.reasons),
            }


@dataclass(frozen=True)
class Context:
    """The pipeline's ``context``: shared by every stage."""

    stats: Stats
    pool: str
    conn: type[SqlConn]
    retry: RetryPolicy


def _raw_body(data: Any) -> bytes | str:
    """The order's JSON: a RabbitMQ or in-process body (bytes), a Redis entry's ``body`` field."""
    if isinstance(data, dict):
        body: str = data.get("body", "")
        return body
    if isinstance(data, (bytes, str)):
        return data
    raise TypeError(f"an order message carries bytes, str or a Redis entry; got {data!r}")


class Orders(pl.Pipeline):
    """Parse and validate orders, then upsert them in batches (see the module documentation).

    Example::

        Orders.start_link(name="orders", producer={"module": (FeedProducer, {...})},
                          processors={"default": {"concurrency": 4}},
                          batchers={"db": {"batch_size": 500}}, context=context)
    """

    def handle_message(self, processor: str, message: pl.Message, context: Any) -> pl.Message:
        try:
            row = parse_order(_raw_body(message.data))
        except InvalidOrder as exc:
            # Expected: fail the message without a traceback in the log. (Any other exception
            # fails it too, and is logged with its traceback.)
            return message.failed(exc)
        return message.put_data(row).put_batcher("db")

    def handle_batch(
        self, batcher: str, messages: list[pl.Message], batch_info: Any, context: Any
    ) -> list[pl.Message]:
        # One row per id: a resend in the same batch would otherwise hit its own row twice in
        # one statement, which PostgreSQL refuses ("cannot affect row a second time").
        rows = list({m.data[0]: m.data for m in messages}.values())

        def write() -> int:
            statements: int = Pool.transaction(
                context.pool, lambda conn: context.conn.upsert(conn, rows), timeout=30.0
            )
            return statements

        # A transient error (a deadlock, say) is retried: the upsert is idempotent. Any other
        # exception fails the batch: its messages go through handle_failed and are acked as
        # failed (dead-lettered from Redis, rejected in RabbitMQ).
        statements = otpy.retry.call(write, policy=context.retry)
        context.stats.batch(len(messages), statements)
        return messages

    def handle_failed(self, messages: list[pl.Message], context: Any) -> list[pl.Message]:
        for message in messages:
            reason = message.status[1]
            context.stats.failure(reason)
            _log.debug("order failed: %s", reason)
        return messages


def _on_ack(
    event: tuple[str, ...], measurements: dict[str, Any], metadata: dict[str, Any], stats: Any
) -> None:
    if metadata.get("pipeline") == PIPELINE:
        stats.acked(measurements["successful"], measurements["failed"])


# -- where the orders come from ----------------------------------------------------------------


def safe_url(url: str) -> str:
    """``url`` with its password hidden."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Source:
    """Where the orders come from: load the feed, name the producer, check the broker after."""

    label = "a source"

    def load(self, feed: Feed) -> str | None:
        """Put the feed where the producer will read it; a line to print, or None."""
        return None

    def producer(self, feed: Feed) -> tuple[type[stage.Producer], dict[str, Any]]:
        raise NotImplementedError

    def in_flight(self) -> int | None:
        """Messages the pipeline holds now, when the source can tell."""
        return None

    def finish(self, feed: Feed) -> tuple[str, list[str]]:
        """After the pipeline stopped: a summary line, and what does not add up."""
        raise NotImplementedError

    def close(self) -> None:
        """Remove what the demo made on the broker (always called)."""


class InProcess(Source):
    """The default: :class:`FeedProducer` and its :class:`AckLog`."""

    label = "an in-process producer"

    def __init__(self, feed: Feed) -> None:
        self.log = AckLog(len(feed.bodies))

    def producer(self, feed: Feed) -> tuple[type[stage.Producer], dict[str, Any]]:
        return FeedProducer, {"bodies": feed.bodies, "log": self.log}

    def in_flight(self) -> int | None:
        return self.log.in_flight()

    def finish(self, feed: Feed) -> tuple[str, list[str]]:
        ok, failed, twice, never = self.log.counts()
        problems = []
        if twice or never:
            problems.append(f"{twice} messages acked more than once, {never} never acked")
        if ok + failed != len(feed.bodies):
            problems.append(f"the acknowledger saw {ok + failed} acks for {len(feed.bodies)}")
        line = (
            f"  producer:  made {self.log.made():,} messages; its acknowledger saw "
            f"{ok:,} ok + {failed:,} failed, "
            + ("each message exactly once" if not (twice or never) else "NOT each once")
        )
        return line, problems


class RedisSource(Source):
    """A Redis stream of the demo's own, read by ``pl.RedisStreamProducer``."""

    GROUP = "orders"

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.label = f"Redis ({safe_url(url)})"
        self.stream = f"otpy-demo-orders-{uuid.uuid4().hex[:8]}"
        self.dead = f"{self.stream}:dead"
        self.client: Any = redis.Redis.from_url(url, decode_responses=True)
        self.created = False  # whether the demo may have made its streams
        self.error = redis.RedisError

    def load(self, feed: Feed) -> str:
        t0 = time.monotonic()
        for chunk in chunked(feed.bodies, 1000):
            pipe = self.client.pipeline(transaction=False)
            for body in chunk:
                pipe.xadd(self.stream, {"body": body.decode()})
            pipe.execute()
            self.created = True
        return (
            f"  redis: XADDed {len(feed.bodies):,} entries to the stream {self.stream!r} "
            f"in {time.monotonic() - t0:.2f}s"
        )

    def producer(self, feed: Feed) -> tuple[type[stage.Producer], dict[str, Any]]:
        return pl.RedisStreamProducer, {
            "stream": self.stream,
            "group": self.GROUP,
            "url": self.url,
            "on_failure": "dead_letter",
            "block": 0.2,
        }

    def finish(self, feed: Feed) -> tuple[str, list[str]]:
        pending = int(self.client.xpending(self.stream, self.GROUP)["pending"])
        dead = int(self.client.xlen(self.dead))
        self.close()
        problems = []
        if pending:
            problems.append(f"{pending} entries still pending in the group")
        if dead != feed.invalid:
            problems.append(f"{dead} entries dead-lettered, but {feed.invalid} were invalid")
        return (
            f"  redis:     {pending} entries pending in the group; the {dead:,} failed ones "
            "dead-lettered (to '<stream>:dead'); the demo's streams deleted"
        ), problems

    def close(self) -> None:
        if self.client is None:
            return
        client, self.client = self.client, None
        try:
            if self.created:
                client.delete(self.stream, self.dead)
        except self.error as exc:
            print(f"could not delete the demo's streams {self.stream!r}: {exc}", file=sys.stderr)
        finally:
            client.close()


class RabbitMQSource(Source):
    """A RabbitMQ queue of the demo's own, consumed by ``pl.RabbitMQProducer``."""

    def __init__(self, url: str) -> None:
        import pika  # type: ignore[import-untyped,unused-ignore]
        import pika.exceptions  # type: ignore[import-untyped,unused-ignore]

        self.pika = pika
        self.url = url
        self.label = f"RabbitMQ ({safe_url(url)})"
        self.queue = f"otpy-demo-orders-{uuid.uuid4().hex[:8]}"
        self.declared = False

    def _channel_do(self, fn: Any) -> Any:
        connection = self.pika.BlockingConnection(self.pika.URLParameters(self.url))
        try:
            return fn(connection.channel())
        finally:
            connection.close()

    def load(self, feed: Feed) -> str:
        t0 = time.monotonic()

        def publish(channel: Any) -> None:
            channel.queue_declare(self.queue)
            self.declared = True
            for body in feed.bodies:
                channel.basic_publish("", self.queue, body)

        self._channel_do(publish)
        return (
            f"  rabbitmq: published {len(feed.bodies):,} messages to the queue {self.queue!r} "
            f"in {time.monotonic() - t0:.2f}s"
        )

    def producer(self, feed: Feed) -> tuple[type[stage.Producer], dict[str, Any]]:
        return pl.RabbitMQProducer, {"queue": self.queue, "url": self.url, "on_failure": "reject"}

    def finish(self, feed: Feed) -> tuple[str, list[str]]:
        left = int(
            self._channel_do(
                lambda ch: ch.queue_declare(self.queue, passive=True).method.message_count
            )
        )
        self.close()
        problems = [f"{left} messages left in the queue"] if left else []
        return (
            f"  rabbitmq:  {left} messages left in the queue (the failed ones were rejected, "
            "not requeued); the demo's queue deleted"
        ), problems

    def close(self) -> None:
        if not self.declared:
            return
        self.declared = False
        try:
            self._channel_do(lambda ch: ch.queue_delete(self.queue))
        except self.pika.exceptions.AMQPError as exc:
            print(f"could not delete the demo's queue {self.queue!r}: {exc!r}", file=sys.stderr)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class _Progress:
    started: float
    stats: Stats
    source: Source

    def line(self) -> str:
        now = time.monotonic() - self.started
        s = self.stats.snapshot()
        acked = s["ok"] + s["failed"]
        flight = self.source.in_flight()
        return (
            f"  [{now:5.2f}s] acked {acked:>7,} (ok {s['ok']:,}, failed {s['failed']:,})  "
            f"batches {s['batches']:,}"
            + (f"  in flight {flight:,}" if flight is not None else "")
            + f"  {acked / max(now, 1e-9):,.0f} msgs/s"
        )


def _plural(n: int, noun: str, nouns: str) -> str:
    return f"{n:,} {noun if n == 1 else nouns}"


def run(
    args: argparse.Namespace,
    conn: type[SqlConn],
    target: str,
    table: str,
    where: str,
) -> int:
    """Run the demo's pipeline from the source ``args`` names into ``table`` at ``target``.

    ``conn`` is the :class:`SqlConn` subclass for the database; ``where`` describes it
    for the first line. Call it inside an ``otpy.Runtime()``. Returns the exit status:
    0 when every invariant of the summary holds.

    Example::

        with otpy.Runtime():
            status = run(make_parser("x").parse_args([]), SqliteConn, "/tmp/o.sqlite",
                         "orders", "SQLite /tmp/o.sqlite")
    """
    feed = make_feed(args.orders, args.seed)
    source: Source
    try:
        if args.redis:
            source = RedisSource(args.redis)
        elif args.rabbitmq:
            source = RabbitMQSource(args.rabbitmq)
        else:
            source = InProcess(feed)
    except (ImportError, ValueError) as exc:  # a client that is not installed, a bad URL
        print(f"cannot use {args.redis or args.rabbitmq!r}: {exc}", file=sys.stderr)
        return 1
    flaws = ", ".join(f"{n:,} {kind}" for kind, n in feed.flaws.items())
    print(
        f"orders pipeline: {len(feed.bodies):,} orders (seed {feed.seed}) from {source.label} "
        f"into {where}, table {table!r}"
    )
    print(
        f"  feed: {feed.invalid:,} invalid on purpose ({flaws}); {feed.resent:,} resends of "
        f"earlier orders; {feed.distinct_valid:,} distinct valid orders"
    )
    rows_per = conn.chunk_size()
    print(
        f"  pipeline {PIPELINE!r}: 1 producer -> {PROCESSORS} processors (parse, validate) -> "
        f"batcher 'db' ({args.batch_size} per batch, or what came in {BATCH_TIMEOUT:g}s) -> "
        f"{BATCH_PROCESSORS} batch processors -> pool of {BATCH_PROCESSORS} {conn.label} "
        f"connections (upserts of at most {rows_per:,} rows = {rows_per * len(COLUMNS):,} "
        f"parameters of {conn.max_params:,})"
    )
    handler_id = ("otpy.demos.pipeline", uuid.uuid4().hex)
    try:
        try:
            loaded = source.load(feed)
            conn.create_table(target, table)
        except Exception as exc:  # the command line's boundary: say what failed, exit 1
            print(
                f"could not prepare {source.label} and {where}: "
                f"{type(exc).__name__}: {str(exc).strip() or repr(exc)}",
                file=sys.stderr,
            )
            return 1
        if loaded:
            print(loaded)
        stats = Stats(len(feed.bodies), otpy.self())
        telemetry.attach(handler_id, ("otpy", "pipeline", "ack"), _on_ack, stats)
        started = time.monotonic()
        sup = otpy.Supervisor.start_link(
            [
                Pool.child_spec(
                    conn.child_spec(target, table), size=BATCH_PROCESSORS, max_overflow=0, name=POOL
                ),
                Orders.child_spec(
                    name=PIPELINE,
                    producer={"module": source.producer(feed)},
                    processors={"default": {"concurrency": PROCESSORS, "max_demand": MAX_DEMAND}},
                    batchers={
                        "db": {
                            "concurrency": BATCH_PROCESSORS,
                            "batch_size": args.batch_size,
                            "batch_timeout": BATCH_TIMEOUT,
                        }
                    },
                    context=Context(
                        stats,
                        POOL,
                        conn,
                        RetryPolicy(on=conn.transient, attempts=5, timeout=20.0, wait_max=1.0),
                    ),
                ),
            ],
            strategy="rest_for_one",
        )
        progress = _Progress(started, stats, source)
        problems = _wait_for_acks(progress)
        otpy.Supervisor.stop(sup)  # the pipeline drains, then the pool closes its connections
        elapsed = time.monotonic() - started
        rows, total = conn.table_stats(target, table)
        broker_line, broker_problems = source.finish(feed)
    finally:
        telemetry.detach(handler_id)
        source.close()
    problems += broker_problems
    problems += _summary(feed, stats, rows, total, table, elapsed, broker_line)
    for problem in problems:
        print(f"MISMATCH: {problem}")
    return 1 if problems else 0


def _wait_for_acks(progress: _Progress) -> list[str]:
    """Print a progress line every TICK seconds until every message is acked."""
    stats = progress.stats
    deadline = progress.started + MAX_RUN
    next_tick = progress.started + TICK
    while True:
        now = time.monotonic()
        if now > deadline:
            return [f"not every order was acked within {MAX_RUN:g}s"]
        try:
            otpy.receive(
                timeout=max(0.0, min(next_tick, deadline) - now),
                match=lambda m: m == ("all acked", stats),
            )
        except otpy.Timeout:
            print(progress.line(), flush=True)
            next_tick += TICK
            continue
        return []


def _summary(
    feed: Feed, stats: Stats, rows: int, total: int, table: str, elapsed: float, broker: str
) -> list[str]:
    """Print the summary; return what does not add up."""
    s = stats.snapshot()
    n = len(feed.bodies)
    problems = []
    if rows != feed.distinct_valid or total != feed.total_cents:
        problems.append(
            f"the table has {rows} rows (sum {total}), the feed {feed.distinct_valid} "
            f"distinct valid orders (sum {feed.total_cents})"
        )
    if s["kinds"] != {kind: n for kind, n in feed.flaws.items() if n}:
        problems.append(f"handle_failed saw {s['kinds']}, the feed has {feed.flaws}")
    if s["ok"] != feed.valid or s["failed"] != feed.invalid:
        problems.append(
            f"acked {s['ok']} ok and {s['failed']} failed; expected {feed.valid} and {feed.invalid}"
        )
    print(f"done: {n:,} orders in {elapsed:.2f}s, {n / max(elapsed, 1e-9):,.0f} msgs/s")
    print(
        f"  orders in: {n:,} messages ({feed.valid:,} valid: {feed.distinct_valid:,} distinct "
        f"orders + {feed.resent:,} resends; {feed.invalid:,} invalid)"
    )
    same = "==" if rows == feed.distinct_valid else "!="
    print(
        f"  table:     {rows:,} rows in {table!r} {same} {feed.distinct_valid:,} distinct valid "
        f"orders; sum(total_cents) {total:,}"
        + (
            " as in the feed"
            if total == feed.total_cents
            else f" != the feed's {feed.total_cents:,}"
        )
    )
    failed = sum(s["kinds"].values())
    print(
        f"  failed:    {failed:,} {'==' if failed == feed.invalid else '!='} the "
        f"{feed.invalid:,} seeded: "
        + ", ".join(f"{s['kinds'].get(kind, 0):,} {kind}" for kind in FLAWS)
        + "".join(f", {n:,} {kind}" for kind, n in sorted(s["kinds"].items()) if kind not in FLAWS)
    )
    for reason in s["reasons"][:3]:
        print(f"             e.g. {reason}")
    acked = s["ok"] + s["failed"]
    print(
        f"  acks:      {s['ok']:,} ok + {s['failed']:,} failed = {acked:,} "
        f"{'==' if acked == n else '!='} orders in"
    )
    print(
        f"  batches:   {_plural(s['batches'], 'batch', 'batches')} written, at most {s['largest']:,} "
        f"messages each, in {_plural(s['statements'], 'upsert statement', 'upsert statements')}"
    )
    print(broker)
    return problems


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text}")
    return value


def make_parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """The options the demo and ``examples/orders_to_postgres.py`` share."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description
        or "Orders through a pipeline into SQLite: at-least-once, idempotent upserts.",
    )
    parser.add_argument(
        "--orders", type=_positive, default=50_000, help="orders in the feed (50000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the feed (7)")
    parser.add_argument(
        "--batch-size", type=_positive, default=500, help="orders per batch written (500)"
    )
    brokers = parser.add_mutually_exclusive_group()
    brokers.add_argument(
        "--redis", metavar="URL", help="read the orders from a Redis stream (redis://...)"
    )
    brokers.add_argument(
        "--rabbitmq", metavar="URL", help="read the orders from a RabbitMQ queue (amqp://...)"
    )
    return parser


def main(argv: list[str]) -> int:
    """Run the demo into SQLite (a temporary file unless ``--db PATH``)."""
    parser = make_parser("python -m otpy demo pipeline")
    parser.add_argument(
        "--db", metavar="PATH", help="the SQLite file to write (default: a temporary one)"
    )
    parser.add_argument("--table", default="orders", help="the table (orders)")
    args = parser.parse_args(argv)
    try:
        check_table(args.table)
    except ValueError as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="otpy-demo-pipeline-") as tmp:
        if args.db:
            target, where = args.db, f"SQLite ({args.db})"
        else:
            target, where = str(Path(tmp) / "orders.sqlite"), "SQLite (a temporary file)"
        with otpy.Runtime():
            return run(args, SqliteConn, target, args.table, where)
