"""Runtime: the process table, names, the scheduler and the timers.

Which runtime a call uses: the runtime of the calling process; in a plain
thread, the innermost runtime opened with ``with`` (in any thread), else the
default runtime, started lazily and shut down at interpreter exit.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
from typing import Any

from typing_extensions import Self

from .._exceptions import AlreadyStartedError, NoProcError
from ._process import INTERRUPT_DELAY, Process
from ._scheduler import Scheduler, ThreadState, default_max_threads, thread_state
from ._timers import TimerWheel
from ._types import KILL, SHUTDOWN, Pid, check_timeout

__all__ = ["Runtime", "current_runtime"]

_runtime_ids = itertools.count(1)
_global_lock = threading.Lock()  # guards _stack and _default
_stack: list[Runtime] = []
_default: Runtime | None = None


class Runtime:
    """A scheduler, a process table and a timer thread: the world processes live in.

    Example::

        with otpy.Runtime(max_threads=8) as rt:
            pid = otpy.spawn(print, "hello from a process")
        # leaving the block shut every process down and joined the threads

    Options:
        max_threads: how many pool threads may run process code at the same
            time (default: four per CPU, between 8 and 64). Threads blocked in
            an otpy wait (receive, call, await, sleep) do not count, so blocking
            never deadlocks the pool; a hard cap (at least 1024 threads) guards
            the machine. Blocking that otpy cannot see (``time.sleep``, socket
            I/O inside a handler) does hold a thread.

    A runtime that is not used with ``with`` keeps running until
    :meth:`shutdown`; the default runtime (used when no runtime is open) shuts
    down at interpreter exit.
    """

    __module__ = "otpy"

    # _lock guards _procs, _names, _next_id, _workers_alive, _zombies, _closed, _closing;
    # _cond (on _lock) is notified when the last non-thread process dies during shutdown.

    def __init__(self, max_threads: int | None = None) -> None:
        if max_threads is None:
            max_threads = default_max_threads()
        elif isinstance(max_threads, bool) or not isinstance(max_threads, int):
            raise TypeError(f"max_threads must be None or an int >= 1; got {max_threads!r}")
        elif max_threads < 1:
            raise ValueError(f"max_threads must be None or an int >= 1; got {max_threads!r}")
        self.id = next(_runtime_ids)
        self.max_threads = max_threads
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._procs: dict[int, Process] = {}
        self._names: dict[str, Process] = {}
        self._next_id = 0
        self._workers_alive = 0  # processes in _procs that are not plain threads' own
        self._closing = False
        self._closed = False
        self._zombies: dict[Process, ThreadState] = {}  # dead, but their code still runs
        self.scheduler = Scheduler(max_threads, f"otpy-{self.id}")
        self.timers = TimerWheel(f"otpy-{self.id}")
        self.root = Pid(self.id, 0)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._procs)} processes"
        return f"<otpy.Runtime {self.id} ({state})>"

    # -- context -------------------------------------------------------------

    def __enter__(self) -> Self:
        with _global_lock:
            _stack.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with _global_lock:
            for i in range(len(_stack) - 1, -1, -1):
                if _stack[i] is self:
                    del _stack[i]
                    break
        self.shutdown()

    @staticmethod
    def current() -> Runtime:
        """The runtime of the calling process, else the innermost open one, else the default."""
        proc = thread_state().proc
        if proc is not None:
            return proc.rt  # type: ignore[attr-defined, no-any-return]
        return current_runtime()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the process table ---------------------------------------------------

    def new_process(
        self, *, reactive: bool, parent: Pid | None, label: str, thread_owned: bool = False
    ) -> Process:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is shut down; open a new otpy.Runtime()")
            self._next_id += 1
            proc = Process(self, self._next_id, reactive=reactive, parent=parent)
            proc.label = label
            proc.thread_owned = thread_owned
            self._procs[proc.pid.id] = proc
            if not thread_owned:
                self._workers_alive += 1
        return proc

    def thread_process(self, ts: ThreadState) -> Process:
        """The calling plain thread's process in this runtime, made on first use."""
        proc = ts.thread_procs.get(self)
        if proc is not None:
            return proc  # type: ignore[return-value]
        for rt in [rt for rt in ts.thread_procs if rt.closed]:  # type: ignore[attr-defined]
            del ts.thread_procs[rt]
        proc = self.new_process(
            reactive=False,
            parent=None,
            label=f"thread {threading.current_thread().name}",
            thread_owned=True,
        )
        proc._ts = ts
        proc.behaviour = "thread"
        ts.thread_procs[self] = proc
        return proc

    def task_process(self, ts: ThreadState, task: Any, *, spawned: bool = False) -> Process:
        """The process of asyncio ``task`` (running on ``ts``'s thread), made on first use.

        Like a plain thread's process, but one per task: it ends with
        ``"normal"`` when the task ends (a ``spawned`` one, made by
        ``otpy.aio.spawn``, ends as its coroutine did; its caller handles that).
        """
        procs = ts.task_procs
        if procs is None:
            procs = ts.task_procs = {}
        proc = procs.get((self, task))
        if proc is not None:
            return proc  # type: ignore[return-value]
        name = task.get_name() if hasattr(task, "get_name") else repr(task)
        proc = self.new_process(
            reactive=False, parent=None, label=f"asyncio task {name}", thread_owned=True
        )
        proc._ts = ts
        proc.host = (task, spawned)
        proc.behaviour = "asyncio task"
        procs[(self, task)] = proc
        if not spawned:
            task.add_done_callback(lambda _: _task_done(self, ts, task, proc))
        return proc

    def forget(self, proc: Process, name: str | None) -> None:
        """Called by a dying process: drop it (and its name) from the tables."""
        with self._lock:
            if self._procs.pop(proc.pid.id, None) is not None and not proc.thread_owned:
                self._workers_alive -= 1
                if self._closing and not self._workers_alive:
                    self._cond.notify_all()
            if name is not None and self._names.get(name) is proc:
                del self._names[name]

    def haunted_by(self, proc: Process, ts: ThreadState) -> None:
        """``proc`` died while its code runs on ``ts``'s thread: interrupt it soon.

        The code gets ``INTERRUPT_DELAY`` seconds to reach its next otpy call
        (which stops it cleanly) or to end; during shutdown, the same grace is
        given once for all of them (see :meth:`_exorcise_all`).
        """
        with self._lock:
            self._zombies[proc] = ts
            closing = self._closing
        if not closing:  # when closing, shutdown() deals with its zombies at its end
            self.timers.schedule(INTERRUPT_DELAY, lambda: self._exorcise(proc))

    def _exorcise_all(self) -> None:
        """At shutdown: let dead processes' code finish by itself for a moment, then interrupt.

        An asynchronous exception can land anywhere, also between a library's
        lock acquire and its ``try`` (logging's handlers, for one), so it is the
        last resort: code that returns to an otpy call or ends within the grace
        period is never interrupted.
        """
        grace_end = time.monotonic() + INTERRUPT_DELAY
        while time.monotonic() < grace_end:
            with self._lock:
                running = [p for p, ts in self._zombies.items() if p._ts is ts]
            if not running:
                break
            time.sleep(0.002)
        with self._lock:
            zombies = list(self._zombies)
        for proc in zombies:
            self._exorcise(proc)

    def _exorcise(self, proc: Process) -> None:
        with self._lock:
            ts = self._zombies.pop(proc, None)
        if ts is None or proc.interrupt(ts):
            return
        if not self._closing:
            self.haunted_by(proc, ts)  # the thread id was not found: try again shortly

    def processes(self) -> list[Pid]:
        """Pids of every live process of this runtime, oldest first."""
        with self._lock:  # a dying process leaves the table a moment after it is dead
            return [p.pid for p in self._procs.values() if p.alive]

    def process_of(self, pid: Pid) -> Process | None:
        proc = pid._proc
        if proc is None or proc.rt is not self:
            with self._lock:
                proc = self._procs.get(pid.id) if pid.runtime_id == self.id else None
        return proc

    # -- names ---------------------------------------------------------------

    def register(self, name: str, proc: Process) -> None:
        _check_name(name)
        with self._lock:
            holder = self._names.get(name)
            if holder is not None:
                raise AlreadyStartedError(holder.pid, name)
            with proc._lock:
                if not proc.alive:
                    raise NoProcError(proc.pid, f"register({name!r})")
                if proc.name is not None:
                    raise ValueError(
                        f"{proc.pid!r} is already registered as {proc.name!r}; "
                        f"a process has at most one name, so {name!r} was not registered"
                    )
                proc.name = name
            self._names[name] = proc

    def unregister(self, name: str) -> None:
        _check_name(name)
        with self._lock:
            proc = self._names.pop(name, None)
            if proc is None:
                raise NoProcError(name, f"unregister({name!r})")
            with proc._lock:
                if proc.name == name:
                    proc.name = None

    def whereis(self, name: str) -> Process | None:
        return self._names.get(name)

    # -- shutdown ------------------------------------------------------------

    def shutdown(self, timeout: float | None = 5.0) -> None:
        """Stop every process, then the threads.

        Each process that is not linked to a live parent process (top-level
        processes, processes started by plain threads, the plain threads' own
        processes) gets a ``"shutdown"`` exit signal from its parent, as a
        supervisor's child would; the others are stopped by their parents
        (supervisors stop their children in order).
        Whatever is still alive after ``timeout`` seconds is killed. Calling it
        twice is harmless.
        """
        timeout = check_timeout(timeout)
        with self._lock:
            if self._closed or self._closing:
                return
            self._closing = True
            procs = list(self._procs.values())
        for proc in procs:
            if not proc.stopped_by_parent():
                proc.exit_signal(proc.parent or self.root, SHUTDOWN)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._workers_alive:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._closed = True
            left = list(self._procs.values())
        for proc in left:
            proc.exit_signal(self.root, KILL)
        self._exorcise_all()
        self.timers.close()
        self.scheduler.close(timeout=max(1.0, timeout or 1.0))


def _task_done(rt: Runtime, ts: ThreadState, task: Any, proc: Process) -> None:
    """An adopted asyncio task ended (on its loop's thread): so does its process."""
    procs = ts.task_procs
    if procs is not None and procs.get((rt, task)) is proc:
        del procs[(rt, task)]
    proc.die("normal")


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"a process name must be a str; got {name!r} of type {type(name).__name__}")
    if not name:
        raise ValueError("a process name must be a non-empty str; got ''")


def current_runtime() -> Runtime:
    """The innermost runtime opened with ``with``, else the default runtime."""
    if _stack:
        try:
            return _stack[-1]
        except IndexError:
            pass
    return _default_runtime()


def _default_runtime() -> Runtime:
    global _default
    with _global_lock:
        if _default is None or _default.closed:
            _default = Runtime()
        return _default


@atexit.register
def _shutdown_default() -> None:
    rt = _default
    if rt is not None:
        rt.shutdown(timeout=5.0)
