"""The hooks of the core that the behaviours use, and ``otpy`` does not re-export.

Starting reactive processes and tasks (``spawn_reactive``, ``spawn_task``),
calls with an operation name for error messages (``call``,
``call_until_exit``), sends that never raise (``send_quiet``), running a
handler on the caller's thread (``run_inline``), exit hooks, per-process data
(``set_data``/``data_of``), and the waits of ``otpy.aio`` that hold no thread
(``poll``, ``arm``/``disarm``, ``begin_call``, ``host_task``). Like
``_api.py``, every function finds the calling process first (a plain thread
or an asyncio task gets one on first use) and stops a dead one's code there.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any

from .._exceptions import ExitError, NoProcError, StartError, Timeout
from . import _process
from ._api import NameResolver, _outside, _spawn_body, check_mailbox, current, resolve
from ._process import (
    MAX_INLINE_DEPTH,
    Call,
    Process,
    ProcessExit,
    Reply,
    What,
    describe,
    describe_wait,
    raise_dead,
)
from ._scheduler import ThreadState, _tls, thread_state
from ._types import Pid

__all__ = [
    "NOTHING",
    "PendingCall",
    "StartIgnored",
    "Waiter",
    "arm",
    "begin_call",
    "call",
    "call_until_exit",
    "cancel_on_exit",
    "data_of",
    "defer_front",
    "disarm",
    "end_task",
    "host_task",
    "kill_later",
    "kill_quietly",
    "on_exit",
    "parent",
    "poll",
    "prepare_kill_later",
    "run_inline",
    "send_quiet",
    "set_data",
    "set_restarts",
    "spawn_reactive",
    "spawn_task",
    "wait_done",
    "wait_reply",
]


class StartIgnored(ProcessExit):
    """Raised by a reactive process's init to say 'do not start' (``IGNORE``)."""

    def __init__(self) -> None:
        super().__init__("normal")


def spawn_task(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    link: bool,
    label: str | None = None,
    callers: tuple[Pid, ...] | None = None,
) -> tuple[Pid, Reply]:
    """Start a body process whose result (``fn``'s value) resolves the returned Reply.

    If the process dies first, the Reply fails with its exit reason. ``callers``
    replaces the caller's own chain (a supervisor starting a task for a client
    passes the client's).
    """
    reply = Reply()

    def body() -> None:
        value = fn(*args)
        reply.resolve(True, value)

    proc, _ = _spawn_body(
        body, (), {}, link=link, monitor=False, label=label or describe(fn), callers=callers
    )
    proc.behaviour = "Task"
    if not proc.watch(reply):
        reply.fail(proc.reason)
    return proc.pid, reply


class _Start:
    """The first thing a reactive process runs: its init, reported to the starter.

    One object instead of a closure (and, when init runs on the starter's
    thread, instead of a Reply too): starting 100,000 processes allocates, and
    makes the garbage collector scan, less. ``ok`` stays None until init ends.
    """

    __slots__ = ("ack", "init", "init_args", "ok", "proc", "starter", "value")

    def __init__(
        self,
        proc: Process,
        starter: Process,
        init: Callable[..., None] | None,
        init_args: tuple[Any, ...],
    ) -> None:
        self.proc = proc
        self.starter = starter
        self.init = init
        self.init_args = init_args
        self.ack: Reply | None = None  # set when init runs on a pool thread
        self.ok: bool | None = None
        self.value: Any = None

    def _finish(self, ok: bool, value: Any) -> None:
        if self.ack is not None:
            self.ack.resolve(ok, value)
        else:
            self.value = value
            self.ok = ok

    def __call__(self) -> None:
        proc = self.proc
        if not proc.alive:  # killed before it could start
            self._finish(False, proc.reason)
            return
        try:
            if self.init is not None:
                self.init(*self.init_args)
        except StartIgnored:
            proc.remove_link(self.starter)
            self._finish(True, None)
            raise
        except BaseException as exc:
            proc.remove_link(self.starter)
            self._finish(False, exc.reason if isinstance(exc, ProcessExit) else exc)
            raise
        self._finish(True, proc.pid)


def spawn_reactive(
    handler: Callable[[Any], None],
    init: Callable[..., None] | None = None,
    init_args: tuple[Any, ...] = (),
    *,
    link: bool = False,
    name: object = None,
    label: str = "",
    inline: bool = True,
    mailbox_limit: int | None = None,
    on_full: str = "raise",
    callers: tuple[Pid, ...] | None = None,
    behaviour: str = "GenServer",
) -> Pid | None:
    """Start a reactive process and wait until its ``init(*init_args)`` has run.

    ``handler(msg)`` runs once per message; with ``inline=False`` always on a
    pool thread, never on a caller's thread. ``init`` and every handler run in
    one copy of the caller's contextvars context, kept for the process's life.
    ``mailbox_limit`` and ``on_full`` are :func:`spawn_opt`'s (validated here);
    ``callers`` is :func:`spawn_task`'s. ``init`` runs first, inside the
    new process (on the caller's thread when it can, else on the pool). If
    ``init`` raises :class:`StartIgnored` the result is ``None``; if it raises
    anything else, the process exits with that reason, the caller is not hit
    by the link, and :class:`StartError` is raised.

    Raises:
        StartError: init failed; ``.reason`` is the exception or exit reason.
        AlreadyStartedError: ``name`` is taken.
    """
    check_mailbox(mailbox_limit, on_full)
    me, ts = current()
    rt = me.rt
    # As in OTP, a process started without a link is its own parent.
    proc = rt.new_process(reactive=True, parent=me.pid if link else None, label=label)
    proc.callers = me.heirs() if callers is None else callers
    proc.behaviour = behaviour
    ctx = contextvars.copy_context()
    proc.ctx = ctx if len(ctx) else None  # see Process._guarded
    if mailbox_limit is not None:
        proc.bound(mailbox_limit, on_full)
    proc.set_handler(handler)
    if not inline:
        proc.inline_cost = float("inf")  # callers never run its handler on their thread
    start = _Start(proc, me, init, init_args)
    proc._init = start
    proc._sched.acquire()
    if name is not None:
        try:
            _register(name, proc)
        except BaseException:
            proc._init = None
            proc.die("normal")
            proc._sched.release()
            raise
    if link:
        proc.add_link(me)
    if ts.depth < MAX_INLINE_DEPTH:
        proc.start_inline(ts)  # start() reports to start.ok / start.value, whatever happens
        if not me.alive:
            raise_dead(me, ts)
        ok, value = start.ok, start.value
    else:
        ack = start.ack = Reply()
        if not proc.watch(ack):
            ack.fail(proc.reason)
        rt.scheduler.submit(proc)
        try:
            _process.wait_result(me, ts, ack, None, "start")
        finally:
            proc.unwatch(ack)
        ok, value = ack.ok, ack.value
    if ok:
        return value  # type: ignore[no-any-return]
    reason = value
    raise StartError(reason) from (reason if isinstance(reason, BaseException) else None)


def _register(name: object, proc: Process) -> None:
    if isinstance(name, NameResolver):
        name.register_name(proc.pid)
    else:
        proc.rt.register(name, proc)  # type: ignore[arg-type]


def send_quiet(dest: object, message: Any) -> None:
    """Send, ignoring unknown names and dead targets (``GenServer.cast``).

    Unlike :func:`send`, a plain thread needs no process of its own for it.
    """
    if type(dest) is Pid:
        proc = dest._proc
        if proc is not None:
            ts = _tls.ts  # thread_state(), without the call
            me: Process | None = ts.proc  # type: ignore[assignment]
            if me is not None and not me.alive:
                raise_dead(me, ts)  # the code of a dead process sends nothing more
            if proc._bound is None:
                proc.deliver(message, ts)
            else:
                _cast_bounded(proc, message)
            return
    try:
        me, _ = current()
        proc = resolve(dest, me.rt)
    except (TypeError, NoProcError):
        return
    if proc is not None:
        if proc._bound is None:
            proc.deliver(message)
        else:
            _cast_bounded(proc, message)


def _cast_bounded(proc: Process, message: Any) -> None:
    """A cast to a bounded mailbox: dropped when full, or (``"block"``) waits for room."""
    sender, ts = current() if proc._bound is not None and proc._bound.mode == "block" else (None, None)
    proc.offer(message, "cast", sender, ts, None)


def call(dest: object, request: Any, timeout: float | None, what: What) -> Any:
    """A synchronous request to a process; see ``GenServer.call``.

    ``what`` names the operation in error messages (a callable is called only
    when an error needs it).
    """
    me, ts = current()
    target = dest._proc if type(dest) is Pid else None  # resolve(dest) for a pid, without the call
    if target is None:
        target = resolve(dest, me.rt)
    if target is None or not target.alive:
        raise NoProcError(dest, describe_wait(what))
    answer = _process.call(me, ts, target, request, timeout, what)
    if answer.ok:
        return answer.value
    raise ExitError(answer.value, describe_wait(what))


def call_until_exit(
    dest: object, request: Any, timeout: float | None, what: What
) -> tuple[bool, Any]:
    """Like :func:`call`, for a request that may end the target: ``(ok, reply or reason)``.

    ``(False, reason)`` when the target exited before answering (no ExitError).
    """
    me, ts = current()
    target = resolve(dest, me.rt)
    if target is None or not target.alive:
        raise NoProcError(dest, describe_wait(what))
    answer = _process.call(me, ts, target, request, timeout, what)
    return answer.ok, answer.value


def wait_reply(reply: Reply, timeout: float | None, what: What) -> Any:
    """Wait for a Reply as the calling process (compensating the pool)."""
    me, ts = current()
    return _process.wait_reply(me, ts, reply, timeout, what)


def wait_done(reply: Reply, timeout: float | None) -> bool:
    """Wait as the calling process until ``reply`` is resolved, without consuming it."""
    me, ts = current()
    return _process.wait_done(me, ts, reply, timeout)


Waiter = _process.Waiter


NOTHING = _process.NOTHING


def poll(match: Callable[[Any], bool] | None = None) -> Any:
    """Take the caller's oldest message (that ``match`` accepts) without waiting, else NOTHING."""
    me, ts = current()
    return _process.poll(me, ts, match)


def arm(waiter: Waiter) -> None:
    """The caller will wait for ``waiter``: a message or its death calls ``waiter.wake()``.

    Raises:
        ExitError: the caller's process is dead.
    """
    me, ts = current()
    if not me.set_wait(waiter):
        raise_dead(me, ts)
    me.waker = waiter.wake
    # The caller polls the mailbox after this: it must poll the one senders put into
    # (a real queue, whose internal lock orders the waker's store before that look).
    me.mailbox()


def disarm() -> None:
    """The caller stopped waiting (see :func:`arm`); never raises, also for a dead caller."""
    ts = thread_state()
    me: Process | None = ts.proc  # type: ignore[assignment]
    if me is None:
        me = _outside(ts)
    me.waker = None
    me.set_wait(None)


class PendingCall:
    """A call whose caller waits for it without a thread (``otpy.aio.call``)."""

    __slots__ = ("_me", "_msg", "_target", "_ts", "_what")

    def __init__(
        self,
        me: Process,
        ts: ThreadState,
        target: Process,
        msg: Call,
        what: What,
    ) -> None:
        self._me = me
        self._ts = ts
        self._target = target
        self._msg = msg
        self._what = what

    @property
    def done(self) -> bool:
        """Whether it was answered (or its target died): :meth:`result` will not wait."""
        return self._msg.done

    def timed_out(self, timeout: float | None) -> None:
        """The caller's timeout passed: raise Timeout, unless the answer won the race."""
        if self._msg.settle_timeout():
            self._end()
            raise Timeout(describe_wait(self._what), timeout)

    def cancel(self) -> None:
        """The caller gave up waiting (its task was cancelled): a late answer is dropped."""
        self._msg.settle_timeout()
        self._end()

    def result(self) -> Any:
        """The reply (once :attr:`done`, or after the waiter woke); raises as ``call`` does."""
        msg = self._msg
        if not msg.done:  # woken by the caller's own death
            msg.abandon()
        else:
            msg.wait(None)  # the outcome is stored by now
        return _process.end_call(self._me, self._ts, self._target, msg, self._what)

    def _end(self) -> None:
        self._me._calling = None
        self._me.set_wait(None)
        self._target.unwatch(self._msg)

    @property
    def waiter(self) -> Waiter | None:
        """What the caller waits for (None when the call was answered at once)."""
        wait = self._me._wait
        return wait if isinstance(wait, Waiter) else None


def begin_call(
    dest: object,
    request: Any,
    timeout: float | None,
    what: What,
    make_waiter: Callable[[], Waiter],
) -> PendingCall:
    """Start a call that the caller will await (unless it is :attr:`~PendingCall.done` at once).

    ``make_waiter()`` is called only if the caller must wait; the waiter it
    returns is woken when the call is answered or the caller dies.

    Raises:
        NoProcError, ExitError, DeadlockError, MailboxFullError, Timeout: as ``call``.
    """
    me, ts = current()
    target = resolve(dest, me.rt)
    if target is None or not target.alive:
        raise NoProcError(dest, describe_wait(what))
    msg = _process.begin_call(me, ts, target, request, timeout, what, make_waiter)
    return PendingCall(me, ts, target, msg, what)


def set_restarts(pid: Pid, restarts: int) -> None:
    """Record on a supervised child how often its slot was restarted before it (introspection)."""
    proc = pid._proc
    if proc is not None:
        proc.restarts = restarts


def host_task(task: Any, *, link: bool, label: str) -> Pid:
    """Make the process of a coroutine's ``task`` (``otpy.aio.spawn``), started by the caller.

    It must run on the calling thread's event loop. It is a process like any
    other; the caller ends it with :func:`end_task` when the task ends.
    """
    me, ts = current()
    rt = me.rt
    proc = rt.task_process(ts, task, spawned=True)
    proc.label = label
    proc.behaviour = "coroutine"
    proc.parent = me.pid
    proc.callers = me.heirs()
    if link:
        proc.add_link(me)
    return proc.pid


def end_task(pid: Pid, task: Any, outcome: BaseException | None, reason: Any = "normal") -> None:
    """A hosted task ended: its process ends with ``reason``, or crashes with ``outcome``."""
    proc = pid._proc
    if proc is None:
        return
    ts = proc._ts
    if ts is not None and ts.task_procs is not None and ts.task_procs.get((proc.rt, task)) is proc:
        del ts.task_procs[(proc.rt, task)]
    if outcome is not None:
        proc.crash(outcome)
    else:
        proc.die(reason)


def run_inline(dest: Pid, message: Any) -> bool:
    """Handle ``message`` in reactive process ``dest`` on the calling thread, now.

    Only if ``dest`` is idle (not queued, not running) with an empty mailbox,
    so the order of its messages is kept; returns False (and does nothing)
    otherwise. A crash is ``dest``'s crash, not the caller's.
    """
    me, ts = current()
    proc = resolve(dest, me.rt)
    if proc is None or not proc.reactive or ts.depth >= MAX_INLINE_DEPTH or not proc.try_claim():
        return False
    proc.run_inline(message, ts)
    return True


def kill_quietly(pid: Pid, unlink: Pid | None = None) -> None:
    """Kill ``pid`` from any thread (no calling process needed), first unlinking ``unlink``.

    For cleanup code that may run outside the process that owns ``pid``
    (a finaliser, a timer).
    """
    proc = pid._proc
    if proc is None:
        return
    if unlink is not None and unlink._proc is not None and unlink._proc is not proc:
        proc.remove_link(unlink._proc)
    proc.exit_signal(proc.rt.root, "kill")


def kill_later(pid: Pid, unlink: Pid | None = None) -> None:
    """:func:`kill_quietly`, for a finaliser: done soon by the runtime's timer thread.

    The garbage collector runs finalisers inside whatever allocation a thread
    makes, also while that thread holds a process lock (shared by many
    processes: see ``_process``) or the runtime's: killing right there could
    wait for that lock forever. This takes no lock. The owner of the object
    whose finaliser calls it calls :func:`prepare_kill_later` first.
    """
    proc = pid._proc
    if proc is not None:
        proc.rt.timers.defer(functools.partial(kill_quietly, pid, unlink))


def prepare_kill_later(pid: Pid) -> None:
    """Make sure :func:`kill_later` of ``pid`` will be carried out (outside any finaliser)."""
    proc = pid._proc
    if proc is not None:
        proc.rt.timers.start()


def on_exit(pid: Pid, hook: Callable[[Pid, Any], None]) -> bool:
    """Run ``hook(pid, reason)`` when ``pid`` dies: after it is dead and its name
    released, before its links and monitors fire (so a ``Down`` never comes
    before the hook's effect). The hook runs on the thread that ends the
    process, outside any lock: keep it short, and it must not block.

    Returns:
        False if ``pid`` is already dead (the hook will not run).
    """
    proc = resolve(pid)
    return proc is not None and proc.add_hook(hook)


def cancel_on_exit(pid: Pid, hook: Callable[[Pid, Any], None]) -> None:
    """Forget a hook given to :func:`on_exit`."""
    proc = resolve(pid)
    if proc is not None:
        proc.remove_hook(hook)


def set_data(data: Any) -> None:
    """Attach a behaviour's record to the calling process (see :func:`data_of`)."""
    current()[0].data = data


def data_of(dest: object) -> Any:
    """The record attached with :func:`set_data` to a live process, else None.

    Lets other processes reach a behaviour's shared structure (a Registry's
    tables) without a message round trip.
    """
    proc = resolve(dest)
    return proc.data if proc is not None and proc.alive else None


def defer_front(message: Any) -> None:
    """Make ``message`` the next one the calling process handles, before its mailbox."""
    current()[0].put_back(message)


def parent() -> Pid:
    """The caller's parent: who started it linked, else the runtime's root pid.

    The runtime root is the sender of the ``"shutdown"`` signal that
    ``Runtime.shutdown`` sends to processes without a parent.
    """
    me, _ = current()
    return me.parent or me.rt.root
