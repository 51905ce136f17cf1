"""What a contender supplies to the workloads, and how the contenders are loaded.

A contender hosts server *logic* (an object with ``on_call`` and ``on_cast``)
in its own kind of process: an otpy GenServer, a plain thread, a Pykka actor.
For W6 it also supplies a one_for_one supervisor over one worker
(``Supervised``, or ``AsyncSupervised`` on an event loop), for W8 a
three-stage pipeline (``Pipeline``), for W9 a word count (``WordCount``), for
W10 a pool of workers (``WorkerPool``), for W11 a token bucket (``Bucket``),
for W12-W14 a consumer of a Redis stream, of a RabbitMQ queue and of an
in-process source (``StreamConsumer``, ``QueueConsumer``, ``MessageFlow``)
and for W15-W16 servers that coroutines call with ``await``
(``AsyncServers``). A contender whose servers live on an event loop (the
``asyncio`` contender) runs W1-W5 with coroutines on its ``AsyncServers``.
The workloads in ``bench._workloads`` are written once against this protocol
(W1-W6 twice: from plain threads, and from coroutines).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

DEFAULT_TIMEOUT = 5.0
"""The call timeout every contender uses unless a workload passes another (OTP's 5 s)."""

NAMES = ("otpy", "threads", "pykka", "asyncio")
"""Every contender, in the column order of the report."""

BASE_NAME = "otpy@base"
"""The extra contender of ``--base PATH``: the otpy contender on the older otpy under PATH.

Its column follows ``otpy``'s (``columns``); it is loaded with ``load(BASE_NAME, base=PATH)``.
"""


def columns(base: bool) -> tuple[str, ...]:
    """The contenders' column order: ``NAMES``, with ``BASE_NAME`` after ``otpy`` if ``base``."""
    if not base:
        return NAMES
    return (NAMES[0], BASE_NAME, *NAMES[1:])


_INSTALL_HINTS = {
    "otpy": "run from the repository root, or pip install -e .",
    "pykka": "pip install -e '.[bench]'",
    "threads": "the standard library should always import",
    "asyncio": "the standard library should always import",
}


class Logic(Protocol):
    """The behaviour of one server; the same code runs in every contender."""

    def on_call(self, request: Any) -> Any:
        """Handle a synchronous request and return the reply."""
        ...

    def on_cast(self, message: Any) -> None:
        """Handle an asynchronous message."""
        ...


PoolMap = Callable[[Callable[[int], int], Iterable[int]], list[int]]
"""Apply a function to every item on a pool of workers; results in input order."""

Crash = Literal["kill", "raise"]
"""How W6 ends a supervised worker.

``"kill"``: from outside, without running the worker's code where the
library allows it (otpy's untrappable ``"kill"`` exit signal); ``"raise"``:
a message whose handler raises ``WorkerCrashed``.
"""

CRASHES: tuple[Crash, ...] = ("kill", "raise")


class WorkerCrashed(Exception):
    """What W6's worker raises when it is told to crash (``Crash`` ``"raise"``)."""


class Supervised(Protocol):
    """W6 from a plain thread: a one_for_one supervisor restarting its one worker whenever it ends.

    Every worker, the first and each replacement, tells the benchmark that it
    is up as the last step of its start; ``next_worker`` waits for that. Workers
    are opaque handles, like servers.
    """

    def next_worker(self, timeout: float) -> Any:
        """Wait until a worker not yet returned has started and return it.

        Raises:
            TimeoutError: no worker reported within ``timeout`` seconds.
        """
        ...

    def crash(self, worker: Any, how: Crash) -> None:
        """End ``worker`` the way ``how`` says, without waiting for the restart."""
        ...

    def restarts(self) -> int:
        """How many restarts the supervisor has made."""
        ...


Supervise = Callable[[], AbstractContextManager[Supervised]]
"""Start a supervisor and its first worker; leaving the context stops both (and waits)."""


class AsyncSupervised(Protocol):
    """W6 on an event loop: ``Supervised``, its wait a coroutine; every method runs on the loop."""

    async def next_worker(self, timeout: float) -> Any:
        """Wait until a worker not yet returned has started and return it.

        Raises:
            TimeoutError: no worker reported within ``timeout`` seconds.
        """
        ...

    def crash(self, worker: Any, how: Crash) -> None:
        """End ``worker`` the way ``how`` says, without waiting for the restart."""
        ...

    def restarts(self) -> int:
        """How many restarts the supervisor has made."""
        ...


AsyncSupervise = Callable[[], AbstractAsyncContextManager[AsyncSupervised]]
"""Start a supervisor task and its first worker on the running loop; leaving stops both."""


IN_FLIGHT = 1000
"""W8: the most events waiting between two stages (otpy: ``max_demand``; threads: the queue's)."""


class Sink(Protocol):
    """W8's consumer logic: the last stage hands it every event (the same code in every contender)."""

    def add(self, event: int) -> None:
        """Take one event."""
        ...

    def add_all(self, events: list[int]) -> None:
        """Take a batch of events, in order."""
        ...


Go = Callable[[], None]
"""Let W8's producer start emitting."""

Pipeline = Callable[[int, int, Sink], AbstractContextManager[Go]]
"""W8: ``pipeline(n, batch, sink)`` starts producer → producer_consumer → consumer.

The producer emits the ints ``0 .. n-1``, the producer_consumer doubles
each, the consumer hands each result to ``sink``; at most ``IN_FLIGHT``
events wait between two stages. Entering the context returns ``go``, and
nothing is emitted before it is called; leaving stops the three stages (and
waits). ``batch`` is how many events the threads baseline hands over per
queue item (1: each event alone); otpy's stages exchange whatever the demand
protocol sends and ignore it.
"""

WordCount = Callable[[Sequence[str], int], Mapping[str, int]]
"""W9: ``word_count(lines, stages)``: how often each whitespace-separated word occurs.

``stages`` is how many stages work in parallel where the contender has any
(otpy's Flow); the sequential baseline ignores it.
"""


Transaction = Callable[[Callable[[Any], Any]], Any]
"""W10: ``transaction(fn)`` borrows a worker, returns ``fn(worker)`` and gives the worker back
(also when ``fn`` raises)."""

WorkerPool = Callable[[int], AbstractContextManager[Transaction]]
"""W10: ``worker_pool(size)`` starts a pool of ``size`` workers and no overflow.

Entering the context returns its ``transaction``, which any thread may call;
leaving stops the pool (and waits). Workers are opaque handles.
"""

TryAcquire = Callable[[int], bool]
"""W11: ``try_acquire(tokens)`` takes ``tokens`` if the bucket has them, never waits."""

Bucket = Callable[[float, float], AbstractContextManager[TryAcquire]]
"""W11: ``bucket(rate, capacity)`` starts a full token bucket on the refill ``rate`` (tokens/s).

Entering the context returns its ``try_acquire``, which any thread may call;
leaving stops the bucket (and waits).
"""


@dataclass(frozen=True)
class StreamSource:
    """W12: a Redis stream holding the entries, and a consumer group made for this measurement.

    The group exists already (made at id ``0``, so it hands out every entry);
    a consumer uses it as it is.
    """

    url: str
    stream: str
    group: str
    workers: int
    """How many messages are handled at once: the pipeline's processors, the pool's threads."""
    batch: int
    """Entries per read and per ``XACK`` by hand; the pipeline's ``batch_size``."""


StreamConsumer = Callable[
    [StreamSource, Callable[[dict[str, str]], None]], AbstractContextManager[None]
]
"""W12: ``stream_consumer(source, handle)`` consumes ``source``'s stream through its group.

It calls ``handle(fields)`` once for every entry (its field dict, ``str``
keys and values) and acknowledges the entry (``XACK``) after. Entering the
context starts it; leaving stops it (and waits); the entries it has read
are all acknowledged by then.
"""


@dataclass(frozen=True)
class QueueSource:
    """W13: a RabbitMQ queue holding the messages (declared, published before the clock)."""

    url: str
    queue: str
    workers: int
    """How many messages are handled at once: the pipeline's processors, the pool's threads."""
    prefetch: int
    """``basic_qos(prefetch_count)``: the most unacknowledged deliveries the consumer holds."""


QueueConsumer = Callable[[QueueSource, Callable[[bytes], None]], AbstractContextManager[None]]
"""W13: ``queue_consumer(source, handle)`` consumes ``source``'s queue.

It calls ``handle(body)`` once for every delivery and acknowledges it
(``basic_ack``) after. Entering the context starts it; leaving stops it and
closes its connection, with every delivery it handled acknowledged (RabbitMQ
requeues what a closed connection left unacknowledged).
"""


class Acknowledger(Protocol):
    """W14's acknowledger: ``otpy.pipeline``'s ``ack(ack_ref, successful, failed)``."""

    def ack(self, ack_ref: Any, successful: list[Any], failed: list[Any]) -> None:
        """Acknowledge the messages (or items) ``successful`` and ``failed``."""
        ...


MessageFlow = Callable[[int, Callable[[int], None], Acknowledger], AbstractContextManager[None]]
"""W14: ``message_flow(n, handle, acknowledger)`` takes the ints ``0 .. n-1`` from the process.

It calls ``handle(i)`` once for each and then acknowledges it with
``acknowledger.ack(ack_ref, successful, failed)``, one call per message or
per group of them (what ``successful`` holds is the contender's: otpy's
``pl.Message`` objects, plain ints by hand). Entering the context starts it
(by hand: runs the whole loop); leaving stops it (and waits).
"""

Serving = Literal["inline", "mailbox", "timer", "sleep"]
"""How a W15/W16 server handles a call, for contenders that have more than one way.

``"inline"``: replies at once, and otpy may run the handler on the caller's
thread (the default ``inline_calls``); ``"mailbox"``: replies at once, every
call through the server's mailbox (otpy: ``inline_calls = False``);
``"timer"``: one request at a time, each answered ``delay`` seconds after
the server took it up, waiting without a thread (otpy: ``send_after`` and
``NOREPLY``); ``"sleep"``: the same, the handler sleeping (otpy:
``otpy.sleep``, which holds a thread). asyncio has one way for all four: a
task serving an ``asyncio.Queue`` that awaits ``asyncio.sleep(delay)``
before each reply when ``delay`` is not 0.
"""


class AsyncServers(Protocol):
    """W15-W16 (and W1-W5 for ``asyncio``): servers that coroutines ``await`` calls to.

    Every method is called from a coroutine on the running loop; servers are
    opaque handles.
    """

    def start(self, logic: Logic, serving: Serving, delay: float) -> Any:
        """Start a server running ``logic.on_call``, handling calls as ``serving`` says."""
        ...

    async def call(self, server: Any, request: Any) -> Any:
        """Send ``request`` and await the reply: the call as a user writes it.

        With the library's default timeout: ``otpy.aio.call(pid, request)``'s
        5 s; asyncio's ``await future`` has none.
        """
        ...

    async def call_within(self, server: Any, request: Any, timeout: float) -> Any:
        """Send ``request`` and await the reply; ``TimeoutError`` after ``timeout`` seconds."""
        ...

    def cast(self, server: Any, message: Any) -> None:
        """Send ``message`` (``logic.on_cast``) without waiting; never suspends the caller."""
        ...

    async def stop(self, server: Any) -> None:
        """Stop the server and wait until it has stopped."""
        ...


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Let only CRITICAL records of the logger ``name`` (and its children) through.

    W6 crashes a worker a thousand times: every crash (and, in otpy, every
    restart) is an error report with a traceback, which would flood stderr and
    charge a formatted traceback to each restart. CRITICAL ("this is a bug")
    records still show.
    """
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


class Contender(Protocol):
    """One column of the report: a way to run servers concurrently.

    Servers are opaque handles: whatever ``start`` returns is what ``call``,
    ``cast`` and ``stop`` take.
    """

    name: str
    """The column name: ``"otpy"``, ``"threads"``, ``"pykka"``, ``"asyncio"`` or ``"otpy@base"``."""

    version: str
    """Shown in the report's header."""

    source: str | None
    """Where its library was loaded from if not the usual import (``otpy@base``: PATH), else None.

    W4's memory probe hands it to the fresh interpreter that loads the contender again.
    """

    one_thread_each: bool
    """True when every server costs an OS thread (W4 then stops below the largest size)."""

    serves_threads: bool
    """True when ``start``/``call``/``cast``/``stop`` serve plain threads (W1-W5).

    False for ``asyncio``, whose servers live on an event loop and take calls
    from its coroutines only: W1-W5 then run as coroutines on ``aio``.
    """

    pool_map: PoolMap | None
    """W7's contender, or ``None`` when the library has no equivalent."""

    supervise: Supervise | None
    """W6's supervisor driven from a plain thread, or ``None``."""

    async_supervise: AsyncSupervise | None
    """W6's supervisor on an event loop (``asyncio``), or ``None`` (a contender has one of two)."""

    pipeline: Pipeline | None
    """W8's three stages, or ``None`` when the library has no stages."""

    word_count: WordCount | None
    """W9's word count, or ``None`` when the library has no equivalent."""

    worker_pool: WorkerPool | None
    """W10's pool of workers, or ``None`` when the contender has none."""

    bucket: Bucket | None
    """W11's token bucket, or ``None`` when the contender has none."""

    stream_consumer: StreamConsumer | None
    """W12's Redis stream consumer, or ``None`` when the contender has none."""

    queue_consumer: QueueConsumer | None
    """W13's RabbitMQ queue consumer, or ``None`` when the contender has none."""

    message_flow: MessageFlow | None
    """W14's handling of messages from a source in the process, or ``None``."""

    aio: AsyncServers | None
    """W15-W16's servers for coroutines, or ``None`` when the contender has no event loop side."""

    missing: Mapping[str, str]
    """The cell's note, by workload id, for workloads whose part of the library does not import.

    otpy's ``stage``, ``flow``, ``pool``, ``ratelimit``, ``pipeline`` and
    ``aio`` are newer than its core: should one fail to import (on an older
    ``--base``, say), only its workloads show n/a (``"n/a (otpy.flow
    missing)"``), not the whole column.
    """

    def session(self) -> AbstractContextManager[object]:
        """Return the context every measurement runs in (otpy: its own ``Runtime``)."""
        ...

    def start(self, logic: Logic) -> Any:
        """Start a server running ``logic`` and return its handle once it serves."""
        ...

    def call(self, server: Any, request: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Send ``request`` and wait for the reply; raise a ``TimeoutError`` after ``timeout``."""
        ...

    def cast(self, server: Any, message: Any) -> None:
        """Send ``message`` without waiting."""
        ...

    def stop(self, server: Any) -> None:
        """Stop the server and wait until it has stopped."""
        ...


class Unavailable(Exception):
    """A contender's library cannot be imported; the report shows its column as n/a."""

    def __init__(self, name: str, cause: BaseException) -> None:
        self.name = name
        self.cause = cause
        super().__init__(
            f"{name} is not available ({type(cause).__name__}: {cause}); "
            f"its columns show n/a. To include it: {_INSTALL_HINTS[name]}"
        )


def load(name: str, base: str | None = None) -> Contender:
    """Import the contender called ``name`` (one of ``NAMES``, or ``BASE_NAME`` with ``base``).

    ``base`` is the directory holding the older otpy package for ``BASE_NAME``
    (``bench._base.load_base``); the other contenders take none.

    Raises:
        Unavailable: its library does not import.
        ValueError: ``name`` is not a contender, or ``base`` is missing or not wanted.
        bench._base.BaseError: ``base`` holds no usable otpy package.
    """
    if name == BASE_NAME:
        if base is None:
            raise ValueError(f"the {BASE_NAME} contender needs base=PATH (--base PATH)")
        from ._base import load_base

        based: Contender = load_base(base)
        return based
    if base is not None:
        raise ValueError(f"base=PATH is for the {BASE_NAME} contender only, not {name!r}")
    if name not in NAMES:
        raise ValueError(
            f"unknown contender {name!r}; choose one of {', '.join(NAMES)} or {BASE_NAME}"
        )
    try:
        module = importlib.import_module(f"bench._{name}")
    except Exception as exc:  # a half-written library may fail with anything on import
        raise Unavailable(name, exc) from exc
    contender: Contender = module.make_contender()
    return contender
