"""The threads baseline: one plain thread per server, serving a ``queue.SimpleQueue``.

This is the floor cost of handing work to another thread in CPython: no
library, no supervision, just a thread blocked in ``SimpleQueue.get``. A call
puts ``(request, reply_queue)`` and waits on the caller's own reply queue (one
per calling thread, reused); a cast puts ``(message, None)``. W7's contender is
``concurrent.futures.ThreadPoolExecutor().map``.

W6's supervisor is a thread of its own: each worker thread puts itself on
the supervisor's queue as its last act, however it ends; the supervisor joins
it (it is dead then, as a process is when its supervisor hears of it) and
starts a new one, which puts its inbox on the benchmark's queue as its first
act. A thread cannot be killed from outside, so ``"kill"`` is a message the
worker obeys by returning at once; ``"raise"`` makes it raise, and the
exception ends the thread (caught at its top, so nothing is printed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from queue import Empty, SimpleQueue
from typing import Any

from ._contender import DEFAULT_TIMEOUT, Crash, Logic, Supervise, Supervised, WorkerCrashed

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


WorkerInbox = SimpleQueue["Crash | None"]
"""A W6 worker thread's inbox: how to crash, or ``None`` to end quietly (the supervisor stops)."""


class ThreadSupervisor:
    """W6: a thread that restarts its one worker thread whenever that thread ends."""

    def __init__(self) -> None:
        self._inbox: SimpleQueue[threading.Thread | None] = SimpleQueue()
        """Worker threads that ended; ``None`` asks the supervisor to stop."""
        self._started: SimpleQueue[WorkerInbox] = SimpleQueue()
        """The inbox of each new worker, put there by the worker itself."""
        self._restarts = 0
        self._thread = threading.Thread(
            target=self._supervise, name="bench-thread-supervisor", daemon=True
        )
        self._thread.start()

    def _supervise(self) -> None:
        worker, inbox = self._start_worker()
        while True:
            ended = self._inbox.get()
            if ended is None:
                inbox.put(None)
                worker.join()
                return
            ended.join()
            self._restarts += 1
            worker, inbox = self._start_worker()

    def _start_worker(self) -> tuple[threading.Thread, WorkerInbox]:
        inbox: WorkerInbox = SimpleQueue()
        worker = threading.Thread(
            target=self._work, args=(inbox,), name="bench-thread-worker", daemon=True
        )
        worker.start()
        return worker, inbox

    def _work(self, inbox: WorkerInbox) -> None:
        self._started.put(inbox)
        try:
            how = inbox.get()
            if how == "raise":
                raise WorkerCrashed(how)
        except WorkerCrashed:
            pass  # the crash: the thread ends, and the supervisor hears of it below
        finally:
            self._inbox.put(threading.current_thread())

    def next_worker(self, timeout: float) -> WorkerInbox:
        """The next new worker's inbox, once that worker runs."""
        try:
            return self._started.get(timeout=timeout)
        except Empty:
            raise TimeoutError(f"no worker thread started within {timeout}s") from None

    def crash(self, worker: WorkerInbox, how: Crash) -> None:
        """Tell the worker to return (``"kill"``) or to raise (``"raise"``)."""
        worker.put(how)

    def restarts(self) -> int:
        """How many worker threads the supervisor has started after the first."""
        return self._restarts

    def stop(self) -> None:
        """Stop the worker, then the supervisor thread, and join both."""
        self._inbox.put(None)
        self._thread.join()


@contextmanager
def _supervise() -> Iterator[Supervised]:
    supervisor = ThreadSupervisor()
    yield supervisor
    supervisor.stop()


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
        self.supervise: Supervise | None = _supervise

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
