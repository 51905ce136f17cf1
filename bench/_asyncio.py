"""The asyncio contender: actors as tasks on one event loop, each serving an ``asyncio.Queue``.

This is the realistic alternative for many lightweight things in Python
(DESIGN.md): a server is a task that takes ``(request, future)`` pairs from
its ``asyncio.Queue`` one at a time and answers with ``future.set_result``; a
call creates a future, puts the pair and awaits the future (``call``, as a
user writes it, has no timeout; ``call_within`` wraps the future in
``asyncio.wait_for``). Nothing changes thread.

It takes part in W15 and W16 only (``aio``): its servers take calls from
coroutines on their loop, not from plain threads, so W1-W5 show n/a, and it
has no supervisor, pool map, stages, flow, pool of workers or rate limiter
(W6-W11 n/a). It has one way to serve for every ``Serving``: the queue is
its mailbox, and a server whose requests take ``delay`` awaits
``asyncio.sleep(delay)`` before each reply, one request at a time, holding
no thread.
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ._contender import DEFAULT_TIMEOUT, Logic, Serving

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

    async def stop(self, server: _Actor) -> None:
        """Let the server finish the requests before this one, then await its task."""
        server.inbox.put_nowait(_STOP)
        await server.task


class AsyncioContender:
    """The ``asyncio`` column: W15 and W16 only."""

    name = "asyncio"
    version = f"stdlib (Python {platform.python_version()})"
    source: str | None = None
    one_thread_each = False
    serves_threads = False
    pool_map = None
    supervise = None
    pipeline = None
    word_count = None
    worker_pool = None
    bucket = None
    missing: Mapping[str, str] = {}

    def __init__(self) -> None:
        self.aio = AsyncioServers()

    def session(self) -> AbstractContextManager[object]:
        """Nothing to set up: each workload runs its own loop (``asyncio.run``)."""
        return nullcontext()

    def start(self, logic: Logic) -> Any:
        """Not for plain threads (``serves_threads`` is False): W1-W5 skip this contender."""
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
        "from a plain thread; W1-W5 skip it (serves_threads is False)"
    )


def make_contender() -> AsyncioContender:
    """Return the ``asyncio`` contender."""
    return AsyncioContender()
