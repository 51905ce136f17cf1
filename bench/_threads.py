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

W10-W14 are what a Python programmer writes by hand instead of a pool, a
rate limiter process or a pipeline: W10's pool is a ``queue.Queue`` holding
``size`` plain objects (``obj = q.get()``, ``fn(obj)``, ``q.put(obj)`` in a
``finally``); W11's bucket is an object whose ``try_acquire`` refills and
takes tokens under a ``threading.Lock``. W12's Redis consumer is one reader
thread (``XREADGROUP COUNT 100 BLOCK 100``) handing each batch read to a
``ThreadPoolExecutor(8)`` whose task handles the batch's entries and
``XACK``s them in one command, with at most 2 x 8 batches read and not acked
yet (a ``BoundedSemaphore``: a consumer with back-pressure); W13's RabbitMQ
consumer is dramatiq's design: one thread owns the pika connection, consumes
with ``basic_qos(prefetch_count)`` and hands each delivery to a
``ThreadPoolExecutor(8)``, whose task handles it and sends the ack back to
the connection's thread with ``connection.add_callback_threadsafe`` (at the
stop, that thread runs every ack queued before it closes the connection). W14 is
one thread calling the handler and the acknowledger in a loop. redis-py and
pika are imported when W12 and W13 run. It has no event loop side: W15 and
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

import contextlib
import functools
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
    Acknowledger,
    Bucket,
    Crash,
    Go,
    Logic,
    MessageFlow,
    Pipeline,
    QueueConsumer,
    QueueSource,
    Sink,
    StreamConsumer,
    StreamSource,
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


_CONSUMER = "bench-by-hand"
"""W12: the hand-written consumer's name in the group."""

_BLOCK_MS = 100
"""W12: ``XREADGROUP ... BLOCK`` in ms when the stream has nothing new (as the pipeline's 0.1 s)."""

_POLL = 0.1
"""W13: seconds one ``process_data_events`` may wait; a delivery or an ack wakes it sooner."""

_STARTED = 30.0
"""W13: seconds the connection's thread may take to connect and start consuming."""


def _first_error(errors: list[BaseException]) -> None:
    if errors:
        raise errors[0]


@contextmanager
def _stream_consumer(
    source: StreamSource, handle: Callable[[dict[str, str]], None]
) -> Iterator[None]:
    """W12 by hand: a reader thread, a ``ThreadPoolExecutor`` that handles and XACKs each batch."""
    import redis

    client = redis.Redis.from_url(source.url, decode_responses=True)  # thread-safe (a pool)
    stop = threading.Event()
    in_flight = threading.BoundedSemaphore(2 * source.workers)  # batches read, not acked yet
    errors: list[BaseException] = []  # list.append is atomic; read after the threads ended
    pool = ThreadPoolExecutor(source.workers, thread_name_prefix="bench-redis-worker")

    def work(entries: list[tuple[str, dict[str, str]]]) -> None:
        try:
            for _, fields in entries:
                handle(fields)
            client.xack(source.stream, source.group, *(entry_id for entry_id, _ in entries))
        except BaseException as exc:
            errors.append(exc)
        finally:
            in_flight.release()

    def read() -> None:
        try:
            while not stop.is_set():
                in_flight.acquire()
                reply: Any = client.xreadgroup(
                    source.group,
                    _CONSUMER,
                    {source.stream: ">"},
                    count=source.batch,
                    block=_BLOCK_MS,
                )
                if not reply:
                    in_flight.release()
                    continue
                ((_, entries),) = reply
                pool.submit(work, entries)
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read, name="bench-redis-reader", daemon=True)
    reader.start()
    try:
        yield
    finally:
        stop.set()
        reader.join()
        pool.shutdown(wait=True)
        client.close()
    _first_error(errors)


@contextmanager
def _queue_consumer(source: QueueSource, handle: Callable[[bytes], None]) -> Iterator[None]:
    """W13 by hand, dramatiq's design: a connection thread, a pool, acks marshalled back."""
    import pika  # type: ignore[import-untyped,unused-ignore]

    started = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []  # list.append is atomic; read after the threads ended
    connections: list[Any] = []  # the connection, once open, for the wake-up at the stop

    def consume() -> None:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(source.url))
            channel = connection.channel()
            channel.basic_qos(prefetch_count=source.prefetch)
            pool = ThreadPoolExecutor(source.workers, thread_name_prefix="bench-pika-worker")

            def work(tag: int, body: bytes) -> None:
                try:
                    handle(body)
                except BaseException as exc:
                    errors.append(exc)
                    return
                connection.add_callback_threadsafe(functools.partial(channel.basic_ack, tag))

            def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
                pool.submit(work, method.delivery_tag, body)

            consumer_tag = channel.basic_consume(source.queue, on_message)
            connections.append(connection)
            started.set()
            while not stop.is_set():
                connection.process_data_events(time_limit=_POLL)
            channel.basic_cancel(consumer_tag)
            pool.shutdown(wait=True)
            # Every ack is queued now; the callbacks run in order, so once this one has run,
            # so have they (a single process_data_events(0) may leave some queued).
            flushed: list[bool] = []
            connection.add_callback_threadsafe(lambda: flushed.append(True))
            while not flushed:
                connection.process_data_events(time_limit=_POLL)
            connection.close()
        except BaseException as exc:
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=consume, name="bench-pika-connection", daemon=True)
    thread.start()
    if not started.wait(_STARTED):
        errors.append(TimeoutError(f"pika did not start consuming within {_STARTED}s"))
    try:
        yield
    finally:
        stop.set()
        for connection in connections:
            with contextlib.suppress(Exception):  # the thread closed it already (it failed)
                connection.add_callback_threadsafe(lambda: None)  # wake it up now
        thread.join()
    _first_error(errors)


@contextmanager
def _message_flow(
    n: int, handle: Callable[[int], None], acknowledger: Acknowledger
) -> Iterator[None]:
    """W14 by hand: this thread calls the handler and then the acknowledger, message by message."""
    ack = acknowledger.ack
    for i in range(n):
        handle(i)
        ack(None, [i], [])
    yield


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
    async_supervise = None
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
        self.stream_consumer: StreamConsumer | None = _stream_consumer
        self.queue_consumer: QueueConsumer | None = _queue_consumer
        self.message_flow: MessageFlow | None = _message_flow
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
