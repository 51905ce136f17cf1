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

* Waiters are served first come, first served: a worker checked in goes to
  the oldest waiting checkout; a checkout never overtakes a waiting one.
* A worker that dies is replaced, whether idle or checked out; the checkout
  of a worker that died is void (checking it in afterwards does nothing).
* A worker that fails to start (its start function raises or returns
  something else than a pid) does not crash the pool: the failure is logged
  on the ``otpy.pool`` logger and the start is tried again after a growing
  delay; checkouts wait for it or time out meanwhile.
* ``checkout(pool, timeout=0)`` never waits: an idle worker or
  ``otpy.Timeout`` at once (it does not start an overflow worker either).
* Telemetry: ``("otpy", "pool", "checkout", "start")`` (measurements
  ``monotonic_time``, ``system_time``; metadata ``pool``) when a checkout
  begins and ``("otpy", "pool", "checkout", "stop")`` (``duration``: the
  seconds it waited; metadata ``pool``, ``worker``) when it got a worker. A
  checkout that raises emits no stop event. ``pool`` is the pool's name, else its pid.

How it is built, and the timeout rule: the pool's state is one table behind
one lock, reached from the pool's pid (as ``otpy.Registry`` does); a checkout
that finds an idle worker and a check-in with nobody waiting never pass
through the pool's process: each is one locked step on the caller's thread.
The pool's process does what needs a process: it starts, replaces and stops
workers, and it monitors every process that has checked out from it (for as
long as that process lives), so it can act when one dies holding a worker.
A waiting checkout is an entry in the table's FIFO; the check-in (or new
worker) that serves it resolves the entry's one-shot reply *and* records the
lease in the same locked step. The waiter's timeout and that reply race on
the reply's own test-and-set: if the grant wins, the checkout returns the
worker even though its time was up; if the timeout wins, the grant fails and
the worker goes to the next waiter (or back to the pool), and the timed-out
caller removes its entry under the lock before it raises. So a checkout that
times out leaves nothing reserved and nothing granted, and nothing has to be
cancelled later. A waiter that dies is settled the same way: its reply is
abandoned when it dies, so a grant skips it even before the pool's process has
seen its ``Down``.

What fairness costs: a checkout that finds an idle worker and a check-in with
nobody waiting take one lock and hand nothing to another thread. When more
callers than workers compete, first come, first served means that every
worker checked in goes to a caller that is asleep, so each checkout costs a
thread hand-off; a ``queue.Queue`` of objects is faster there because the
running thread takes back what it just returned, and its waiters may wait
without bound.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import attrs

from . import _core as core
from . import telemetry
from ._child_spec import BRUTAL_KILL, ChildSpec, spec_with
from ._core import Down, Exit, Pid, Ref
from ._exceptions import NoProcError, Timeout
from ._gen_server import GenServer
from ._supervisor import (
    Backoff,
    _ChildStartFailed,
    child_spec_of,
    shutdown_children,
    start_child_process,
    supervisor_label,
)

__all__ = ["CallerExit", "Pool", "Strategy"]

_log = logging.getLogger("otpy.pool")

Strategy = Literal["lifo", "fifo"]
CallerExit = Literal["kill", "checkin"]
_STRATEGIES = ("lifo", "fifo")
_CALLER_EXITS = ("kill", "checkin")

_START: Final = ("otpy", "pool", "checkout", "start")
_STOP: Final = ("otpy", "pool", "checkout", "stop")

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

# What a hand-off leaves to do, outside the lock:
_NOTHING = 0
_RETIRE = 1  # the worker was moved to `retiring`: the pool's process must stop it
_SWEEP = 2  # an excess worker went idle with a ttl: the pool's process must time it
_NOT_OUT = 3  # (checkin) the pid is not checked out from this pool


class _Waiter:
    """A checkout waiting in line; ``reply`` resolves to the worker."""

    __slots__ = ("caller", "reply")

    def __init__(self, caller: Pid) -> None:
        self.caller = caller
        self.reply = core.Reply()


class _Table:
    """A pool's state, shared by its callers and its process (see above).

    Invariant: ``idle`` is empty while ``waiters`` is not (a free worker goes to
    the oldest waiter first), so a checkout never overtakes a waiting one.
    """

    __slots__ = (
        "closed",
        "ident",
        "idle",
        "leases",
        "lifo",
        "lock",
        "max_overflow",
        "pool",
        "retiring",
        "since",
        "size",
        "starting",
        "sweeping",
        "ttl",
        "void",
        "waiters",
        "watched",
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
        self.watched: set[Pid] = set()  # callers the pool monitors (or is told to)
        self.retiring: set[Pid] = set()  # workers being stopped (no longer lent out)
        self.starting = 0  # worker starts the pool's process has decided on and not finished
        self.sweeping = False  # a _SWEEP_MSG (message or timer) is on its way to the pool
        self.closed = False  # the pool stopped: nothing is lent out any more

    def excess(self) -> bool:
        return len(self.workers) + self.starting > self.size

    def take(self, caller: Pid) -> Pid:
        """Lend an idle worker to ``caller`` (there is one)."""
        pid = self.idle.pop() if self.lifo else self.idle.popleft()
        self.leases[pid] = caller
        if self.ttl:
            del self.since[pid]
        return pid

    def hand_off(self, pid: Pid) -> int:
        """Give a free worker to the oldest waiter, else make it idle, or retire it."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.reply.resolve(True, pid):  # else that checkout timed out or its caller died
                self.leases[pid] = waiter.caller
                return _NOTHING
        if self.excess():
            if not self.ttl:
                self.workers.discard(pid)
                self.retiring.add(pid)
                return _RETIRE
            self.idle.append(pid)
            self.since[pid] = time.monotonic()
            if self.sweeping:
                return _NOTHING
            self.sweeping = True
            return _SWEEP
        self.idle.append(pid)
        if self.ttl:
            self.since[pid] = time.monotonic()
        return _NOTHING

    def remove_waiter(self, waiter: _Waiter) -> None:
        try:
            self.waiters.remove(waiter)
        except ValueError:
            pass  # it was served or dropped meanwhile

    def close(self, pid: Pid, reason: Any) -> None:
        """The pool ends (its exit hook, and the start of its terminate): fail every waiter."""
        with self.lock:
            self.closed = True
            waiters = list(self.waiters)
            self.waiters.clear()
        for waiter in waiters:
            waiter.reply.resolve(False, reason)

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
    telemetry.execute(
        _START, {"monotonic_time": t0, "system_time": time.time()}, {"pool": table.ident}
    )
    while True:
        with table.lock:
            pid, waiter, need, watch = _step(table, me, timeout)
        if not watch:
            break
        # Not monitored yet (or the pool saw this process die: then this send raises,
        # as the process is dead, and no worker is taken).
        try:
            _send(table, _Watch(me))
        except BaseException:
            with table.lock:
                table.watched.discard(me)
            raise
    if pid is None:
        pid = _wait(table, waiter, need, timeout, t0)
    telemetry.execute(
        _STOP, {"duration": time.monotonic() - t0}, {"pool": table.ident, "worker": pid}
    )
    return pid


def _step(
    table: _Table, me: Pid, timeout: float | None
) -> tuple[Pid | None, _Waiter | None, bool, bool]:
    """One try at a checkout, under the lock: ``(worker, waiter, need, watch)``.

    A worker if one is idle and nobody waits; else a waiter put in line
    (``need``: the pool's process must start a worker for it); ``watch``: the
    caller must first have the pool monitor it (it is put in ``watched`` now).
    """
    if me not in table.watched:
        if table.closed:
            return None, None, False, False
        table.watched.add(me)
        return None, None, False, True
    if table.idle and not table.waiters and not table.closed:
        return table.take(me), None, False, False
    if timeout == 0 or table.closed:
        return None, None, False, False
    waiter = _Waiter(me)
    table.waiters.append(waiter)
    need = (
        len(table.workers) + table.starting < table.size + table.max_overflow
        and len(table.waiters) > table.starting
    )
    return None, waiter, need, False


def _wait(
    table: _Table, waiter: _Waiter | None, need: bool, timeout: float | None, t0: float
) -> Pid:
    """Wait in line for a worker (or raise what a checkout that got nothing raises)."""
    if waiter is None:
        what = f"Pool.checkout({table.ident!r})"
        with table.lock:
            closed = table.closed
        if closed:
            raise NoProcError(table.ident, what)
        raise Timeout(f"{what}, asking for an idle worker,", timeout)
    try:
        if need:
            _send(table, _NEED)
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - t0))
        granted: Pid = core.wait_reply(
            waiter.reply, left, lambda: f"Pool.checkout({table.ident!r})"
        )
    except Timeout:
        with table.lock:
            table.remove_waiter(waiter)
        raise Timeout(
            f"Pool.checkout({table.ident!r}), waiting for a free worker,", timeout
        ) from None
    except BaseException:
        with table.lock:
            table.remove_waiter(waiter)
        raise
    return granted


def _checkin(table: _Table, pid: Pid, what: str) -> None:
    with table.lock:
        holder = table.leases.pop(pid, None)
        if holder is not None:
            action = table.hand_off(pid)
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
    if action == _RETIRE:
        try:
            _send(table, _Retire(pid))
        except BaseException:  # the caller is dead: stop the worker without the pool's help
            with table.lock:
                table.retiring.discard(pid)
            core.kill_quietly(pid, unlink=table.pool)
            raise
    else:
        try:
            _send(table, _SWEEP_MSG)
        except BaseException:
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
        n = max(
            t.size - total,
            min(len(t.waiters) - t.starting, t.size + t.max_overflow - total),
            0,
        )
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
            while t.idle and not t.closed and t.excess():
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
            t.watched.discard(caller)
            held = [w for w, h in t.leases.items() if h == caller]
            for w in held:
                del t.leases[w]
            for w in [w for w, h in t.void.items() if h == caller]:
                del t.void[w]
            if any(w.caller == caller for w in t.waiters):
                t.waiters = deque(w for w in t.waiters if w.caller != caller)
            if kill:
                for w in held:
                    t.workers.discard(w)
                    t.retiring.add(w)
                n = self._plan_starts()
            else:
                actions = [(t.hand_off(w), w) for w in held]
                n = 0
        if kill:
            for w in held:
                _log.info("%s: %r died holding worker %r: killing it", self.label, caller, w)
                self._retire(w, kill=True)
            self._start_workers(n)
        else:
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
            available: idle workers.
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

        Waiting checkouts are served in the order they came. ``timeout=0``
        never waits; ``None`` waits as long as it takes. A worker that comes
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
