"""A pool of pretend database connections under load: crashes, a killed caller, overflow.

Run it::

    python -m otpy demo pool                 # or: python examples/pool.py
    python -m otpy demo pool --seed 3        # another draw of the load
    python -m otpy demo pool --clients 4 --transactions 3 --ttl 0.1    # a short run

The pool is ``otpy.pool.Pool.start_link(Conn.child_spec(...), size=3, max_overflow=2,
overflow_ttl=0.3, name="db")``. Its workers are ``Conn`` GenServers that pretend to be database
connections: ``init`` "connects" (sleeps 30 ms), ``handle_call(("query", sql))`` takes 8 to 30 ms
(``otpy.sleep``, by table) and returns rows, and a query on the ``legacy_blobs`` table hits a
pretend driver bug: ``handle_call`` raises ``DriverCrash`` and the connection process dies.

What happens, in order:

1. **A query crashes its connection.** ``Pool.transaction`` lends main a connection; the query
   on ``legacy_blobs`` crashes it, so the call raises ``otpy.ExitError`` (the server died
   before replying), and the pool, linked to every worker, starts a replacement: it keeps
   ``size`` workers whatever happens to them.
2. **A client dies holding a connection.** A client process checks a connection out, begins a
   transaction and runs an ``UPDATE``, and is killed (``otpy.exit(client, "kill")``) before
   its ``COMMIT``. The pool monitors every process that checks out from it; with
   ``on_caller_exit="kill"`` (the default) it kills that connection and starts a fresh one
   rather than hand a half-done transaction to the next caller.
3. **Overflow and a checkout that times out.** Five holders take every connection there can
   be: the three idle ones, then two overflow connections the pool starts on demand
   (``max_overflow=2``); the status goes from ``ready`` to ``overflow`` to ``full``. An impatient
   caller's ``Pool.checkout(db, timeout=0.1)`` waits in line and raises ``otpy.Timeout``;
   it leaves nothing reserved, so the first connection checked in afterwards goes back to
   the idle ones (``available=1``), not to a caller who left. When all five are back, the
   pool has two more than its ``size``; ``overflow_ttl`` seconds later it closes the two
   idle longest and is back to three.
4. **Load.** ``--clients`` tasks (``otpy.Task.async_``) start at once and run
   ``--transactions`` transactions each, drawn from ``--seed``: a pause of 0 to 40 ms, then
   ``Pool.transaction`` with 1 to 3 queries between a ``BEGIN`` and a ``COMMIT``. Most
   clients wait up to 2 s for a connection; the impatient ones (every fourth) give up after
   20 ms, and some of them do. A few transactions (a tenth of the patient clients') touch
   ``legacy_blobs`` and crash their connection. Overflow connections come and go as the load
   rises and falls. ``run_transaction`` returns its outcome as a value rather than raising
   (as ``check`` does in the rate_limit demo), so the only exception ``Pool.transaction``
   raises is its checkout's ``otpy.Timeout``.
5. **Summary.** ``Pool.stop(db)`` closes the last connections; the demo prints what it
   counted: transactions, timeouts, connections opened and closed by cause, the most open at
   once (never more than ``size + max_overflow``), and what the checkout telemetry saw.

How to read the output:

* ``status`` lines come from a watcher process that polls ``Pool.status(db)`` every 2 ms and
  prints each change: ``state`` (``ready``: a connection is idle; ``overflow``: none is, and
  the pool may start more; ``full``: none is and it may not), ``available`` (idle),
  ``overflow`` (connections beyond ``size``, running or being started), ``checked_out`` and
  ``waiting`` (checkouts in line). A change that lasts less than a poll may go unseen.
* ``conn-N connected`` / ``conn-N closed: ...`` lines are the event log of a ``Tracker``
  GenServer: each connection registers with it in ``init`` (which gives it its name) and the
  tracker monitors it, so it also sees the connections that die without a word (crashed,
  killed). ``closed: shutdown`` is the pool stopping a worker it no longer needs.
* ``log:`` lines (act 1 only) are the runtime's own error log for the crash, one line each:
  the GenServer's crash report and the pool's note that a worker exited. Later crashes are
  only counted.
* The checkout telemetry (``("otpy", "pool", "checkout", "start" / "stop")``) is counted by a
  handler: a checkout that began and never stopped raised (here, always a timeout).

For one ``--seed`` acts 1 to 3 print the same lines on every run except the ``[ 0.123s]``
stamps, the order of lines that happen at the same moment, and which short-lived status changes
the watcher catches: before each step, main waits for the status and the events that the last
step must lead to. In act 4 which connection serves which query, how many impatient
checkouts time out, and the peaks depend on timing; the counts always add up.
"""

from __future__ import annotations

import argparse
import functools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import otpy
from otpy import telemetry
from otpy.pool import Pool

from ._logs import LogCollector, collected_logs

SIZE = 3
MAX_OVERFLOW = 2
POOL_NAME = "db"

CONNECT_TIME = 0.03
"""How long a connection takes to "connect", in ``Conn.init``."""
TABLES = {"customers": 0.008, "orders": 0.015, "invoices": 0.025}
"""The tables the queries read and write, and how long a query on each takes (plus 0-4 ms)."""
POISON = "legacy_blobs"
"""A query on this table hits the pretend driver bug: the connection crashes."""

PATIENT_TIMEOUT = 2.0
"""Checkout timeout of most clients under load: ample, so only the impatient ones time out."""
IMPATIENT_TIMEOUT = 0.02
"""Checkout timeout of the impatient clients under load (every fourth client)."""
MAX_PAUSE_MS = 40
"""Under load, a client thinks 0 to this many milliseconds before each transaction."""
ACT3_TIMEOUT = 0.1
"""Checkout timeout of the impatient caller of act 3, who finds every connection taken."""
POLL = 0.002
"""How often the watcher polls ``Pool.status``."""
WAIT = 10.0
"""How long main waits for the pool to react before the demo reports a failure."""

CHECKOUT_START = ("otpy", "pool", "checkout", "start")
CHECKOUT_STOP = ("otpy", "pool", "checkout", "stop")


class DemoError(Exception):
    """The pool did not do what the demo expects within WAIT seconds."""


class DriverCrash(RuntimeError):
    """The pretend driver's bug: raised in ``Conn.handle_call``, it crashes the connection."""


# -- printing ----------------------------------------------------------------------------------


class Out:
    """Prints whole lines from any process: processes run on several threads at once."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self._lock = threading.Lock()  # guards stdout: one line at a time

    def say(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)

    def event(self, text: str) -> None:
        """Print ``text`` with the seconds since the demo began."""
        self.say(f"  [{time.monotonic() - self.start:6.3f}s] {text}")


def show_status(status: Pool.Status) -> str:
    return (
        f"status  {status.state:<8} available={status.available} overflow={status.overflow} "
        f"checked_out={status.checked_out} waiting={status.waiting}"
    )


# -- the connections and their event log ------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """What the tracker counted: connections opened, closed (by cause), open now, most open."""

    opened: int
    closed: dict[str, int]
    live: int
    peak: int

    @property
    def closed_total(self) -> int:
        return sum(self.closed.values())


class Tracker(otpy.GenServer):
    """The connections' event log: names each one, monitors it, prints its opening and closing.

    Main can wait for events: ``("await", opened, closed)`` is answered (with ``Counts``) once
    that many connections have opened and closed, by ``otpy.NOREPLY`` and a later
    ``GenServer.reply``.
    """

    def init(self, out: Out) -> None:
        # All of this is owned by the tracker's process; no lock.
        self.out = out
        self.names: dict[otpy.Pid, str] = {}
        self.opened = 0
        self.closed: Counter[str] = Counter()
        self.closed_names: list[str] = []  # in the order they closed
        self.live = 0
        self.peak = 0
        self.waiting: list[tuple[int, int, Any]] = []

    def counts(self) -> Counts:
        return Counts(self.opened, dict(self.closed), self.live, self.peak)

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case ("connected", otpy.Pid() as pid):
                self.opened += 1
                name = f"conn-{self.opened}"
                self.names[pid] = name
                otpy.monitor(pid)
                self.live += 1
                self.peak = max(self.peak, self.live)
                self.out.event(f"{name} connected")
                self.wake()
                return name
            case ("await", int(opened), int(closed)):
                self.waiting.append((opened, closed, caller))
                self.wake()
                return otpy.NOREPLY
            case ("closed_names", int(start)):
                return self.closed_names[start:]
        raise ValueError(f"Tracker does not understand the call {request!r}")

    def handle_info(self, message: Any) -> None:
        match message:
            case otpy.Down(pid=pid, reason=reason) if pid in self.names:
                name = self.names.pop(pid)
                self.live -= 1
                if isinstance(reason, BaseException):
                    kind, why = "crashed", f"crashed: {reason!r}"
                elif reason == otpy.KILLED:
                    kind, why = "killed", "killed"
                else:
                    kind, why = str(reason), str(reason)
                self.closed[kind] += 1
                self.closed_names.append(name)
                self.out.event(f"{name} closed: {why}")
                self.wake()

    def wake(self) -> None:
        """Answer the waiters whose counts have been reached."""
        closed = sum(self.closed.values())
        still = []
        for opened_at_least, closed_at_least, caller in self.waiting:
            if self.opened >= opened_at_least and closed >= closed_at_least:
                otpy.GenServer.reply(caller, self.counts())
            else:
                still.append((opened_at_least, closed_at_least, caller))
        self.waiting = still


def events(tracker: otpy.Pid, opened: int, closed: int) -> Counts:
    """Wait until ``opened`` connections have opened and ``closed`` have closed, in all."""
    try:
        counts: Counts = Tracker.call(tracker, ("await", opened, closed), timeout=WAIT)
    except otpy.Timeout:
        raise DemoError(
            f"expected {opened} connections opened and {closed} closed within {WAIT}s"
        ) from None
    return counts


def table_of(sql: str) -> str:
    """The table a demo query is on: the word after FROM or UPDATE."""
    words = sql.split()
    for keyword in ("FROM", "UPDATE"):
        if keyword in words:
            return words[words.index(keyword) + 1]
    return ""


def query_time(sql: str) -> float:
    """How long the pretend database takes for ``sql``: by table, plus 0-4 ms by the row id."""
    row = int(sql.rsplit("=", 1)[1]) if "=" in sql else 0
    return TABLES.get(table_of(sql), 0.005) + (row % 5) / 1000


class Conn(otpy.GenServer):
    """A pretend database connection; see the module documentation."""

    def init(self, tracker: otpy.Pid) -> None:
        otpy.sleep(CONNECT_TIME)  # the handshake
        self.name: str = Tracker.call(tracker, ("connected", otpy.self()))
        self.in_transaction = False

    def handle_call(self, request: Any, caller: Any) -> Any:
        match request:
            case "name":
                return self.name
            case "begin":
                if self.in_transaction:
                    # What a connection handed on half used would say (as PostgreSQL does).
                    return "WARNING: there is already a transaction in progress"
                self.in_transaction = True
                return "BEGIN"
            case "commit":
                self.in_transaction = False
                return "COMMIT"
            case ("query", str(sql)):
                otpy.sleep(query_time(sql))
                table = table_of(sql)
                row = int(sql.rsplit("=", 1)[1])
                if table == POISON:
                    # Let it crash: the process dies, the caller's call raises ExitError, the
                    # pool replaces the connection.
                    raise DriverCrash(f"protocol error reading {table} row {row}")
                return [(row, table, n) for n in range(row % 3 + 1)]
        raise ValueError(f"Conn does not understand the call {request!r}")


# -- the status watcher ------------------------------------------------------------------------


@dataclass
class Peaks:
    """The most of each status field the watcher saw (owned by the watcher's process)."""

    changes: int = 0
    up: int = 0  # available + checked_out: connections up and lent out or idle
    overflow: int = 0
    checked_out: int = 0
    waiting: int = 0

    def add(self, status: Pool.Status) -> None:
        self.changes += 1
        self.up = max(self.up, status.available + status.checked_out)
        self.overflow = max(self.overflow, status.overflow)
        self.checked_out = max(self.checked_out, status.checked_out)
        self.waiting = max(self.waiting, status.waiting)


def watch(pool: otpy.Pid, out: Out) -> None:
    """The watcher's body: poll ``Pool.status(pool)``, print each change, answer requests.

    Requests: ``("until", sender, token, predicate)`` is answered with
    ``("settled", token, status)`` by the first status, polled after the request came,
    that ``predicate`` accepts (it is printed first if it is a change);
    ``("stop", sender, token)`` with ``("stopped", token, Peaks)``, and the watcher returns.
    """
    last: Pool.Status | None = None
    peaks = Peaks()
    pending: list[tuple[otpy.Pid, object, Callable[[Pool.Status], bool]]] = []
    while True:
        try:
            message = otpy.receive(timeout=POLL)
        except otpy.Timeout:
            message = None
        match message:
            case ("until", otpy.Pid() as sender, token, predicate):
                pending.append((sender, token, predicate))
            case ("stop", otpy.Pid() as sender, token):
                otpy.send(sender, ("stopped", token, peaks))
                return
        status = Pool.status(pool)
        if status != last:
            out.event(show_status(status))
            peaks.add(status)
            last = status
        if pending:
            still = []
            for sender, token, predicate in pending:
                if predicate(status):
                    otpy.send(sender, ("settled", token, status))
                else:
                    still.append((sender, token, predicate))
            pending = still


def settle(watcher: otpy.Pid, what: str, predicate: Callable[[Pool.Status], bool]) -> None:
    """Wait until the watcher has seen a status that ``predicate`` accepts (``what`` it is)."""
    token = object()
    otpy.send(watcher, ("until", otpy.self(), token, predicate))
    try:
        otpy.receive(timeout=WAIT, match=lambda m: type(m) is tuple and m[:2] == ("settled", token))
    except otpy.Timeout:
        raise DemoError(f"the pool's status did not reach {what} within {WAIT}s") from None


def at_rest(status: Pool.Status) -> bool:
    """``size`` connections idle, none lent out, nobody waiting: the pool at rest."""
    return status == Pool.Status("ready", SIZE, 0, 0, 0)


# -- the checkout telemetry --------------------------------------------------------------------


class CheckoutStats:
    """Counts the checkout telemetry events; the handler runs on each caller's thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # lock guards began, got and longest.
        self.began = 0
        self.got = 0
        self.longest = 0.0

    def snapshot(self) -> tuple[int, int, float]:
        with self.lock:
            return self.began, self.got, self.longest


def on_checkout(
    event: tuple[str, ...], measurements: dict[str, Any], metadata: dict[str, Any], config: Any
) -> None:
    stats: CheckoutStats = config
    with stats.lock:
        if event == CHECKOUT_START:
            stats.began += 1
        elif event == CHECKOUT_STOP:
            stats.got += 1
            stats.longest = max(stats.longest, float(measurements["duration"]))


# -- the error log -----------------------------------------------------------------------------


# -- the load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transaction:
    number: int
    pause: float
    """Seconds the client thinks before it begins this transaction."""
    queries: tuple[str, ...]

    @property
    def poisoned(self) -> bool:
        return any(table_of(sql) == POISON for sql in self.queries)


@dataclass(frozen=True)
class ClientPlan:
    number: int
    checkout_timeout: float
    transactions: tuple[Transaction, ...]

    @property
    def impatient(self) -> bool:
        return self.checkout_timeout < PATIENT_TIMEOUT


def random_query(rng: random.Random) -> str:
    table = rng.choice(sorted(TABLES))
    row = rng.randint(1, 99)
    if rng.random() < 0.3:
        return f"UPDATE {table} SET seen = seen + 1 WHERE id = {row}"
    return f"SELECT * FROM {table} WHERE id = {row}"


def plan_load(clients: int, per_client: int, seed: int) -> list[ClientPlan]:
    """The load of act 4, drawn from ``seed``.

    Every fourth client is impatient. A tenth of the patient clients' transactions (at least
    one) have one query on ``legacy_blobs``; the impatient clients' never do, so that how many
    connections crash does not depend on which checkouts time out.
    """
    rng = random.Random(seed)
    pauses = [
        [rng.randint(0, MAX_PAUSE_MS) / 1000 for _ in range(per_client)] for _ in range(clients)
    ]
    queries = [
        [[random_query(rng) for _ in range(rng.randint(1, 3))] for _ in range(per_client)]
        for _ in range(clients)
    ]
    impatient = {n for n in range(1, clients + 1) if n % 4 == 0}
    patient = [
        (c, t) for c in range(1, clients + 1) if c not in impatient for t in range(per_client)
    ]
    for c, t in rng.sample(patient, max(1, len(patient) // 10)):
        txn = queries[c - 1][t]
        txn[rng.randrange(len(txn))] = (
            f"SELECT payload FROM {POISON} WHERE id = {rng.randint(1, 99)}"
        )
    return [
        ClientPlan(
            c,
            IMPATIENT_TIMEOUT if c in impatient else PATIENT_TIMEOUT,
            tuple(
                Transaction(t + 1, pauses[c - 1][t], tuple(q)) for t, q in enumerate(queries[c - 1])
            ),
        )
        for c in range(1, clients + 1)
    ]


@dataclass
class ClientResult:
    committed: int = 0
    crashed: int = 0
    timed_out: int = 0
    stale: int = 0
    rows: int = 0


def run_transaction(conn: otpy.Pid, txn: Transaction) -> tuple[str, Any]:
    """BEGIN, the queries, COMMIT on ``conn``; the outcome as a value, never an exception.

    ``("committed", rows)``, ``("crashed", reason)`` if the connection died under a query
    (``otpy.ExitError``), or ``("stale", None)`` if it was dead before the call
    (``otpy.NoProcError``: a connection the pool should not have lent out).
    """
    try:
        otpy.GenServer.call(conn, "begin")
        rows = 0
        for sql in txn.queries:
            rows += len(otpy.GenServer.call(conn, ("query", sql)))
        otpy.GenServer.call(conn, "commit")
    except otpy.ExitError as exc:
        return "crashed", exc.reason
    except otpy.NoProcError:
        return "stale", None
    return "committed", rows


def run_client(pool: str, out: Out, plan: ClientPlan) -> ClientResult:
    """A client of act 4: its transactions one after another, each through ``Pool.transaction``.

    It prints only what goes wrong; ``Pool.transaction`` raises nothing but the checkout's
    ``otpy.Timeout`` here, because ``run_transaction`` returns its failures as values.
    """
    result = ClientResult()
    who = f"client {plan.number}" + (" (impatient)" if plan.impatient else "")
    for txn in plan.transactions:
        otpy.sleep(txn.pause)  # think time: the load rises and falls
        try:
            outcome, detail = Pool.transaction(
                pool, functools.partial(run_transaction, txn=txn), timeout=plan.checkout_timeout
            )
        except otpy.Timeout:
            result.timed_out += 1
            out.event(
                f"{who}: no connection within {plan.checkout_timeout * 1000:g} ms: "
                f"gave up transaction {txn.number}"
            )
            continue
        if outcome == "committed":
            result.committed += 1
            result.rows += detail
        elif outcome == "crashed":
            result.crashed += 1
            out.event(f"{who}: transaction {txn.number} lost: its connection crashed ({detail!r})")
        else:
            result.stale += 1
            out.event(f"{who}: transaction {txn.number} lost: its connection was already dead")
    return result


# -- the acts ----------------------------------------------------------------------------------


@dataclass
class Demo:
    """What the acts share: the printer, the tracker, the watcher, the pool's name."""

    out: Out
    tracker: otpy.Pid
    watcher: otpy.Pid
    logs: LogCollector
    ttl: float
    pool: str = POOL_NAME
    act3_timeouts: int = 0
    opened: int = 0  # connections opened and closed so far, as far as main has waited for
    closed: int = 0

    def main(self, text: str) -> None:
        self.out.say(f"  main: {text}")

    def heading(self, text: str) -> None:
        self.out.say("")
        self.out.say(text)

    def expect(self, opened: int = 0, closed: int = 0) -> Counts:
        """Wait for ``opened`` more connections to open and ``closed`` more to close."""
        self.opened += opened
        self.closed += closed
        return events(self.tracker, self.opened, self.closed)

    def caught_up(self) -> Counts:
        """The tracker's counts now; later ``expect`` calls count from them."""
        counts: Counts = Tracker.call(self.tracker, ("await", 0, 0))
        self.opened, self.closed = counts.opened, counts.closed_total
        return counts

    def last_closed(self, n: int) -> list[str]:
        """The names of the last ``n`` connections that closed, oldest first."""
        names: list[str] = Tracker.call(self.tracker, ("closed_names", self.closed - n))
        return names


def act_crash(demo: Demo) -> None:
    demo.heading("1. A query crashes its connection; the pool replaces it")
    sql = f"SELECT payload FROM {POISON} WHERE id = 7"
    names: list[str] = []

    def crashing(conn: otpy.Pid) -> object:
        names.append(otpy.GenServer.call(conn, "name"))
        return otpy.GenServer.call(conn, ("query", sql))

    demo.main(f"Pool.transaction(db, ...) runs {sql!r}")
    try:
        Pool.transaction(demo.pool, crashing)
    except otpy.ExitError as exc:
        reason = exc.reason
    else:
        raise DemoError(f"{sql!r} did not crash its connection")
    demo.expect(opened=1, closed=1)
    settle(demo.watcher, "3 idle connections", at_rest)
    demo.main(
        f"the call raised otpy.ExitError: {names[0]} died with {reason!r}; "
        f"the pool started conn-{demo.opened} in its place"
    )
    for record in demo.logs.drain():
        demo.out.say(f"  log: {record}")


def doomed_client(pool: str, main: otpy.Pid) -> None:
    """Act 2's client: checks out, begins a transaction, and is killed before it commits."""
    conn = Pool.checkout(pool)
    name = otpy.GenServer.call(conn, "name")
    otpy.GenServer.call(conn, "begin")
    otpy.GenServer.call(conn, ("query", "UPDATE orders SET paid = true WHERE id = 42"))
    otpy.send(main, ("holding", name))
    otpy.receive(match=lambda m: m == "never sent")  # killed while it waits here


def act_kill(demo: Demo) -> None:
    demo.heading("2. A client dies holding a connection in the middle of a transaction")
    client, ref = otpy.spawn_monitor(doomed_client, demo.pool, otpy.self())
    name = otpy.receive(timeout=WAIT, match=lambda m: type(m) is tuple and m[0] == "holding")[1]
    settle(demo.watcher, "one connection checked out", checked_out(1))
    demo.main(f"the client holds {name}: BEGIN; UPDATE orders ... (no COMMIT yet)")
    demo.main('otpy.exit(client, "kill")')
    otpy.exit(client, otpy.KILL)
    otpy.receive(timeout=WAIT, match=lambda m: isinstance(m, otpy.Down) and m.ref == ref)
    demo.expect(opened=1, closed=1)
    settle(demo.watcher, "3 idle connections", at_rest)
    demo.main(
        f'on_caller_exit="kill": the pool killed {name} with its open transaction and '
        f"started conn-{demo.opened}"
    )
    demo.logs.drain()


def holder(pool: str, main: otpy.Pid, number: int) -> None:
    """Act 3's holders: check a connection out, hold it until told, check it in."""
    conn = Pool.checkout(pool)
    otpy.send(main, ("holding", number, otpy.GenServer.call(conn, "name")))
    otpy.receive(match=lambda m: m == "checkin")
    Pool.checkin(pool, conn)
    otpy.send(main, ("checked in", number))


def impatient(pool: str) -> str:
    """Act 3's impatient caller: one checkout with a short timeout."""
    try:
        conn = Pool.checkout(pool, timeout=ACT3_TIMEOUT)
    except otpy.Timeout:
        return "timed out"
    Pool.checkin(pool, conn)
    return "got a connection"


def message_from(head: tuple[object, ...]) -> Callable[[object], bool]:
    """Matches a tuple message that begins with ``head``."""
    return lambda m: type(m) is tuple and m[: len(head)] == head


def checked_out(n: int) -> Callable[[Pool.Status], bool]:
    return lambda s: s.checked_out == n


def act_overflow(demo: Demo) -> None:
    demo.heading("3. Every connection taken: two overflow connections, a checkout times out")
    me = otpy.self()
    holders = []
    for number in range(1, SIZE + MAX_OVERFLOW + 1):
        holders.append(otpy.spawn_link(holder, demo.pool, me, number))
        _, _, name = otpy.receive(timeout=WAIT, match=message_from(("holding", number)))
        overflow = number > SIZE
        if overflow:
            demo.expect(opened=1)
        settle(demo.watcher, f"{number} checked out", checked_out(number))
        demo.main(
            f"holder {number} checked out {name}"
            + (" (an overflow connection, started for it)" if overflow else "")
        )
    task = otpy.Task.async_(impatient, demo.pool)
    settle(demo.watcher, "a checkout waiting", lambda s: s.waiting == 1)
    outcome = task.await_(timeout=WAIT)
    if outcome != "timed out":
        raise DemoError(f"the impatient checkout {outcome!r} although every connection is taken")
    demo.act3_timeouts += 1
    settle(demo.watcher, "nobody waiting", lambda s: s.waiting == 0)
    demo.main(
        f"an impatient caller's Pool.checkout(db, timeout={ACT3_TIMEOUT:g}) raised otpy.Timeout; "
        "it left nothing reserved"
    )
    otpy.send(holders[0], "checkin")
    otpy.receive(timeout=WAIT, match=message_from(("checked in", 1)))
    settle(demo.watcher, "one idle", checked_out(SIZE + MAX_OVERFLOW - 1))
    demo.main("holder 1 checked in: the connection is idle (the caller who gave up gets nothing)")
    for number, pid in enumerate(holders[1:], start=2):
        otpy.send(pid, "checkin")
        otpy.receive(timeout=WAIT, match=message_from(("checked in", number)))
    settle(demo.watcher, "none checked out", checked_out(0))
    demo.main(
        f"holders 2 to 5 checked in: {SIZE + MAX_OVERFLOW} connections, {MAX_OVERFLOW} more "
        f"than size; overflow_ttl={demo.ttl:g} s to go"
    )
    demo.expect(closed=MAX_OVERFLOW)
    settle(demo.watcher, "3 idle connections", at_rest)
    closed = demo.last_closed(MAX_OVERFLOW)
    demo.main(
        f"after {demo.ttl:g} s idle, the pool closed {' and '.join(closed)}, the two idle "
        f"longest: back to size {SIZE}"
    )


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def act_load(demo: Demo, plans: list[ClientPlan]) -> ClientResult:
    transactions = sum(len(p.transactions) for p in plans)
    crashing = sum(t.poisoned for p in plans for t in p.transactions)
    per_client = len(plans[0].transactions)
    demo.heading(
        f"4. Load: {plural(len(plans), 'client')} at once, "
        f"{plural(per_client, 'transaction')} each ({crashing} of the {transactions} touch {POISON})"
    )
    before = demo.caught_up()
    tasks = [otpy.Task.async_(run_client, demo.pool, demo.out, plan) for plan in plans]
    results: list[ClientResult] = otpy.Task.await_many(tasks, timeout=60.0)
    total = ClientResult()
    for r in results:
        total.committed += r.committed
        total.crashed += r.crashed
        total.timed_out += r.timed_out
        total.stale += r.stale
        total.rows += r.rows
    demo.main(
        f"all clients done: {total.committed} committed, {total.crashed} crashed their "
        f"connection, {total.timed_out} gave up waiting, {total.stale} got a dead connection"
    )
    settle(demo.watcher, "3 idle connections", at_rest)
    after = demo.caught_up()
    demo.main(
        f"the pool is at rest again, with {after.live} connections: "
        f"{after.opened - before.opened} opened and {after.closed_total - before.closed_total} "
        "closed under the load"
    )
    return total


# -- the run -----------------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text}")
        return value

    return parse


def _ttl(text: str) -> float:
    value = float(text)
    if not 0.05 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be a number of seconds in [0.05, 10], got {text}")
    return value


def main(argv: list[str]) -> int:
    """Run the four acts against one pool, then print the summary."""
    parser = argparse.ArgumentParser(
        prog="python -m otpy demo pool",
        description="A pool of pretend database connections: a crash, a killed caller, "
        "overflow, a checkout timeout, then load.",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the load (7)")
    parser.add_argument(
        "--clients", type=_int_at_least(1), default=8, help="clients under load (8)"
    )
    parser.add_argument(
        "--transactions", type=_int_at_least(1), default=4, help="transactions per client (4)"
    )
    parser.add_argument(
        "--ttl", type=_ttl, default=0.3, help="the pool's overflow_ttl, seconds (0.3)"
    )
    args = parser.parse_args(argv)
    plans = plan_load(args.clients, args.transactions, args.seed)

    print(
        f"pool demo: Pool.start_link(Conn.child_spec(tracker), size={SIZE}, "
        f"max_overflow={MAX_OVERFLOW}, overflow_ttl={args.ttl:g}, name={POOL_NAME!r})"
    )
    print(
        f"  Conn connects in {CONNECT_TIME * 1000:g} ms; a query takes 8-30 ms; "
        f"a query on {POISON} crashes it"
    )
    stats = CheckoutStats()
    handler_id = ("otpy.demos.pool", id(stats))
    with otpy.Runtime(), collected_logs() as logs:
        telemetry.attach_many(handler_id, [CHECKOUT_START, CHECKOUT_STOP], on_checkout, stats)
        try:
            out = Out()
            tracker = Tracker.start_link(out)
            assert tracker is not None
            pool = Pool.start_link(
                Conn.child_spec(tracker),
                size=SIZE,
                max_overflow=MAX_OVERFLOW,
                overflow_ttl=args.ttl,
                name=POOL_NAME,
            )
            watcher = otpy.spawn_link(watch, pool, out)
            demo = Demo(out, tracker, watcher, logs, args.ttl)
            demo.expect(opened=SIZE)
            settle(watcher, "3 idle connections", at_rest)
            act_crash(demo)
            act_kill(demo)
            act_overflow(demo)
            load = act_load(demo, plans)

            token = object()
            otpy.send(watcher, ("stop", otpy.self(), token))
            peaks: Peaks = otpy.receive(
                timeout=WAIT, match=lambda m: type(m) is tuple and m[:2] == ("stopped", token)
            )[2]
            before_stop = demo.caught_up()
            demo.heading("5. Summary")
            demo.main("Pool.stop(db)")
            Pool.stop(pool)
            counts = demo.expect(closed=before_stop.live)
            Tracker.stop(tracker)
        finally:
            telemetry.detach(handler_id)
        logged = logs.total()

    out.say(
        f"  load: {load.committed + load.crashed + load.stale + load.timed_out} transactions: "
        f"{load.committed} committed ({load.rows} rows), {load.crashed} crashed their "
        f"connection, {load.timed_out} timed out waiting for one, {load.stale} got a dead one"
    )
    closed = counts.closed
    shutdown = closed.get("shutdown", 0)
    others = {k: v for k, v in closed.items() if k not in ("crashed", "killed", "shutdown")}
    out.say(
        f"  connections: {counts.opened} opened ({SIZE} at the start, {counts.opened - SIZE} "
        f"later: replacements and overflow), {counts.closed_total} closed: "
        f"{closed.get('crashed', 0)} crashed, {closed.get('killed', 0)} killed with their "
        f"caller, {shutdown} shut down ({shutdown - before_stop.live} idle overflow, "
        f"{before_stop.live} by Pool.stop)"
        + "".join(f", {n} {kind}" for kind, n in sorted(others.items()))
    )
    out.say(
        f"  most connections open at once: {counts.peak} "
        f"(size {SIZE} + max_overflow {MAX_OVERFLOW} = {SIZE + MAX_OVERFLOW})"
    )
    out.say(
        f"  status: {peaks.changes} changes seen; at most {peaks.up} connections up, "
        f"overflow={peaks.overflow}, checked_out={peaks.checked_out}, waiting={peaks.waiting}"
    )
    began, got, longest = stats.snapshot()
    out.say(
        f"  checkouts: {began} began, {got} got a connection (the longest wait "
        f"{longest * 1000:.1f} ms), {began - got} timed out "
        f"({demo.act3_timeouts} in act 3, {load.timed_out} under load)"
    )
    out.say(f"  log: {logged} records on the otpy loggers (crash reports and the pool's notes)")
    return 0
