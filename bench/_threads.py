"""The threads baseline: one plain thread per server, serving a ``queue.SimpleQueue``.

This is the floor cost of handing work to another thread in CPython: no
library, no supervision, just a thread blocked in ``SimpleQueue.get``. A call
puts ``(request, reply_queue)`` and waits on the caller's own reply queue (one
per calling thread, reused); a cast puts ``(message, None)``. W7's contender is
``concurrent.futures.ThreadPoolExecutor().map``.

W8's pipeline is three plain threads joined by two ``queue.Queue``s, each
holding at most ``IN_FLIGHT`` events: with ``batch`` 1 the producer puts one
event per item (``Queue(maxsize=1000)``), the middle thread gets, doubles and
puts it, the consumer gets it; with a larger ``batch`` every item is a list of
up to ``batch`` events (``Queue(maxsize=IN_FLIGHT // batch)``). W9 has no
threads: it is the sequential ``collections.Counter`` that Flow is compared with.

W10 and W11 are what a Python programmer writes by hand instead of a pool
or a rate limiter process: W10's pool is a ``queue.Queue`` holding ``size``
plain objects (``obj = q.get()``, ``fn(obj)``, ``q.put(obj)`` in a
``finally``); W11's bucket is an object whose ``try_acquire`` refills and
takes tokens under a ``threading.Lock``. It has no event loop side: W15 and
W16 show n/a.

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
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from queue import Empty, Queue, SimpleQueue
from typing import Any

from ._contender import (
    DEFAULT_TIMEOUT,
    IN_FLIGHT,
    Bucket,
    Crash,
    Go,
    Logic,
    Pipeline,
    Sink,
    Supervise,
    Supervised,
    Transaction,
    TryAcquire,
    WordCount,
    WorkerCrashed,
    WorkerPool,
)

_STOP = object()
"""The cast that ends a server thread; after W8's last event, the item that ends a stage thread."""

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


def _produce(n: int, batch: int, out: Queue[Any], go: threading.Event) -> None:
    go.wait()
    put = out.put
    if batch == 1:
        for event in range(n):
            put(event)
    else:
        for first in range(0, n, batch):
            put(list(range(first, min(first + batch, n))))
    put(_STOP)


def _double(inbox: Queue[Any], out: Queue[Any], batch: int) -> None:
    get, put = inbox.get, out.put
    if batch == 1:
        while (event := get()) is not _STOP:
            put(2 * event)
    else:
        while (events := get()) is not _STOP:
            put([2 * event for event in events])
    put(_STOP)


def _consume(inbox: Queue[Any], batch: int, sink: Sink) -> None:
    get = inbox.get
    take = sink.add if batch == 1 else sink.add_all
    while (item := get()) is not _STOP:
        take(item)


@contextmanager
def _pipeline(n: int, batch: int, sink: Sink) -> Iterator[Go]:
    """W8 on threads: producer, middle and consumer threads joined by two bounded queues."""
    maxsize = max(1, IN_FLIGHT // batch)
    first: Queue[Any] = Queue(maxsize)
    second: Queue[Any] = Queue(maxsize)
    go = threading.Event()
    stages = [
        threading.Thread(target=_produce, args=(n, batch, first, go), name="bench-producer"),
        threading.Thread(target=_double, args=(first, second, batch), name="bench-middle"),
        threading.Thread(target=_consume, args=(second, batch, sink), name="bench-consumer"),
    ]
    for thread in stages:
        thread.daemon = True
        thread.start()
    yield go.set
    for thread in stages:
        thread.join()


def _word_count(lines: Sequence[str], stages: int) -> Counter[str]:
    """W9's baseline: one ``Counter`` updated line by line, in the calling thread."""
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(line.split())
    return counts


class _PooledObject:
    """W10's worker: a plain object, as a connection in a hand-written pool would be."""

    __slots__ = ()


@contextmanager
def _worker_pool(size: int) -> Iterator[Transaction]:
    """W10 by hand: a ``queue.Queue`` of ``size`` objects; a transaction gets one and puts it back."""
    idle: Queue[_PooledObject] = Queue()
    for _ in range(size):
        idle.put(_PooledObject())

    def transaction(fn: Callable[[Any], Any]) -> Any:
        obj = idle.get()
        try:
            return fn(obj)
        finally:
            idle.put(obj)

    yield transaction


class LockedBucket:
    """W11 by hand: a token bucket behind a ``threading.Lock``, refilled when asked."""

    __slots__ = ("_capacity", "_lock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, capacity: float) -> None:
        self._rate = rate
        self._capacity = capacity
        self._lock = threading.Lock()  # guards _tokens and _stamp
        self._tokens = capacity
        self._stamp = time.monotonic()

    def try_acquire(self, tokens: int = 1) -> bool:
        """Take ``tokens`` if the bucket holds them, after adding what accrued since the last look."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= tokens:
                self._tokens -= tokens
                return True
            return False


@contextmanager
def _bucket(rate: float, capacity: float) -> Iterator[TryAcquire]:
    yield LockedBucket(rate, capacity).try_acquire


class _ReplyQueues(threading.local):
    """The reply queue of each calling thread."""

    def __init__(self) -> None:
        self.queue: SimpleQueue[Any] = SimpleQueue()


class ThreadsContender:
    """The ``threads`` column."""

    name = "threads"
    version = "stdlib"
    source: str | None = None
    one_thread_each = True
    serves_threads = True
    aio = None

    def __init__(self) -> None:
        self._replies = _ReplyQueues()
        self.pool_map: Callable[[Callable[[int], int], Iterable[int]], list[int]] | None = (
            self._pool_map
        )
        self.supervise: Supervise | None = _supervise
        self.pipeline: Pipeline | None = _pipeline
        self.word_count: WordCount | None = _word_count
        self.worker_pool: WorkerPool | None = _worker_pool
        self.bucket: Bucket | None = _bucket
        self.missing: Mapping[str, str] = {}

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
