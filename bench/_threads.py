"""The threads baseline: one plain thread per server, serving a ``queue.SimpleQueue``.

This is the floor cost of handing work to another thread in CPython: no
library, no supervision, just a thread blocked in ``SimpleQueue.get``. A call
puts ``(request, reply_queue)`` and waits on the caller's own reply queue (one
per calling thread, reused); a cast puts ``(message, None)``. W7's contender is
``concurrent.futures.ThreadPoolExecutor().map``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from queue import Empty, SimpleQueue
from typing import Any

from ._contender import DEFAULT_TIMEOUT, Logic

_STOP = object()
"""The cast that ends a server thread."""

Envelope = tuple[Any, "SimpleQueue[Any] | None"]
"""What a server's inbox holds: ``(payload, reply queue)``, the queue ``None`` for a cast."""


class ThreadServer:
    """A plain daemon thread that runs a ``Logic`` for every message of its inbox."""

    __slots__ = ("inbox", "thread")

    def __init__(self, logic: Logic) -> None:
        self.inbox: SimpleQueue[Envelope] = SimpleQueue()
        self.thread = threading.Thread(
            target=_serve, args=(self.inbox, logic), name="bench-thread-server", daemon=True
        )
        self.thread.start()


def _serve(inbox: SimpleQueue[Envelope], logic: Logic) -> None:
    while True:
        payload, reply_to = inbox.get()
        if reply_to is not None:
            reply_to.put(logic.on_call(payload))
        elif payload is _STOP:
            return
        else:
            logic.on_cast(payload)


class _ReplyQueues(threading.local):
    """The reply queue of each calling thread."""

    def __init__(self) -> None:
        self.queue: SimpleQueue[Any] = SimpleQueue()


class ThreadsContender:
    """The ``threads`` column."""

    name = "threads"
    version = "stdlib"
    one_thread_each = True

    def __init__(self) -> None:
        self._replies = _ReplyQueues()
        self.pool_map: Callable[[Callable[[int], int], Iterable[int]], list[int]] | None = (
            self._pool_map
        )

    def session(self) -> AbstractContextManager[object]:
        """Nothing to set up: threads need no runtime."""
        return nullcontext()

    def start(self, logic: Logic) -> ThreadServer:
        """Start a thread serving ``logic``."""
        return ThreadServer(logic)

    def call(self, server: ThreadServer, request: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Round-trip ``request`` through the server thread."""
        reply_to = self._replies.queue
        server.inbox.put((request, reply_to))
        try:
            return reply_to.get(timeout=timeout)
        except Empty:
            self._replies.queue = SimpleQueue()  # a late reply must not answer the next call
            raise TimeoutError(
                f"the thread server gave no reply to {request!r} within {timeout}s"
            ) from None

    def cast(self, server: ThreadServer, message: Any) -> None:
        """Queue ``message`` for the server thread."""
        server.inbox.put((message, None))

    def stop(self, server: ThreadServer) -> None:
        """Ask the thread to end after the messages before this one, and join it."""
        server.inbox.put((_STOP, None))
        server.thread.join()

    @staticmethod
    def _pool_map(fn: Callable[[int], int], items: Iterable[int]) -> list[int]:
        with ThreadPoolExecutor() as pool:
            return list(pool.map(fn, items))


def make_contender() -> ThreadsContender:
    """Return the ``threads`` contender."""
    return ThreadsContender()
