"""otpy from asyncio: awaitable calls and receives, and processes whose body is a coroutine.

Example::

    import otpy, otpy.aio

    async def handler(request):
        order = await otpy.aio.call("orders", ("get", request.id), timeout=5.0)
        msg = await otpy.aio.receive(timeout=1.0)            # this task's own mailbox
        pid = otpy.aio.spawn(watch, feed)                     # a coroutine process
        value = await otpy.aio.await_(otpy.Task.async_(crunch, data), timeout=5.0)

Each asyncio task that uses otpy gets a process of its own, as a plain thread
does: ``otpy.self()`` inside it is that process, ``otpy.send`` to it wakes
its ``await otpy.aio.receive()``, links and monitors work, and it ends with
reason ``"normal"`` when the task ends. A process that kills it (through a
link, say) makes its next otpy call raise ``otpy.ExitError``; after that the
task gets a fresh process, as a thread would.

Waiting holds no thread and never blocks the loop: a process that answers
(or a message that arrives) wakes the awaiting task with
``loop.call_soon_threadsafe``. A call to an idle server whose handlers are
quick runs the handler right away on the loop's thread, as a synchronous
call would on its thread (no hand-off at all); keep such handlers short, or
set ``inline_calls = False`` on the server. A ``"block"`` bounded mailbox
makes ``aio.call`` raise ``otpy.MailboxFullError`` instead of blocking the loop.

``otpy.aio.spawn(coro_fn, *args)`` runs ``coro_fn(*args)`` as a task on the
running loop and returns its pid at once. The coroutine's return ends the
process with ``"normal"``, its exception is its exit reason (logged as a
crash), and killing the process cancels the task. A task cancelled by
someone else ends its process with ``("shutdown", "cancelled")``.

Any running loop works (asyncio's, uvloop's); the blocking calls
(``GenServer.call``, ``otpy.receive``) still work from a loop's thread but
block the loop, as any blocking call does.

Why by hand: the bridge must be a process of the runtime (links, monitors,
exit signals) whose waits are futures, which no asyncio library provides;
``asyncio.to_thread`` would hold a thread per waiting call.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from . import _core as core
from ._core import Pid
from ._exceptions import Timeout
from ._task import Task

__all__ = ["await_", "call", "receive", "spawn"]


def _loop(what: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{what} needs a running asyncio event loop: await it inside a coroutine "
            "(outside one, use the blocking otpy functions)"
        ) from None


class _FutureWaiter(core.Waiter):
    """Wakes one awaiting coroutine: from any thread, at most once."""

    __slots__ = ("_fired", "_loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.future: asyncio.Future[bool] = loop.create_future()
        self._fired = threading.Lock()  # test-and-set: the first wake schedules, the rest return

    def wake(self) -> None:
        if self._fired.acquire(False):
            try:
                self._loop.call_soon_threadsafe(self._set, True)
            except RuntimeError:  # the loop is closed: nobody awaits any more
                pass

    def _set(self, value: bool) -> None:
        if not self.future.done():
            self.future.set_result(value)

    async def wait(self, timeout: float | None) -> bool:
        """True when woken, False when ``timeout`` passed first."""
        if timeout is None:
            return await self.future
        handle = self._loop.call_later(timeout, self._set, False)
        try:
            return await self.future
        finally:
            handle.cancel()


async def call(dest: object, request: Any, timeout: float | None = 5.0) -> Any:
    """``GenServer.call`` for a coroutine: awaits the reply without holding a thread.

    Raises:
        otpy.Timeout: no reply within ``timeout`` (a late reply is dropped).
        otpy.NoProcError: the server is not alive, or the name is not registered.
        otpy.ExitError: the server died before replying (``.reason``).
        otpy.DeadlockError: the call would close a cycle of blocked calls.
        RuntimeError: no event loop runs in this thread.
    """
    t = core.check_timeout(timeout)
    loop = _loop("otpy.aio.call")
    waiters: list[_FutureWaiter] = []

    def make_waiter() -> _FutureWaiter:
        waiter = _FutureWaiter(loop)
        waiters.append(waiter)
        return waiter

    pending = core.begin_call(dest, request, t, ("otpy.aio.call", dest, request), make_waiter)
    if waiters:
        try:
            woke = await waiters[0].wait(t)
        except BaseException:  # cancelled: nobody will read the reply
            pending.cancel()
            raise
        if not woke:
            pending.timed_out(t)
    return pending.result()


async def receive(timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
    """``otpy.receive`` for a coroutine: the task's next message (that ``match`` accepts).

    Raises:
        otpy.Timeout: no such message within ``timeout`` seconds.
        otpy.ExitError: the task's process was killed.
        RuntimeError: no event loop runs in this thread.
    """
    t = core.check_timeout(timeout)
    if match is not None and not callable(match):
        raise TypeError(f"match must be a predicate (a callable) or None; got {match!r}")
    loop = _loop("otpy.aio.receive")
    msg = core.poll(match)
    if msg is not core.NOTHING:
        return msg
    deadline = None if t is None else loop.time() + t
    while True:
        waiter = _FutureWaiter(loop)
        core.arm(waiter)
        try:
            msg = core.poll(match)  # what came between the first look and arming
            if msg is not core.NOTHING:
                return msg
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise Timeout("otpy.aio.receive()", t)
            await waiter.wait(remaining)
        finally:
            core.disarm()
        msg = core.poll(match)
        if msg is not core.NOTHING:
            return msg


async def await_(task: Task, timeout: float | None = 5.0) -> Any:
    """``task.await_(timeout)`` for a coroutine: the task's value, without holding a thread.

    The task must have been started by this asyncio task (``Task.async_`` in
    it): a task belongs to its starter, as in Elixir.

    Raises:
        otpy.Timeout: the task did not finish within ``timeout`` (it keeps running).
        otpy.ExitError: the task crashed (``.reason``); if it was linked, the
            caller's own process died with it first, with the same error.
        TypeError: ``task`` is not an ``otpy.Task``.
    """
    if not isinstance(task, Task):
        raise TypeError(f"otpy.aio.await_ takes an otpy.Task; got {task!r}")
    t = core.check_timeout(timeout)
    _loop("otpy.aio.await_")
    ref = core.monitor(task.pid)  # a task that ended already answers with Down(noproc) at once
    try:
        await receive(t, lambda m: type(m) is core.Down and m.ref == ref)
    except Timeout:
        core.demonitor(ref, flush=True)
        raise Timeout(f"otpy.aio.await_ of {task!r}", t) from None
    return task.await_(timeout=0)


def spawn(coro_fn: Callable[..., Awaitable[Any]], /, *args: Any) -> Pid:
    """Run ``coro_fn(*args)`` as a process whose body is a task on the running loop.

    Returns its pid at once. The task runs in a copy of the caller's
    contextvars context; ``otpy.self()`` in it is its pid, and
    ``otpy.aio.receive`` takes its messages.

    Raises:
        TypeError: ``coro_fn(*args)`` is not a coroutine.
        RuntimeError: no event loop runs in this thread.
    """
    loop = _loop("otpy.aio.spawn")
    if not callable(coro_fn):
        raise TypeError(f"otpy.aio.spawn needs a coroutine function; got {coro_fn!r}")
    coro = coro_fn(*args)
    if not asyncio.iscoroutine(coro):
        raise TypeError(
            f"otpy.aio.spawn needs a coroutine function; {core.describe(coro_fn)}(...) returned "
            f"{coro!r}"
        )
    ctx = contextvars.copy_context()
    task = ctx.run(loop.create_task, _body(coro))
    pid = core.host_task(task, link=False, label=f"coroutine {core.describe(coro_fn)}")

    def killed(pid: Pid, reason: Any) -> None:  # on whichever thread ended the process
        if not task.done():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the loop is closed

    core.on_exit(pid, killed)
    task.add_done_callback(lambda done: _ended(pid, done))
    return pid


async def _body(coro: Coroutine[Any, Any, Any]) -> Any:
    return await coro


def _ended(pid: Pid, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        core.end_task(pid, task, None, ("shutdown", "cancelled"))
        return
    exc = task.exception()
    core.end_task(pid, task, exc, "normal")
