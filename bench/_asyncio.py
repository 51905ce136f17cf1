"""The asyncio contender: actors as tasks on one event loop, each serving an ``asyncio.Queue``.

This is the realistic alternative for many lightweight things in Python
(DESIGN.md): a server is a task that takes ``(request, future)`` pairs from
its ``asyncio.Queue`` one at a time and answers with ``future.set_result``; a
call creates a future, puts the pair and awaits the future (``call``, as a
user writes it, has no timeout; ``call_within`` wraps the future in
``asyncio.wait_for``); a cast puts ``(message, None)`` with ``put_nowait``
(it never suspends the caster). Nothing changes thread.

Its servers take calls from coroutines on their loop, not from plain
threads, so W1-W5 run as coroutines (``bench._workloads``: one
``asyncio.run`` per measurement): W3's 8 producers are 8 tasks on the same
loop (threads using ``loop.call_soon_threadsafe`` would measure the
cross-thread wake-up, which is not how asyncio code shares one server), and
W4's servers are tasks. W6 is ``TaskSupervisor``: a supervisor task that
awaits its worker task and starts a new one when it ends, however it ends
(``kill`` is ``task.cancel()``, ``raise`` a message whose handling raises).
W7 is ``asyncio.gather`` over one coroutine per item, each holding an
``asyncio.Semaphore(os.cpu_count())`` while it calls the function. It has
no stages, flow, pool of workers, rate limiter or pipelines (W8-W14 n/a).
For W15-W16 it has one way to serve for every ``Serving``: the queue is
its mailbox, and a server whose requests take ``delay`` awaits
``asyncio.sleep(delay)`` before each reply, one request at a time, holding
no thread.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any, TypeVar

from ._contender import DEFAULT_TIMEOUT, AsyncSupervised, Crash, Logic, Serving, WorkerCrashed

T = TypeVar("T")

_STOP = object()
"""What a server's queue gets last: the server task returns."""


class _Actor:
    """A server: its queue, the task serving it, and the loop both belong to."""

    __slots__ = ("inbox", "loop", "task")

    def __init__(self, logic: Logic, delay: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.task = self.loop.create_task(_serve(self.inbox, logic, delay))


async def _serve(inbox: asyncio.Queue[Any], logic: Logic, delay: float) -> None:
    while (item := await inbox.get()) is not _STOP:
        request, future = item
        if future is None:  # a cast
            logic.on_cast(request)
            continue
        if delay:
            await asyncio.sleep(delay)
        if future.done():  # the caller timed out (wait_for cancelled the future)
            continue
        try:
            future.set_result(logic.on_call(request))
        except Exception as exc:
            future.set_exception(exc)


class AsyncioServers:
    """W15-W16's servers on asyncio: ``_Actor`` tasks on the running loop."""

    def start(self, logic: Logic, serving: Serving, delay: float) -> _Actor:
        """Start a server task; ``serving`` is ignored (one way for all), ``delay`` awaited per request."""
        return _Actor(logic, delay)

    async def call(self, server: _Actor, request: Any) -> Any:
        """Put ``(request, future)`` on the server's queue and await the future (no timeout)."""
        future = server.loop.create_future()
        server.inbox.put_nowait((request, future))
        return await future

    async def call_within(self, server: _Actor, request: Any, timeout: float) -> Any:
        """``call`` with the future in ``asyncio.wait_for(future, timeout)``."""
        future = server.loop.create_future()
        server.inbox.put_nowait((request, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise TimeoutError(
                f"the asyncio server gave no reply to {request!r} within {timeout}s"
            ) from None

    def cast(self, server: _Actor, message: Any) -> None:
        """Put ``(message, None)`` on the server's queue (``put_nowait``: it never suspends)."""
        server.inbox.put_nowait((message, None))

    async def stop(self, server: _Actor) -> None:
        """Let the server finish the requests before this one, then await its task."""
        server.inbox.put_nowait(_STOP)
        await server.task


class _Worker:
    """W6's worker as the benchmark sees it: its task, and its queue."""

    __slots__ = ("inbox", "task")

    def __init__(self, task: asyncio.Task[None], inbox: asyncio.Queue[Crash]) -> None:
        self.task = task
        self.inbox = inbox


class TaskSupervisor:
    """W6 on asyncio: a supervisor task that awaits its worker task and restarts it when it ends.

    The worker puts itself (``_Worker``) on ``_started`` as the first step of
    its task, then waits for a message on its queue: ``"raise"`` makes it
    raise ``WorkerCrashed``. ``"kill"`` is ``task.cancel()`` from outside. The
    supervisor's ``await worker`` ends with the worker's exception (or
    ``CancelledError``); it counts a restart and starts a new worker task,
    until ``stop``. The supervisor task itself is never cancelled, so a
    ``CancelledError`` there is always the worker's.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started: asyncio.Queue[_Worker] = asyncio.Queue()
        self._restarts = 0
        self._stopping = False
        self._worker: asyncio.Task[None] | None = None
        self._task = self._loop.create_task(self._supervise())

    async def _supervise(self) -> None:
        while True:
            worker = self._loop.create_task(self._work(asyncio.Queue()))
            self._worker = worker
            try:
                await worker
            except asyncio.CancelledError:
                pass  # the worker was cancelled ("kill", or our stop)
            except Exception:  # the worker raised: restart it, as a supervisor does
                pass
            if self._stopping:
                return
            self._restarts += 1

    async def _work(self, inbox: asyncio.Queue[Crash]) -> None:
        task = asyncio.current_task()
        assert task is not None  # a coroutine run by the loop always has its task
        self._started.put_nowait(_Worker(task, inbox))
        how = await inbox.get()
        if how == "raise":
            raise WorkerCrashed(how)

    async def next_worker(self, timeout: float) -> _Worker:
        """The next new worker, once its task runs (``TimeoutError`` after ``timeout``)."""
        try:
            return await _within(self._started.get(), timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise TimeoutError(f"no worker task started within {timeout}s") from None

    def crash(self, worker: _Worker, how: Crash) -> None:
        """``"kill"``: ``task.cancel()``; ``"raise"``: a message that makes the worker raise."""
        if how == "kill":
            worker.task.cancel()
        else:
            worker.inbox.put_nowait(how)

    def restarts(self) -> int:
        """How many worker tasks the supervisor has started after the first."""
        return self._restarts

    async def stop(self) -> None:
        """Cancel the worker and await the supervisor task, which then returns."""
        self._stopping = True
        if self._worker is not None:
            self._worker.cancel()
        await self._task


async def _within(awaitable: Awaitable[T], timeout: float) -> T:
    """``await awaitable`` with a timeout: ``asyncio.timeout`` where there is one (3.11+).

    ``asyncio.wait_for`` wraps the awaitable in a task of its own before
    3.12: a cost W6 would charge to every restart.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout)


@asynccontextmanager
async def _supervise() -> AsyncIterator[AsyncSupervised]:
    supervisor = TaskSupervisor()
    try:
        yield supervisor
    finally:
        await supervisor.stop()


def _pool_map(fn: Callable[[int], int], items: Iterable[int]) -> list[int]:
    """W7: ``asyncio.gather`` of one coroutine per item, at most ``os.cpu_count()`` at a time."""

    async def main() -> list[int]:
        limit = asyncio.Semaphore(os.cpu_count() or 1)

        async def one(item: int) -> int:
            async with limit:
                return fn(item)

        return await asyncio.gather(*(one(item) for item in items))

    return asyncio.run(main())


class AsyncioContender:
    """The ``asyncio`` column: W1-W7 from coroutines, W15 and W16."""

    name = "asyncio"
    version = f"stdlib (Python {platform.python_version()})"
    source: str | None = None
    one_thread_each = False
    serves_threads = False
    supervise = None
    pipeline = None
    word_count = None
    worker_pool = None
    bucket = None
    stream_consumer = None
    queue_consumer = None
    message_flow = None
    missing: Mapping[str, str] = {}

    def __init__(self) -> None:
        self.aio = AsyncioServers()
        self.pool_map = _pool_map
        self.async_supervise = _supervise

    def session(self) -> AbstractContextManager[object]:
        """Nothing to set up: each workload runs its own loop (``asyncio.run``)."""
        return nullcontext()

    def start(self, logic: Logic) -> Any:
        """Not for plain threads (``serves_threads`` is False): W1-W5 run on ``aio``."""
        raise _threads_only("start")

    def call(self, server: Any, request: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Not for plain threads: see ``start``."""
        raise _threads_only("call")

    def cast(self, server: Any, message: Any) -> None:
        """Not for plain threads: see ``start``."""
        raise _threads_only("cast")

    def stop(self, server: Any) -> None:
        """Not for plain threads: see ``start``."""
        raise _threads_only("stop")


def _threads_only(what: str) -> TypeError:
    return TypeError(
        f"the asyncio contender's servers take calls from coroutines only (aio), not {what} "
        "from a plain thread; W1-W5 run on its aio (serves_threads is False)"
    )


def make_contender() -> AsyncioContender:
    """Return the ``asyncio`` contender."""
    return AsyncioContender()
