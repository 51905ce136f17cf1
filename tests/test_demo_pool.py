"""The pool demo: its scripted acts tell the same story every run, and under load the counts add up.

Acts 1 to 3 are written out here line by line (apart from the live status lines, which are
checked for consistency, and the error log lines, checked by pattern): which connection
crashes, which the pool kills with its caller, which overflow connections start and which
two it closes after ``overflow_ttl`` follow from the pool's documented semantics (``lifo``
hands out the connection checked in last; the ones idle longest are closed first). Act 4
depends on timing; its crash lines are derived from the seeded plan (``plan_load``), and the
counts of the act and of the summary are checked against each other and against what the
printed lines show.
"""

from __future__ import annotations

import logging
import re

import pytest

import otpy
from otpy import telemetry
from otpy.demos import pool as demo
from otpy.demos.pool import (
    IMPATIENT_TIMEOUT,
    MAX_OVERFLOW,
    POISON,
    SIZE,
    ClientPlan,
    plan_load,
)
from tests.test_examples import run_python, without_pids

pytestmark = pytest.mark.timeout(60)

STAMP = re.compile(r"^  \[ *\d+\.\d{3}s\] ")
STATUS = re.compile(
    r"^  \[t\] status  (ready|overflow|full) +available=(\d+) overflow=(\d+) "
    r"checked_out=(\d+) waiting=(\d+)$"
)
AT_REST = f"  [t] status  ready    available={SIZE} overflow=0 checked_out=0 waiting=0"
CRASH = "DriverCrash('protocol error reading legacy_blobs row 7')"


def normalized(out: str) -> list[str]:
    """The output's lines with time stamps written ``[t]`` and pids ``<pid>``."""
    return [without_pids(STAMP.sub("  [t] ", line)) for line in out.splitlines()]


def sections(lines: list[str]) -> list[list[str]]:
    """The header, then each act from its heading line on (the acts are separated by blanks)."""
    parts: list[list[str]] = [[]]
    for line in lines:
        if line == "":
            parts.append([])
        else:
            parts[-1].append(line)
    return parts


def statuses(lines: list[str]) -> list[tuple[str, int, int, int, int]]:
    found = []
    for line in lines:
        m = STATUS.match(line)
        if m:
            state, *numbers = m.groups()
            available, overflow, checked_out, waiting = map(int, numbers)
            found.append((state, available, overflow, checked_out, waiting))
    return found


def check_status_lines(lines: list[str]) -> None:
    """Every status line the watcher printed is one that Pool.status can report."""
    for state, available, overflow, checked_out, _ in statuses(lines):
        assert 0 <= overflow <= MAX_OVERFLOW
        assert available + checked_out <= SIZE + overflow
        if available:
            assert state == "ready"
        else:
            assert state == ("overflow" if overflow < MAX_OVERFLOW else "full")


def rows_of(sql: str) -> int:
    """How many rows Conn answers ``sql`` with."""
    return int(sql.rsplit("=", 1)[1]) % 3 + 1


def check_output(out: str, clients: int, transactions: int, seed: int, ttl: float) -> None:
    lines = normalized(out)
    header, act1, act2, act3, act4, summary = sections(lines)
    check_status_lines(lines)

    assert header[:2] == [
        f"pool demo: Pool.start_link(Conn.child_spec(tracker), size=3, max_overflow=2, "
        f"overflow_ttl={ttl:g}, name='db')",
        "  Conn connects in 30 ms; a query takes 8-30 ms; a query on legacy_blobs crashes it",
    ]
    assert [x for x in header if "status" in x][-1] == AT_REST
    assert [x for x in header if "status" not in x][2:] == [
        "  [t] conn-1 connected",
        "  [t] conn-2 connected",
        "  [t] conn-3 connected",
    ]

    def events(act: list[str]) -> list[str]:
        return [x for x in act if x.startswith("  [t] conn-")]

    def said(act: list[str]) -> list[str]:
        return [x for x in act if x.startswith("  main: ")]

    # Acts 1 to 3: the same every run. Main speaks last in each: it waits for what the step
    # leads to (the events and the pool at rest) before it says what happened.
    for act in (act1, act2, act3):
        assert [x for x in act if not x.startswith("  log: ")][-1].startswith("  main: ")
        assert [x for x in act if "status" in x][-1] == AT_REST

    assert act1[0] == "1. A query crashes its connection; the pool replaces it"
    assert said(act1) == [
        "  main: Pool.transaction(db, ...) runs 'SELECT payload FROM legacy_blobs WHERE id = 7'",
        f"  main: the call raised otpy.ExitError: conn-3 died with {CRASH}; "
        "the pool started conn-4 in its place",
    ]
    assert events(act1) == [f"  [t] conn-3 closed: crashed: {CRASH}", "  [t] conn-4 connected"]
    logs = [x for x in act1 if x.startswith("  log: ")]
    assert any(
        x.startswith("  log: GenServer Conn <pid> terminating") and CRASH in x for x in logs
    ), logs

    assert act2[0] == "2. A client dies holding a connection in the middle of a transaction"
    assert said(act2) == [
        "  main: the client holds conn-4: BEGIN; UPDATE orders ... (no COMMIT yet)",
        '  main: otpy.exit(client, "kill")',
        '  main: on_caller_exit="kill": the pool killed conn-4 with its open transaction and '
        "started conn-5",
    ]
    assert events(act2) == ["  [t] conn-4 closed: killed", "  [t] conn-5 connected"]
    assert "  [t] status  ready    available=2 overflow=0 checked_out=1 waiting=0" in act2, (
        "the watcher must have seen the client holding its connection"
    )

    assert act3[0] == "3. Every connection taken: two overflow connections, a checkout times out"
    assert said(act3) == [
        "  main: holder 1 checked out conn-5",
        "  main: holder 2 checked out conn-2",
        "  main: holder 3 checked out conn-1",
        "  main: holder 4 checked out conn-6 (an overflow connection, started for it)",
        "  main: holder 5 checked out conn-7 (an overflow connection, started for it)",
        "  main: an impatient caller's Pool.checkout(db, timeout=0.1) raised otpy.Timeout; "
        "it left nothing reserved",
        "  main: holder 1 checked in: the connection is idle (the caller who gave up gets nothing)",
        f"  main: holders 2 to 5 checked in: 5 connections, 2 more than size; "
        f"overflow_ttl={ttl:g} s to go",
        f"  main: after {ttl:g} s idle, the pool closed conn-5 and conn-2, the two idle "
        "longest: back to size 3",
    ]
    assert events(act3) == [
        "  [t] conn-6 connected",
        "  [t] conn-7 connected",
        "  [t] conn-5 closed: shutdown",
        "  [t] conn-2 closed: shutdown",
    ]
    full = "  [t] status  full     available=0 overflow=2 checked_out=5 waiting="
    assert full + "1" in act3, "the watcher must have seen the impatient checkout waiting"
    assert full + "0" in act3
    assert act3.index(full + "1") < len(act3) - 1 - act3[::-1].index(full + "0")

    # Act 4: the crashes are the plan's, the timeouts only the impatient clients', and the
    # counts add up.
    plans = plan_load(clients, transactions, seed)
    total = clients * transactions
    poisoned = {(p.number, t.number): t for p in plans for t in p.transactions if t.poisoned}
    assert act4[0] == (
        f"4. Load: {clients} client{'s' * (clients != 1)} at once, "
        f"{transactions} transaction{'s' * (transactions != 1)} each "
        f"({len(poisoned)} of the {total} touch legacy_blobs)"
    )
    assert not [x for x in act4 if "already dead" in x], (
        "the pool lent out a connection that had died (checked in by the caller that saw "
        "it crash, before the pool's process had handled its exit)"
    )
    crashed_lines = set()
    for x in act4:
        m = re.fullmatch(
            r"  \[t\] client (\d+): transaction (\d+) lost: its connection crashed "
            r"\(DriverCrash\('protocol error reading legacy_blobs row (\d+)'\)\)",
            x,
        )
        if m:
            crashed_lines.add(tuple(map(int, m.groups())))
    expected_crashes = set()
    for (client, number), txn in poisoned.items():
        (sql,) = [q for q in txn.queries if POISON in q]
        expected_crashes.add((client, number, int(sql.rsplit("=", 1)[1])))
    assert crashed_lines == expected_crashes

    impatient = {p.number for p in plans if p.impatient}
    gave_up = set()
    for x in act4:
        m = re.fullmatch(
            rf"  \[t\] client (\d+) \(impatient\): no connection within "
            rf"{IMPATIENT_TIMEOUT * 1000:g} ms: gave up transaction (\d+)",
            x,
        )
        if m:
            gave_up.add((int(m.group(1)), int(m.group(2))))
    assert {client for client, _ in gave_up} <= impatient
    committed = [
        t
        for p in plans
        for t in p.transactions
        if (p.number, t.number) not in poisoned and (p.number, t.number) not in gave_up
    ]
    assert said(act4)[0] == (
        f"  main: all clients done: {len(committed)} committed, {len(poisoned)} crashed their "
        f"connection, {len(gave_up)} gave up waiting, 0 got a dead connection"
    )
    at_rest = re.fullmatch(
        r"  main: the pool is at rest again, with 3 connections: (\d+) opened and (\d+) closed "
        r"under the load",
        said(act4)[1],
    )
    assert at_rest is not None, act4
    assert at_rest.group(1) == at_rest.group(2)
    assert [x for x in act4 if "status" in x][-1] == AT_REST
    assert not [x for x in act4 if "killed" in x]

    # The summary: Pool.stop closes the last three; the counts agree with the lines above.
    assert summary[:2] == ["5. Summary", "  main: Pool.stop(db)"]
    assert len(events(summary)) == SIZE
    assert all(x.endswith("closed: shutdown") for x in events(summary))
    rows = sum(rows_of(q) for t in committed for q in t.queries)
    assert (
        f"  load: {total} transactions: {len(committed)} committed ({rows} rows), "
        f"{len(poisoned)} crashed their connection, {len(gave_up)} timed out waiting for one, "
        "0 got a dead one"
    ) in summary

    opened = sum(x.endswith(" connected") for x in events(lines))
    closed = sum(" closed: " in x for x in events(lines))
    assert opened == closed
    connections = re.fullmatch(
        r"  connections: (\d+) opened \(3 at the start, (\d+) later: replacements and "
        r"overflow\), (\d+) closed: (\d+) crashed, 1 killed with their caller, (\d+) shut down "
        r"\((\d+) idle overflow, 3 by Pool.stop\)",
        summary[-5],
    )
    assert connections is not None, summary
    n_opened, later, n_closed, n_crashed, shutdown, idle_overflow = map(int, connections.groups())
    assert (n_opened, later, n_closed) == (opened, opened - SIZE, closed)
    assert n_crashed == 1 + len(poisoned)
    assert shutdown == idle_overflow + SIZE
    assert idle_overflow >= MAX_OVERFLOW  # act 3's two, and whatever overflow the load needed
    assert n_crashed + 1 + shutdown == n_closed

    assert summary[-4] == "  most connections open at once: 5 (size 3 + max_overflow 2 = 5)"
    seen = statuses(lines)
    assert summary[-3] == (
        f"  status: {len(seen)} changes seen; at most "
        f"{max(s[1] + s[3] for s in seen)} connections up, "
        f"overflow={max(s[2] for s in seen)}, checked_out={max(s[3] for s in seen)}, "
        f"waiting={max(s[4] for s in seen)}"
    )
    assert max(s[3] for s in seen) == SIZE + MAX_OVERFLOW  # act 3's five holders
    assert max(s[1] + s[3] for s in seen) == SIZE + MAX_OVERFLOW

    checkouts = re.fullmatch(
        r"  checkouts: (\d+) began, (\d+) got a connection \(the longest wait \d+\.\d ms\), "
        r"(\d+) timed out \(1 in act 3, (\d+) under load\)",
        summary[-2],
    )
    assert checkouts is not None, summary
    began, got, timed_out, under_load = map(int, checkouts.groups())
    assert began == 8 + total  # acts 1 and 2 one each, act 3 five holders and the impatient one
    assert under_load == len(gave_up)
    assert timed_out == began - got == 1 + len(gave_up)

    logged = re.fullmatch(
        r"  log: (\d+) records on the otpy loggers \(crash reports and the pool's notes\)",
        summary[-1],
    )
    assert logged is not None, summary
    assert int(logged.group(1)) >= n_crashed  # a crash report at least for every crash


class TestScript:
    def test_the_default_run_tells_the_story_and_the_counts_add_up(self) -> None:
        out = run_python("examples/pool.py").stdout
        check_output(out, clients=8, transactions=4, seed=7, ttl=0.3)

    def test_python_m_otpy_demo_runs_it_with_its_options(self) -> None:
        args = ("--seed", "3", "--clients", "5", "--transactions", "3", "--ttl", "0.15")
        out = run_python("-m", "otpy", "demo", "pool", *args).stdout
        check_output(out, clients=5, transactions=3, seed=3, ttl=0.15)


class TestInProcess:
    def test_main_leaves_no_handler_logger_or_process_behind(
        self, runtime: otpy.Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        otpy_logger = logging.getLogger("otpy")
        handlers, propagate = list(otpy_logger.handlers), otpy_logger.propagate
        # The runtime fixture fails the test if a process or thread of the demo is left.
        assert demo.main(["--clients", "3", "--transactions", "2", "--ttl", "0.15"]) == 0
        check_output(capsys.readouterr().out, clients=3, transactions=2, seed=7, ttl=0.15)
        assert not [h for h in telemetry.list_handlers() if "otpy.demos.pool" in str(h.id)]
        assert (otpy_logger.handlers, otpy_logger.propagate) == (handlers, propagate)

    def test_bad_options_are_refused(
        self, runtime: otpy.Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for argv in (["--clients", "0"], ["--transactions", "0"], ["--ttl", "0.01"]):
            with pytest.raises(SystemExit) as exc:
                demo.main(argv)
            assert exc.value.code == 2
        assert "--ttl: must be a number of seconds in [0.05, 10], got 0.01" in (
            capsys.readouterr().err
        )


class TestPlan:
    def test_the_load_depends_only_on_the_seed(self, runtime: otpy.Runtime) -> None:
        assert plan_load(8, 4, 7) == plan_load(8, 4, 7)
        assert plan_load(8, 4, 7) != plan_load(8, 4, 8)

    @pytest.mark.parametrize(("clients", "transactions"), [(1, 1), (3, 2), (8, 4), (20, 6)])
    def test_impatient_clients_never_crash_and_a_tenth_of_the_rest_do(
        self, runtime: otpy.Runtime, clients: int, transactions: int
    ) -> None:
        plans: list[ClientPlan] = plan_load(clients, transactions, seed=1)
        assert [p.number for p in plans] == list(range(1, clients + 1))
        assert [p.number for p in plans if p.impatient] == list(range(4, clients + 1, 4))
        patient = [t for p in plans if not p.impatient for t in p.transactions]
        assert sum(t.poisoned for t in patient) == max(1, len(patient) // 10)
        assert not [t for p in plans if p.impatient for t in p.transactions if t.poisoned]
        for p in plans:
            assert [t.number for t in p.transactions] == list(range(1, transactions + 1))
            for t in p.transactions:
                assert 1 <= len(t.queries) <= 3
                assert sum(POISON in q for q in t.queries) == int(t.poisoned)
                assert 0 <= t.pause <= 0.04
