"""The process operations that ``otpy`` re-exports: ``otpy.spawn``, ``otpy.send`` & co.

The hooks that only the behaviours use (``spawn_reactive``, ``run_inline``,
``on_exit``, the ``otpy.aio`` waits, ...) are in ``_hooks.py``.

Every operation starts by finding the calling process (a plain thread gets
one on first use) and checking that it is alive: that is where the code of a
process that was killed is stopped (:class:`ProcessExit`), and where a plain
thread whose process was killed gets its :class:`otpy.ExitError`.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import attrs

from .._exceptions import NoProcError
from . import _process
from ._process import Process, describe, raise_dead
from ._runtime import Runtime, _stack, current_runtime
from ._scheduler import ThreadState, _tls
from ._timers import Timer
from ._types import NOPROC, Down, Exit, Pid, Ref, check_timeout

__all__ = [
    "NameResolver",
    "ProcessInfo",
    "TimerRef",
    "callers",
    "cancel_timer",
    "check_mailbox",
    "current",
    "demonitor",
    "exit",
    "is_alive",
    "link",
    "monitor",
    "process_info",
    "processes",
    "receive",
    "register",
    "resolve",
    "self",
    "send",
    "send_after",
    "sleep",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "spawn_opt",
    "trap_exits",
    "unlink",
    "unregister",
    "whereis",
]

TimerRef = Timer
Timer.__name__ = Timer.__qualname__ = "TimerRef"  # as users see it: otpy.TimerRef


@runtime_checkable
class NameResolver(Protocol):
    """A name that is not a plain string: ``otpy.via(...)``, ``otpy.partition(...)``."""

    def whereis_name(self) -> Pid | None: ...

    def register_name(self, pid: Pid) -> None: ...

    def unregister_name(self) -> None: ...


@attrs.frozen
class ProcessInfo:
    """What ``otpy.process_info(pid)`` reports about a live process.

    ``status`` is ``"running"`` (a thread runs its code now), ``"waiting"``
    (blocked in receive/call/sleep, or an idle reactive process), or
    ``"runnable"`` (queued for a thread). ``thread`` names the thread that
    holds the process right now, if any: a process blocked in code that otpy
    cannot see (``time.sleep``, socket I/O) shows up as ``running`` there.
    ``current`` says what the process runs (its function or behaviour class).
    ``mailbox_limit`` is the bound of its mailbox (``None``: unbounded) and
    ``dropped`` how many messages a full mailbox has dropped. ``behaviour``
    says what kind of process it is (``"GenServer"``, ``"Supervisor"``,
    ``"Agent"``, ``"Task"``, ``"process"`` for a spawned function,
    ``"thread"``, ``"asyncio task"``, ...), ``reductions`` how many messages
    it has handled (a moment's value, like Erlang's reductions a measure of
    work), and ``restarts`` how many times its supervisor had restarted its
    child before it started (0 for a first start or an unsupervised process).
    """

    pid: Pid
    name: str | None
    status: str
    message_queue_len: int
    links: list[Pid]
    monitors: list[Pid]
    monitored_by: list[Pid]
    trap_exits: bool
    current: str
    thread: str | None
    parent: Pid | None
    mailbox_limit: int | None = None
    dropped: int = 0
    behaviour: str = "process"
    reductions: int = 0
    restarts: int = 0


ProcessInfo.__module__ = "otpy"


# -- finding processes --------------------------------------------------------


def current() -> tuple[Process, ThreadState]:
    """The calling process and thread state; raises if the process is dead.

    Outside any process: an asyncio task running here gets a process of its
    own (one per task), a plain thread one of its own (one per thread).
    """
    ts = _tls.ts  # thread_state(), without the call: every otpy call starts here
    proc: Process | None = ts.proc  # type: ignore[assignment]
    if proc is None:
        proc = _outside(ts)
    if not proc.alive:
        raise_dead(proc, ts)
    return proc, ts


def _outside(ts: ThreadState) -> Process:
    """The process of the asyncio task or plain thread calling, outside any process's code.

    The asyncio task is looked up only if asyncio was imported (no loop can
    run otherwise): a dictionary lookup for a plain script.
    """
    try:
        rt = _stack[-1]  # current_runtime() without its call, while a ``with`` block is open
    except IndexError:
        rt = current_runtime()
    aio = sys.modules.get("asyncio")
    loop = None if aio is None else aio._get_running_loop()
    if loop is not None and (task := aio.current_task(loop)) is not None:  # type: ignore[union-attr]
        procs = ts.task_procs
        proc: Process | None = procs.get((rt, task)) if procs else None  # type: ignore[assignment]
        return rt.task_process(ts, task) if proc is None else proc
    proc = ts.thread_procs.get(rt)  # type: ignore[assignment]
    return rt.thread_process(ts) if proc is None else proc


def resolve(dest: object, rt: Runtime | None = None) -> Process | None:
    """The live-or-dead process ``dest`` names, or None if no such process/name.

    Raises:
        TypeError: ``dest`` is not a Pid, a str or a NameResolver.
    """
    if type(dest) is Pid:
        proc = dest._proc
        if proc is None:
            proc = (rt or current_runtime()).process_of(dest)
        return proc
    if isinstance(dest, str):
        return (rt or Runtime.current()).whereis(dest)
    if isinstance(dest, NameResolver):
        pid = dest.whereis_name()
        return None if pid is None else resolve(pid, rt)
    raise TypeError(
        f"a destination must be an otpy.Pid, a registered name (str) or otpy.via(...); "
        f"got {dest!r} of type {type(dest).__name__}"
    )


def _pid_arg(pid: object, what: str) -> Pid:
    if type(pid) is not Pid:
        raise TypeError(f"{what} takes an otpy.Pid; got {pid!r} of type {type(pid).__name__}")
    return pid


# -- spawning -------------------------------------------------------------------


ON_FULL = ("raise", "drop", "block")
"""What a bounded mailbox does with a message that finds it full."""


def check_mailbox(limit: object, on_full: object) -> None:
    """Validate ``mailbox_limit`` and ``on_full`` (for ``spawn_opt`` and the behaviours).

    Raises:
        TypeError: ``limit`` is not None or an int.
        ValueError: ``limit`` is negative, or ``on_full`` is not one of :data:`ON_FULL`.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise TypeError(
            f"mailbox_limit must be None (unbounded) or an int >= 0; "
            f"got {limit!r} of type {type(limit).__name__}"
        )
    if limit is not None and limit < 0:
        raise ValueError(f"mailbox_limit must be None (unbounded) or an int >= 0; got {limit!r}")
    if on_full not in ON_FULL:
        raise ValueError(f"on_full must be one of {', '.join(map(repr, ON_FULL))}; got {on_full!r}")


def _spawn_body(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    link: bool,
    monitor: bool,
    label: str | None = None,
    mailbox_limit: int | None = None,
    on_full: str = "raise",
    callers: tuple[Pid, ...] | None = None,
) -> tuple[Process, Ref | None]:
    if not callable(fn):
        raise TypeError(f"spawn needs a callable; got {fn!r} of type {type(fn).__name__}")
    me, _ = current()
    proc = me.rt.new_process(reactive=False, parent=me.pid, label=label or describe(fn))
    proc.callers = me.heirs() if callers is None else callers
    # The body runs in a copy of the spawner's contextvars, as an asyncio task does.
    proc.ctx = contextvars.copy_context()
    proc._body = (fn, args, kwargs)
    if mailbox_limit is not None:
        proc.bound(mailbox_limit, on_full)
    if link:
        proc.add_link(me)
    ref = None
    if monitor:
        ref = Ref()
        proc.add_monitor(ref, me)
    me.rt.scheduler.submit(proc)
    return proc, ref


def spawn(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Pid:
    """Start a process running ``fn(*args, **kwargs)``; it ends when ``fn`` returns."""
    return _spawn_body(fn, args, kwargs, link=False, monitor=False)[0].pid


def spawn_link(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Pid:
    """Like :func:`spawn`, linked to the caller."""
    return _spawn_body(fn, args, kwargs, link=True, monitor=False)[0].pid


def spawn_monitor(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> tuple[Pid, Ref]:
    """Like :func:`spawn`, monitored by the caller; returns ``(pid, ref)``."""
    proc, ref = _spawn_body(fn, args, kwargs, link=False, monitor=True)
    assert ref is not None
    return proc.pid, ref


def spawn_opt(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    link: bool = False,
    monitor: bool = False,
    mailbox_limit: int | None = None,
    on_full: str = "raise",
) -> Any:
    """Start a process running ``fn(*args, **kwargs)`` with options (Erlang's ``spawn_opt``).

    Example::

        pid = otpy.spawn_opt(consume, args=(feed,), link=True, mailbox_limit=1000, on_full="block")
        pid, ref = otpy.spawn_opt(job, monitor=True)

    Args:
        link: link the new process to the caller (as :func:`spawn_link`).
        monitor: monitor it; then the result is ``(pid, ref)``.
        mailbox_limit: at most this many user messages (sends, casts, call
            requests, ``send_after`` messages) wait in its mailbox; ``None``
            (the default) is unbounded. Exit signals and ``Down`` messages
            always get in and never count.
        on_full: what a user message that finds the mailbox full does:
            ``"raise"`` (``send`` and ``call`` raise :class:`otpy.MailboxFullError`,
            a cast is dropped), ``"drop"`` (it is dropped) or ``"block"`` (the
            sender waits for room; a call's timeout covers the wait). A
            ``send_after`` message that finds it full is always dropped. Drops
            show in ``process_info(pid).dropped`` and as the telemetry event
            ``("otpy", "mailbox", "drop")``.

    Returns:
        The pid, or ``(pid, ref)`` with ``monitor=True``.

    Raises:
        TypeError, ValueError: a bad ``mailbox_limit`` or ``on_full``, a
            non-callable ``fn``, ``args`` that is not a tuple or list, or
            ``kwargs`` that is not a dict.
    """
    check_mailbox(mailbox_limit, on_full)
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"spawn_opt's args must be a tuple (or list); got {args!r}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"spawn_opt's kwargs must be a dict or None; got {kwargs!r}")
    proc, ref = _spawn_body(
        fn,
        tuple(args),
        kwargs or {},
        link=bool(link),
        monitor=bool(monitor),
        mailbox_limit=mailbox_limit,
        on_full=on_full,
    )
    return (proc.pid, ref) if monitor else proc.pid


def callers() -> list[Pid]:
    """The processes that started the caller, nearest first (Elixir's ``$callers``).

    A process started with ``spawn*``, ``Task.*`` or a behaviour's ``start*``
    records who started it, and who started that one, and so on. A plain
    thread's own process has none::

        def job():
            print(otpy.callers())     # [<pid of the main thread's process>]
        otpy.spawn(job)
    """
    return list(current()[0].callers)


# -- messages -------------------------------------------------------------------


def self() -> Pid:
    """The calling process's pid (a plain thread gets a process on first use)."""
    return current()[0].pid


def send(dest: object, message: Any) -> None:
    """Send ``message`` to a pid, a registered name or ``otpy.via(...)``.

    Sending to a dead pid does nothing (messages to the dead are lost).

    Raises:
        NoProcError: ``dest`` is a name nobody has registered.
    """
    me, ts = current()
    proc = resolve(dest, me.rt)
    if proc is None:
        if type(dest) is Pid:
            return
        raise NoProcError(dest, "send")
    if proc._bound is None:
        proc.deliver(message, ts)
    else:
        proc.offer(message, "send", me, ts, None)


def receive(timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
    """Take the oldest message (that ``match`` accepts, if given).

    Messages that ``match`` rejects stay in the mailbox, in order.

    Raises:
        otpy.Timeout: no such message arrived within ``timeout`` seconds.
    """
    timeout = check_timeout(timeout)
    if match is not None and not callable(match):
        raise TypeError(f"match must be a predicate (a callable) or None; got {match!r}")
    me, ts = current()
    return _process.receive(me, ts, timeout, match)


# -- waiting without a thread (otpy.aio) ----------------------------------------------


def sleep(seconds: float | None) -> None:
    """Sleep; an exit signal that kills the process interrupts it. ``None`` sleeps forever."""
    seconds = check_timeout(seconds, "seconds")
    me, ts = current()
    _process.sleep(me, ts, seconds)


# -- links, monitors, exits -------------------------------------------------------


def link(pid: Pid) -> None:
    """Link the caller and ``pid``: when one dies abnormally, the other gets the exit signal.

    Raises:
        NoProcError: ``pid`` is dead and the caller does not trap exits
            (a trapping caller gets ``Exit(pid, "noproc")`` instead).
    """
    _pid_arg(pid, "link")
    me, _ = current()
    proc = resolve(pid, me.rt)
    if proc is me:
        return
    if proc is None or not proc.add_link(me):
        if me.trap:
            me.deliver(Exit(pid, NOPROC))
            return
        raise NoProcError(pid, "link")


def unlink(pid: Pid) -> None:
    """Remove the link between the caller and ``pid``, if any."""
    _pid_arg(pid, "unlink")
    me, _ = current()
    proc = resolve(pid, me.rt)
    if proc is not None and proc is not me:
        proc.remove_link(me)


def monitor(target: object) -> Ref:
    """Monitor a process (a pid or a name); a ``Down`` message arrives when it ends.

    A dead or unknown target gives ``Down(ref, target, "noproc")`` at once.
    """
    me, _ = current()
    proc = resolve(target, me.rt)
    ref = Ref()
    if proc is None or not proc.add_monitor(ref, me):
        me.deliver(Down(ref, target if proc is None else proc.pid, NOPROC))
    return ref


def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Stop monitoring; with ``flush=True`` also drop a ``Down`` for ``ref`` already received.

    Returns:
        True if the monitor was still active.
    """
    if not isinstance(ref, Ref):
        raise TypeError(f"demonitor takes the otpy.Ref that monitor() returned; got {ref!r}")
    me, _ = current()
    target = me.forget_monitor(ref)
    active = target is not None and target.drop_monitor(ref)
    if flush:
        saved = me.pull_all()
        kept = [m for m in saved if not (type(m) is Down and m.ref == ref)]
        if len(kept) != len(saved):
            saved.clear()
            saved.extend(kept)
    return active


def exit(pid: object, reason: Any) -> None:
    """Send an exit signal to ``pid``.

    ``"kill"`` kills unconditionally (links see ``"killed"``); ``"normal"`` is
    ignored by a process that does not trap exits, unless it is the caller;
    any other reason kills a non-trapping process and reaches a trapping one
    as an ``Exit`` message.
    """
    me, ts = current()
    proc = resolve(pid, me.rt)
    if proc is None:
        return
    proc.exit_signal(me.pid, reason)
    if proc is me and not me.alive:
        raise_dead(me, ts)


def trap_exits(flag: bool) -> bool:
    """Turn exit signals into ``Exit`` messages (or back); returns the previous value."""
    if not isinstance(flag, bool):
        raise TypeError(f"trap_exits takes a bool; got {flag!r}")
    me, _ = current()
    return me.set_trap(flag)


def is_alive(pid: Pid) -> bool:
    """Whether ``pid`` is a live process."""
    _pid_arg(pid, "is_alive")
    proc = pid._proc or current_runtime().process_of(pid)
    return proc is not None and proc.alive


# -- names --------------------------------------------------------------------------


def register(name: str, pid: Pid) -> None:
    """Register ``pid`` under ``name`` in the caller's runtime.

    Raises:
        AlreadyStartedError: the name is taken.
        NoProcError: ``pid`` is not alive.
        TypeError / ValueError: ``name`` is not a non-empty str.
    """
    _pid_arg(pid, "register")
    me, _ = current()
    proc = resolve(pid, me.rt)
    if proc is None:
        raise NoProcError(pid, f"register({name!r})")
    proc.rt.register(name, proc)


def unregister(name: str) -> None:
    """Remove a registered name.

    Raises:
        NoProcError: nothing is registered under ``name``.
    """
    Runtime.current().unregister(name)


def whereis(name: str) -> Pid | None:
    """The pid registered under ``name``, or None."""
    if not isinstance(name, str):
        raise TypeError(f"whereis takes a name (str); got {name!r} of type {type(name).__name__}")
    proc = Runtime.current().whereis(name)
    return proc.pid if proc is not None and proc.alive else None


# -- timers ---------------------------------------------------------------------------


def send_after(seconds: float, dest: object, message: Any) -> TimerRef:
    """Send ``message`` to ``dest`` after ``seconds``; returns a ref for :func:`cancel_timer`.

    A name is looked up when the timer fires (nothing happens if it is not
    registered then); a timer to a pid dies with that process.
    """
    delay = check_timeout(seconds, "seconds")
    if delay is None:
        raise ValueError(f"send_after needs a finite number of seconds; got {seconds!r}")
    if not isinstance(dest, (Pid, str, NameResolver)):
        resolve(dest)  # raises the TypeError
    me, _ = current()
    rt = me.rt
    owner = resolve(dest, rt) if type(dest) is Pid else None
    return rt.timers.schedule(delay, lambda: _timer_send(rt, dest, message), owner)


def _timer_send(rt: Runtime, dest: object, message: Any) -> None:
    try:
        proc = resolve(dest, rt)
    except NoProcError:
        return
    if proc is not None:
        if proc._bound is None:
            proc.deliver(message)
        else:
            proc.offer(message, "timer", None, None, None)


def cancel_timer(tref: TimerRef) -> float | None:
    """Cancel a timer; the seconds that were left, or None if it fired or was cancelled."""
    if not isinstance(tref, Timer):
        raise TypeError(f"cancel_timer takes what send_after returned; got {tref!r}")
    return tref.cancel()


# -- introspection ---------------------------------------------------------------------


def process_info(pid: Pid) -> ProcessInfo | None:
    """A snapshot of a live process, or None if it is dead."""
    _pid_arg(pid, "process_info")
    proc = pid._proc or current_runtime().process_of(pid)
    if proc is None:
        return None
    info = proc.snapshot()
    return None if info is None else ProcessInfo(**info)


def processes() -> list[Pid]:
    """Every live process of the current runtime."""
    return Runtime.current().processes()
