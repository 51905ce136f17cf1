"""examples/orders_to_postgres.py against the real PostgreSQL: run twice, the same rows.

Each test writes into a table of its own (``otpy_test_<uuid>``), dropped at the end. The
example runs twice with the same feed: after each run the table holds exactly the distinct
valid orders of the feed, and the second run (every order written again, as a redelivery
would) leaves every row as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from brokers import require_postgres

from otpy.demos.pipeline import InvalidOrder, make_feed, parse_order
from tests.test_demo_pipeline import check_run
from tests.test_examples import run_python

pytestmark = pytest.mark.timeout(60)

ORDERS = 6000
SEED = 11


@pytest.fixture
def table() -> Iterator[tuple[str, str]]:
    """(dsn, a fresh table name); the table is dropped afterwards."""
    dsn = require_postgres()
    import psycopg

    name = f"otpy_test_{uuid.uuid4().hex[:16]}"
    yield dsn, name
    with psycopg.connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def rows_of(dsn: str, table: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT id, customer, sku, qty, price_cents, total_cents FROM {table} ORDER BY id"
        ).fetchall()


def expected_rows() -> list[tuple[object, ...]]:
    rows = {}
    for body in make_feed(ORDERS, SEED).bodies:
        try:
            row = parse_order(body)
        except InvalidOrder:
            continue
        rows[row[0]] = row
    return sorted(rows.values())


def test_two_runs_leave_exactly_the_valid_orders(runtime, table):
    dsn, name = table
    args = ("examples/orders_to_postgres.py", "--dsn", dsn, "--table", name)
    expected = expected_rows()

    first = run_python(*args, "--orders", str(ORDERS), "--seed", str(SEED)).stdout
    check_run(first, ORDERS, SEED)
    assert f"into PostgreSQL ({dsn}), table '{name}'" in first.splitlines()[0]
    assert "upserts of at most 10,922 rows = 65,532 parameters of 65,535" in first
    after_first = rows_of(dsn, name)
    assert after_first == expected

    # Everything again, in smaller batches: each order is written a second time.
    second = run_python(
        *args, "--orders", str(ORDERS), "--seed", str(SEED), "--batch-size", "137"
    ).stdout
    check_run(second, ORDERS, SEED, batch_size=137)
    assert rows_of(dsn, name) == after_first == expected
