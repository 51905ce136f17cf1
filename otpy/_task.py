"""Task: run a function in a process of its own and collect its result.

Example::

    task = otpy.Task.async_(fetch, "https://example.com")
    ...                                 # do other work meanwhile
    page = task.await_(timeout=5.0)     # the value, or otpy.Timeout / otpy.ExitError

    for status, value in otpy.Task.async_stream(urls, fetch, max_concurrency=8, timeout=2.0,
                                                on_timeout="kill_task"):
        ...                             # ("ok", page) or ("exit", "timeout")

A task started with ``async_`` is linked to its caller (the *owner*): if the
task crashes, the owner dies too unless it traps exits, and a plain thread
that owns it gets ``otpy.ExitError`` from its next otpy call. Only the owner
may await a task.

Results do not travel through the owner's mailbox: a task's result is kept by
the :class:`Task` object, so ``await_``, ``yield_`` and ``shutdown`` may be
called in any order, and ``yield_`` again after it returned ``None``.

A task body runs on a pool thread and holds it until the function returns
(blocking calls inside it hold the thread too, except otpy waits).
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar

from . import _core as core
from ._child_spec import BRUTAL_KILL
from ._core import Down, Pid, ProcessExit, Reply
from ._exceptions import ExitError, Timeout
from .retry import RetryPolicy, _Run

__all__ = ["AsyncStream", "Task"]

T = TypeVar("T")
Result = tuple[Literal["ok", "exit"], Any]


def _check_callable(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} needs a callable; got {fn!r} of type {type(fn).__name__}")


def _exit_error(reason: Any, what: str) -> ExitError:
    err = ExitError(reason, what)
    if isinstance(reason, BaseException):
        err.__cause__ = reason
    return err


class Task:
    """A function running in a process of its own, whose result the owner collects.

    Example::

        task = otpy.Task.async_(sum, [1, 2, 3])
        task.await_()        # 6

    Attributes:
        pid: the task's process.
        owner: the process that started it (the only one that may await it).
    """

    __module__ = "otpy"
    __slots__ = ("_reply", "owner", "pid")

    def __init__(self, pid: Pid, owner: Pid, reply: Reply) -> None:
        self.pid = pid
        self.owner = owner
        self._reply = reply

    def __repr__(self) -> str:
        return f"<otpy.Task {self.pid!r} owned by {self.owner!r}>"

    # -- starting ------------------------------------------------------------------

    @staticmethod
    def async_(fn: Callable[..., Any], /, *args: Any) -> Task:
        """Run ``fn(*args)`` in a new process linked to the caller."""
        _check_callable(fn, "Task.async_")
        owner = core.self()
        pid, reply = core.spawn_task(fn, args, link=True, label=f"Task {core.describe(fn)}")
        return Task(pid, owner, reply)

    @staticmethod
    def start(fn: Callable[..., Any], /, *args: Any) -> Pid:
        """Run ``fn(*args)`` in a new process whose result nobody collects."""
        _check_callable(fn, "Task.start")
        return core.spawn(fn, *args)

    @staticmethod
    def start_link(fn: Callable[..., Any], /, *args: Any) -> Pid:
        """Like :meth:`start`, linked to the caller."""
        _check_callable(fn, "Task.start_link")
        return core.spawn_link(fn, *args)

    # -- collecting ------------------------------------------------------------------

    def _check_owner(self, what: str) -> None:
        me = core.self()
        if me != self.owner:
            raise ValueError(
                f"{what}: {self!r} can only be collected by its owner {self.owner!r}; "
                f"called from {me!r}"
            )

    def _result(self) -> Result:
        reply = self._reply
        return ("ok", reply.value) if reply.ok else ("exit", reply.value)

    def await_(self, timeout: float | None = 5.0) -> Any:
        """The task's value.

        Raises:
            otpy.Timeout: the task did not finish within ``timeout`` (it keeps running).
            otpy.ExitError: the task died; ``.reason`` (and ``__cause__``) is the exception.
        """
        t = core.check_timeout(timeout)
        self._check_owner("Task.await_")
        if not core.wait_done(self._reply, t):
            raise Timeout(f"Task.await_ of {self!r}", t)
        if self._reply.ok:
            return self._reply.value
        raise _exit_error(self._reply.value, f"Task.await_ of {self!r}")

    def yield_(self, timeout: float | None = 5.0) -> Result | None:
        """``("ok", value)``, ``("exit", reason)``, or ``None`` if still running after ``timeout``."""
        t = core.check_timeout(timeout)
        self._check_owner("Task.yield_")
        if not core.wait_done(self._reply, t):
            return None
        return self._result()

    def shutdown(self, timeout: float | str | None = 5.0) -> Result | None:
        """Stop the task: a ``"shutdown"`` exit, then ``"kill"`` after ``timeout``.

        ``timeout=otpy.BRUTAL_KILL`` kills at once.

        Returns:
            ``("ok", value)`` if the task finished before it stopped,
            ``("exit", reason)`` if it had died for another reason, else ``None``.
        """
        brutal = timeout == BRUTAL_KILL
        t = None if brutal else core.check_timeout(timeout)
        self._check_owner("Task.shutdown")
        core.unlink(self.pid)
        reply = self._reply
        if not reply.done:
            if brutal:
                core.exit(self.pid, "kill")
            else:
                core.exit(self.pid, "shutdown")
                if not core.wait_done(reply, t):
                    core.exit(self.pid, "kill")
            core.wait_done(reply, None)
        if reply.ok:
            return ("ok", reply.value)
        if reply.value in ("shutdown", "killed"):
            return None
        return ("exit", reply.value)

    @staticmethod
    def await_many(tasks: Iterable[Task], timeout: float | None = 5.0) -> list[Any]:
        """The values of all ``tasks``, in order, within one overall ``timeout``.

        Raises:
            otpy.Timeout: not all finished in time.
            otpy.ExitError: one of them died.
        """
        t = core.check_timeout(timeout)
        tasks = list(tasks)
        deadline = None if t is None else time.monotonic() + t
        values = []
        for task in tasks:
            task._check_owner("Task.await_many")
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not core.wait_done(task._reply, remaining):
                raise Timeout(f"Task.await_many of {len(tasks)} tasks", t)
            if not task._reply.ok:
                raise _exit_error(task._reply.value, f"Task.await_many: {task!r}")
            values.append(task._reply.value)
        return values

    @staticmethod
    def yield_many(
        tasks: Iterable[Task], timeout: float | None = 5.0
    ) -> list[tuple[Task, Result | None]]:
        """Wait up to ``timeout`` for all ``tasks``; each with its result or ``None``."""
        t = core.check_timeout(timeout)
        tasks = list(tasks)
        deadline = None if t is None else time.monotonic() + t
        out: list[tuple[Task, Result | None]] = []
        for task in tasks:
            task._check_owner("Task.yield_many")
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = core.wait_done(task._reply, remaining)
            out.append((task, task._result() if done else None))
        return out

    @staticmethod
    def async_stream(
        iterable: Iterable[Any],
        fn: Callable[[Any], Any],
        max_concurrency: int | None = None,
        ordered: bool = True,
        timeout: float | None = 5.0,
        on_timeout: Literal["exit", "kill_task"] = "exit",
        zip_input_on_exit: bool = False,
        retry: RetryPolicy | None = None,
    ) -> AsyncStream:
        """Run ``fn`` on every item concurrently; a lazy iterator of results.

        Yields ``("ok", value)`` per item, or ``("exit", "timeout")`` for an
        item that exceeded ``timeout`` when ``on_timeout="kill_task"`` (with
        ``zip_input_on_exit=True``: ``("exit", (item, reason))``).

        Options:
            max_concurrency: items running at once (default ``os.cpu_count()``).
            ordered: results in input order (default) or as they finish.
            timeout: seconds each item may run (default 5.0; None = no limit).
            on_timeout: ``"exit"`` raises ``otpy.Timeout`` from the iterator;
                ``"kill_task"`` kills that item's task and goes on.
            retry: an ``otpy.retry.RetryPolicy``: an item whose ``fn`` raised an
                exception the policy selects is called again, after the
                policy's wait, until it returns (``("ok", value)``) or the
                policy gives up (the last exception is then the item's crash,
                reported as without retry). Default None: no retries.

        The tasks are linked to the caller: a crash in ``fn`` raises
        ``otpy.ExitError`` from the iterator (and kills a caller that does not
        trap exits, as a link does).

        With ``retry``, an item's attempts and the waits between them all run
        in that item's worker, and ``timeout`` bounds the whole item, retries
        included (as does the policy's own ``timeout``): leave room for the
        waits, or pass ``timeout=None``. A worker waiting for its next attempt
        holds no thread (the wait is a timer message), and a killed worker's
        pending retry dies with it.
        """
        return AsyncStream(
            iterable,
            fn,
            max_concurrency=max_concurrency,
            ordered=ordered,
            timeout=timeout,
            on_timeout=on_timeout,
            zip_input_on_exit=zip_input_on_exit,
            link=True,
            retry=retry,
        )


# -- async_stream ------------------------------------------------------------------

_INLINE_BELOW = 0.0002
"""Items whose recent average run time is below this run on the consumer's thread."""

_NEVER = float("inf")


class _Job:
    __slots__ = ("done", "index", "inline", "item", "stream")

    def __init__(self, stream: AsyncStream, index: int, item: Any) -> None:
        self.stream = stream
        self.index = index
        self.item = item
        # Set by the consumer before it runs the job on its own thread (a plain worker
        # only): the worker then leaves the result here instead of mailing it.
        self.inline = False
        self.done: _Done | None = None


class _Done:
    __slots__ = ("elapsed", "finished", "index", "stream", "value", "worker")

    def __init__(
        self,
        stream: AsyncStream,
        worker: Pid,
        index: int,
        value: Any,
        elapsed: float,
        finished: float,
    ) -> None:
        self.stream = stream
        self.worker = worker
        self.index = index
        self.value = value
        self.elapsed = elapsed  # seconds the item ran
        self.finished = finished  # time.monotonic() when it ended


class _InContext:
    """Runs a stream's function on an item in a fresh copy of the consumer's context.

    The copy is taken from the context the stream was made in, once per call,
    so items see the consumer's variables and none sees another item's changes.
    """

    __slots__ = ("ctx", "fn")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.ctx = contextvars.copy_context()
        self.fn = fn

    def __call__(self, item: Any) -> Any:
        return self.ctx.copy().run(self.fn, item)


class _Worker:
    """The reactive process that runs a stream's items, one at a time."""

    __slots__ = ("fn", "owner", "owner_ref", "pid")

    def __init__(self, fn: Callable[[Any], Any], owner: Pid) -> None:
        self.fn = fn
        self.owner = owner
        self.owner_ref: Any = None
        self.pid: Pid | None = None

    def init(self) -> None:
        self.pid = core.self()
        self.owner_ref = core.monitor(self.owner)

    def handle(self, msg: Any) -> None:
        if type(msg) is _Job:
            start = time.monotonic()
            value = self.fn(msg.item)  # a crash ends the worker: the owner sees its Down
            finished = time.monotonic()
            assert self.pid is not None
            done = _Done(msg.stream, self.pid, msg.index, value, finished - start, finished)
            if msg.inline:
                msg.done = done  # the consumer runs us on its thread: it takes it from here
            else:
                core.send(self.owner, done)
        elif type(msg) is Down and msg.ref == self.owner_ref:
            raise ProcessExit("normal")  # the owner is gone: so is the worker


class _RetryDue:
    """The timer message that tells a retrying worker its next attempt is due."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<async_stream retry due>"


_RETRY_DUE = _RetryDue()


class _RetryingWorker(_Worker):
    """A worker whose items are retried under a policy (``async_stream(retry=...)``).

    Each attempt is one turn of the worker; the wait before the next one is a
    timer message to itself, so a worker that waits holds no thread and an
    item run inline by the consumer never waits on the consumer's thread. The
    consumer's deadline for the item covers every attempt and wait.
    """

    __slots__ = ("_job", "_ran", "_run", "_started", "policy")

    def __init__(self, fn: Callable[[Any], Any], owner: Pid, policy: RetryPolicy) -> None:
        super().__init__(fn, owner)
        self.policy = policy
        # The item being tried and its run, made at its first failure (owned by the
        # worker process; no lock).
        self._job: _Job | None = None
        self._run: _Run | None = None
        self._started = 0.0  # time.monotonic() when the item's first attempt began
        self._ran = 0.0  # seconds its attempts ran, waits excluded: the item's cost

    def handle(self, msg: Any) -> None:
        kind = type(msg)
        if kind is _Job:
            self._job = msg
            self._run = None
            self._started = time.monotonic()
            self._ran = 0.0
            self._attempt()
        elif kind is _RetryDue and self._job is not None:
            self._attempt()
        elif kind is Down and msg.ref == self.owner_ref:
            raise ProcessExit("normal")

    def _attempt(self) -> None:
        job = self._job
        assert job is not None and self.pid is not None
        start = time.monotonic()
        try:
            value = self.fn(job.item)
        except Exception as exc:
            self._ran += time.monotonic() - start
            run = self._run
            if run is None:
                fn = self.fn
                target = fn.fn if type(fn) is _InContext else fn  # the user's function
                run = self._run = _Run(self.policy, target, self._started)
            delay = run.failed(exc)
            if delay is None:
                raise  # the last exception ends the worker, as without retry
        else:
            finished = time.monotonic()
            self._ran += finished - start
            self._job = self._run = None
            done = _Done(job.stream, self.pid, job.index, value, self._ran, finished)
            core.send(self.owner, done)
            return
        if delay > 0:
            core.send_after(delay, self.pid, _RETRY_DUE)
        else:
            core.send(self.pid, _RETRY_DUE)


class AsyncStream(Iterator[Result]):
    """The lazy iterator that ``Task.async_stream`` returns.

    Items run in up to ``max_concurrency`` worker processes owned by the
    consumer (the process that iterates). A worker runs one item at a time,
    so at most ``max_concurrency`` items run at once. An item is taken from
    ``iterable`` only when the consumer asks for a result and fewer than
    ``max_concurrency`` items are running or finished but not yet emitted
    (with ``ordered=True``, results wait for the slower items before them).

    When items prove quick (each recent one below 0.2 ms) and ``timeout`` is
    None or at least 1 s, the consumer runs the next item itself, in an idle
    worker's process, instead of handing it to a pool thread: trivial items
    then cost no thread hand-off. The cost of such an item: it cannot be
    interrupted, so if it overruns ``timeout`` after all, that is seen when it
    returns (it counts as timed out then). One slow item switches the stream
    back to the pool, where timeouts are exact; so are they for every stream
    whose ``timeout`` is below 1 s.

    With a ``retry`` policy, a failed attempt of an item run inline is
    retried by its worker on a pool thread after the wait, never on the
    consumer's thread.

    Closing the iterator (or dropping it) stops the workers.
    """

    __module__ = "otpy"

    def __init__(
        self,
        iterable: Iterable[Any],
        fn: Callable[[Any], Any],
        *,
        max_concurrency: int | None,
        ordered: bool,
        timeout: float | None,
        on_timeout: str,
        zip_input_on_exit: bool,
        link: bool,
        spawn_worker: Callable[[Callable[[Any], None], Callable[[], None], bool], Pid | None]
        | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        _check_callable(fn, "async_stream")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(
                f"async_stream retry must be an otpy.retry.RetryPolicy or None; got {retry!r}"
            )
        if max_concurrency is None:
            max_concurrency = os.cpu_count() or 1
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError(f"max_concurrency must be an int >= 1 or None; got {max_concurrency!r}")
        if max_concurrency < 1:
            raise ValueError(
                f"max_concurrency must be an int >= 1 or None; got {max_concurrency!r}"
            )
        if on_timeout not in ("exit", "kill_task"):
            raise ValueError(f"on_timeout must be 'exit' or 'kill_task'; got {on_timeout!r}")
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be a bool; got {ordered!r}")
        self._timeout = core.check_timeout(timeout)
        self._items = iter(iterable)
        self._fn = fn
        self._run_item = _InContext(fn)  # every item in a fresh copy of this context
        self._max = max_concurrency
        self._ordered = ordered
        self._kill_on_timeout = on_timeout == "kill_task"
        self._zip = bool(zip_input_on_exit)
        self._link = link
        self._spawn_worker = spawn_worker
        self._retry = retry
        self._owner: Pid | None = None
        self._idle: list[Pid] = []
        self._refs: dict[Pid, Any] = {}
        self._running: dict[Pid, tuple[int, Any, float]] = {}  # worker -> (index, item, deadline)
        self._ready: dict[int, Result] = {}
        self._next_index = 0  # next input index
        self._next_out = 0  # next index to emit when ordered
        self._exhausted = False
        self._closed = False
        self._cost = 1.0  # seconds per item, decaying (see _collect), once measured
        self._measured = False
        self._match = self._is_mine

    # -- iteration -------------------------------------------------------------------

    def __iter__(self) -> AsyncStream:
        return self

    def __next__(self) -> Result:
        if self._closed:
            raise StopIteration
        if self._owner is None:
            self._owner = core.self()
        elif (me := core.self()) is not self._owner and me != self._owner:
            raise ValueError(
                f"this async_stream is consumed by {self._owner!r}; iterate it in one process"
            )
        try:
            while True:
                if self._ready:
                    result = self._pop_ready()
                    if result is not None:
                        return result
                if not self._exhausted and len(self._running) + len(self._ready) < self._max:
                    self._dispatch()
                elif self._running:
                    self._wait()
                else:
                    break
        except BaseException:
            self.close()
            raise
        self.close()
        raise StopIteration

    def _pop_ready(self) -> Result | None:
        ready = self._ready
        if not ready:
            return None
        if not self._ordered:
            return ready.pop(next(iter(ready)))
        result = ready.pop(self._next_out, None)
        if result is not None:
            self._next_out += 1
        return result

    # -- running items ---------------------------------------------------------------

    def _dispatch(self) -> None:
        try:
            item = next(self._items)
        except StopIteration:
            self._exhausted = True
            return
        index = self._next_index
        self._next_index += 1
        worker = self._idle.pop() if self._idle else self._new_worker()
        job = _Job(self, index, item)
        timeout = self._timeout
        deadline = _NEVER if timeout is None else time.monotonic() + timeout
        self._running[worker] = (index, item, deadline)
        inline = (
            self._measured
            and self._cost < _INLINE_BELOW
            and (timeout is None or timeout >= core.INLINE_MIN_TIMEOUT)
        )
        if inline:
            job.inline = self._retry is None  # a retrying worker always mails its result
            if core.run_inline(worker, job):
                if job.done is not None:
                    self._finished(job.done)
                else:
                    self._collect(0.0)  # the result is in our mailbox (or the worker died)
                return
            job.inline = False
        core.send(worker, job)

    def _new_worker(self) -> Pid:
        owner = self._owner
        assert owner is not None
        worker = (
            _Worker(self._run_item, owner)
            if self._retry is None
            else _RetryingWorker(self._run_item, owner, self._retry)
        )
        if self._spawn_worker is not None:
            pid = self._spawn_worker(worker.handle, worker.init, self._link)
        else:
            pid = core.spawn_reactive(
                worker.handle,
                worker.init,
                link=self._link,
                label=f"async_stream worker {core.describe(self._fn)}",
                behaviour="Task",
            )
        assert pid is not None
        first = not self._refs
        self._refs[pid] = core.monitor(pid)
        if first:
            core.prepare_kill_later(pid)  # for __del__ (close() stops the worker if this raises)
        return pid

    def _is_mine(self, msg: Any) -> bool:
        kind = type(msg)
        if kind is _Done:
            return msg.stream is self
        return kind is Down and self._refs.get(msg.pid) == msg.ref

    def _wait(self) -> None:
        deadline = min(d for (_, _, d) in self._running.values())
        remaining = deadline - time.monotonic()
        if remaining > 0:
            self._collect(None if remaining == float("inf") else remaining)
        elif not self._collect(0.0):  # results that came in time, while we were busy, first
            self._expire()

    def _collect(self, timeout: float | None) -> bool:
        """Handle one result or worker exit; False if none came within ``timeout``."""
        try:
            msg = core.receive(timeout=timeout, match=self._match)
        except Timeout:
            if timeout != 0.0:
                self._expire()
            return False
        if type(msg) is _Done:
            self._finished(msg)
            return True
        worker, reason = msg.pid, msg.reason
        self._refs.pop(worker, None)
        if worker in self._idle:
            self._idle.remove(worker)
        if self._link and not core.is_normal_exit(reason):
            raise _exit_error(reason, "Task.async_stream")
        running = self._running.pop(worker, None)
        if running is not None:
            index, item, _ = running
            self._ready[index] = ("exit", (item, reason) if self._zip else reason)
        return True

    def _finished(self, msg: _Done) -> None:
        """A worker's result: ready to emit, or timed out if it came after the deadline."""
        running = self._running.pop(msg.worker, None)
        if running is None:
            return  # the worker was stopped (timed out) as it finished
        index, item, deadline = running
        self._idle.append(msg.worker)
        # Decaying cost: one slow item raises it at once, each quick one halves it.
        self._cost = max(msg.elapsed, self._cost * 0.5) if self._measured else msg.elapsed
        self._measured = True
        if msg.finished > deadline:  # it overran, on our thread (or we noticed late)
            self._timed_out(msg.worker, index, item, kill=False)
        else:
            self._ready[index] = ("ok", msg.value)

    def _expire(self) -> None:
        now = time.monotonic()
        for worker, (index, item, deadline) in list(self._running.items()):
            if deadline <= now:
                self._running.pop(worker)
                self._timed_out(worker, index, item, kill=True)

    def _timed_out(self, worker: Pid, index: int, item: Any, *, kill: bool) -> None:
        if kill or not self._kill_on_timeout:
            self._stop_worker(worker)
        if not self._kill_on_timeout:
            raise Timeout(f"Task.async_stream item {item!r}", self._timeout)
        self._ready[index] = ("exit", (item, "timeout") if self._zip else "timeout")

    def _stop_worker(self, worker: Pid) -> None:
        ref = self._refs.pop(worker, None)
        if ref is not None:
            core.demonitor(ref, flush=True)
        if worker in self._idle:
            self._idle.remove(worker)
        core.kill_quietly(worker, unlink=self._owner)

    def close(self) -> None:
        """Stop every worker; the iterator yields nothing more."""
        if self._closed:
            return
        self._closed = True
        for worker in list(self._refs):
            self._stop_worker(worker)
        self._running.clear()
        self._idle.clear()

    def __del__(self) -> None:
        # Dropped before it was exhausted or closed: stop the workers, from whatever
        # thread the garbage collector runs on, maybe inside a runtime lock (so no
        # otpy call that needs a process or a lock: the timer thread kills them).
        if not getattr(self, "_closed", True):
            for worker in list(self._refs):
                core.kill_later(worker, unlink=self._owner)
