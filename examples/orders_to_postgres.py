"""Orders through an ``otpy.pipeline`` into PostgreSQL, with idempotent upserts (psycopg 3).

The pipeline of ``python -m otpy demo pipeline`` (see ``otpy/demos/pipeline.py``), writing
into a real PostgreSQL table instead of SQLite:

* the orders come from the in-process producer by default, or from a Redis stream
  (``--redis URL``) or a RabbitMQ queue (``--rabbitmq URL``) that the example fills first;
* processors parse and validate them (the invalid ones, about 2 %, fail and are counted by
  ``handle_failed``); a batcher groups the valid ones by 500;
* each batch is written in one transaction of ``INSERT ... ON CONFLICT (id) DO UPDATE SET
  ...`` statements, chunked so that none has more than PostgreSQL's 65535 bound parameters
  (10922 rows of 6 columns);
* the writes go through ``otpy.pool.Pool`` of :class:`PgConn` GenServers: one psycopg
  connection per batch processor (the pool has as many workers as there are batch
  processors, so a batch never waits for one). Each connection opens in its server's
  ``init`` and closes in ``terminate``; a connection that dies (the server crashed, the
  database went away) is replaced by the pool. A ``rest_for_one`` supervisor starts the pool
  before the pipeline, and stops the pipeline first: its drain writes the last batches while
  the connections are still there. Rows are written sorted by id (so two connections never
  deadlock on overlapping rows), and a deadlock or serialization failure is retried.

The table (``--table``, default ``orders``) is created if it does not exist. Delivery is
at-least-once, so the writes are idempotent: a batch written twice changes nothing. Run the
example twice: the table holds exactly the distinct valid orders of the feed after each run.

Run it from the repository root, with PostgreSQL listening (``pip install -e '.[examples]'``
installs psycopg)::

    python examples/orders_to_postgres.py                     # postgresql://postgres@127.0.0.1:5432/test
    python examples/orders_to_postgres.py --dsn postgresql://me:secret@db.example:5432/shop
    python examples/orders_to_postgres.py --table orders_demo --orders 5000 --seed 3
    python examples/orders_to_postgres.py --redis redis://127.0.0.1:6379/0
    python examples/orders_to_postgres.py --rabbitmq amqp://guest:guest@127.0.0.1:5672/%2F

It prints the same progress and summary as the demo; the exit status is 0 when the table,
the failures and the acks add up.
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg
import psycopg.errors

import otpy
from otpy.demos.pipeline import SqlConn, check_table, make_parser, run, safe_url

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


class PgConn(SqlConn):
    """One psycopg connection as a process: the worker of the example's connection pool.

    Everything but connecting is :class:`otpy.demos.pipeline.SqlConn`'s: ``init`` opens the
    connection, ``handle_call(("upsert", rows))`` writes the rows in one transaction of
    chunked upserts (``%s`` placeholders, at most ``max_params`` per statement), and
    ``terminate`` closes it.
    """

    label = "PostgreSQL"
    placeholder = "%s"
    max_params = 65535
    """The most bound parameters one statement may carry (a 16-bit count in the protocol)."""

    @classmethod
    def connect(cls, target: str) -> Any:
        return psycopg.connect(target, connect_timeout=10)

    @classmethod
    def transient(cls, exc: BaseException) -> bool:
        # Rows are written sorted by id, so deadlocks should not happen; if one does (or a
        # serialization failure), the transaction is simply tried again.
        return isinstance(
            exc, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
        )


def main(argv: list[str]) -> int:
    parser = make_parser(
        "python examples/orders_to_postgres.py",
        "Orders through a pipeline into PostgreSQL: at-least-once, idempotent upserts.",
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN, help=f"the database ({DEFAULT_DSN})")
    parser.add_argument("--table", default="orders", help="the table, created if needed (orders)")
    args = parser.parse_args(argv)
    try:
        check_table(args.table)
    except ValueError as exc:
        parser.error(str(exc))
    with otpy.Runtime():
        return run(args, PgConn, args.dsn, args.table, f"PostgreSQL ({safe_url(args.dsn)})")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
