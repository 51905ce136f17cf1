"""Processes: mailbox, life cycle, links, monitors and exit signals.

A :class:`Process` is a small object, not a thread. Two kinds exist:

* **reactive** processes (GenServer, Agent, supervisors, stages) have a
  ``handler`` that the scheduler calls once per message on a pool thread; an
  idle reactive process holds no thread at all;
* **body** processes run a function from start to end on a pool thread (a
  ``spawn``-ed function, a Task); they hold that thread while they run, and
  ``receive`` blocks it. A plain thread that calls otpy gets a body-like
  process of its own (a *thread process*) whose body is the thread itself.

Mailbox. A ``SimpleQueue`` (thread-safe, never blocks a sender) plus a deque
of messages that a selective ``receive`` skipped (``_saved``, older than
anything in the queue, owned by the process). The order between one sender and
one receiver is the order of ``put``.

Death is immediate for the runtime. :meth:`Process.die` settles everything
under the process's lock at once (alive flag, links, monitors, name, watchers),
then outside the lock drops the mailbox, wakes a thread blocked in the process's
waits, removes it from the runtime, and sends exit signals and ``Down``
messages. Python cannot stop a running thread: code of a dead process that is
still running is stopped at its next otpy call (which raises
:class:`ProcessExit`), and, if it makes none within ``INTERRUPT_DELAY``
seconds, by an asynchronous exception (best effort: code that catches
``BaseException`` or waits outside otpy, e.g. in ``time.sleep``, sees it late).
Whatever such code produces later (replies, messages) is discarded, because a
dead process's sends are refused.

Lock order: ``Runtime._lock`` > ``Process._lock`` (two process locks: in the
order of :func:`_lock_order`) > ``Scheduler._lock``. No user code, and no other
object's locking method, runs while a process lock is held.

A process's ``_lock`` is one of ``LOCK_STRIPES`` locks, shared by the
processes whose pid ids are equal modulo ``LOCK_STRIPES`` (lock striping): a
lock costs 88 bytes, a process takes its own only for a few field updates, so
100,000 processes need not carry 100,000 locks. So code that holds a process
lock never takes another one, except through :func:`_lock_order`, which takes
a shared stripe once.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from types import MethodType
from typing import TYPE_CHECKING, Any

from .._exceptions import DeadlockError, ExitError, MailboxFullError, NoProcError, Timeout
from ..telemetry import _handlers_for
from ..telemetry import execute as _emit
from ._scheduler import SLOT_COST, ThreadState, _tls, thread_start_lock, thread_state
from ._types import KILL, KILLED, NORMAL, Down, Exit, Pid, Ref, is_normal_exit

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = [
    "BUDGET",
    "Call",
    "Process",
    "ProcessExit",
    "Reply",
    "blocking_wait",
    "call",
    "describe",
    "raise_dead",
    "receive",
    "sleep",
    "wait_done",
    "wait_reply",
    "wait_result",
]

_log = logging.getLogger("otpy.process")

_CRASH = ("otpy", "process", "crash")
_DROP = ("otpy", "mailbox", "drop")

BUDGET = 64
"""Messages a reactive process handles per turn before it yields its thread."""

INTERRUPT_DELAY = 0.2
"""Seconds a killed process's code may keep running before it is interrupted.

An asynchronous exception is a last resort: it can land between a library's
lock acquire and its ``try`` (logging's handlers, for one) and leave that lock
held. Code that reaches an otpy call or ends within this time never gets one.
"""

MAX_INLINE_DEPTH = 24
"""Nested inline runs one thread may stack before calls go through the pool."""

INLINE_MIN_TIMEOUT = 1.0
"""A call with a shorter timeout never runs the handler on the caller's thread.

Short timeouts are how callers ask for a prompt answer or an error; those
calls always go through the mailbox, where the timeout is exact. A call with a
longer timeout (the default is 5 s) to an idle server whose last handlers took
at most 1/20 of it may run inline; if that handler overruns the timeout after
all, the caller still gets ``Timeout``, when the handler returns.
"""

TIMEOUT_MAX = threading.TIMEOUT_MAX


class ProcessExit(BaseException):
    """Unwinds the code of a process that exits (or was killed).

    Raised by the next otpy call of a process that died, and by behaviours to
    stop their own process with ``reason``. It derives from ``BaseException``
    so that ``except Exception`` in user code lets it through.
    """

    def __init__(self, reason: object = None) -> None:
        super().__init__(reason)
        self.reason = reason


class _Wake:
    """Put into a dead process's queue to wake a thread blocked on it."""

    def __repr__(self) -> str:
        return "<otpy wake>"


_WAKE = _Wake()

LOCK_STRIPES = 1024
"""How many locks the processes' ``_lock`` fields share (see the module docstring)."""

_STRIPES = [threading.Lock() for _ in range(LOCK_STRIPES)]
_ONE_LOCK = contextlib.nullcontext()


def _lock_order(a: Process, b: Process) -> tuple[Any, Any]:
    """The locks of ``a`` and ``b`` in the order two of them are taken; one if they share it."""
    first, second = a._lock, b._lock
    if first is second:
        return first, _ONE_LOCK
    return (first, second) if id(first) < id(second) else (second, first)


def _call_plain(fn: Callable[[Any], None], msg: Any) -> None:
    """The handler of a process whose handler is not a bound method: ``fn(msg)``."""
    fn(msg)


class _NoMailbox(SimpleQueue):  # type: ignore[type-arg]
    """The mailbox of a process that was never sent a message: empty, made on the first put.

    A ``SimpleQueue`` costs about 160 bytes, and a server that is only ever
    called inline, or waits idle, never needs one: 100,000 of them are 16 MB
    lighter. Every such process shares this one, a ``SimpleQueue`` that stays
    empty: readers use it as it is (``empty``, ``qsize`` and ``get_nowait``
    are the queue's own, C-speed methods on the hottest paths), and a sender
    or a receiver that is about to wait swaps in a real one first
    (:meth:`Process.mailbox`). Putting into it, or waiting on it, is a bug.
    """

    __slots__ = ()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        raise AssertionError("this is a bug in otpy: a put into the shared empty mailbox")

    def put_nowait(self, item: Any) -> None:
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        raise AssertionError("this is a bug in otpy: a wait on the shared empty mailbox")

    def __repr__(self) -> str:
        return "<otpy no mailbox yet>"


_NO_MAILBOX: SimpleQueue[Any] = _NoMailbox()
"""Every process's ``_q`` until its first message."""
_ABANDONED = object()


class Reply:
    """A one-shot result: set once by a reply or by a death, waited for once.

    ``_claim`` is a Lock used as a test-and-set: whoever acquires it first
    (a reply, the target's death, the waiter's timeout or the waiter's death)
    decides the outcome; ``_done`` is released once the outcome is stored.
    """

    __slots__ = ("_claim", "_done", "ok", "value")

    def __init__(self) -> None:
        self._claim = threading.Lock()
        self._done = threading.Lock()
        self._done.acquire()
        self.ok = False
        self.value: Any = None

    def resolve(self, ok: bool, value: Any) -> bool:
        """Store the outcome unless one is stored already; True if this call won."""
        if not self._claim.acquire(False):
            return False
        self.ok = ok
        self.value = value
        self._done.release()
        return True

    def fail(self, reason: object) -> None:
        """The process this result depended on died with ``reason``."""
        self.resolve(False, reason)

    def abandon(self) -> None:
        """The waiter died; drop whatever comes later."""
        self.resolve(False, _ABANDONED)

    @property
    def done(self) -> bool:
        return self._claim.locked()

    def peek(self, timeout: float | None) -> bool:
        """Wait until resolved without consuming it: any number of waiters, any number of times."""
        got = self.wait(timeout)
        if got:
            self._done.release()
        return got

    def wait(self, timeout: float | None) -> bool:
        """Wait until resolved; False on timeout (the outcome may still come)."""
        if timeout is None:
            return self._done.acquire()
        return self._done.acquire(True, min(timeout, TIMEOUT_MAX))

    def settle_timeout(self) -> bool:
        """After a timed-out wait: True if the timeout won (no result will ever be kept)."""
        if self._claim.acquire(False):
            self.value = _ABANDONED
            return True
        self._done.acquire()  # a result won the race and is being stored right now
        return False


class Call(Reply):
    """The caller of a ``handle_call`` (``otpy.From``): answer it now or later.

    Example::

        def handle_call(self, request, caller):      # caller is an otpy.From
            self.waiting.append(caller)
            return otpy.NOREPLY                      # answer later ...

        def handle_info(self, message):
            otpy.GenServer.reply(self.waiting.pop(0), "done")   # ... here

    ``caller.pid`` is the calling process. An answer after the caller's
    timeout, or a second answer, is dropped: the first of a reply, the
    server's death or the caller's timeout decides the outcome.
    """

    __slots__ = ("pid", "request", "waker")

    def __init__(self, request: Any, pid: Pid, waker: Callable[[], None] | None = None) -> None:
        # Reply.__init__'s fields, set here without its call: one Call per GenServer.call.
        self._claim = threading.Lock()
        self._done = done = threading.Lock()
        done.acquire()
        self.ok = False
        self.value = None
        self.request = request
        self.pid = pid
        # Called once the call is resolved (a reply, a death, a timeout), for a caller
        # that awaits it without a thread (otpy.aio); None for a waiting thread.
        self.waker = waker

    def resolve(self, ok: bool, value: Any) -> bool:
        if not self._claim.acquire(False):
            return False
        self.ok = ok
        self.value = value
        self._done.release()
        waker = self.waker
        if waker is not None:
            waker()
        return True

    def reply(self, value: Any) -> None:
        """Answer the caller; later answers, or answers after a timeout, are dropped."""
        self.resolve(True, value)

    def __repr__(self) -> str:
        return f"<otpy.From {self.pid!r}{' (answered)' if self.done else ''}>"


def _interrupt_thread(tid: int) -> bool:
    """Raise ProcessExit asynchronously in thread ``tid``; False if no thread has that id.

    Never while the runtime is starting a thread: see ``thread_start_lock``.
    (A thread that user code starts at that very moment is not covered.)
    """
    with thread_start_lock:
        hit: int = ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(tid), ctypes.py_object(ProcessExit)
        )
    return hit == 1


def _clear_interrupt(tid: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)


def describe(obj: object) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if name is None:
        return repr(obj)
    module = getattr(obj, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _counted(msg: Any) -> bool:
    """Whether ``msg`` counts against a mailbox limit: everything but exit signals and Downs."""
    kind = type(msg)
    return kind is not Exit and kind is not Down and msg is not _WAKE


class _Bound:
    """The bookkeeping of a bounded mailbox (only processes given a ``mailbox_limit``).

    ``lock`` guards ``count``, ``dropped`` and ``waiters``.
    Invariant: ``count`` is at least the number of counted messages in the
    mailbox and at most ``limit`` (a sender counts its message before it puts
    it in the queue, the owner uncounts it when it takes it out).
    ``waiters`` are the Replies of ``"block"`` senders waiting for room, oldest
    first; each message taken out wakes one.
    """

    __slots__ = ("count", "dropped", "limit", "lock", "mode", "waiters")

    def __init__(self, limit: int, mode: str) -> None:
        self.lock = threading.Lock()
        self.limit = limit
        self.mode = mode
        self.count = 0
        self.dropped = 0
        self.waiters: deque[Reply] = deque()

    def release(self) -> None:
        with self.lock:
            self.count -= 1
            waiters = self.waiters
            if not waiters:
                return
            room = waiters.popleft()
        while not room.resolve(True, None):  # that sender gave up: wake the next one
            with self.lock:
                if not waiters:
                    return
                room = waiters.popleft()

    def forget(self, room: Reply) -> None:
        with self.lock:
            try:
                self.waiters.remove(room)
            except ValueError:
                pass

    def wake_all(self) -> None:
        """The owner died: every blocked sender stops waiting (its message is lost)."""
        with self.lock:
            waiters = list(self.waiters)
            self.waiters.clear()
        for room in waiters:
            room.resolve(True, None)


class Process:
    """The runtime's record of one process. Behaviours never touch its fields."""

    __slots__ = (
        "__weakref__",
        "_async_sent",
        "_body",
        "_bound",
        "_calling",
        "_dying",
        "_handler",
        "_heirs",
        "_hooks",
        "_hself",
        "_init",
        "_links",
        "_lock",
        "_monitoring",
        "_monitors",
        "_q",
        "_saved",
        "_sched",
        "_ts",
        "_wait",
        "_watchers",
        "alive",
        "behaviour",
        "callers",
        "ctx",
        "data",
        "handled",
        "host",
        "inline_cost",
        "label",
        "name",
        "parent",
        "pid",
        "reactive",
        "reason",
        "restarts",
        "rt",
        "thread_owned",
        "trap",
        "waker",
    )

    # _lock guards alive, _dying, reason, name, trap, _links, _monitors, _monitoring,
    # _watchers, _hooks, _wait, _ts (writes) and _async_sent. Reads of alive and
    # reason without the lock are deliberate fast paths (a dead process stays dead:
    # see the Invariant in die), re-checked under the lock where acting on them.
    #
    # Owned by whoever runs the process (holds _sched, or is its body thread), no lock:
    # _saved, _init, _handler, inline_cost (seconds per handled message, decaying: a
    # slow message raises it at once, each quick one halves it; callers read it
    # without a lock to decide on an inline run, and a stale value only picks the
    # slower path), handled (messages handled; others read a moment's value), _heirs
    # (the callers of the processes it starts, made once), ctx (the contextvars
    # context the process runs in: a reactive one's is entered only by whoever holds
    # _sched; a body's is set at spawn and dropped when the body ends).
    #
    # Written only by the process's own code, read by others without a lock:
    # _calling (the process it is blocked calling; see _check_deadlock), waker (set
    # while its code awaits a message without a thread; a sender reads it once and
    # calls it, and a stale None only means the awaiting side re-checks the mailbox
    # after arming), data (a behaviour's shared structure, itself locked).
    #
    # Set before the process runs and never changed after: pid, rt, reactive, parent,
    # callers, label, behaviour, thread_owned, host, _body, _bound (which has a lock
    # of its own). restarts is written once by the supervisor that started it, for
    # introspection only. _q is a SimpleQueue, safe from any thread, or _NO_MAILBOX
    # until the first message: it is replaced once, under _lock (mailbox()), and never
    # again; a reader that saw _NO_MAILBOX saw an empty mailbox, and whoever releases
    # the run flag reads _q afresh. _sched is the run flag, a test-and-set (see
    # _scheduler).

    def __init__(self, rt: Runtime, pid_id: int, *, reactive: bool, parent: Pid | None) -> None:
        self.rt = rt
        self.pid = Pid(rt.id, pid_id, self)
        self.reactive = reactive
        self.parent = parent
        self._q: SimpleQueue[Any] = _NO_MAILBOX  # see mailbox()
        self._sched = threading.Lock()
        self._lock = _STRIPES[pid_id % LOCK_STRIPES]  # shared: see the module docstring
        self.alive = True
        self._dying = False  # set once, by the first die(); alive turns False after the hooks
        self.reason: Any = None
        self.name: str | None = None
        self.trap = False
        self.thread_owned = False
        self._links: set[Process] | None = None
        self._monitors: dict[Ref, Process] | None = None
        self._monitoring: dict[Ref, Process] | None = None
        self._watchers: set[Reply] | None = None
        self._wait: Reply | Waiter | None = None
        self._saved: deque[Any] | None = None
        self._ts: ThreadState | None = None
        self._async_sent = False
        # A message is handled by _handler(_hself, msg): a bound method is kept as its
        # function and instance (see set_handler).
        self._handler: Callable[[Any, Any], None] | None = None
        self._hself: Any = None
        self._hooks: list[Callable[[Pid, Any], None]] | None = None
        self.data: Any = None  # a behaviour's own record of the process (e.g. a Registry table)
        self._init: Callable[[], None] | None = None
        self._body: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None
        self.inline_cost = 0.0
        self.label = ""
        self.behaviour = "process"  # what kind of process: "GenServer", "Task", "thread", ...
        self.handled = 0  # messages handled (Erlang's reductions); written by its runner only
        self.restarts = 0  # how often its supervisor restarted its child slot before it
        self._bound: _Bound | None = None
        self._calling: Process | None = None
        self.callers: tuple[Pid, ...] = ()
        self._heirs: tuple[Pid, ...] | None = None
        self.ctx: contextvars.Context | None = None
        # An asyncio task's own process (see _api.current): (task, spawned); None otherwise.
        self.host: tuple[Any, bool] | None = None
        # Called (from any thread) after a message is put in the mailbox, while the
        # process's code awaits one without a thread (otpy.aio); None otherwise.
        self.waker: Callable[[], None] | None = None

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"dead: {self.reason!r}"
        name = f" {self.name!r}" if self.name else ""
        return f"<otpy process {self.pid!r}{name} {self.label} ({state})>"

    # -- messages ----------------------------------------------------------

    def deliver(self, msg: Any, ts: ThreadState | None = None) -> None:
        """Put ``msg`` in the mailbox and make the process runnable if it is idle.

        ``ts`` is the sending thread's state, if the caller has it at hand.
        """
        if not self.alive:
            return
        q = self._q
        if q is _NO_MAILBOX:
            q = self.mailbox()
        q.put(msg)
        if self.reactive:
            # locked() first: a failed acquire costs ten times as much, and a busy
            # process (its flag held) is the common case under load. A stale
            # "locked" is safe: whoever holds the flag re-checks the mailbox after
            # releasing it (_release_sched), and our message is in it already.
            sched = self._sched
            if not sched.locked() and sched.acquire(False):
                self.rt.scheduler.submit(self, ts)
        elif self.waker is not None:
            waker = self.waker
            if waker is not None:  # read once: the awaiting code clears it when it wakes
                waker()

    def heirs(self) -> tuple[Pid, ...]:
        """The ``callers`` of a process this one starts: itself, then its own callers."""
        heirs = self._heirs
        if heirs is None:
            heirs = self._heirs = (self.pid, *self.callers)
        return heirs

    def bound(self, limit: int | None, on_full: str) -> None:
        """Give the (not yet running) process a mailbox of at most ``limit`` user messages."""
        if limit is not None:
            self._bound = _Bound(limit, on_full)

    def offer(
        self, msg: Any, how: str, sender: Process | None, ts: ThreadState | None, timeout: float | None
    ) -> bool:
        """Deliver a user message to a bounded mailbox (``_bound`` is set); False if dropped.

        ``how`` is ``"send"`` or ``"call"`` (may raise :class:`MailboxFullError`),
        ``"cast"`` (never raises: drops instead) or ``"timer"`` (nobody to raise
        to or to block: always drops). In ``"block"`` mode a sender waits for
        room as an otpy wait (``timeout`` bounds it: :class:`Timeout`); a
        process never waits for room in its own mailbox (that would never
        come), it is treated as in ``"raise"`` mode.

        Raises:
            MailboxFullError: the mailbox is full and ``on_full="raise"``.
            Timeout: ``"block"`` waited ``timeout`` seconds for room.
        """
        bound = self._bound
        assert bound is not None, "this is a bug in otpy: offer() to an unbounded mailbox"
        if not _counted(msg):
            self.deliver(msg)
            return True
        mode = bound.mode
        if mode == "block" and (how == "timer" or sender is self or sender is None):
            mode = "drop" if how in ("timer", "cast") else "raise"
        deadline = None
        while True:
            with bound.lock:
                if bound.count < bound.limit:
                    bound.count += 1
                    full = False
                else:
                    full = True
                    if mode == "block":
                        room = Reply()
                        bound.waiters.append(room)
                    elif mode == "drop" or how in ("cast", "timer"):
                        bound.dropped += 1
            if not full:
                self.deliver(msg)
                return True
            if mode != "block":
                if mode == "drop" or how in ("cast", "timer"):
                    if _handlers_for(_DROP):
                        _emit(_DROP, {"count": 1}, {"pid": self.pid, "limit": bound.limit})
                    return False
                raise MailboxFullError(self.pid, bound.limit)
            assert sender is not None and ts is not None
            if not self.alive:  # a death after we queued: it may have missed our Reply
                bound.forget(room)
                return False
            if deadline is None and timeout is not None:
                deadline = time.monotonic() + timeout
            remaining = None if deadline is None else deadline - time.monotonic()
            if not sender.set_wait(room):
                bound.forget(room)
                raise_dead(sender, ts)
            try:
                if remaining is None:
                    got = blocking_wait(ts, room.wait, None)
                else:
                    got = remaining > 0 and blocking_wait(ts, room.wait, min(remaining, TIMEOUT_MAX))
            finally:
                sender.set_wait(None)
            if not got and room.settle_timeout():
                bound.forget(room)
                if not sender.alive:
                    raise_dead(sender, ts)
                raise Timeout(f"{how} to the full mailbox of {self.pid!r}", timeout)
            if room.value is _ABANDONED or not sender.alive:
                raise_dead(sender, ts)
            if not self.alive:
                return False

    def put_back(self, msg: Any) -> None:
        """Make ``msg`` the next message to handle, before the mailbox (owner only).

        It counts as a message in the mailbox from now on, also against a limit
        (which it may pass: it is not refused).
        """
        saved = self._saved
        if saved is None:
            saved = self._saved = deque()
        saved.appendleft(msg)
        bound = self._bound
        if bound is not None and _counted(msg):
            with bound.lock:
                bound.count += 1

    def mailbox(self) -> SimpleQueue[Any]:
        """The mailbox, made now if the process has none yet (two first senders make one)."""
        q = self._q
        if q is not _NO_MAILBOX:
            return q
        new: SimpleQueue[Any] = SimpleQueue()  # made outside the lock: see kill_later
        with self._lock:
            q = self._q
            if q is _NO_MAILBOX:
                q = self._q = new
            return q

    def queue_len(self) -> int:
        return self._q.qsize() + (len(self._saved) if self._saved else 0)

    def _drain(self) -> None:
        q = self._q
        try:
            while True:
                q.get_nowait()
        except Empty:
            pass

    def pull_all(self) -> deque[Any]:
        """Move every queued message into the saved deque (owner only) and return it."""
        saved = self._saved
        if saved is None:
            saved = self._saved = deque()
        q = self._q
        while not q.empty():
            try:
                saved.append(q.get_nowait())
            except Empty:
                break
        return saved

    # -- running -----------------------------------------------------------

    def _leave(self, ts: ThreadState, prev: object) -> None:
        ts.proc = prev
        with self._lock:
            self._ts = None
            sent = self._async_sent
        if sent:
            _clear_interrupt(ts.tid)

    def run(self) -> None:
        """Run by a pool worker: a reactive turn, or a body from start to end."""
        if not self.reactive:
            self._run_body()
            return
        # A turn. The caller holds _sched (taken by whoever queued us).
        ts = _tls.ts  # thread_state(), without the call
        # The worker's hand-off slot is open for quick processes (see _scheduler).
        ts.slot = ts.pool is not None and self.inline_cost < SLOT_COST
        try:
            self._guarded(ts, self._handle_some)
        finally:
            ts.slot = False
        self._release_sched()

    def _guarded(
        self, ts: ThreadState, fn: Callable[..., None], *args: Any
    ) -> tuple[bool, BaseException | None]:
        """Run ``fn(*args)`` as this process's code on ``ts``'s thread: the one run guard.

        The thread counts as running the process (``ts.proc``) until ``fn``
        ends however it ends, and leaves it exactly once, also when an
        asynchronous interrupt lands in the ``finally``. A :class:`ProcessExit`
        ends the process with its reason; any other exception crashes it
        (logged, with the telemetry event).

        ``fn`` runs in the process's contextvars context. A process started
        from an empty context keeps none (``ctx`` is None) until its code sets
        a variable: each run gets an empty context (the thread's spare one,
        reused while it stays empty), which no one can tell from the one it
        would keep, and the first run that sets a variable leaves its context
        to the process for good. So 100,000 servers started from a plain
        script cost no context each.

        Returns:
            ``(True, None)`` if ``fn`` returned; ``(False, exc)`` if it raised
            (``exc`` is None for a ProcessExit); the process has ended then.
        """
        prev = ts.proc
        ts.proc = self
        self._ts = ts
        left = False  # whether _leave ran (an interrupt may cut it short)
        try:
            try:
                ctx = self.ctx
                if ctx is not None:
                    ctx.run(fn, *args)
                else:
                    # The thread's spare empty context (taken out, so that a nested
                    # inline run on this thread makes its own), else a new one.
                    ctx = ts.spare_ctx
                    if ctx is None:
                        ctx = contextvars.Context()
                    else:
                        ts.spare_ctx = None
                    try:
                        ctx.run(fn, *args)
                    finally:
                        if len(ctx):
                            self.ctx = ctx  # a variable was set: the process keeps its context
                        else:
                            ts.spare_ctx = ctx  # still empty: the next run here reuses it
            finally:
                self._leave(ts, prev)
                left = True
        except ProcessExit as exc:
            if not left:
                self._leave(ts, prev)
            self.exited(exc.reason)
            return False, None
        except BaseException as exc:
            if not left:
                self._leave(ts, prev)
            self.crash(exc)
            return False, exc
        return True, None

    def _handle_some(self) -> None:
        """One turn's work: the init if it has not run, then up to ``BUDGET`` messages.

        A turn that used its budget goes on with another while the run queue
        is empty: yielding is for the processes waiting their turn, and with
        none waiting it would only cost a new turn. Each budget's messages are
        counted and timed when it ends, and the hand-off slot stays open only
        while the process stays quick.
        """
        ts = self._ts
        assert ts is not None, "this is a bug in otpy: a turn outside its run guard"
        init = self._init
        if init is not None:
            self._init = None
            slot, ts.slot = ts.slot, False  # an init is not timed: it gets no slot
            try:
                init()
            finally:
                ts.slot = slot
        handler = self._handler
        assert handler is not None, "this is a bug in otpy: reactive process without handler"
        hself = self._hself
        q = self._q
        get = q.get_nowait
        bound = self._bound
        # Messages known to be in the mailbox: only this turn takes from it, so a get()
        # for one of them cannot fail, unless a handler moved messages aside (a selective
        # receive): then get() raises Empty and the mailbox is counted again.
        ready = 0
        pool = ts.pool
        while True:  # a budget of messages a round
            n = BUDGET
            start = time.monotonic()
            try:
                while n:
                    saved = self._saved
                    if saved:
                        msg = saved.popleft()
                    else:
                        if not ready:
                            ready = q.qsize()  # counting is cheaper than a get() that raises Empty
                            if not ready:
                                return
                        try:
                            msg = get()
                        except Empty:
                            ready = 0
                            continue
                        ready -= 1
                        if msg is _WAKE:
                            return  # only a dead process gets one
                    if not self.alive:
                        return  # a message that slipped in as it died: dropped with it
                    if ts.next:
                        # Another message follows: the process in the slot must not wait for it.
                        pool.flush_slot(ts)  # type: ignore[union-attr]
                    if bound is not None and _counted(msg):
                        bound.release()
                    handler(hself, msg)
                    n -= 1
            finally:
                # Count and time this budget's messages; a slow process closes its slot.
                handled = BUDGET - n
                if handled:
                    self.handled += handled
                    cost = max((time.monotonic() - start) / handled, self.inline_cost * 0.5)
                    self.inline_cost = cost
                    if cost >= SLOT_COST:
                        ts.slot = False
            # The budget is used up. _pending is read without the scheduler's lock: a
            # stale value only makes the turn end one budget early or late.
            if pool is None or pool._pending:
                return

    def _release_sched(self) -> None:
        # Invariant: only whoever holds the run flag runs the process and releases it
        # (releasing it twice is a bug, and the lock says so: RuntimeError).
        sched = self._sched
        sched.release()
        if self.alive and (self._saved or not self._q.empty()) and sched.acquire(False):
            self.rt.scheduler.submit(self)

    def try_claim(self) -> bool:
        """Take the run flag of an idle reactive process with an empty mailbox."""
        if not self._sched.acquire(False):
            return False
        if self.alive and self._init is None and not self._saved and self._q.empty():
            return True
        self._release_sched()
        return False

    def set_handler(self, handler: Callable[[Any], None]) -> None:
        """Make ``handler(msg)`` handle the messages of this reactive process (before it runs).

        A bound method (a GenServer's handler is one) is kept as its function
        and instance: the method object would cost 64 bytes a process.
        """
        if type(handler) is MethodType:
            self._handler, self._hself = handler.__func__, handler.__self__
        else:
            self._handler, self._hself = _call_plain, handler

    def run_inline(self, msg: Any, ts: ThreadState) -> None:
        """Handle one message on the calling thread; the caller holds the run flag."""
        handler = self._handler
        assert handler is not None, "this is a bug in otpy: reactive process without handler"
        self.handled += 1
        self._run_here(ts, handler, self._hself, msg)

    def start_inline(self, ts: ThreadState) -> None:
        """Run a new reactive process's init on the calling thread (run flag held).

        As on a pool thread, the init is not timed: a slow start says nothing
        of the handlers (a wait in otpy still marks the process as blocking).
        """
        init = self._init
        assert init is not None, "this is a bug in otpy: a process started twice"
        self._init = None
        self._run_here(ts, init, timed=False)

    def _run_here(
        self, ts: ThreadState, fn: Callable[..., None], *args: Any, timed: bool = True
    ) -> None:
        """Run the process's ``fn(*args)`` on the calling thread, then release the run flag.

        A crash here is the process's crash, not the caller's. A
        ``BaseException`` that is not otpy's (``KeyboardInterrupt``) crashes the
        process and then propagates to the caller too. The time it took is left
        in ``ts.elapsed`` and, if ``timed``, feeds ``inline_cost``.
        """
        ts.depth += 1
        slot = ts.slot
        ts.slot = False  # the code of another process: its sends get no slot
        start = time.monotonic()
        try:
            if ts.next:
                # It runs for as long as it takes: what waits in this thread's slot
                # goes to the run queue first.
                ts.pool.flush_slot(ts)  # type: ignore[union-attr]
            _, exc = self._guarded(ts, fn, *args)
        finally:
            ts.slot = slot
            ts.depth -= 1
            ts.elapsed = elapsed = time.monotonic() - start
            if timed:
                self.inline_cost = max(elapsed, self.inline_cost * 0.5)
            self._release_sched()
        if exc is not None and not isinstance(exc, Exception):
            raise exc

    def _run_body(self) -> None:
        body = self._body
        self._body = None
        assert body is not None, "this is a bug in otpy: body process run twice"
        try:
            returned = self._guarded(thread_state(), self._call_body, *body)[0]
        finally:
            self.ctx = None  # the body's context, and what it set there, end with the body
        if returned:
            self.die(NORMAL)

    def _call_body(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.alive:
            fn(*args, **kwargs)

    def exited(self, reason: Any) -> None:
        """The process's own code ended it with ``reason`` (it raised :class:`ProcessExit`)."""
        if not self.alive:
            return  # killed first: that death stands
        name = self.name
        if self.die(reason) and not is_normal_exit(reason) and _handlers_for(_CRASH):
            _emit(_CRASH, {}, {"pid": self.pid, "name": name, "reason": reason})

    def crash(self, exc: BaseException) -> None:
        """The process's code raised ``exc``: log it (unless the process is dead already) and die."""
        if not self.alive:
            return
        name = self.name
        _log.error(
            "process %r%s (%s) crashed: %r",
            self.pid,
            f" ({name})" if name else "",
            self.label,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        if self.die(exc) and _handlers_for(_CRASH):
            _emit(_CRASH, {}, {"pid": self.pid, "name": name, "reason": exc})

    # -- death -------------------------------------------------------------

    def die(self, reason: Any) -> bool:
        """End the process with ``reason`` now; False if it was already dead (or dying).

        Exit hooks run first, while the process still counts as alive: a link
        or monitor set meanwhile is set on a live process and fires after the
        hooks, so nobody can see the process dead before the hooks' effect.
        """
        with self._lock:
            if self._dying:
                return False
            # Invariant: _dying and then alive=False are set once and never cleared, so
            # a process seen dead without the lock is dead (the fast paths rely on it).
            self._dying = True
            hooks, self._hooks = self._hooks, None
            if not hooks:
                settled = self._settle(reason)
        if hooks:
            for hook in hooks:
                try:
                    hook(self.pid, reason)
                except BaseException:
                    _log.critical("this is a bug in otpy: exit hook %r failed", hook, exc_info=True)
            with self._lock:
                settled = self._settle(reason)
        links, monitors, monitoring, watchers, wait, name, ts = settled
        if not self._q.empty():
            self._drain()
        if self._bound is not None:
            self._bound.wake_all()
        if ts is not None:  # a thread runs its code: wake it if it waits on the mailbox
            self.mailbox().put(_WAKE)
        if wait is not None:
            wait.abandon()
        if ts is not None and ts.proc is self and not ts.waiting and not self.thread_owned:
            self.rt.haunted_by(self, ts)
        self.rt.forget(self, name)
        if monitoring:
            for ref, target in monitoring.items():
                target.drop_monitor(ref)
        if links or watchers or monitors:
            _fan_out(self, reason, links, watchers, monitors)
        return True

    def _signal_all(
        self,
        reason: Any,
        links: set[Process] | None,
        watchers: set[Reply] | None,
        monitors: dict[Ref, Process] | None,
    ) -> None:
        """Tell the dead process's links, waiters and monitors (one job of :func:`_fan_out`)."""
        if links:  # before the waiters wake: a linked waiter dies first, as in Erlang
            for other in links:
                other.exit_signal(self.pid, reason, self)
        if watchers:
            for reply in watchers:
                reply.fail(reason)
        if monitors:
            pid = self.pid
            for ref, watcher in monitors.items():
                watcher.deliver(Down(ref, pid, reason))

    def _settle(self, reason: Any) -> tuple[Any, ...]:
        """Mark the process dead and take what its death must settle (``_lock`` held)."""
        self.alive = False
        self.reason = reason
        settled = (
            self._links,
            self._monitors,
            self._monitoring,
            self._watchers,
            self._wait,
            self.name,
            self._ts,
        )
        self._links = self._monitors = self._monitoring = None
        self._watchers = None
        self._wait = None
        self.name = None
        return settled

    def interrupt(self, ts: ThreadState) -> bool:
        """Best effort: raise ProcessExit in the thread still running a dead process's code.

        Returns False if it should be tried again later (the thread id was ambiguous).
        """
        with self._lock:
            if self._ts is not ts or ts.proc is not self or ts.waiting or self._async_sent:
                return True
            self._async_sent = _interrupt_thread(ts.tid)
            return self._async_sent

    def exit_signal(self, sender: Pid, reason: Any, via_link: Process | None = None) -> None:
        """Receive an exit signal, following Erlang's rules.

        ``via_link`` is the linked process that died (the signal breaks the
        link); ``None`` for a signal sent with ``otpy.exit``.
        """
        if via_link is None and reason == KILL:
            self.die(KILLED)
            return
        with self._lock:
            if not self.alive:
                return
            if via_link is not None:
                links = self._links
                if links is None or via_link not in links:
                    return  # unlinked meanwhile: the signal is void
                links.discard(via_link)
            trap = self.trap
        if trap:
            self.deliver(Exit(sender, reason))
        elif reason == NORMAL:
            if via_link is None and sender == self.pid:
                self.die(NORMAL)
        else:
            self.die(reason)

    # -- links, monitors, watchers -----------------------------------------

    def add_link(self, other: Process) -> bool:
        """Link both ways; False if either is dead."""
        first, second = _lock_order(self, other)
        with first, second:
            if not (self.alive and other.alive):
                return False
            if self._links is None:
                self._links = set()
            if other._links is None:
                other._links = set()
            self._links.add(other)
            other._links.add(self)
        return True

    def remove_link(self, other: Process) -> None:
        first, second = _lock_order(self, other)
        with first, second:
            if self._links:
                self._links.discard(other)
            if other._links:
                other._links.discard(self)

    def add_monitor(self, ref: Ref, watcher: Process) -> bool:
        """``watcher`` monitors this process; False if this process is dead."""
        with self._lock:
            if not self.alive:
                return False
            if self._monitors is None:
                self._monitors = {}
            self._monitors[ref] = watcher
        with watcher._lock:
            if watcher.alive:
                if watcher._monitoring is None:
                    watcher._monitoring = {}
                watcher._monitoring[ref] = self
                return True
        self.drop_monitor(ref)
        return True

    def drop_monitor(self, ref: Ref) -> bool:
        with self._lock:
            if self._monitors is None:
                return False
            return self._monitors.pop(ref, None) is not None

    def forget_monitor(self, ref: Ref) -> Process | None:
        """Remove ``ref`` from the monitors this process holds; the target, if any."""
        with self._lock:
            if self._monitoring is None:
                return None
            return self._monitoring.pop(ref, None)

    def watch(self, reply: Reply) -> bool:
        """``reply`` fails with this process's exit reason when it dies; False if dead now."""
        with self._lock:
            if not self.alive:
                return False
            if self._watchers is None:
                self._watchers = set()
            self._watchers.add(reply)
            return True

    def add_hook(self, hook: Callable[[Pid, Any], None]) -> bool:
        """Run ``hook(pid, reason)`` when the process dies, before links and monitors fire.

        False (and the hook is not kept) if the process is dead already.
        """
        with self._lock:
            if self._dying:
                return False
            if self._hooks is None:
                self._hooks = []
            self._hooks.append(hook)
            return True

    def remove_hook(self, hook: Callable[[Pid, Any], None]) -> None:
        with self._lock:
            if self._hooks and hook in self._hooks:
                self._hooks.remove(hook)

    def unwatch(self, reply: Reply) -> None:
        with self._lock:
            if self._watchers:
                self._watchers.discard(reply)

    def set_wait(self, reply: Reply | Waiter | None) -> bool:
        """Register what the process's thread is about to wait on; False if dead."""
        with self._lock:
            if not self.alive:
                return False
            self._wait = reply
            return True

    def stopped_by_parent(self) -> bool:
        """Whether a live parent process (not a plain thread) is linked to this one."""
        parent = self.parent
        pp = parent._proc if parent is not None else None
        if pp is None or pp.thread_owned or not pp.alive:
            return False
        with self._lock:
            return self._links is not None and pp in self._links

    def set_trap(self, flag: bool) -> bool:
        with self._lock:
            old = self.trap
            self.trap = flag
            return old

    # -- introspection -------------------------------------------------------

    def snapshot(self) -> dict[str, Any] | None:
        with self._lock:
            if not self.alive:
                return None
            ts = self._ts
            links = [p.pid for p in self._links] if self._links else []
            monitors = [p.pid for p in self._monitoring.values()] if self._monitoring else []
            monitored_by = [p.pid for p in self._monitors.values()] if self._monitors else []
            info: dict[str, Any] = {
                "pid": self.pid,
                "name": self.name,
                "links": links,
                "monitors": monitors,
                "monitored_by": monitored_by,
                "trap_exits": self.trap,
                "parent": self.parent,
            }
        if self.host is not None:  # an asyncio task: waiting unless it runs otpy code now
            busy = ts is not None and ts.proc is None and not ts.waiting and self.waker is None
            status = "running" if busy else "waiting"
            thread: str | None = None if ts is None else _thread_name(ts.tid)
        elif ts is not None and (ts.proc is self or self.thread_owned):
            status = "waiting" if ts.waiting else "running"
            thread = _thread_name(ts.tid)
        elif self.reactive and self._sched.locked():
            status, thread = "runnable", None
        else:
            status, thread = "waiting", None
        info["status"] = status
        info["thread"] = thread
        info["message_queue_len"] = self.queue_len()
        info["current"] = self.label
        info["behaviour"] = self.behaviour
        info["reductions"] = self.handled  # an unlocked read of a counter: a moment's value
        info["restarts"] = self.restarts
        bound = self._bound
        info["mailbox_limit"] = None if bound is None else bound.limit
        info["dropped"] = 0 if bound is None else bound.dropped
        return info


def _fan_out(
    proc: Process,
    reason: Any,
    links: set[Process] | None,
    watchers: set[Reply] | None,
    monitors: dict[Ref, Process] | None,
) -> None:
    """Send a death's exit signals, replies and ``Down`` messages, from a work list.

    A death can kill linked processes, whose deaths kill theirs, and so on: a
    chain of 10,000 linked processes dies in one cascade. Recursing would
    overflow the Python stack, so the first death on a thread drains a work
    list (``ThreadState.fanout``) and every death it causes on that thread
    appends its own job instead of recursing. Each dead process is settled at
    once (it is dead when ``die`` returns); only the signals it sends on wait
    their turn, in breadth-first order, and all of them are sent before the
    outermost ``die`` returns.
    """
    ts = thread_state()
    work = ts.fanout
    job = (proc, reason, links, watchers, monitors)
    if work is not None:
        work.append(job)
        return
    work = ts.fanout = deque((job,))
    interrupted: BaseException | None = None
    try:
        while work:
            dead, why, ls, ws, ms = work.popleft()
            try:
                dead._signal_all(why, ls, ws, ms)
            except Exception:
                _log.critical(
                    "this is a bug in otpy: signalling the death of %r failed", dead, exc_info=True
                )
            except BaseException as exc:
                # A KeyboardInterrupt (a signal handler's exception) landed here: the
                # other deaths still go out, then it propagates. What the interrupted
                # job had not sent yet is lost, rather than sent twice.
                interrupted = exc
    finally:
        ts.fanout = None
    if interrupted is not None:
        raise interrupted


def _thread_name(tid: int) -> str | None:
    for thread in threading.enumerate():
        if thread.ident == tid:
            return thread.name
    return None


# -- the operations a process performs on itself ------------------------------


BLOCKED_COST = 3600.0
"""The inline cost of a process whose handler blocked in an otpy wait."""


def blocking_wait(ts: ThreadState, wait: Callable[..., Any], *args: Any) -> Any:
    """Run ``wait(*args)`` as an otpy wait: the pool may add a thread meanwhile.

    A reactive process that blocks in a handler is not run inline by callers
    for a while (its cost is set high and halves with each quick message).
    """
    proc = ts.proc
    if proc is not None:
        proc.inline_cost = BLOCKED_COST  # type: ignore[attr-defined]
    pool = ts.pool
    ts.waiting = True
    if pool is not None:
        pool.flush_slot(ts)  # the thread will not run the slot's process soon
        pool.blocking()
    try:
        return wait(*args)
    finally:
        ts.waiting = False
        if pool is not None:
            pool.unblocked()


def raise_dead(proc: Process, ts: ThreadState) -> None:
    """The current process is dead: unwind its code (or, in a plain thread, raise ExitError)."""
    reason = proc.reason
    if proc.thread_owned:
        rt = proc.rt
        host = proc.host
        if host is None:
            if ts.thread_procs.get(rt) is proc:
                del ts.thread_procs[rt]
        elif not host[1] and ts.task_procs is not None:  # an adopted task gets a fresh one
            ts.task_procs.pop((rt, host[0]), None)
        raise ExitError(reason) from (reason if isinstance(reason, BaseException) else None)
    raise ProcessExit(reason)


def receive(
    proc: Process, ts: ThreadState, timeout: float | None, match: Callable[[Any], bool] | None
) -> Any:
    """Take the oldest message (that ``match`` accepts) from the mailbox of ``proc``."""
    msg = _take(proc, ts, timeout, match)
    proc.handled += 1
    bound = proc._bound
    if bound is not None and _counted(msg):
        bound.release()
    return msg


NOTHING = object()
"""What :func:`poll` returns when no message (that the predicate accepts) is there."""


def poll(proc: Process, ts: ThreadState, match: Callable[[Any], bool] | None) -> Any:
    """Take the oldest message (that ``match`` accepts) without waiting; else :data:`NOTHING`."""
    saved = proc._saved
    if saved:
        if match is None:
            msg = saved.popleft()
            _uncount(proc, msg)
            return msg
        for i, old in enumerate(saved):
            if match(old):
                del saved[i]
                _uncount(proc, old)
                return old
    q = proc._q
    while not q.empty():
        try:
            msg = q.get_nowait()
        except Empty:
            break
        if msg is _WAKE:
            if not proc.alive:
                raise_dead(proc, ts)
            continue
        if match is None or match(msg):
            _uncount(proc, msg)
            return msg
        if saved is None:
            saved = proc._saved = deque()
        saved.append(msg)
    if not proc.alive:
        raise_dead(proc, ts)
    return NOTHING


def _uncount(proc: Process, msg: Any) -> None:
    bound = proc._bound
    if bound is not None and _counted(msg):
        bound.release()


class Waiter:
    """A wait that something else wakes: an awaiting coroutine (``otpy.aio``), say.

    It stands where a thread's :class:`Reply` would in ``Process._wait``: the
    death of the waiting process calls :meth:`abandon`; a message for it calls
    the process's ``waker``, which an implementation points at :meth:`wake`.
    Subclasses define :meth:`wake`; it may be called from any thread, any
    number of times.
    """

    __slots__ = ()

    def wake(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        self.wake()


def _take(
    proc: Process, ts: ThreadState, timeout: float | None, match: Callable[[Any], bool] | None
) -> Any:
    saved = proc._saved
    if saved:
        if match is None:
            return saved.popleft()
        for i, old in enumerate(saved):
            if match(old):
                del saved[i]
                return old
    q = proc._q
    if q is _NO_MAILBOX:
        q = proc.mailbox()  # we may wait on it: it must be the one senders put into
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        msg: Any = _WAKE
        if not q.empty():
            try:
                msg = q.get_nowait()
            except Empty:
                msg = _WAKE
            if msg is _WAKE and not proc.alive:
                raise_dead(proc, ts)
        if msg is _WAKE:
            if deadline is None:
                msg = blocking_wait(ts, q.get)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout("receive()", timeout)
                try:
                    msg = blocking_wait(ts, q.get, True, min(remaining, TIMEOUT_MAX))
                except Empty:
                    raise Timeout("receive()", timeout) from None
            if msg is _WAKE:
                if not proc.alive:
                    raise_dead(proc, ts)
                continue
        if match is None or match(msg):
            return msg
        if saved is None:
            saved = proc._saved = deque()
        saved.append(msg)


What = str | Callable[[], str] | tuple[str, object, object]
"""What an operation that waits is called in its errors: a str, a callable that makes
one (only when an error needs it), or ``(name, dest, request)`` for ``name(dest, request)``:
a tuple costs a call less to make than a closure, and the collector less."""


def describe_wait(what: What) -> str:
    """The text of ``what`` (see :data:`What`)."""
    if isinstance(what, str):
        return what
    if type(what) is tuple:
        name, dest, request = what
        return f"{name}({dest!r}, {request!r})"
    return what()  # type: ignore[operator]


def wait_result(
    proc: Process,
    ts: ThreadState,
    reply: Reply,
    timeout: float | None,
    what: What,
) -> None:
    """Wait until ``reply`` is resolved, as process ``proc``.

    Raises:
        Timeout: nothing within ``timeout`` (a later result is dropped).
    """
    if not reply._claim.locked():  # not reply.done, without the property's call
        if not proc.set_wait(reply):
            raise_dead(proc, ts)
        try:
            got = blocking_wait(ts, reply.wait, timeout)
        finally:
            proc.set_wait(None)
        if not got and reply.settle_timeout():
            if not proc.alive:
                raise_dead(proc, ts)
            raise Timeout(describe_wait(what), timeout)
    else:
        reply.wait(None)
    if reply.value is _ABANDONED or not proc.alive:
        raise_dead(proc, ts)


def wait_reply(
    proc: Process,
    ts: ThreadState,
    reply: Reply,
    timeout: float | None,
    what: What,
) -> Any:
    """Wait for ``reply`` as process ``proc``; the value, or raise.

    Raises:
        Timeout: nothing within ``timeout`` (a later result is dropped).
        ExitError: the process the result depended on died with ``reply.value``.
    """
    wait_result(proc, ts, reply, timeout, what)
    if reply.ok:
        return reply.value
    raise ExitError(reply.value, describe_wait(what))


def wait_done(proc: Process, ts: ThreadState, reply: Reply, timeout: float | None) -> bool:
    """Wait until ``reply`` is resolved, without consuming it; False on timeout."""
    if not reply.done:
        if not proc.set_wait(reply):
            raise_dead(proc, ts)
        try:
            got = blocking_wait(ts, reply.peek, timeout)
        finally:
            proc.set_wait(None)
        if not proc.alive:
            raise_dead(proc, ts)
        if not got:
            return False
    reply.peek(None)
    if reply.value is _ABANDONED:
        raise_dead(proc, ts)
    return True


def sleep(proc: Process, ts: ThreadState, seconds: float | None) -> None:
    reply = Reply()
    if not proc.set_wait(reply):
        raise_dead(proc, ts)
    try:
        blocking_wait(ts, reply.wait, seconds)
    finally:
        proc.set_wait(None)
    if not proc.alive:
        raise_dead(proc, ts)


def call(
    proc: Process,
    ts: ThreadState,
    target: Process,
    request: Any,
    timeout: float | None,
    what: What,
) -> Call:
    """Send ``Call(request)`` to ``target`` and wait until it is answered.

    Returns the resolved Call: ``.ok`` and ``.value`` hold the reply, or
    ``.ok`` is False and ``.value`` is the exit reason of a target that died
    first. If ``target`` is reactive, idle and its recent handlers finished far
    inside ``timeout``, the calling thread runs the handler itself (no thread
    hand-off); otherwise the request goes through the mailbox.

    Raises:
        Timeout: no answer within ``timeout``.
        NoProcError: ``target`` is dead.
        ExitError: ``target`` is the caller itself.
    """
    msg = _open_call(proc, target, request, what)
    try:
        if _inline_ok(target, ts, timeout):
            _run_call_inline(proc, ts, target, msg, timeout, what)
            answered = msg._claim.locked()  # msg.done
            if not answered and not target.watch(msg):
                msg.fail(target.reason)
                answered = True
            if answered:
                # What wait_result does for a decided call, without its calls: the
                # handler answered on this thread (or the target died meanwhile).
                msg._done.acquire()
                if msg.value is _ABANDONED or not proc.alive:
                    raise_dead(proc, ts)
                return msg
        else:
            if not target.watch(msg):
                raise NoProcError(target.pid, describe_wait(what))
            if target._bound is None:
                target.deliver(msg)
            else:
                start = time.monotonic()
                _offer_call(target, msg, proc, ts, timeout)
                if timeout is not None:  # waiting for room took part of the timeout
                    left = max(0.0, timeout - (time.monotonic() - start))
                    try:
                        wait_result(proc, ts, msg, left, what)
                    except Timeout:
                        raise Timeout(describe_wait(what), timeout) from None
                    finally:
                        target.unwatch(msg)
                    return msg
        try:
            wait_result(proc, ts, msg, timeout, what)
        finally:
            target.unwatch(msg)
        return msg
    finally:
        proc._calling = None


def _open_call(proc: Process, target: Process, request: Any, what: What) -> Call:
    """The request of a call from ``proc`` to ``target``, recorded for deadlock detection.

    Raises:
        ExitError: ``target`` is ``proc`` (``"calling_self"``).
        DeadlockError: the call would close a cycle of blocked calls.
    """
    if target is proc:
        raise ExitError(
            "calling_self",
            f"{describe_wait(what)}: a process cannot call itself (it would deadlock)",
        )
    proc._calling = target
    if target._calling is not None:
        try:
            _check_deadlock(proc, target, what)
        except BaseException:
            proc._calling = None
            raise
    return Call(request, proc.pid)


def _inline_ok(target: Process, ts: ThreadState, timeout: float | None) -> bool:
    """Whether the caller may run ``target``'s handler itself; if so, it now holds the run flag."""
    return (
        target.reactive
        and ts.depth < MAX_INLINE_DEPTH
        and (
            target.inline_cost < BLOCKED_COST  # not opted out, not blocking lately
            if timeout is None
            else timeout >= INLINE_MIN_TIMEOUT and target.inline_cost * 20 <= timeout
        )
        and target.try_claim()
    )


def _run_call_inline(
    proc: Process,
    ts: ThreadState,
    target: Process,
    msg: Call,
    timeout: float | None,
    what: What,
) -> None:
    """Run ``target``'s handler for ``msg`` on the caller's thread (the run flag is held).

    Raises:
        Timeout: the handler overran on our thread: the caller's timeout had passed first.
    """
    target.handled += 1
    target._run_here(ts, target._handler, target._hself, msg)  # type: ignore[arg-type]  # run_inline
    if timeout is not None and ts.elapsed > timeout:  # ts.elapsed: what _run_here took
        if not proc.alive:
            raise_dead(proc, ts)
        msg.settle_timeout()
        raise Timeout(describe_wait(what), timeout)


def begin_call(
    proc: Process,
    ts: ThreadState,
    target: Process,
    request: Any,
    timeout: float | None,
    what: What,
    make_waiter: Callable[[], Waiter],
) -> Call:
    """Start a call whose caller will wait without a thread (``otpy.aio``).

    The same rules as :func:`call` (inline runs, deadlock detection, bounded
    mailboxes: a ``"block"`` mailbox refuses instead, since nothing may block
    here). The returned call may be answered already (``.done``: an inline
    run answered it); otherwise ``make_waiter()`` made the waiter that its
    answer, or the caller's death, wakes, and the caller waits for that, then
    calls :func:`end_call`.

    Raises:
        NoProcError, ExitError, DeadlockError, MailboxFullError, Timeout: as :func:`call`.
    """
    msg = _open_call(proc, target, request, what)
    try:
        if _inline_ok(target, ts, timeout):
            _run_call_inline(proc, ts, target, msg, timeout, what)
            if msg.done:
                proc._calling = None
                return msg
            if not target.watch(msg):
                msg.fail(target.reason)
                proc._calling = None
                return msg
            waiter = make_waiter()
            msg.waker = waiter.wake
            if msg.done:  # answered before the waker was in place: it did not fire
                waiter.wake()
        else:
            waiter = make_waiter()
            msg.waker = waiter.wake
            if not target.watch(msg):
                raise NoProcError(target.pid, describe_wait(what))
            if target._bound is None:
                target.deliver(msg)
            else:  # no sender: a "block" mailbox raises MailboxFullError instead of blocking
                try:
                    target.offer(msg, "call", None, None, None)
                except BaseException:
                    target.unwatch(msg)
                    raise
        if not proc.set_wait(waiter):
            target.unwatch(msg)
            raise_dead(proc, ts)
    except BaseException:
        proc._calling = None
        raise
    return msg


def end_call(
    proc: Process,
    ts: ThreadState,
    target: Process,
    msg: Call,
    what: What,
) -> Any:
    """After :func:`begin_call`'s call was answered (or its wait ended): the reply, or raise.

    Raises:
        ExitError: the target died first (``.reason``), or the caller itself was killed.
    """
    proc._calling = None
    proc.set_wait(None)
    target.unwatch(msg)
    if msg.value is _ABANDONED or not proc.alive:
        raise_dead(proc, ts)
    if msg.ok:
        return msg.value
    raise ExitError(msg.value, describe_wait(what))


def _offer_call(
    target: Process, msg: Call, proc: Process, ts: ThreadState, timeout: float | None
) -> None:
    """Put a call request into a bounded mailbox; on an error the request is withdrawn."""
    try:
        target.offer(msg, "call", proc, ts, timeout)
    except BaseException:
        target.unwatch(msg)
        msg.abandon()
        raise


def _check_deadlock(proc: Process, target: Process, what: What) -> None:
    """Raise DeadlockError if ``target`` is blocked in a chain of calls that leads back to ``proc``.

    Every process blocked in a call points at its callee (``_calling``), so
    the calls form chains; a call closes a cycle exactly when the chain that
    starts at its target reaches the caller. The walk reads other processes'
    ``_calling`` without a lock: each caller writes its own before it walks, so
    of two calls that close one cycle at the same moment at least one sees the
    other's write (both may raise). A chain may change while it is read: the
    walk stops at a process it has seen (a cycle without ``proc`` in it, closed
    by calls that raised meanwhile) and reports only a cycle through ``proc``.
    """
    chain = [proc.pid, target.pid]
    seen = {proc, target}
    node = target._calling
    while node is not None:
        if node is proc:
            raise DeadlockError(chain, describe_wait(what))
        if node in seen:
            return
        seen.add(node)
        chain.append(node.pid)
        node = node._calling
