"""The pipeline demo: its summary adds up for the in-process producer, Redis and RabbitMQ.

The runs are checked against :func:`otpy.demos.pipeline.make_feed` computed here for the same
``--orders`` and ``--seed``: the table holds exactly the distinct valid orders (same sum of
totals), ``handle_failed`` saw exactly the seeded invalid ones, and acks ok + failed = orders
in. The pieces the demo is made of (the feed, the parser, the chunked upsert) are checked in
process too.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from brokers import RABBITMQ_URL, REDIS_URL, require_rabbitmq, require_redis

import otpy
from otpy.demos.pipeline import (
    COLUMNS,
    FLAWS,
    Feed,
    InvalidOrder,
    SqlConn,
    SqliteConn,
    check_table,
    chunk_rows,
    make_feed,
    parse_order,
    upsert_sql,
)
from tests.test_examples import ROOT, run_python

pytestmark = pytest.mark.timeout(60)

PROGRESS = re.compile(
    r"^  \[ *\d+\.\d\ds\] acked +[\d,]+ \(ok [\d,]+, failed [\d,]+\)  batches [\d,]+"
    r"(  in flight [\d,]+)?  [\d,]+ msgs/s$"
)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def summary_of(out: str) -> dict[str, object]:
    """The numbers of the summary lines (failing the test if one is missing)."""
    lines = out.splitlines()

    def line(pattern: str) -> re.Match[str]:
        found = [m for m in (re.match(pattern, x) for x in lines) if m]
        assert len(found) == 1, f"no single line matches {pattern!r} in:\n{out}"
        return found[0]

    orders = line(
        r"^  orders in: ([\d,]+) messages \(([\d,]+) valid: ([\d,]+) distinct orders \+ "
        r"([\d,]+) resends; ([\d,]+) invalid\)$"
    )
    table = line(
        r"^  table:     ([\d,]+) rows in '(\w+)' == ([\d,]+) distinct valid orders; "
        r"sum\(total_cents\) ([\d,]+) as in the feed$"
    )
    failed = line(r"^  failed:    ([\d,]+) == the ([\d,]+) seeded: (.*)$")
    acks = line(r"^  acks:      ([\d,]+) ok \+ ([\d,]+) failed = ([\d,]+) == orders in$")
    batches = line(
        r"^  batches:   ([\d,]+) batch(es)? written, at most ([\d,]+) messages each, "
        r"in ([\d,]+) upsert statements?$"
    )
    kinds = {
        kind: number(n) for n, kind in re.findall(r"([\d,]+) ([a-z ]+?)(?:,|$)", failed.group(3))
    }
    return {
        "orders": number(orders.group(1)),
        "valid": number(orders.group(2)),
        "distinct": number(orders.group(3)),
        "resent": number(orders.group(4)),
        "invalid": number(orders.group(5)),
        "rows": number(table.group(1)),
        "table": table.group(2),
        "total": number(table.group(4)),
        "failed": number(failed.group(1)),
        "kinds": kinds,
        "ok_acks": number(acks.group(1)),
        "failed_acks": number(acks.group(2)),
        "acks": number(acks.group(3)),
        "batches": number(batches.group(1)),
        "largest": number(batches.group(3)),
        "statements": number(batches.group(4)),
    }


def check_run(out: str, orders: int, seed: int, batch_size: int = 500) -> dict[str, object]:
    """The invariants of one run's output, against the feed computed here."""
    feed = make_feed(orders, seed)
    assert "MISMATCH" not in out, out
    s = summary_of(out)
    assert s["orders"] == orders
    assert s["rows"] == s["distinct"] == feed.distinct_valid
    assert s["total"] == feed.total_cents
    assert s["failed"] == s["invalid"] == feed.invalid > 0
    assert s["kinds"] == feed.flaws
    assert s["ok_acks"] == feed.valid
    assert s["failed_acks"] == feed.invalid
    assert s["ok_acks"] + s["failed_acks"] == s["acks"] == orders
    assert s["resent"] == feed.resent > 0
    assert 1 <= s["largest"] <= batch_size
    assert s["batches"] >= -(-feed.valid // batch_size)
    lines = out.splitlines()
    assert lines[0].startswith(f"orders pipeline: {orders:,} orders (seed {seed}) from ")
    assert all(PROGRESS.match(x) for x in lines if x.startswith("  [")), out
    return s


# -- whole runs ------------------------------------------------------------------------------


def test_the_example_runs_in_process_and_every_message_is_acked_once(runtime):
    out = run_python("examples/pipeline.py", "--orders", "4000", "--seed", "3").stdout
    check_run(out, 4000, 3)
    lines = out.splitlines()
    assert "from an in-process producer into SQLite (a temporary file), table 'orders'" in lines[0]
    feed = make_feed(4000, 3)
    assert (
        f"  producer:  made 4,000 messages; its acknowledger saw {feed.valid:,} ok + "
        f"{feed.invalid:,} failed, each message exactly once"
    ) in lines


def test_python_m_otpy_demo_pipeline_runs_the_default_feed(runtime):
    out = run_python("-m", "otpy", "demo", "pipeline").stdout
    s = check_run(out, 50_000, 7)
    # 166 rows of 6 columns per statement: under SQLite's 999 parameters.
    assert "upserts of at most 166 rows = 996 parameters of 999" in out
    assert s["statements"] >= -(-s["valid"] // 166)


def test_the_summary_is_the_same_for_the_same_seed(runtime, tmp_path):
    def stable(out: str) -> list[str]:
        """The lines that do not depend on timing."""
        return [x for x in out.splitlines() if not x.startswith(("  [", "done:", "  batches:"))]

    db = tmp_path / "orders.sqlite"
    first = run_python("examples/pipeline.py", "--orders", "3000", "--seed", "5", "--db", str(db))
    second = run_python("examples/pipeline.py", "--orders", "3000", "--seed", "5", "--db", str(db))
    # The second run writes every order again into the same file: upserts change nothing.
    assert stable(first.stdout) == stable(second.stdout)
    check_run(second.stdout, 3000, 5)
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM orders").fetchone()[0]
    assert rows == make_feed(3000, 5).distinct_valid


def test_redis_stream(runtime):
    require_redis()
    out = run_python(
        "-m", "otpy", "demo", "pipeline", "--orders", "4000", "--seed", "2", "--redis", REDIS_URL
    ).stdout
    check_run(out, 4000, 2)
    assert re.search(
        r"^  redis: XADDed 4,000 entries to the stream 'otpy-demo-orders-\w+'", out, re.M
    )
    feed = make_feed(4000, 2)
    assert (
        f"  redis:     0 entries pending in the group; the {feed.invalid:,} failed ones "
        "dead-lettered (to '<stream>:dead'); the demo's streams deleted"
    ) in out.splitlines()


def test_rabbitmq_queue(runtime):
    require_rabbitmq()
    out = run_python(
        "examples/pipeline.py", "--orders", "2000", "--seed", "4", "--rabbitmq", RABBITMQ_URL
    ).stdout
    check_run(out, 2000, 4)
    assert "RabbitMQ (amqp://guest:***@127.0.0.1:5672/%2F)" in out.splitlines()[0]
    assert (
        "  rabbitmq:  0 messages left in the queue (the failed ones were rejected, not "
        "requeued); the demo's queue deleted"
    ) in out.splitlines()


def test_a_bad_table_name_is_refused(runtime):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "examples/pipeline.py", "--table", "orders; drop table x"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done
    assert "a table name is a letter or _" in done.stderr


# -- the pieces ------------------------------------------------------------------------------


class TestFeed:
    def test_the_same_seed_makes_the_same_feed_and_another_seed_another(self, runtime):
        assert make_feed(2000, 1) == make_feed(2000, 1)
        assert make_feed(2000, 1).bodies != make_feed(2000, 2).bodies

    def test_its_counts_are_what_the_parser_makes_of_it(self, runtime):
        feed = make_feed(5000, 9)
        kinds: Counter[str] = Counter()
        rows = {}
        for body in feed.bodies:
            try:
                row = parse_order(body)
            except InvalidOrder as exc:
                kinds[exc.kind] += 1
            else:
                rows[row[0]] = row
        assert dict(kinds) == {k: n for k, n in feed.flaws.items() if n}
        assert set(feed.flaws) == set(FLAWS)
        assert len(rows) == feed.distinct_valid
        assert sum(r[5] for r in rows.values()) == feed.total_cents
        assert feed.valid - feed.distinct_valid == feed.resent

    def test_the_parser_names_the_order_and_the_flaw(self, runtime):
        good = {"id": "o-1", "customer": "c-1", "sku": "sku-01", "qty": 2, "price_cents": 225}
        assert parse_order(json.dumps(good)) == ("o-1", "c-1", "sku-01", 2, 225, 450)
        cases = [
            (b'{"id":"o-7","cust', "bad json", "o-7: not JSON"),
            ({**good, "qty": 0}, "bad qty", "o-1: qty must be an int of at least 1, got 0"),
            ({**good, "qty": "2"}, "bad qty", "got '2'"),
            ({**good, "sku": "sku-99"}, "unknown sku", "o-1: unknown sku 'sku-99'"),
            ({**good, "price_cents": -5}, "bad price", "price_cents must be positive, got -5"),
        ]
        for raw, kind, text in cases:
            body = raw if isinstance(raw, bytes) else json.dumps(raw)
            with pytest.raises(InvalidOrder, match=re.escape(text)) as info:
                parse_order(body)
            assert info.value.kind == kind


def valid_rows(feed: Feed) -> dict[str, tuple[object, ...]]:
    """The feed's valid orders as rows, by id."""
    rows = {}
    for body in feed.bodies:
        try:
            row = parse_order(body)
        except InvalidOrder:
            continue
        rows[row[0]] = row
    return rows


class TestUpsert:
    def test_chunks_stay_under_the_parameter_limits(self, runtime):
        assert chunk_rows(999) == 166 and 166 * len(COLUMNS) <= 999 < 167 * len(COLUMNS)
        assert chunk_rows(65535) == 10922 and 10922 * 6 <= 65535 < 10923 * 6
        with pytest.raises(ValueError, match="max_params"):
            chunk_rows(5)

    def test_the_statement_is_an_upsert_on_the_id(self, runtime):
        sql = upsert_sql("orders", 2, "%s")
        assert sql.startswith(
            "INSERT INTO orders (id, customer, sku, qty, price_cents, total_cents) VALUES "
            "(%s, %s, %s, %s, %s, %s), (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
        )
        assert "total_cents = excluded.total_cents" in sql
        assert "id = excluded.id" not in sql

    @pytest.mark.parametrize("bad", ["orders; drop table x", "", "1orders", "a" * 64, "ord-ers"])
    def test_a_table_name_must_be_an_identifier(self, runtime, bad):
        with pytest.raises(ValueError, match="table name"):
            check_table(bad)

    def test_a_redelivered_batch_changes_nothing(self, runtime, tmp_path: Path):
        path = str(tmp_path / "t.sqlite")
        SqliteConn.create_table(path, "orders")
        rows = sorted(valid_rows(make_feed(600, 1)).values())[:400]
        conn = SqliteConn.start_link(path, "orders")
        try:
            # 400 rows take three statements of at most 166 rows.
            assert SqlConn.upsert(conn, rows) == 3
            first = sqlite3.connect(path).execute("SELECT * FROM orders ORDER BY id").fetchall()
            assert SqlConn.upsert(conn, list(reversed(rows))) == 3  # again, in another order
            again = sqlite3.connect(path).execute("SELECT * FROM orders ORDER BY id").fetchall()
        finally:
            otpy.GenServer.stop(conn)
        assert first == again == sorted(rows)
        assert SqliteConn.table_stats(path, "orders") == (len(rows), sum(r[5] for r in rows))

    def test_a_failed_statement_rolls_back_and_the_connection_stays(self, runtime, tmp_path):
        path = str(tmp_path / "t.sqlite")
        SqliteConn.create_table(path, "orders")
        good = ("o-1", "c-1", "sku-01", 1, 225, 225)
        bad = ("o-2", None, "sku-01", 1, 225, 225)  # customer is NOT NULL
        conn = SqliteConn.start_link(path, "orders")
        try:
            with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
                SqlConn.upsert(conn, [good, bad])
            assert SqliteConn.table_stats(path, "orders") == (0, 0)  # the whole batch rolled back
            assert SqlConn.upsert(conn, [good]) == 1  # the same connection goes on
            assert otpy.is_alive(conn)
        finally:
            otpy.GenServer.stop(conn)
        assert SqliteConn.table_stats(path, "orders") == (1, 225)
