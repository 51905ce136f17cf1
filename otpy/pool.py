"""Worker pools, as poolboy has them: a fixed set of supervised workers lent out one at a time.

Example::

    from otpy.pool import Pool

    class Conn(otpy.GenServer):
        def init(self, url):
            self.db = connect(url)
        def handle_call(self, sql, caller):
            return self.db.execute(sql)

    pool = Pool.start_link(Conn.child_spec("db://..."), size=5, max_overflow=10, name="db")
    with Pool.worker("db") as conn:                 # checked in again on exit
        rows = otpy.GenServer.call(conn, "select 1")
    Pool.transaction("db", lambda conn: otpy.GenServer.call(conn, "select 1"))
    Pool.status("db")    # Pool.Status(state='ready', available=5, overflow=0, ...)

Why it is written here and not borrowed: Python's pools (a ``queue.Queue`` of
objects, SQLAlchemy's ``QueuePool``) lend out objects; nobody watches them.
A pool of processes has to supervise its workers (start them linked, replace
one that dies, stop them in order), watch the callers that hold them (a caller
that dies must not take its worker with it, nor leave it half used in the
pool), and know when a waiting caller gave up. That is poolboy's design; this
module follows its semantics and fixes the known holes (poolboy#30 overflow
churn, poolboy#64 reservations left by timed-out checkouts, poolboy#122 a
worker that fails to start crashing the pool).

Options of ``Pool.start_link(worker_spec, ...)`` (defaults in brackets):

* ``worker_spec``: an ``otpy.ChildSpec`` or a class with ``child_spec()`` (a
  GenServer subclass). The pool runs the spec's start function inside its own
  process, so every worker is linked to the pool, and stops workers with the
  spec's ``shutdown``. The spec's ``restart`` is not used: the pool always
  replaces a dead worker, to keep ``size`` of them. Its ``backoff``, if any,
  paces retries of starts that fail (else ``otpy.Backoff()``).
* ``size`` [5]: workers started with the pool and kept.
* ``max_overflow`` [10]: extra workers started on demand when none is idle.
* ``strategy`` ["lifo"]: which idle worker a checkout gets: ``"lifo"`` the
  one checked in last (warm), ``"fifo"`` the one idle longest (spread use).
* ``overflow_ttl`` [0.0]: while the pool has more than ``size`` workers, a
  worker checked in with nobody waiting is stopped after this many idle
  seconds (0: at once, as poolboy). Reused within the ttl, it is not stopped;
  a ttl stops the start/stop churn of a pool that hovers around ``size``.
* ``on_caller_exit`` ["kill"]: what happens to a worker whose holder dies
  without checking it in: ``"kill"`` kills it and starts a replacement (safe
  when the caller may have left it in the middle of something, such as an
  open transaction); ``"checkin"`` checks it in as it is.
* ``name`` [None]: a name (``str`` or ``otpy.via(...)``) to register the pool under.

Semantics:

* Waiters are served first come, first served; a checkout may take a worker
  that was just checked in ahead of waiters that have waited less than
  ``HANDOFF_AFTER`` (1 ms), as Go's mutex does, so a busy pool does not pay a
  thread hand-off per transaction; no waiter is overtaken once it has waited
  1 ms. In detail: waiters never overtake one another. A worker checked in
  goes straight to the oldest waiter if that one has waited ``HANDOFF_AFTER``
  or more; else it goes back to the idle workers and the oldest waiter is
  woken to take it, racing any new checkout. A waiter that loses the race
  waits on at the head of the line, its wait still counted from when it
  began, so once it has waited ``HANDOFF_AFTER`` the next worker checked in
  is handed to it. A new checkout that finds an idle worker takes it, unless
  the oldest waiter has waited ``HANDOFF_AFTER``: then it waits behind. So no
  waiter waits more than about ``HANDOFF_AFTER`` plus one transaction longer
  than strict first come, first served would have made it wait.
* A worker that dies is replaced, whether idle or checked out; the checkout
  of a worker that died is void (checking it in afterwards does nothing, also
  when the pool's process has not handled its exit yet: a worker that is
  dead when it is checked in is not lent out again).
* A worker that fails to start (its start function raises or returns
  something else than a pid) does not crash the pool: the failure is logged
  on the ``otpy.pool`` logger and the start is tried again after a growing
  delay; checkouts wait for it or time out meanwhile.
* ``checkout(pool, timeout=0)`` never waits: an idle worker or
  ``otpy.Timeout`` at once (it does not start an overflow worker either; and
  while the oldest waiter has waited ``HANDOFF_AFTER``, an idle worker is
  that waiter's, so it raises too).
* Telemetry, a span per checkout: ``("otpy", "pool", "checkout", "start")``
  (measurements ``monotonic_time``, ``system_time``; metadata ``pool``) when
  a checkout begins, then ``("otpy", "pool", "checkout", "stop")``
  (``duration``: the seconds it waited, ``monotonic_time``; metadata
  ``pool``, ``worker``) when it got a worker, or
  ``("otpy", "pool", "checkout", "exception")`` (``duration``,
  ``monotonic_time``; metadata ``pool``, ``kind``, ``reason``, ``stacktrace``
  as ``otpy.telemetry.span`` has them) when it raises (a timeout, a pool that
  stopped). ``pool`` is the pool's name, else its pid. Nothing is built when
  no handler is attached.

How it is built, and the timeout rule: the pool's state is one table behind
one lock, reached from the pool's pid (as ``otpy.Registry`` does); a checkout
that finds an idle worker and a check-in with nobody waiting never pass
through the pool's process: each is one locked step on the caller's thread.
The pool's process does what needs a process: it starts, replaces and stops
workers, and it monitors every process that has checked out from it (for as
long as that process lives), so it can act when one dies holding a worker.
A waiting checkout is an entry in the table's FIFO with a one-shot reply.
The check-in (or new worker) that serves it resolves that reply in the same
locked step, either with the worker, the lease recorded at once (a hand-off),
or with a wake-up call (then the worker is idle and the woken checkout comes
back to take it under the lock, or to wait again with a fresh reply). The
waiter's timeout and that reply race on the reply's own test-and-set: if the
reply wins, the checkout returns the worker (or comes back for it) even
though its time was up; if the timeout wins, the reply fails and the worker
goes to the next waiter (or back to the pool), and the timed-out caller
removes its entry under the lock before it raises. A woken checkout whose
time is up when it comes back and finds no idle worker leaves the line in
that same locked step. So a checkout that times out leaves nothing reserved
and nothing granted, and nothing has to be cancelled later. A waiter that
dies is settled the same way: its reply is abandoned when it dies, so a
hand-off skips it even before the pool's process has seen its ``Down``; a
woken one that dies, or leaves, passes the wake-up call on to the next.

What fairness costs, and why ``HANDOFF_AFTER``: strict first come, first
served means that under contention every worker checked in goes to a caller
that is asleep, so every transaction costs a thread hand-off (a benchmark of
8 threads on 4 workers ran at a fifth of a ``queue.Queue`` of objects, whose
running thread takes back what it just returned, while its waiters may wait
without bound). Letting the running thread take the worker it just checked
in, while the oldest waiter has waited less than ``HANDOFF_AFTER``, keeps
the common path free of hand-offs; the hand-off after ``HANDOFF_AFTER``
bounds how long that can go on for any waiter.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import attrs

from . import _core as core
from . import telemetry
from ._child_spec import BRUTAL_KILL, ChildSpec, spec_with
from ._core import Down, Exit, Pid, Ref
from ._exceptions import ExitError, NoProcError, Timeout
from ._gen_server import GenServer
from ._supervisor import (
    Backoff,
    _ChildStartFailed,
    child_spec_of,
    shutdown_children,
    start_child_process,
    supervisor_label,
)

__all__ = ["HANDOFF_AFTER", "CallerExit", "Pool", "Strategy"]

_log = logging.getLogger("otpy.pool")

Strategy = Literal["lifo", "fifo"]
CallerExit = Literal["kill", "checkin"]
_STRATEGIES = ("lifo", "fifo")
_CALLER_EXITS = ("kill", "checkin")

HANDOFF_AFTER = 0.001
"""Seconds a waiting checkout waits before nobody may overtake it any more.

Until the oldest waiter has waited this long, a worker checked in goes back
to the idle workers (the oldest waiter is woken to take it, and a new checkout
may take it first); from then on it is handed straight to the oldest waiter,
and new checkouts wait behind. 1 ms, as Go's ``sync.Mutex`` has it: long
against a thread hand-off, short against any wait a caller would notice.
"""

_START: Final = ("otpy", "pool", "checkout", "start")
_STOP: Final = ("otpy", "pool", "checkout", "stop")
_EXCEPTION: Final = ("otpy", "pool", "checkout", "exception")

T = TypeVar("T")


# -- options ---------------------------------------------------------------------------------


@attrs.frozen
class _Options:
    spec: ChildSpec
    size: int
    max_overflow: int
    lifo: bool
    overflow_ttl: float
    kill_on_caller_exit: bool


def _options(
    worker_spec: object,
    size: object = 5,
    max_overflow: object = 10,
    strategy: object = "lifo",
    overflow_ttl: object = 0.0,
    on_caller_exit: object = "kill",
) -> _Options:
    spec = child_spec_of(worker_spec)
    for value, what in ((size, "size"), (max_overflow, "max_overflow")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be an int >= 0; got {value!r}")
        if value < 0:
            raise ValueError(f"{what} must be an int >= 0; got {value!r}")
    assert isinstance(size, int) and isinstance(max_overflow, int)
    if size + max_overflow < 1:
        raise ValueError(
            "a pool needs room for at least one worker: size + max_overflow must be >= 1; "
            f"got size={size!r}, max_overflow={max_overflow!r}"
        )
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}; got {strategy!r}")
    if isinstance(overflow_ttl, bool) or not isinstance(overflow_ttl, (int, float)):
        raise TypeError(
            f"overflow_ttl must be a number of seconds >= 0; got {overflow_ttl!r} "
            f"of type {type(overflow_ttl).__name__}"
        )
    if not (overflow_ttl >= 0 and math.isfinite(overflow_ttl)):
        raise ValueError(
            f"overflow_ttl must be a finite number of seconds >= 0; got {overflow_ttl!r}"
        )
    if on_caller_exit not in _CALLER_EXITS:
        raise ValueError(f"on_caller_exit must be one of {_CALLER_EXITS}; got {on_caller_exit!r}")
    return _Options(
        spec, size, max_overflow, strategy == "lifo", float(overflow_ttl), on_caller_exit == "kill"
    )


def _check_name(name: object) -> None:
    if name is not None and not isinstance(name, (str, core.NameResolver)):
        raise TypeError(
            f"name must be a str or otpy.via(...); got {name!r} of type {type(name).__name__}"
        )


# -- the shared table ------------------------------------------------------------------------
#
# A pool's state is a _Table, reached from any process with core.data_of(pool). Callers change
# it directly for the common cases (take an idle worker, give one back, wait in line); the
# pool's process changes it when workers start, die or stop and when callers die. Every field
# that changes is guarded by the table's one lock. Code holding it does no otpy call except
# resolving a waiter's Reply (a non-blocking test-and-set), and never runs user code; messages
# to the pool's process are sent after the lock is released.
#
# Why a dead caller never keeps a worker: a caller takes a worker only while its pid is in
# `watched`, and a pid enters `watched` only together with a _Watch message that makes the
# pool's process monitor it. The pool removes the pid from `watched` and takes back its
# workers in one locked step when the Down comes. A Down comes only after the caller died;
# so a lease recorded while the pid was in `watched` is recorded before that step and found
# by it, and a dead caller's code that runs on for a moment finds itself out of `watched`
# and goes through the slow path, where its _Watch send fails (a dead process sends nothing).
# A waiter is in `waiters` only while its caller is in `watched` (the same step drops both),
# and a woken waiter takes a worker only if it is still in `waiters`; else it starts over.
#
# Waking, and why nobody sleeps beside an idle worker: at most one waiter is woken at a time,
# and it is always the head of `waiters` (`woken` says so; nothing is ever put in front of
# the head). Invariant, after every locked step: `idle` is empty, or `waiters` is, or
# `woken` is set. A woken waiter comes back, takes an idle worker if one is left (and wakes
# the next head if more are idle: `settle`) or goes back to sleep where it was; one that
# leaves while woken (a timeout, its death) passes the wake-up on (`settle` again).

# What a hand-off leaves to do, outside the lock:
_NOTHING = 0
_RETIRE = 1  # the worker was moved to `retiring`: the pool's process must stop it
_SWEEP = 2  # an excess worker went idle with a ttl: the pool's process must time it
_NOT_OUT = 3  # (checkin) the pid is not checked out from this pool

_Actions = Sequence[tuple[int, Pid]]  # what `settle` leaves to do: (_RETIRE or _SWEEP, worker)
_NO_ACTIONS: _Actions = ()

# What a woken waiter finds when it comes back (`_Table.retry`):
_GOT = 0  # it took an idle worker
_AGAIN = 1  # none was left (a new checkout took it): it sleeps again, with a fresh reply
_AGAIN_NEED = 2  # the same, and the pool's process must start a worker for it (there is room)
_TIMED_OUT = 3  # none was left and its time is up: it left the line
_DROPPED = 4  # it is no longer in line (its caller died): it must start over
_CLOSED = 5  # the pool stopped


class _Wake:
    """What a waiter's reply resolves to when it is woken rather than handed a worker."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<pool wake-up>"


_WAKE = _Wake()


class _Waiter:
    """A checkout waiting in line.

    ``reply`` resolves to the worker (a hand-off) or to ``_WAKE``; a woken waiter
    that goes back to sleep gets a fresh one. ``since``: when the checkout began
    (its wait counts from then, also after it lost a race).
    """

    __slots__ = ("caller", "reply", "since")

    def __init__(self, caller: Pid, since: float) -> None:
        self.caller = caller
        self.since = since
        self.reply = core.Reply()


class _Table:
    """A pool's state, shared by its callers and its process (see above)."""

    __slots__ = (
        "closed",
        "ident",
        "idle",
        "leases",
        "lifo",
        "lock",
        "max_overflow",
        "pool",
        "reason",
        "retiring",
        "since",
        "size",
        "starting",
        "sweeping",
        "ttl",
        "void",
        "waiters",
        "watched",
        "woken",
        "workers",
    )

    def __init__(self, pool: Pid, ident: object, options: _Options) -> None:
        # Constants.
        self.pool = pool
        self.ident = ident  # the name if the pool has one, else its pid (telemetry, errors)
        self.size = options.size
        self.max_overflow = options.max_overflow
        self.lifo = options.lifo
        self.ttl = options.overflow_ttl
        # lock guards everything below.
        self.lock = threading.Lock()
        self.workers: set[Pid] = set()  # live workers that are idle or checked out
        self.idle: deque[Pid] = deque()  # in check-in order; lifo takes the right end
        self.since: dict[Pid, float] = {}  # ttl > 0 only: when each idle worker went idle
        self.leases: dict[Pid, Pid] = {}  # checked-out worker -> the caller holding it
        self.void: dict[Pid, Pid] = {}  # worker that died checked out -> its holder
        self.waiters: deque[_Waiter] = deque()  # waiting checkouts, oldest first
        self.woken = False  # waiters[0] was woken (its reply holds _WAKE) and is coming back
        self.watched: set[Pid] = set()  # callers the pool monitors (or is told to)
        self.retiring: set[Pid] = set()  # workers being stopped (no longer lent out)
        self.starting = 0  # worker starts the pool's process has decided on and not finished
        self.sweeping = False  # a _SWEEP_MSG (message or timer) is on its way to the pool
        self.closed = False  # the pool stopped: nothing is lent out any more
        self.reason: Any = None  # why it stopped (for a woken waiter that comes back after)

    def excess(self) -> bool:
        return len(self.workers) + self.starting > self.size

    def starving(self, now: float) -> bool:
        """Whether the oldest waiter has waited ``HANDOFF_AFTER``: nobody may overtake it."""
        return bool(self.waiters) and now - self.waiters[0].since >= HANDOFF_AFTER

    def take(self, caller: Pid) -> Pid:
        """Lend an idle worker to ``caller`` (there is one)."""
        pid = self.idle.pop() if self.lifo else self.idle.popleft()
        self.leases[pid] = caller
        if self.ttl:
            del self.since[pid]
        return pid

    def make_idle(self, pid: Pid) -> None:
        self.idle.append(pid)
        if self.ttl:
            self.since[pid] = time.monotonic()

    def hand_off(self, pid: Pid) -> int:
        """A worker came free: hand it to the oldest waiter, or wake that one, or make it
        idle, or retire it."""
        waiters = self.waiters
        if not waiters and len(self.workers) + self.starting <= self.size:  # the usual case
            self.idle.append(pid)
            if self.ttl:
                self.since[pid] = time.monotonic()
            return _NOTHING
        if waiters and not self.woken:  # then nothing is idle: `pid` is the one to give
            now = time.monotonic()
            while waiters:
                head = waiters[0]
                if now - head.since >= HANDOFF_AFTER:
                    waiters.popleft()
                    if head.reply.resolve(True, pid):
                        self.leases[pid] = head.caller
                        return _NOTHING
                elif head.reply.resolve(True, _WAKE):
                    self.woken = True
                    break
                else:
                    waiters.popleft()  # that checkout timed out or its caller died
        if waiters:  # the woken head comes to take it (unless a new checkout comes first)
            self.make_idle(pid)
            return _NOTHING
        if self.excess():
            if not self.ttl:
                self.workers.discard(pid)
                self.retiring.add(pid)
                return _RETIRE
            self.make_idle(pid)
            if self.sweeping:
                return _NOTHING
            self.sweeping = True
            return _SWEEP
        self.make_idle(pid)
        return _NOTHING

    def settle(self) -> _Actions:
        """Restore the invariant after the head of the line changed (the woken waiter took
        a worker or left, a waiter's caller died): hand idle workers to old waiters, or wake
        the head; with nobody left waiting, release the idle workers beyond ``size`` as a
        check-in would have."""
        waiters = self.waiters
        idle = self.idle
        if idle and waiters and not self.woken:
            now = time.monotonic()
            while idle and waiters:
                head = waiters[0]
                if now - head.since >= HANDOFF_AFTER:
                    waiters.popleft()
                    if head.reply.resolve(True, idle[-1] if self.lifo else idle[0]):
                        self.take(head.caller)
                elif head.reply.resolve(True, _WAKE):
                    self.woken = True
                    break
                else:
                    waiters.popleft()
        if waiters or not idle or not self.excess() or self.closed:
            return _NO_ACTIONS
        if self.ttl:
            if self.sweeping:
                return _NO_ACTIONS
            self.sweeping = True
            return ((_SWEEP, idle[0]),)
        actions = []
        while idle and self.excess():
            pid = idle.popleft()
            self.workers.discard(pid)
            self.retiring.add(pid)
            actions.append((_RETIRE, pid))
        return actions

    def need(self) -> bool:
        """Whether the pool's process must start a worker for the waiters (there is room)."""
        room = len(self.workers) + self.starting < self.size + self.max_overflow
        return room and len(self.waiters) > self.starting + len(self.idle)

    def retry(self, waiter: _Waiter, deadline: float | None) -> tuple[int, Pid | None, _Actions]:
        """A woken waiter came back: ``(outcome, worker, actions)``, outcome one of _GOT,
        _AGAIN, _AGAIN_NEED, _TIMED_OUT, _DROPPED, _CLOSED."""
        if self.closed:
            return _CLOSED, None, _NO_ACTIONS
        waiters = self.waiters
        if not waiters or waiters[0] is not waiter:
            return _DROPPED, None, _NO_ACTIONS
        self.woken = False
        if self.idle:
            waiters.popleft()
            pid = self.take(waiter.caller)
            return _GOT, pid, self.settle()
        if deadline is not None and time.monotonic() >= deadline:
            waiters.popleft()
            return _TIMED_OUT, None, self.settle()
        waiter.reply = core.Reply()
        # The worker it was woken for went to a new checkout: if the pool decided on no
        # start when it counted that worker as this waiter's, it must think again.
        return (_AGAIN_NEED if self.need() else _AGAIN), None, _NO_ACTIONS

    def remove_waiter(self, waiter: _Waiter) -> _Actions:
        """Take ``waiter`` out of line (its checkout raised), if it is still there."""
        waiters = self.waiters
        if waiters and waiters[0] is waiter:
            waiters.popleft()
            self.woken = False
            return self.settle()
        try:
            waiters.remove(waiter)
        except ValueError:
            pass  # it was served or dropped meanwhile
        return _NO_ACTIONS

    def close(self, pid: Pid, reason: Any) -> None:
        """The pool ends (its exit hook, and the start of its terminate): fail every waiter."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.reason = reason
            waiters = list(self.waiters)
            self.waiters.clear()
            self.woken = False
        for waiter in waiters:
            waiter.reply.resolve(False, reason)  # a woken one finds `closed` when it comes back

    def status(self) -> Pool.Status:
        with self.lock:
            available = len(self.idle)
            overflow = max(0, len(self.workers) + self.starting - self.size)
            checked_out = len(self.leases)
            waiting = len(self.waiters)
        state: Literal["ready", "overflow", "full"]
        if available:
            state = "ready"
        elif overflow < self.max_overflow:
            state = "overflow"
        else:
            state = "full"
        return Pool.Status(state, available, overflow, checked_out, waiting)


def _table_of(pool: object, what: str) -> _Table:
    """The table of ``pool`` (a pid or a name).

    Raises:
        NoProcError: no live process is ``pool``.
        TypeError: ``pool`` is not a pid or name, or its process is not a pool.
    """
    if not isinstance(pool, (Pid, str, core.NameResolver)):
        raise TypeError(
            f"{what} takes a pool: its pid or its name; got {pool!r} of type {type(pool).__name__}"
        )
    table = core.data_of(pool)
    if type(table) is _Table:
        return table
    if isinstance(pool, Pid):
        alive = core.is_alive(pool)
    elif isinstance(pool, str):
        alive = core.whereis(pool) is not None
    else:
        alive = pool.whereis_name() is not None
    if alive:
        raise TypeError(f"{what}: {pool!r} is a process but not an otpy.pool.Pool")
    raise NoProcError(pool, what)


def _timeout(timeout: object) -> float | None:
    """``core.check_timeout``, with a shortcut for the usual case (a float such as 5.0)."""
    if type(timeout) is float and 0.0 <= timeout < math.inf:
        return timeout
    return core.check_timeout(timeout)


def _send(table: _Table, message: object) -> None:
    core.send_quiet(table.pool, message)  # raises only if the calling process is dead


# -- messages to the pool's process --------------------------------------------------------


class _Watch:
    """Monitor this caller: it is about to check out."""

    __slots__ = ("caller",)

    def __init__(self, caller: Pid) -> None:
        self.caller = caller


class _Retire:
    """Stop this worker (an excess worker was checked in)."""

    __slots__ = ("pid",)

    def __init__(self, pid: Pid) -> None:
        self.pid = pid


class _Tag:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<pool {self.name}>"


_NEED = _Tag("need")  # a checkout waits: start a worker if there is room
_SWEEP_MSG = _Tag("sweep")  # stop the excess workers idle for overflow_ttl
_RETRY = _Tag("retry")  # the backoff delay after a failed start is over


class _KillRetiring:
    __slots__ = ("ref",)

    def __init__(self, ref: Ref) -> None:
        self.ref = ref


# -- checking out and in ------------------------------------------------------------------------


def _checkout(table: _Table, timeout: float | None) -> Pid:
    me = core.self()
    t0 = time.monotonic()
    if telemetry._handlers_for(_START):
        telemetry.execute(
            _START, {"monotonic_time": t0, "system_time": time.time()}, {"pool": table.ident}
        )
    with table.lock:  # the usual case, inline: a worker is idle and nobody waits (see _step)
        if table.idle and not table.waiters and me in table.watched and not table.closed:
            pid: Pid | None = table.take(me)
        else:
            pid = None
    try:
        if pid is None:
            pid = _obtain(table, me, timeout, t0)
    except BaseException as exc:
        if telemetry._handlers_for(_EXCEPTION):
            now = time.monotonic()
            stacktrace = traceback.StackSummary.extract(
                traceback.walk_tb(exc.__traceback__), lookup_lines=False
            )
            telemetry.execute(
                _EXCEPTION,
                {"duration": now - t0, "monotonic_time": now},
                {"pool": table.ident, "kind": type(exc), "reason": exc, "stacktrace": stacktrace},
            )
        raise
    if telemetry._handlers_for(_STOP):
        now = time.monotonic()
        telemetry.execute(
            _STOP,
            {"duration": now - t0, "monotonic_time": now},
            {"pool": table.ident, "worker": pid},
        )
    return pid


def _obtain(table: _Table, me: Pid, timeout: float | None, t0: float) -> Pid:
    """Check out for ``me``: an idle worker at once, else wait in line."""
    while True:
        with table.lock:
            pid, waiter, need, watch = _step(table, me, timeout, t0)
        if watch:
            # Not monitored yet (or the pool saw this process die: then this send raises,
            # as the process is dead, and no worker is taken).
            try:
                _send(table, _Watch(me))
            except BaseException:
                with table.lock:
                    table.watched.discard(me)
                raise
            continue
        if pid is not None:
            return pid
        if waiter is None:
            what = f"Pool.checkout({table.ident!r})"
            with table.lock:
                closed = table.closed
            if closed:
                raise NoProcError(table.ident, what)
            raise Timeout(f"{what}, asking for an idle worker,", timeout)
        pid = _wait(table, waiter, need, timeout, t0)
        if pid is not None:
            return pid
        # The waiter was dropped while it was woken: its caller died and the pool saw
        # the Down. Starting over fails as a dead process's checkout does (see _step).


def _step(
    table: _Table, me: Pid, timeout: float | None, t0: float
) -> tuple[Pid | None, _Waiter | None, bool, bool]:
    """One try at a checkout, under the lock: ``(worker, waiter, need, watch)``.

    A worker if one is idle and the oldest waiter (if any) has waited less
    than ``HANDOFF_AFTER``; else a waiter put at the end of the line
    (``need``: the pool's process must start a worker for it); ``watch``: the
    caller must first have the pool monitor it (it is put in ``watched`` now).
    """
    if me not in table.watched:
        if table.closed:
            return None, None, False, False
        table.watched.add(me)
        return None, None, False, True
    if table.closed:
        return None, None, False, False
    if table.idle and not (table.waiters and table.starving(time.monotonic())):
        return table.take(me), None, False, False
    if timeout == 0:
        return None, None, False, False
    waiter = _Waiter(me, t0)
    table.waiters.append(waiter)
    return None, waiter, table.need(), False


def _wait(
    table: _Table, waiter: _Waiter, need: bool, timeout: float | None, t0: float
) -> Pid | None:
    """Wait in line for a worker (or raise what a checkout that got nothing raises).

    None: the waiter was dropped from the line while it was woken (its caller died).
    """

    def what() -> str:
        return f"Pool.checkout({table.ident!r})"

    deadline = None if timeout is None else t0 + timeout
    try:
        if need:
            _send(table, _NEED)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            got = core.wait_reply(waiter.reply, left, what)
            if got is not _WAKE:
                granted: Pid = got
                return granted
            # Woken: an idle worker waits for this waiter, unless a new checkout took it.
            with table.lock:
                outcome, pid, actions = table.retry(waiter, deadline)
                reason = table.reason
            if actions:
                _carry_out(table, actions)
            if outcome == _GOT:
                return pid
            if outcome == _AGAIN_NEED:
                _send(table, _NEED)
            elif outcome != _AGAIN:
                break
            # Wait on, at the head of the line, with a fresh reply.
    except Timeout:
        outcome = _TIMED_OUT
    except BaseException:
        with table.lock:
            actions = table.remove_waiter(waiter)
        if actions:
            _carry_out(table, actions)
        raise
    if outcome == _DROPPED:
        return None
    if outcome == _CLOSED:
        raise ExitError(reason, what())
    with table.lock:  # a timeout; the waiter may have left the line already (retry)
        actions = table.remove_waiter(waiter)
    if actions:
        _carry_out(table, actions)
    raise Timeout(f"{what()}, waiting for a free worker,", timeout)


def _checkin(table: _Table, pid: Pid, what: str) -> None:
    # A caller that saw its worker die (a call to it raised) may check it in before the
    # pool's process has handled the worker's exit: such a worker is not lent out again;
    # it stays counted in `workers` until that exit comes and a replacement is started.
    alive = core.is_alive(pid)
    with table.lock:
        holder = table.leases.pop(pid, None)
        if holder is not None:
            action = table.hand_off(pid) if alive else _NOTHING
        elif table.void.pop(pid, None) is not None or table.closed:
            action = _NOTHING  # the worker died while checked out, or the pool is gone
        else:
            action = _NOT_OUT
    if action == _NOTHING:
        return
    if action == _NOT_OUT:
        raise ValueError(
            f"{what}: {pid!r} is not checked out from pool {table.ident!r}; "
            "check in only a pid that Pool.checkout returned, and only once"
        )
    _carry_out(table, ((action, pid),))


def _carry_out(table: _Table, actions: _Actions) -> None:
    """Tell the pool's process what a locked step left it to do (``_RETIRE``, ``_SWEEP``)."""
    for i, (action, pid) in enumerate(actions):
        try:
            _send(table, _Retire(pid) if action == _RETIRE else _SWEEP_MSG)
        except BaseException:  # the caller is dead: undo, or stop the workers without the pool
            for undone, worker in actions[i:]:
                if undone == _RETIRE:
                    with table.lock:
                        table.retiring.discard(worker)
                    core.kill_quietly(worker, unlink=table.pool)
                else:
                    with table.lock:
                        table.sweeping = False
            raise


class _Worker(AbstractContextManager[Pid]):
    """What ``Pool.worker`` returns: checks out on enter, checks in on exit."""

    __slots__ = ("pid", "pool", "table", "timeout")

    def __init__(self, pool: object, timeout: float | None) -> None:
        self.pool = pool
        self.timeout = timeout
        self.table: _Table | None = None
        self.pid: Pid | None = None

    def __enter__(self) -> Pid:
        if self.pid is not None:
            raise RuntimeError("a Pool.worker(...) context can be entered once at a time")
        self.table = _table_of(self.pool, "Pool.worker")
        self.pid = _checkout(self.table, self.timeout)
        return self.pid

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pid, self.pid = self.pid, None
        if pid is not None and self.table is not None:
            _checkin(self.table, pid, "Pool.worker")


# -- the pool's process ---------------------------------------------------------------------------


class _PoolServer(GenServer):
    """The process behind a Pool: starts, replaces and stops workers, watches callers."""

    inline_calls = False  # its handlers start and stop workers: never on a caller's thread

    def init(self, options: _Options) -> None:
        core.trap_exits(True)
        me = core.self()
        name = getattr(self, "_otpy_name", None)
        self.options = options
        self.spec = options.spec
        self.label = supervisor_label("Pool", self)
        self.table = table = _Table(me, me if name is None else name, options)
        self.backoff: Backoff = options.spec.backoff or Backoff()
        self.rng = random.Random()
        self.attempt = 0  # failed starts in a row
        self.retry: core.TimerRef | None = None  # pending while backing off after a failed start
        self.callers: dict[Ref, Pid] = {}  # monitors of the callers in table.watched
        self.stopping: dict[Ref, tuple[Pid, core.TimerRef | None]] = {}  # retiring workers
        core.set_data(table)
        core.on_exit(me, table.close)
        with table.lock:
            n = self._plan_starts()
        self._start_workers(n)

    # -- starting workers ---------------------------------------------------------------------

    def _plan_starts(self) -> int:
        """How many workers to start now (under the lock); counted in ``starting``."""
        t = self.table
        if self.retry is not None or t.closed:
            return 0
        total = len(t.workers) + t.starting
        unserved = len(t.waiters) - len(t.idle) - t.starting  # idle ones go to the woken head
        n = max(t.size - total, min(unserved, t.size + t.max_overflow - total), 0)
        t.starting += n
        return n

    def _start_workers(self, n: int) -> None:
        t = self.table
        for i in range(n):
            try:
                pid = start_child_process(self.spec)
                reason: Any = None if pid is not None else "ignore"
            except _ChildStartFailed as failed:
                pid, reason = None, failed.reason
            if pid is None:
                with t.lock:
                    t.starting -= n - i
                delay = self.backoff.delay(self.attempt, self.rng)
                self.attempt += 1
                _log.error(
                    "%s: a worker failed to start (%d in a row): %r; trying again in %.3gs",
                    self.label,
                    self.attempt,
                    reason,
                    delay,
                )
                self.retry = core.send_after(delay, core.self(), _RETRY)
                return
            self.attempt = 0
            with t.lock:
                t.starting -= 1
                t.workers.add(pid)
                action = t.hand_off(pid)
            self._act(action, pid)

    def _act(self, action: int, pid: Pid) -> None:
        if action == _RETIRE:
            self._retire(pid, kill=False)
        elif action == _SWEEP:
            self._sweep()

    # -- stopping workers -------------------------------------------------------------------

    def _retire(self, pid: Pid, *, kill: bool) -> None:
        """Stop a worker that is in ``retiring``, without waiting for it."""
        shutdown = self.spec.shutdown
        core.unlink(pid)
        ref = core.monitor(pid)
        timer = None
        if kill or shutdown == BRUTAL_KILL:
            core.exit(pid, "kill")
        else:
            core.exit(pid, "shutdown")
            if shutdown is not None:
                timer = core.send_after(float(shutdown), core.self(), _KillRetiring(ref))
        self.stopping[ref] = (pid, timer)

    def _sweep(self) -> None:
        """Stop the excess workers idle for ``overflow_ttl``; time the next sweep."""
        t = self.table
        retire = []
        delay = None
        with t.lock:
            t.sweeping = False
            now = time.monotonic()
            # With waiters in line, the idle workers are theirs; `settle` sends for a sweep
            # again once the line is empty.
            while t.idle and not t.closed and not t.waiters and t.excess():
                oldest = t.idle[0]
                due = t.since[oldest] + t.ttl
                if due > now:
                    delay = due - now
                    t.sweeping = True
                    break
                t.idle.popleft()
                del t.since[oldest]
                t.workers.discard(oldest)
                t.retiring.add(oldest)
                retire.append(oldest)
        for pid in retire:
            self._retire(pid, kill=False)
        if delay is not None:
            core.send_after(delay, core.self(), _SWEEP_MSG)

    # -- messages ---------------------------------------------------------------------------

    def handle_info(self, message: Any) -> Any:
        kind = type(message)
        if kind is Exit:
            self._worker_exited(message.pid, message.reason)
        elif kind is Down:
            if message.ref in self.callers:
                self._caller_down(self.callers.pop(message.ref))
            elif message.ref in self.stopping:
                pid, timer = self.stopping.pop(message.ref)
                if timer is not None:
                    core.cancel_timer(timer)
                with self.table.lock:
                    self.table.retiring.discard(pid)
        elif kind is _Watch:
            self.callers[core.monitor(message.caller)] = message.caller
        elif message is _NEED:
            with self.table.lock:
                n = self._plan_starts()
            self._start_workers(n)
        elif kind is _Retire:
            self._retire(message.pid, kill=False)
        elif message is _SWEEP_MSG:
            self._sweep()
        elif message is _RETRY:
            self.retry = None
            with self.table.lock:
                n = self._plan_starts()
            self._start_workers(n)
        elif kind is _KillRetiring:
            held = self.stopping.get(message.ref)
            if held is not None:
                core.exit(held[0], "kill")
        # Anything else (an Exit from a process that is no worker, a stray message) is ignored.
        return None

    def _worker_exited(self, pid: Pid, reason: Any) -> None:
        t = self.table
        with t.lock:
            if pid not in t.workers:
                return  # not a worker, or one being retired (it is unlinked)
            t.workers.discard(pid)
            holder = t.leases.pop(pid, None)
            if holder is not None:
                t.void[pid] = holder
            else:
                try:
                    t.idle.remove(pid)
                except ValueError:
                    pass
                t.since.pop(pid, None)
            n = self._plan_starts()
        if not core.is_normal_exit(reason):
            _log.error("%s: worker %r exited: %r", self.label, pid, reason)
        self._start_workers(n)

    def _caller_down(self, caller: Pid) -> None:
        t = self.table
        kill = self.options.kill_on_caller_exit
        actions: list[tuple[int, Pid]] = []
        with t.lock:
            held = [w for w, h in t.leases.items() if h == caller]
        # As in _checkin: a worker that died too is not lent out again; it stays counted
        # until its exit comes (handled after this, by this process) and is replaced.
        dead = {w for w in held if not core.is_alive(w)}
        with t.lock:
            held = [w for w in held if t.leases.get(w) == caller]  # still its, now
            t.watched.discard(caller)
            for w in held:
                del t.leases[w]
            for w in [w for w, h in t.void.items() if h == caller]:
                del t.void[w]
            if any(w.caller == caller for w in t.waiters):
                if t.woken and t.waiters[0].caller == caller:
                    t.woken = False  # it was woken and will not come: settle wakes the next
                t.waiters = deque(w for w in t.waiters if w.caller != caller)
            if kill:
                for w in held:
                    t.workers.discard(w)
                    t.retiring.add(w)
                actions.extend(t.settle())
                n = self._plan_starts()
            else:
                actions = [(t.hand_off(w), w) for w in held if w not in dead]
                actions.extend(t.settle())
                n = 0
        if kill:
            for w in held:
                _log.info("%s: %r died holding worker %r: killing it", self.label, caller, w)
                self._retire(w, kill=True)
            self._start_workers(n)
        for action, w in actions:
            self._act(action, w)

    def terminate(self, reason: Any) -> None:
        t = self.table
        t.close(core.self(), reason)
        with t.lock:
            pids = [*t.workers, *t.retiring]
            t.workers.clear()
            t.retiring.clear()
            t.idle.clear()
            t.since.clear()
            t.leases.clear()
            t.void.clear()
        if self.retry is not None:
            core.cancel_timer(self.retry)
        for _, timer in self.stopping.values():
            if timer is not None:
                core.cancel_timer(timer)
        self.stopping.clear()
        shutdown_children([(pid, self.spec.shutdown) for pid in pids], self.label)


# -- the public face ---------------------------------------------------------------------------------


class Pool:
    """A pool of supervised worker processes; see the module documentation.

    Example::

        pool = Pool.start_link(Conn.child_spec("db://..."), size=2, max_overflow=1)
        pid = Pool.checkout(pool)
        try:
            otpy.GenServer.call(pid, "select 1")
        finally:
            Pool.checkin(pool, pid)
        Pool.transaction(pool, lambda pid: otpy.GenServer.call(pid, "select 1"))
        Pool.stop(pool)

    All functions take the pool's pid or its name.

    Waiters are served first come, first served; a checkout may take a worker
    that was just checked in ahead of waiters that have waited less than 1 ms
    (``HANDOFF_AFTER``), as Go's mutex does, so a busy pool does not pay a
    thread hand-off per transaction; no waiter is overtaken once it has waited
    1 ms.
    """

    __module__ = "otpy.pool"

    @attrs.frozen
    class Status:
        """What ``Pool.status`` reports.

        Example::

            Pool.status(pool)   # Pool.Status(state='ready', available=5, overflow=0,
                                #             checked_out=0, waiting=0)

        Fields:
            state: ``"ready"`` (a worker is idle), ``"overflow"`` (none is
                idle, and more overflow workers may start) or ``"full"``
                (none is idle, and the overflow is at ``max_overflow``).
            available: idle workers (while waiters are in line, the oldest
                one has been woken to take one).
            overflow: workers beyond ``size`` (running or being started).
            checked_out: workers lent out now.
            waiting: checkouts waiting for a worker.
        """

        state: Literal["ready", "overflow", "full"]
        available: int
        overflow: int
        checked_out: int
        waiting: int

    Status.__module__ = "otpy.pool"

    @staticmethod
    def start_link(
        worker_spec: object,
        size: int = 5,
        max_overflow: int = 10,
        strategy: Strategy = "lifo",
        overflow_ttl: float = 0.0,
        on_caller_exit: CallerExit = "kill",
        name: object = None,
    ) -> Pid:
        """Start a pool linked to the caller; returns once its ``size`` workers were started.

        A worker that fails to start is logged and tried again with backoff in
        the background; the pool starts anyway. See the module documentation
        for the options.

        Raises:
            ValueError / TypeError: a bad option (the message names it and what is allowed).
            otpy.AlreadyStartedError: ``name`` is taken.
        """
        options = _options(worker_spec, size, max_overflow, strategy, overflow_ttl, on_caller_exit)
        _check_name(name)
        pid = _PoolServer.start_link(options, name=name)
        assert pid is not None
        return pid

    @staticmethod
    def start(
        worker_spec: object,
        size: int = 5,
        max_overflow: int = 10,
        strategy: Strategy = "lifo",
        overflow_ttl: float = 0.0,
        on_caller_exit: CallerExit = "kill",
        name: object = None,
    ) -> Pid:
        """Like :meth:`start_link`, without the link."""
        options = _options(worker_spec, size, max_overflow, strategy, overflow_ttl, on_caller_exit)
        _check_name(name)
        pid = _PoolServer.start(options, name=name)
        assert pid is not None
        return pid

    @staticmethod
    def child_spec(
        worker_spec: object,
        *,
        id: Any = None,
        restart: str | None = None,
        shutdown: Any = attrs.NOTHING,
        **options: Any,
    ) -> ChildSpec:
        """A child spec that runs this pool under a supervisor.

        ``options`` are :meth:`start_link`'s (checked now); ``id`` defaults to
        ``Pool``, ``type`` is ``"supervisor"`` (the pool supervises its
        workers), so ``shutdown`` defaults to None: it waits for its workers.

        Example::

            otpy.Supervisor.start_link([Pool.child_spec(Conn.child_spec(url), size=4, name="db")])
        """
        start_options = dict(options)
        name = start_options.pop("name", None)
        _options(worker_spec, **start_options)
        _check_name(name)
        return spec_with(
            Pool if id is None else id,
            (Pool.start_link, (worker_spec,), options),
            restart=restart,
            shutdown=shutdown,
            type="supervisor",
        )

    @staticmethod
    def stop(pool: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the pool: waiting checkouts fail, every worker stops (each within its
        spec's ``shutdown``, then killed), then the pool exits with ``reason``.

        Raises:
            otpy.NoProcError: the pool is not alive.
            otpy.Timeout: it did not stop within ``timeout``.
        """
        GenServer.stop(pool, reason, timeout)

    @staticmethod
    def checkout(pool: object, timeout: float | None = 5.0) -> Pid:
        """Borrow a worker: an idle one, a new overflow worker, or the next one checked in.

        Waiting checkouts are served in the order they came; a new checkout
        may take a worker just checked in ahead of them only while the oldest
        has waited less than ``HANDOFF_AFTER`` (1 ms). ``timeout=0`` never
        waits; ``None`` waits as long as it takes. A worker that comes
        free just as the timeout passes is either returned (it came first) or
        goes to the next in line: a checkout that raises ``Timeout`` holds and
        reserves nothing.

        Raises:
            otpy.Timeout: no worker came free within ``timeout``; nothing stays reserved.
            otpy.NoProcError: the pool is not alive.
            otpy.ExitError: the pool stopped while the checkout waited.
        """
        return _checkout(_table_of(pool, "Pool.checkout"), _timeout(timeout))

    @staticmethod
    def checkin(pool: object, pid: Pid) -> None:
        """Give a worker back (any process may check in what was checked out).

        Checking in a worker that died meanwhile does nothing (the pool replaced it).

        Raises:
            ValueError: ``pid`` is not checked out from this pool.
            otpy.NoProcError: the pool is not alive.
        """
        if type(pid) is not Pid:
            raise TypeError(
                f"Pool.checkin takes the pid that Pool.checkout returned; got {pid!r} "
                f"of type {type(pid).__name__}"
            )
        _checkin(_table_of(pool, "Pool.checkin"), pid, "Pool.checkin")

    @staticmethod
    def worker(pool: object, timeout: float | None = 5.0) -> AbstractContextManager[Pid]:
        """A context manager that checks a worker out and gives its pid; it is checked
        in when the block ends, also when it raises.

        Example::

            with Pool.worker("db") as conn:
                otpy.GenServer.call(conn, "select 1")

        Raises (on enter):
            otpy.Timeout, otpy.NoProcError, otpy.ExitError: as :meth:`checkout`.
        """
        return _Worker(pool, _timeout(timeout))

    @staticmethod
    def transaction(pool: object, fn: Callable[[Pid], T], timeout: float | None = 5.0) -> T:
        """Run ``fn(worker)`` with a checked-out worker and return its value; the worker
        is checked in afterwards, also when ``fn`` raises (the exception propagates).

        Example::

            rows = Pool.transaction("db", lambda conn: otpy.GenServer.call(conn, "select 1"))

        Raises:
            otpy.Timeout, otpy.NoProcError, otpy.ExitError: as :meth:`checkout`.
        """
        if not callable(fn):
            raise TypeError(f"Pool.transaction needs a function of the worker's pid; got {fn!r}")
        table = _table_of(pool, "Pool.transaction")
        pid = _checkout(table, _timeout(timeout))
        try:
            return fn(pid)
        finally:
            _checkin(table, pid, "Pool.transaction")

    @staticmethod
    def status(pool: object) -> Pool.Status:
        """``Pool.Status(state, available, overflow, checked_out, waiting)``, read now.

        Raises:
            otpy.NoProcError: the pool is not alive.
        """
        return _table_of(pool, "Pool.status").status()
