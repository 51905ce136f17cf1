"""The workloads W1-W16, written once against the ``Contender`` protocol.

Each runner opens the contender's session, sets up outside the timed region,
times only the workload itself, checks the result (a benchmark that loses
messages must fail, not look fast), and stops what it started.

W1-W6 exist in two flavours: driven from plain threads (``start``/``call``/
``cast``/``stop``, ``supervise``), and, for a contender whose servers live
on an event loop (``serves_threads`` False: ``asyncio``), driven from
coroutines on ``aio`` (and ``async_supervise``) inside one ``asyncio.run``.
The runner picks the flavour; the logic, the sizes and the checks are the same.

``build_cases`` turns the runners into the report's rows and ``build_targets``
states the issue's targets for them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import random
import sys
import threading
from collections import Counter as WordCounts
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Literal, Protocol

from . import _brokers
from ._contender import (
    BASE_NAME,
    CRASHES,
    DEFAULT_TIMEOUT,
    IN_FLIGHT,
    AsyncServers,
    AsyncSupervised,
    Contender,
    Crash,
    Serving,
    Supervised,
)
from ._memory import kb_per_process

COUNT = "count"
"""The call that asks a ``Counter`` how many casts it has handled."""

TICK = "tick"
"""The cast a ``Counter`` counts."""

CONFIRM_TIMEOUT = 120.0
"""How long a confirming call or the ring's last hop may take (the server works through a backlog)."""


class WrongResult(Exception):
    """A contender answered wrongly: lost a message, replied with the wrong value."""


# --- the server logic every contender runs ---------------------------------------------


class Counter:
    """W1-W4: replies ``request + 1`` to a call, counts casts, tells the count on ``COUNT``."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def on_call(self, request: Any) -> Any:
        if request is COUNT:
            return self.count
        return request + 1

    def on_cast(self, message: Any) -> None:
        self.count += 1


def _no_next(token: int) -> None:
    raise RuntimeError(
        "a ring node got the token before its next node was set; this is a bug in bench"
    )


class Flag(Protocol):
    """What W5's last node sets: a ``threading.Event``, or an ``asyncio.Event`` on a loop."""

    def set(self) -> None:
        """Set the flag."""
        ...


class RingNode:
    """W5: casts the token, decremented, to the next node; sets ``done`` when it reaches 0."""

    __slots__ = ("done", "forward")

    def __init__(self, done: Flag) -> None:
        self.done = done
        self.forward: Callable[[int], None] = _no_next

    def on_call(self, request: Any) -> None:
        raise WrongResult(f"a ring node takes no calls; got {request!r}")

    def on_cast(self, token: int) -> None:
        if token:
            self.forward(token - 1)
        else:
            self.done.set()


class Tally:
    """W8's consumer logic: counts and sums the events; sets ``done`` once it has seen ``expected``."""

    __slots__ = ("count", "done", "expected", "total")

    def __init__(self, expected: int) -> None:
        self.count = 0
        self.total = 0
        self.expected = expected
        self.done = threading.Event()

    def add(self, event: int) -> None:
        self.count += 1
        self.total += event
        if self.count >= self.expected:
            self.done.set()

    def add_all(self, events: list[int]) -> None:
        self.count += len(events)
        self.total += sum(events)
        if self.count >= self.expected:
            self.done.set()


class Orders:
    """W12 and W13's work per message: decode the JSON order, add its amount to the total.

    The same code for every contender; ``done`` is set once ``expected``
    messages were handled. Several threads (processors, a pool's) call it:
    ``_lock`` guards ``count`` and ``total``.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.count = 0
        self.total = 0

    def take(self, body: str | bytes) -> None:
        """Handle one message: its body is ``bench._brokers.order(i)``."""
        amount = json.loads(body)["amount"]
        with self._lock:
            self.count += 1
            self.total += amount
            if self.count >= self.expected:
                self.done.set()

    def take_entry(self, fields: dict[str, str]) -> None:
        """Handle one stream entry: ``take`` of its ``order`` field."""
        self.take(fields[_brokers.FIELD])

    def check(self, name: str, n: int) -> None:
        """Every one of the ``n`` orders was handled once: ``n`` of them, amounts 0 .. n-1.

        Raises:
            WrongResult: otherwise.
        """
        with self._lock:
            count, total = self.count, self.total
        if (count, total) != (n, n * (n - 1) // 2):
            raise WrongResult(
                f"{name}: {count:,} orders handled, amounts summing to {total:,}; expected "
                f"{n:,} summing to {n * (n - 1) // 2:,}"
            )


def touch(data: int) -> None:
    """W14's handler: nothing to do (the pipeline's cost is what is measured)."""


class Acks:
    """W14's acknowledger: counts what it is asked to acknowledge; ``done`` once ``expected`` are.

    The pipeline's processors call ``ack`` from several threads: ``_lock``
    guards ``acked``, ``failed`` and ``calls``.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.acked = 0
        self.failed = 0
        self.calls = 0

    def ack(self, ack_ref: Any, successful: list[Any], failed: list[Any]) -> None:
        with self._lock:
            self.calls += 1
            self.acked += len(successful) + len(failed)
            self.failed += len(failed)
            if self.acked >= self.expected:
                self.done.set()


@dataclass(frozen=True)
class Text:
    """W9's input: lines of words, their size in bytes, and how often each word occurs."""

    lines: tuple[str, ...]
    size: int
    """Bytes, counting a newline after every line (the text is ASCII)."""
    counts: WordCounts[str]
    """Counted as the words were drawn, not by splitting the lines."""


TEXT_SEED = 9
VOCABULARY = 10_000
WORDS_PER_LINE = 12


@functools.cache
def make_text(size: int) -> Text:
    """W9's text of at least ``size`` bytes, the same in every run (made once per run).

    Words are 1 to 10 random lowercase letters from a vocabulary of
    ``VOCABULARY``, drawn with Zipf's weights (the word of rank r weighs
    1/r), ``WORDS_PER_LINE`` to a line.
    """
    rng = random.Random(TEXT_SEED)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choices(letters, k=rng.randint(1, 10))) for _ in range(VOCABULARY)]
    weights = list(itertools.accumulate(1 / rank for rank in range(1, VOCABULARY + 1)))
    lines: list[str] = []
    counts: WordCounts[str] = WordCounts()
    written = 0
    while written < size:
        words = rng.choices(vocabulary, cum_weights=weights, k=WORDS_PER_LINE)
        counts.update(words)
        line = " ".join(words)
        lines.append(line)
        written += len(line) + 1
    return Text(tuple(lines), written, counts)


# --- the runners ----------------------------------------------------------------------


def _confirm_count(contender: Contender, server: Any, expected: int) -> None:
    count = contender.call(server, COUNT, timeout=CONFIRM_TIMEOUT)
    if count != expected:
        raise WrongResult(
            f"{contender.name}: the server counted {count} casts, expected {expected}"
        )


def _awaited(contender: Contender, main: Callable[[], Any]) -> Any:
    """Run the coroutine ``main()`` in the contender's session, on a new loop (``asyncio.run``)."""
    with contender.session():
        return asyncio.run(main())


def calls(contender: Contender, n: int) -> float:
    """W1: ``n`` synchronous calls to one server; µs per call.

    On an event loop: one coroutine awaits the calls one after the other.
    """
    if not contender.serves_threads:
        return _awaited_calls(contender, _async_servers(contender, "W1"), n)
    with contender.session():
        server = contender.start(Counter())
        call = contender.call
        start = perf_counter()
        for i in range(n):
            if call(server, i) != i + 1:
                raise WrongResult(f"{contender.name}: call({i}) did not reply {i + 1}")
        elapsed = perf_counter() - start
        contender.stop(server)
    return elapsed / n * 1e6


def _awaited_calls(contender: Contender, servers: AsyncServers, n: int) -> float:
    async def main() -> float:
        server = servers.start(Counter(), "inline", 0.0)
        call = servers.call
        start = perf_counter()
        for i in range(n):
            if await call(server, i) != i + 1:
                raise WrongResult(f"{contender.name}: call({i}) did not reply {i + 1}")
        elapsed = perf_counter() - start
        await servers.stop(server)
        return elapsed

    elapsed: float = _awaited(contender, main)
    return elapsed / n * 1e6


async def _confirm_awaited(
    contender: Contender, servers: AsyncServers, server: Any, expected: int
) -> None:
    count = await servers.call_within(server, COUNT, CONFIRM_TIMEOUT)
    if count != expected:
        raise WrongResult(
            f"{contender.name}: the server counted {count} casts, expected {expected}"
        )


def casts(contender: Contender, n: int) -> float:
    """W2: ``n`` casts to one server, then a call that confirms the count; messages/s.

    On an event loop: one coroutine casts, then awaits the confirming call.
    """
    if not contender.serves_threads:
        return _awaited_casts(contender, _async_servers(contender, "W2"), n)
    with contender.session():
        server = contender.start(Counter())
        cast = contender.cast
        start = perf_counter()
        for _ in range(n):
            cast(server, TICK)
        _confirm_count(contender, server, n)
        elapsed = perf_counter() - start
        contender.stop(server)
    return n / elapsed


def _awaited_casts(contender: Contender, servers: AsyncServers, n: int) -> float:
    async def main() -> float:
        server = servers.start(Counter(), "inline", 0.0)
        cast = servers.cast
        start = perf_counter()
        for _ in range(n):
            cast(server, TICK)
        await _confirm_awaited(contender, servers, server, n)
        elapsed = perf_counter() - start
        await servers.stop(server)
        return elapsed

    elapsed: float = _awaited(contender, main)
    return n / elapsed


def concurrent_casts(contender: Contender, threads: int, per_thread: int) -> float:
    """W3: ``threads`` plain threads each cast ``per_thread`` times to one server; messages/s.

    The clock starts when every producer thread is ready (a barrier) and stops
    when a call confirms that the server has counted every cast. On an event
    loop the producers are ``threads`` tasks on the same loop (``_task_casts``).
    """
    if not contender.serves_threads:
        return _task_casts(contender, _async_servers(contender, "W3"), threads, per_thread)
    with contender.session():
        server = contender.start(Counter())
        cast = contender.cast
        ready = threading.Barrier(threads + 1, timeout=CONFIRM_TIMEOUT)
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                ready.wait()
                for _ in range(per_thread):
                    cast(server, TICK)
            except BaseException as exc:  # reported by the main thread below
                errors.append(exc)

        producers = [
            threading.Thread(target=produce, name=f"bench-producer-{i}") for i in range(threads)
        ]
        for producer in producers:
            producer.start()
        ready.wait()
        start = perf_counter()
        for producer in producers:
            producer.join()
        if errors:
            raise errors[0]
        _confirm_count(contender, server, threads * per_thread)
        elapsed = perf_counter() - start
        contender.stop(server)
    return threads * per_thread / elapsed


def _task_casts(contender: Contender, servers: AsyncServers, tasks: int, per_task: int) -> float:
    """W3 on an event loop: ``tasks`` producer tasks, let go together, then the confirming call.

    Every task waits for one ``asyncio.Event`` (the barrier); the clock starts
    when it is set. A cast never suspends its task (``put_nowait``), so each
    task casts its share in one turn and the server runs once they are done:
    that is how tasks on one loop share it.
    """

    async def main() -> float:
        server = servers.start(Counter(), "inline", 0.0)
        cast = servers.cast
        go = asyncio.Event()

        async def produce() -> None:
            await go.wait()
            for _ in range(per_task):
                cast(server, TICK)

        producers = [asyncio.create_task(produce()) for _ in range(tasks)]
        await asyncio.sleep(0)  # every producer runs up to its wait for the go
        start = perf_counter()
        go.set()
        await asyncio.gather(*producers)
        await _confirm_awaited(contender, servers, server, tasks * per_task)
        elapsed = perf_counter() - start
        await servers.stop(server)
        return elapsed

    elapsed: float = _awaited(contender, main)
    return tasks * per_task / elapsed


Probe = Callable[[Literal["baseline", "all alive"]], None]
"""Called by ``spawn_call_stop`` before the servers start and once all of them are alive."""


def _no_probe(moment: Literal["baseline", "all alive"]) -> None:
    pass


def spawn_call_stop(contender: Contender, n: int, probe: Probe = _no_probe) -> float:
    """W4: start ``n`` servers, call each once, stop all; seconds.

    One server is started, called and stopped first, untimed, so that lazy
    set-up (a pool thread, an import) is not charged to the workload.
    ``probe`` lets ``bench._memory`` read the RSS while all ``n`` are alive.
    On an event loop, the servers are tasks: all of them have run up to
    their first wait for a message (``asyncio.sleep(0)`` after starting
    them, inside the clock) before they count as alive.
    """
    if not contender.serves_threads:
        return _spawned_tasks(contender, _async_servers(contender, "W4"), n, probe)
    with contender.session():
        warm_up = contender.start(Counter())
        contender.call(warm_up, 0)
        contender.stop(warm_up)
        probe("baseline")
        start = perf_counter()
        servers = [contender.start(Counter()) for _ in range(n)]
        probe("all alive")
        call = contender.call
        for i, server in enumerate(servers):
            if call(server, i) != i + 1:
                raise WrongResult(f"{contender.name}: server {i} did not reply {i + 1}")
        for server in servers:
            contender.stop(server)
        elapsed = perf_counter() - start
    return elapsed


def _spawned_tasks(contender: Contender, servers: AsyncServers, n: int, probe: Probe) -> float:
    async def main() -> float:
        warm_up = servers.start(Counter(), "inline", 0.0)
        await servers.call(warm_up, 0)
        await servers.stop(warm_up)
        probe("baseline")
        start = perf_counter()
        hosted = [servers.start(Counter(), "inline", 0.0) for _ in range(n)]
        await asyncio.sleep(0)  # every task runs up to its first wait for a message
        probe("all alive")
        call = servers.call
        for i, server in enumerate(hosted):
            if await call(server, i) != i + 1:
                raise WrongResult(f"{contender.name}: server {i} did not reply {i + 1}")
        for server in hosted:
            await servers.stop(server)
        return perf_counter() - start

    elapsed: float = _awaited(contender, main)
    return elapsed


def ring(contender: Contender, size: int, laps: int) -> float:
    """W5: a ring of ``size`` servers passes a token ``laps`` times round; µs per hop.

    On an event loop: the nodes are tasks, the last one sets an ``asyncio.Event``.
    """
    if not contender.serves_threads:
        return _task_ring(contender, _async_servers(contender, "W5"), size, laps)
    with contender.session():
        done = threading.Event()
        nodes = [RingNode(done) for _ in range(size)]
        servers = [contender.start(node) for node in nodes]
        for node, next_server in zip(nodes, servers[1:] + servers[:1], strict=True):
            node.forward = functools.partial(contender.cast, next_server)
        hops = size * laps
        start = perf_counter()
        contender.cast(servers[0], hops)
        if not done.wait(CONFIRM_TIMEOUT):
            raise WrongResult(
                f"{contender.name}: the token did not finish {hops} hops in {CONFIRM_TIMEOUT}s"
            )
        elapsed = perf_counter() - start
        for server in servers:
            contender.stop(server)
    return elapsed / hops * 1e6


def _task_ring(contender: Contender, servers: AsyncServers, size: int, laps: int) -> float:
    async def main() -> float:
        done = asyncio.Event()
        nodes = [RingNode(done) for _ in range(size)]
        hosted = [servers.start(node, "inline", 0.0) for node in nodes]
        for node, next_server in zip(nodes, hosted[1:] + hosted[:1], strict=True):
            node.forward = functools.partial(servers.cast, next_server)
        hops = size * laps
        start = perf_counter()
        servers.cast(hosted[0], hops)
        try:
            await asyncio.wait_for(done.wait(), CONFIRM_TIMEOUT)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise WrongResult(
                f"{contender.name}: the token did not finish {hops} hops in {CONFIRM_TIMEOUT}s"
            ) from None
        elapsed = perf_counter() - start
        for server in hosted:
            await servers.stop(server)
        return elapsed / hops * 1e6

    per_hop: float = _awaited(contender, main)
    return per_hop


def _crash_and_replace(
    contender: Contender, supervised: Supervised, worker: Any, how: Crash, cycles: int
) -> Any:
    """Crash ``worker`` and wait for its replacement, ``cycles`` times; the last replacement."""
    crash, next_worker = supervised.crash, supervised.next_worker
    for _ in range(cycles):
        crash(worker, how)
        replacement = next_worker(DEFAULT_TIMEOUT)
        if replacement == worker:
            raise WrongResult(f"{contender.name}: the crashed worker reported as its replacement")
        worker = replacement
    return worker


def restarts(contender: Contender, n: int, how: Crash) -> float:
    """W6: a one_for_one supervisor restarts its crashing worker ``n`` times; µs per restart.

    Each cycle crashes the current worker (``how``) and waits until its
    replacement has told the benchmark that it is up: the time from the crash
    to a running replacement, one restart after the other. One cycle runs
    first, untimed (lazy set-up). The supervisor must count every restart.
    On an event loop (``async_supervise``) the same cycles run in a coroutine.
    """
    if contender.supervise is None and contender.async_supervise is not None:
        return _task_restarts(contender, n, how)
    if contender.supervise is None:
        raise ValueError(f"{contender.name} has no supervisor; skip W6 for it")
    with contender.session(), contender.supervise() as supervised:
        worker = supervised.next_worker(DEFAULT_TIMEOUT)
        worker = _crash_and_replace(contender, supervised, worker, how, 1)
        start = perf_counter()
        _crash_and_replace(contender, supervised, worker, how, n)
        elapsed = perf_counter() - start
        counted = supervised.restarts()
        if counted != n + 1:
            raise WrongResult(
                f"{contender.name}: the supervisor counted {counted} restarts, expected {n + 1}"
            )
    return elapsed / n * 1e6


async def _crash_and_replace_awaited(
    contender: Contender, supervised: AsyncSupervised, worker: Any, how: Crash, cycles: int
) -> Any:
    crash, next_worker = supervised.crash, supervised.next_worker
    for _ in range(cycles):
        crash(worker, how)
        replacement = await next_worker(DEFAULT_TIMEOUT)
        if replacement == worker:
            raise WrongResult(f"{contender.name}: the crashed worker reported as its replacement")
        worker = replacement
    return worker


def _task_restarts(contender: Contender, n: int, how: Crash) -> float:
    supervise = contender.async_supervise
    if supervise is None:
        raise ValueError(f"{contender.name} has no supervisor on an event loop; skip W6 for it")

    async def main() -> float:
        async with supervise() as supervised:
            worker = await supervised.next_worker(DEFAULT_TIMEOUT)
            worker = await _crash_and_replace_awaited(contender, supervised, worker, how, 1)
            start = perf_counter()
            await _crash_and_replace_awaited(contender, supervised, worker, how, n)
            elapsed = perf_counter() - start
            counted = supervised.restarts()
        if counted != n + 1:
            raise WrongResult(
                f"{contender.name}: the supervisor counted {counted} restarts, expected {n + 1}"
            )
        return elapsed / n * 1e6

    per_restart: float = _awaited(contender, main)
    return per_restart


def _increment(x: int) -> int:
    return x + 1


def pool_map(contender: Contender, n: int) -> float:
    """W7: map ``x + 1`` over ``n`` items on the contender's pool, in order; items/s."""
    if contender.pool_map is None:
        raise ValueError(f"{contender.name} has no pool map; skip W7 for it")
    with contender.session():
        start = perf_counter()
        results = contender.pool_map(_increment, range(n))
        elapsed = perf_counter() - start
    if results != list(range(1, n + 1)):
        raise WrongResult(f"{contender.name}: the pool map returned wrong or unordered results")
    return n / elapsed


def stage_pipeline(contender: Contender, n: int, batch: int) -> float:
    """W8: ``n`` events through producer → producer_consumer → consumer; events/s.

    The three stages are started first, untimed; the clock runs from ``go``
    until the consumer has seen ``n`` events. Every event must then have
    arrived once, doubled: ``n`` events summing to ``n * (n - 1)``.
    """
    if contender.pipeline is None:
        raise ValueError(f"{contender.name} has no stages; skip W8 for it")
    tally = Tally(n)
    with contender.session(), contender.pipeline(n, batch, tally) as go:
        start = perf_counter()
        go()
        if not tally.done.wait(CONFIRM_TIMEOUT):
            raise WrongResult(
                f"{contender.name}: the consumer saw {tally.count:,} of {n:,} events "
                f"in {CONFIRM_TIMEOUT}s"
            )
        elapsed = perf_counter() - start
    if (tally.count, tally.total) != (n, n * (n - 1)):
        raise WrongResult(
            f"{contender.name}: the consumer saw {tally.count:,} events summing to "
            f"{tally.total:,}; expected {n:,} summing to {n * (n - 1):,}"
        )
    return n / elapsed


def word_count(contender: Contender, size: int, stages: int) -> float:
    """W9: count the words of a text of ``size`` bytes (``make_text``); MB/s.

    The text is made before the clock starts; the counts must match the words drawn.
    """
    if contender.word_count is None:
        raise ValueError(f"{contender.name} has no word count; skip W9 for it")
    text = make_text(size)
    with contender.session():
        start = perf_counter()
        counts = contender.word_count(text.lines, stages)
        elapsed = perf_counter() - start
    if dict(counts) != dict(text.counts):
        wrong = sum(1 for word, count in text.counts.items() if counts.get(word) != count)
        raise WrongResult(
            f"{contender.name}: {wrong:,} of {len(text.counts):,} words miscounted, "
            f"{len(set(counts) - set(text.counts)):,} words that are not in the text"
        )
    return text.size / elapsed / 1e6


# --- W10, W11: plain threads on a pool and on a token bucket ---------------------------


def _race(threads: int, name: str, work: Callable[[int, float], None]) -> float:
    """Run ``work(i, start)`` in ``threads`` plain threads, all let go at once; seconds until all ended.

    The clock starts when every thread is ready: the barrier's action reads
    it (``start``, the same for all) before it lets them go. The first
    exception a thread raised is raised here, after all of them ended.
    """
    start: list[float] = []  # written by the barrier's action, read after the barrier
    ready = threading.Barrier(
        threads + 1, action=lambda: start.append(perf_counter()), timeout=CONFIRM_TIMEOUT
    )
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            ready.wait()
            work(i, start[0])
        except BaseException as exc:  # reported by the main thread below
            errors.append(exc)

    workers = [
        threading.Thread(target=run, args=(i,), name=f"bench-{name}-{i}") for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    ready.wait()
    for worker in workers:
        worker.join()
    elapsed = perf_counter() - start[0]
    if errors:
        raise errors[0]
    return elapsed


def _same(worker: Any) -> Any:
    """W10's transaction body: hands back the worker it was given."""
    return worker


def transactions(contender: Contender, threads: int, per_thread: int, size: int) -> float:
    """W10: ``threads`` plain threads each run ``per_thread`` transactions on a pool; per second.

    Every transaction must return the worker it borrowed, and all of them
    together must have borrowed no more than ``size`` workers (no overflow).
    """
    if contender.worker_pool is None:
        raise ValueError(f"{contender.name} has no pool of workers; skip W10 for it")
    with contender.session(), contender.worker_pool(size) as transaction:
        seen: list[set[Any]] = [set() for _ in range(threads)]
        done = [0] * threads

        def work(i: int, start: float) -> None:
            mine = seen[i]
            for _ in range(per_thread):
                mine.add(transaction(_same))
            done[i] = per_thread

        elapsed = _race(threads, "pool-client", work)
    workers = set().union(*seen)
    if sum(done) != threads * per_thread or None in workers or len(workers) > size:
        raise WrongResult(
            f"{contender.name}: {sum(done):,} of {threads * per_thread:,} transactions ran, "
            f"on {len(workers)} distinct workers (the pool has {size})"
        )
    return threads * per_thread / elapsed


CHEAP_RATE = 1e9
"""W11's calls/s row: rate and capacity so large that every ``try_acquire`` succeeds."""

PACED_RATE = 1_000.0
PACED_CAPACITY = 10.0
"""W11's granted-rate row: the bucket's rate (tokens/s) and capacity."""


def acquires(contender: Contender, threads: int, per_thread: int) -> float:
    """W11: ``threads`` plain threads each call ``try_acquire(1)`` ``per_thread`` times; calls/s.

    The bucket (rate and capacity ``CHEAP_RATE``) never runs dry, so every
    call must succeed: what is measured is the cost of asking.
    """
    if contender.bucket is None:
        raise ValueError(f"{contender.name} has no token bucket; skip W11 for it")
    with contender.session(), contender.bucket(CHEAP_RATE, CHEAP_RATE) as try_acquire:
        refused = [0] * threads

        def work(i: int, start: float) -> None:
            no = 0
            for _ in range(per_thread):
                if not try_acquire(1):
                    no += 1
            refused[i] = no

        elapsed = _race(threads, "bucket-client", work)
    if sum(refused):
        raise WrongResult(
            f"{contender.name}: a bucket of {CHEAP_RATE:g} tokens refused {sum(refused):,} "
            f"of {threads * per_thread:,} single tokens"
        )
    return threads * per_thread / elapsed


def granted_rate(contender: Contender, threads: int, window: float) -> float:
    """W11: ``threads`` plain threads call ``try_acquire(1)`` for ``window`` s; % off the rate.

    The bucket has rate ``PACED_RATE`` and capacity ``PACED_CAPACITY`` and
    starts full. The figure is ``(granted / window - rate) / rate`` in per
    cent: the full bucket's first ``capacity`` tokens are in it (+0.2 % over
    5 s at the default sizes). Every thread stops asking ``window`` seconds
    after the common start.
    """
    if contender.bucket is None:
        raise ValueError(f"{contender.name} has no token bucket; skip W11 for it")
    with contender.session(), contender.bucket(PACED_RATE, PACED_CAPACITY) as try_acquire:
        granted = [0] * threads

        def work(i: int, start: float) -> None:
            end = start + window
            yes = 0
            while perf_counter() < end:
                if try_acquire(1):
                    yes += 1
            granted[i] = yes

        _race(threads, "bucket-client", work)
    return (sum(granted) / window - PACED_RATE) / PACED_RATE * 100


# --- W12-W14: messages through a pipeline ---------------------------------------------


def _wait_for(
    done: threading.Event, what: Callable[[], str], check: Callable[[], None] | None = None
) -> None:
    """Wait up to ``CONFIRM_TIMEOUT`` for ``done``; else a WrongResult saying ``what()``.

    ``check``, if given, is called every ``CHECK_EVERY`` seconds meanwhile;
    what it raises ends the wait.
    """
    deadline = perf_counter() + CONFIRM_TIMEOUT
    while not done.wait(CHECK_EVERY if check is not None else CONFIRM_TIMEOUT):
        if check is not None:
            check()
        if perf_counter() >= deadline:
            raise WrongResult(f"{what()} in {CONFIRM_TIMEOUT}s")


CHECK_EVERY = 0.1
"""W13: seconds between two looks at ``ConnectionWatch`` while the messages are handled."""

DISTURBED_ATTEMPTS = 3
"""W13: how often a measurement is made again when RabbitMQ closed every connection meanwhile."""

remeasured: WordCounts[str] = WordCounts()
"""W13's measurements made again, by contender name, for the report's notes (written and read
by the runner's one thread)."""


def stream_entries(contender: Contender, n: int, workers: int, batch: int) -> float:
    """W12: ``n`` entries of a Redis stream through the contender's consumer; messages/s.

    The stream and a new consumer group are made before the clock starts
    (``bench._brokers.redis_stream``); the clock runs from the consumer's start
    until every entry was handled (``Orders``) and the group has none pending
    (``XPENDING`` 0, looked at every 1 ms once all were handled). The
    consumer is stopped after the clock; nothing may be pending then either.
    """
    if contender.stream_consumer is None:
        raise ValueError(f"{contender.name} has no stream consumer; skip W12 for it")
    orders = Orders(n)
    with _brokers.redis_stream(n, workers, batch) as source:
        with contender.session():
            start = perf_counter()
            with contender.stream_consumer(source, orders.take_entry):
                _wait_for(
                    orders.done, lambda: f"{contender.name}: {orders.count:,} of {n:,} handled"
                )
                _brokers.wait_until_acked(source, CONFIRM_TIMEOUT)
                elapsed = perf_counter() - start
        left = _brokers.pending(source)
    orders.check(contender.name, n)
    if left:
        raise WrongResult(f"{contender.name}: {left:,} entries pending after the consumer stopped")
    return n / elapsed


def queue_messages(contender: Contender, n: int, workers: int, prefetch: int) -> float:
    """W13: ``n`` messages of a RabbitMQ queue through the contender's consumer; messages/s.

    The queue is filled before the clock starts (``bench._brokers.rabbitmq_queue``);
    the clock runs from the consumer's start until every message was handled
    and the consumer has stopped and closed its connection. AMQP has no way
    to ask for a queue's unacknowledged count, but RabbitMQ requeues what a
    closed connection left unacknowledged: the queue must then hold no
    message ready, or some were not acked.

    RabbitMQ is shared with the test suite, which closes every connection
    now and then: should that happen during a measurement (``ConnectionWatch``
    in ``bench._brokers``), the measurement is void and is made again, with
    a note on stderr, at most ``DISTURBED_ATTEMPTS`` times.
    """
    if contender.queue_consumer is None:
        raise ValueError(f"{contender.name} has no queue consumer; skip W13 for it")
    for attempt in range(1, DISTURBED_ATTEMPTS + 1):
        try:
            return _queue_messages_once(contender, n, workers, prefetch)
        except _brokers.Disturbed as exc:
            if attempt == DISTURBED_ATTEMPTS:
                raise WrongResult(f"{contender.name}: {exc}, {attempt} times") from exc
            remeasured[contender.name] += 1
            print(f"note: W13 {contender.name}: {exc}; measuring again", file=sys.stderr)
    raise AssertionError("unreachable")


def _queue_messages_once(contender: Contender, n: int, workers: int, prefetch: int) -> float:
    """One W13 measurement; ``Disturbed`` if RabbitMQ closed every connection meanwhile."""
    consumer = contender.queue_consumer
    assert consumer is not None
    orders = Orders(n)
    with (
        _brokers.rabbitmq_queue(n, workers, prefetch) as source,
        _brokers.watch_connections() as watch,
    ):
        try:
            with contender.session():
                start = perf_counter()
                with consumer(source, orders.take):
                    _wait_for(
                        orders.done,
                        lambda: f"{contender.name}: {orders.count:,} of {n:,} handled",
                        watch.check,
                    )
                elapsed = perf_counter() - start
        except Exception:
            watch.check()  # a consumer that failed because its connection was closed
            raise
        watch.check()
        left = _brokers.ready(source)
    orders.check(contender.name, n)
    if left:
        raise WrongResult(f"{contender.name}: {left:,} messages were not acknowledged")
    return n / elapsed


def pipeline_overhead(contender: Contender, n: int) -> float:
    """W14: ``n`` messages from a source in the process, a handler that does nothing; messages/s.

    The clock runs from the start (otpy: ``Pipeline.start_link``) until the
    acknowledger (``Acks``) was asked to acknowledge all ``n``, none of them
    as failed.
    """
    if contender.message_flow is None:
        raise ValueError(f"{contender.name} has no message flow; skip W14 for it")
    acks = Acks(n)
    with contender.session():
        start = perf_counter()
        with contender.message_flow(n, touch, acks):
            _wait_for(acks.done, lambda: f"{contender.name}: {acks.acked:,} of {n:,} acked")
            elapsed = perf_counter() - start
    if (acks.acked, acks.failed) != (n, 0):
        raise WrongResult(
            f"{contender.name}: {acks.acked:,} messages acknowledged ({acks.failed:,} as "
            f"failed); expected {n:,}, none failed"
        )
    return n / elapsed


# --- W15, W16: calls awaited by coroutines ---------------------------------------------


def _async_servers(contender: Contender, workload: str) -> AsyncServers:
    if contender.aio is None:
        raise ValueError(f"{contender.name} has no event loop side; skip {workload} for it")
    return contender.aio


def round_trips(contender: Contender, n: int, serving: Serving) -> float:
    """W15: one coroutine awaits ``n`` calls to one server, one after the other; µs per call.

    Each call is the contender's plain ``call``, as a user writes it (otpy's
    with its default 5 s timeout, asyncio's bare ``await future``); one
    ``asyncio.wait_for`` of ``CONFIRM_TIMEOUT`` bounds the whole loop.
    """
    servers = _async_servers(contender, "W15")

    async def loop(server: Any) -> float:
        call = servers.call
        start = perf_counter()
        for i in range(n):
            if await call(server, i) != i + 1:
                raise WrongResult(f"{contender.name}: call({i}) did not reply {i + 1}")
        return perf_counter() - start

    async def main() -> float:
        server = servers.start(Counter(), serving, 0.0)
        elapsed = await asyncio.wait_for(loop(server), CONFIRM_TIMEOUT)
        await servers.stop(server)
        return elapsed

    with contender.session():
        elapsed = asyncio.run(main())
    return elapsed / n * 1e6


SAMPLE_EVERY = 0.01
"""W16: seconds between two looks at ``threading.active_count()``."""


class ThreadPeak:
    """The most threads alive (``threading.active_count()``) while the context is open.

    A thread of its own looks as soon as it starts and then every
    ``SAMPLE_EVERY`` seconds (it counts itself); one more look is taken on
    exit, after it was joined. ``peak`` is written by the sampling thread
    only while it runs, and by the exiting thread only after the join.
    """

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-thread-peak")

    def _look(self) -> None:
        self.peak = max(self.peak, threading.active_count())

    def _sample(self) -> None:
        while True:
            self._look()
            if self._stop.wait(SAMPLE_EVERY):
                return

    def __enter__(self) -> ThreadPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._look()


WAIT = 0.01
"""W16: how long every request keeps its server busy (10 ms)."""

_thread_peaks: dict[tuple[str, str], int] = {}
"""W16's thread counts, by (time row's key, contender name): the time row's measurement writes
its peak here, the threads row of the same round takes it (the runner runs the rows in order,
all in its one thread)."""


def gathered_calls(
    contender: Contender, n: int, servers_n: int, serving: Serving, key: str
) -> float:
    """W16: ``n`` calls to ``servers_n`` servers, all awaited at once (``asyncio.gather``); seconds.

    Every server takes one request at a time and answers it ``WAIT`` after
    it took it up, so the ideal is ``n / servers_n * WAIT``; call ``i`` goes
    to server ``i % servers_n``. The servers are started before the clock;
    ``ThreadPeak`` watches the threads from the gather to its last reply
    (its peak is what the threads row ``threads_alive`` shows). Every reply
    must be its request + 1.
    """
    servers = _async_servers(contender, "W16")

    async def main() -> tuple[float, int, list[Any]]:
        hosted = [servers.start(Counter(), serving, WAIT) for _ in range(servers_n)]
        call = servers.call_within
        with ThreadPeak() as threads:
            start = perf_counter()
            replies = await asyncio.gather(
                *(call(hosted[i % servers_n], i, CONFIRM_TIMEOUT) for i in range(n))
            )
            elapsed = perf_counter() - start
        for server in hosted:
            await servers.stop(server)
        return elapsed, threads.peak, replies

    with contender.session():
        elapsed, peak, replies = asyncio.run(main())
    wrong = sum(1 for i, reply in enumerate(replies) if reply != i + 1)
    if wrong or len(replies) != n:
        raise WrongResult(f"{contender.name}: {wrong:,} of {n:,} replies were not request + 1")
    _thread_peaks[(key, contender.name)] = peak
    return elapsed


def threads_alive(contender: Contender, key: str) -> float:
    """W16's threads row: the peak that the time row ``key`` saw in this round."""
    peak = _thread_peaks.pop((key, contender.name), None)
    if peak is None:
        raise RuntimeError(f"{key} has no thread count for {contender.name} (its time row failed)")
    return peak


# --- sizes, rows and targets ----------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    calls: int
    casts: int
    producer_threads: int
    casts_per_thread: int
    spawn: tuple[int, int, int]
    """W4's sizes; thread-per-process contenders run the first two only."""
    ring: int
    laps: int
    restarts: int
    stream: int
    events: int
    text_bytes: int
    flow_stages: int
    pool_threads: int
    transactions_per_thread: int
    pool_size: int
    bucket_threads: int
    acquires_per_thread: int
    rate_window: float
    """W11's granted-rate row: seconds the threads keep asking."""
    stream_entries: int
    """W12's entries (a multiple of ``read_batch``: no batch waits for its timeout)."""
    queue_messages: int
    """W13's messages."""
    flow_messages: int
    """W14's messages."""
    pipeline_workers: int
    """W12-W13: the pipeline's processors, the hand-written consumer's pool threads."""
    read_batch: int
    """W12: entries per XREADGROUP and XACK by hand, the pipeline's batch_size."""
    prefetch: int
    """W13: ``basic_qos`` prefetch on both sides (the pipeline's default: 8 processors x 10)."""
    awaited_calls: int
    gathered_calls: int
    gathered_servers: int

    @property
    def gather_ideal(self) -> float:
        """W16's ideal time: each server's share of the calls, one ``WAIT`` after the other."""
        return self.gathered_calls / self.gathered_servers * WAIT


FULL = Sizes(
    calls=20_000,
    casts=200_000,
    producer_threads=8,
    casts_per_thread=25_000,
    spawn=(1_000, 10_000, 100_000),
    ring=1_000,
    laps=100,
    restarts=1_000,
    stream=100_000,
    events=1_000_000,
    text_bytes=10_000_000,
    flow_stages=2,
    pool_threads=8,
    transactions_per_thread=10_000,
    pool_size=4,
    bucket_threads=8,
    acquires_per_thread=50_000,
    rate_window=5.0,
    stream_entries=100_000,
    queue_messages=100_000,
    flow_messages=200_000,
    pipeline_workers=8,
    read_batch=100,
    prefetch=80,
    awaited_calls=20_000,
    gathered_calls=10_000,
    gathered_servers=100,
)
QUICK = Sizes(
    calls=2_000,
    casts=20_000,
    producer_threads=8,
    casts_per_thread=2_500,
    spawn=(100, 1_000, 10_000),
    ring=100,
    laps=20,
    restarts=100,
    stream=10_000,
    events=100_000,
    text_bytes=1_000_000,
    flow_stages=2,
    pool_threads=8,
    transactions_per_thread=1_000,
    pool_size=4,
    bucket_threads=8,
    acquires_per_thread=2_500,
    rate_window=1.0,
    stream_entries=5_000,
    queue_messages=2_000,
    flow_messages=10_000,
    pipeline_workers=8,
    read_batch=100,
    prefetch=80,
    awaited_calls=2_000,
    gathered_calls=1_000,
    gathered_servers=100,
)


@dataclass(frozen=True)
class Unit:
    """What a row measures, and which way is better."""

    label: str
    higher_is_better: bool
    zero_is_best: bool = False
    """A signed figure whose best value is 0 (a deviation); ``higher_is_better`` is then unused."""

    @property
    def arrow(self) -> str:
        """``↑`` higher is better, ``↓`` lower is better, ``→0`` nearer 0 is better."""
        if self.zero_is_best:
            return "→0"
        return "↑" if self.higher_is_better else "↓"


US_PER_CALL = Unit("µs/call", higher_is_better=False)
MSGS_PER_S = Unit("msgs/s", higher_is_better=True)
SECONDS = Unit("s", higher_is_better=False)
KB_PER_PROCESS = Unit("KB/process", higher_is_better=False)
US_PER_HOP = Unit("µs/hop", higher_is_better=False)
US_PER_RESTART = Unit("µs/restart", higher_is_better=False)
ITEMS_PER_S = Unit("items/s", higher_is_better=True)
EVENTS_PER_S = Unit("events/s", higher_is_better=True)
MB_PER_S = Unit("MB/s", higher_is_better=True)
TRANSACTIONS_PER_S = Unit("transactions/s", higher_is_better=True)
CALLS_PER_S = Unit("calls/s", higher_is_better=True)
PER_CENT_OFF = Unit("% off rate", higher_is_better=False, zero_is_best=True)
THREADS = Unit("threads (max)", higher_is_better=False)


def _never_skipped(contender: Contender) -> str | None:
    return None


def _one_thread_each(contender: Contender) -> str | None:
    return "n/a (one thread each)" if contender.one_thread_each else None


def _no_pool_map(contender: Contender) -> str | None:
    return "n/a (no pool map)" if contender.pool_map is None else None


def _no_supervisor(contender: Contender) -> str | None:
    if contender.supervise is None and contender.async_supervise is None:
        return "n/a (no supervisor)"
    return None


def _no_stages(contender: Contender) -> str | None:
    return "n/a (no stages)" if contender.pipeline is None else None


def _no_flow(contender: Contender) -> str | None:
    return "n/a (no flow)" if contender.word_count is None else None


def _no_servers(contender: Contender) -> str | None:
    """W1-W5 run from plain threads, or from coroutines on a contender's ``aio``."""
    if contender.serves_threads or contender.aio is not None:
        return None
    return "n/a (no servers)"


def _no_servers_or_one_thread_each(contender: Contender) -> str | None:
    return _no_servers(contender) or _one_thread_each(contender)


def _no_worker_pool(contender: Contender) -> str | None:
    return "n/a (no pool)" if contender.worker_pool is None else None


def _no_bucket(contender: Contender) -> str | None:
    return "n/a (no rate limiter)" if contender.bucket is None else None


def _not_otpy(contender: Contender) -> str | None:
    """W11's 5 s granted-rate window is measured for otpy only (one window a round)."""
    if contender.bucket is None:
        return _no_bucket(contender)
    return None if contender.name in ("otpy", BASE_NAME) else "n/a (otpy only)"


def _no_event_loop(contender: Contender) -> str | None:
    return "n/a (no event loop side)" if contender.aio is None else None


def _broker_problem(broker: str) -> str | None:
    found = _brokers.problem(broker)
    return None if found is None else found.cell


def _no_stream_consumer(contender: Contender) -> str | None:
    if contender.stream_consumer is None:
        return "n/a (no pipelines)"
    return _broker_problem("Redis")


def _no_queue_consumer(contender: Contender) -> str | None:
    if contender.queue_consumer is None:
        return "n/a (no pipelines)"
    return _broker_problem("RabbitMQ")


def _no_message_flow(contender: Contender) -> str | None:
    return "n/a (no pipelines)" if contender.message_flow is None else None


W8_BATCHES = (1, IN_FLIGHT)
"""W8's rows: the threads baseline passes each event alone (the issue's target), or in lists."""

W15_SERVING: tuple[Serving, ...] = ("inline", "mailbox")
W15_TITLES: dict[Serving, str] = {
    "inline": "otpy inline path",
    "mailbox": "otpy inline_calls = False",
}
"""W15's rows: otpy's default (an idle server's handler runs on the loop's thread) and its mailbox."""

W16_SERVING: tuple[Serving, ...] = ("timer", "sleep")
W16_TITLES: dict[Serving, str] = {
    "timer": f"{WAIT * 1000:g} ms waits, otpy send_after + NOREPLY",
    "sleep": f"{WAIT * 1000:g} ms waits, otpy.sleep (literal)",
}
"""W16's rows: a wait that holds no thread (the OTP way), and the literal sleep in the handler."""

CRASH_TITLES: dict[Crash, str] = {
    "kill": "worker killed (exit kill / stop)",
    "raise": "worker raises in a handler",
}
"""How W6's rows describe each way of crashing the worker."""


@dataclass(frozen=True)
class Case:
    """One row of the report: a measurement every contender makes (or skips)."""

    key: str
    """Unique, starts with the workload id (``W4 time 1000``); targets refer to rows by it."""
    title: str
    unit: Unit
    measure: Callable[[Contender], float]
    skip: Callable[[Contender], str | None] = field(default=_never_skipped)
    """A note (shown in the cell) when the contender sits this row out."""
    once: bool = False
    """Measured in the first round only (memory, from a fresh interpreter)."""
    show_spread: bool = False
    """Show min-max over rounds next to the median."""

    @property
    def workload(self) -> str:
        """``W1`` ... ``W16``, what ``--only`` selects."""
        return self.key.split()[0]


def build_cases(sizes: Sizes) -> list[Case]:
    """Return the report's rows, in order, for ``sizes``."""
    large = sizes.spawn[-1]
    threads, per_thread = sizes.producer_threads, sizes.casts_per_thread
    cases = [
        Case(
            key="W1",
            title=f"{sizes.calls:,} calls to one server",
            unit=US_PER_CALL,
            measure=lambda c: calls(c, sizes.calls),
            skip=_no_servers,
        ),
        Case(
            key="W2",
            title=f"{sizes.casts:,} casts + confirming call",
            unit=MSGS_PER_S,
            measure=lambda c: casts(c, sizes.casts),
            skip=_no_servers,
        ),
        Case(
            key="W3",
            title=f"{threads} threads x {per_thread:,} casts + call",
            unit=MSGS_PER_S,
            measure=lambda c: concurrent_casts(c, threads, per_thread),
            skip=_no_servers,
            show_spread=True,
        ),
    ]
    cases += [
        Case(
            key=f"W4 time {n}",
            title=f"start, call, stop {n:,} servers",
            unit=SECONDS,
            measure=functools.partial(spawn_call_stop, n=n),
            skip=_no_servers_or_one_thread_each if n == large else _no_servers,
        )
        for n in sizes.spawn
    ]
    cases += [
        Case(
            key=f"W4 memory {n}",
            title=f"memory with {n:,} servers alive",
            unit=KB_PER_PROCESS,
            measure=functools.partial(_memory_of, n=n),
            skip=_no_servers_or_one_thread_each if n == large else _no_servers,
            once=True,
        )
        for n in sizes.spawn
    ]
    cases += [
        Case(
            key="W5",
            title=f"ring of {sizes.ring:,}, {sizes.laps} laps",
            unit=US_PER_HOP,
            measure=lambda c: ring(c, sizes.ring, sizes.laps),
            skip=_no_servers,
        ),
    ]
    cases += [
        Case(
            key=f"W6 {how}",
            title=f"{sizes.restarts:,} one_for_one restarts, {CRASH_TITLES[how]}",
            unit=US_PER_RESTART,
            measure=functools.partial(restarts, n=sizes.restarts, how=how),
            skip=_no_supervisor,
            show_spread=True,
        )
        for how in CRASHES
    ]
    cases += [
        Case(
            key="W7",
            title=f"ordered pool map over {sizes.stream:,} items",
            unit=ITEMS_PER_S,
            measure=lambda c: pool_map(c, sizes.stream),
            skip=_no_pool_map,
        ),
    ]
    cases += [
        Case(
            key=f"W8 batch {batch}",
            title=f"{sizes.events:,} events, 3 stages, threads "
            f"{'1 event' if batch == 1 else f'≤ {batch:,}'} per put",
            unit=EVENTS_PER_S,
            measure=functools.partial(stage_pipeline, n=sizes.events, batch=batch),
            skip=_no_stages,
        )
        for batch in W8_BATCHES
    ]
    cases += [
        Case(
            key="W9",
            title=f"word count, {sizes.text_bytes / 1e6:g} MB, Flow stages={sizes.flow_stages} "
            "vs sequential Counter",
            unit=MB_PER_S,
            measure=functools.partial(word_count, size=sizes.text_bytes, stages=sizes.flow_stages),
            skip=_no_flow,
        ),
    ]
    cases += [
        Case(
            key="W10",
            title=f"{sizes.pool_threads} threads x {sizes.transactions_per_thread:,} "
            f"transactions, pool of {sizes.pool_size}",
            unit=TRANSACTIONS_PER_S,
            measure=functools.partial(
                transactions,
                threads=sizes.pool_threads,
                per_thread=sizes.transactions_per_thread,
                size=sizes.pool_size,
            ),
            skip=_no_worker_pool,
            show_spread=True,
        ),
        Case(
            key="W11 calls",
            title=f"{sizes.bucket_threads} threads x {sizes.acquires_per_thread:,} try_acquire, "
            "one bucket",
            unit=CALLS_PER_S,
            measure=functools.partial(
                acquires, threads=sizes.bucket_threads, per_thread=sizes.acquires_per_thread
            ),
            skip=_no_bucket,
            show_spread=True,
        ),
        Case(
            key="W11 rate",
            title=f"granted over {sizes.rate_window:g} s, rate {PACED_RATE:,.0f}/s, "
            f"capacity {PACED_CAPACITY:g}, {sizes.bucket_threads} threads",
            unit=PER_CENT_OFF,
            measure=functools.partial(
                granted_rate, threads=sizes.bucket_threads, window=sizes.rate_window
            ),
            skip=_not_otpy,
        ),
    ]
    workers = sizes.pipeline_workers
    cases += [
        Case(
            key="W12",
            title=f"{sizes.stream_entries:,} Redis stream entries, {workers} processors, "
            f"batches of {sizes.read_batch} vs redis-py + ThreadPoolExecutor({workers})",
            unit=MSGS_PER_S,
            measure=functools.partial(
                stream_entries,
                n=sizes.stream_entries,
                workers=workers,
                batch=sizes.read_batch,
            ),
            skip=_no_stream_consumer,
            show_spread=True,
        ),
        Case(
            key="W13",
            title=f"{sizes.queue_messages:,} RabbitMQ messages, {workers} processors, prefetch "
            f"{sizes.prefetch} vs pika + ThreadPoolExecutor({workers}) (first round only)",
            unit=MSGS_PER_S,
            measure=functools.partial(
                queue_messages, n=sizes.queue_messages, workers=workers, prefetch=sizes.prefetch
            ),
            skip=_no_queue_consumer,
            once=True,
        ),
        Case(
            key="W14",
            title=f"{sizes.flow_messages:,} messages, in-process producer, handler does nothing, "
            "default processors vs one thread's loop",
            unit=MSGS_PER_S,
            measure=functools.partial(pipeline_overhead, n=sizes.flow_messages),
            skip=_no_message_flow,
            show_spread=True,
        ),
    ]
    cases += [
        Case(
            key=f"W15 {serving}",
            title=f"{sizes.awaited_calls:,} awaited calls, one server, {W15_TITLES[serving]}",
            unit=US_PER_CALL,
            measure=functools.partial(round_trips, n=sizes.awaited_calls, serving=serving),
            skip=_no_event_loop,
        )
        for serving in W15_SERVING
    ]
    for serving in W16_SERVING:
        time_key = f"W16 {serving} time"
        gathered = f"{sizes.gathered_calls:,} gathered calls, {sizes.gathered_servers} servers"
        cases += [
            Case(
                key=time_key,
                title=f"{gathered}, {W16_TITLES[serving]}",
                unit=SECONDS,
                measure=functools.partial(
                    gathered_calls,
                    n=sizes.gathered_calls,
                    servers_n=sizes.gathered_servers,
                    serving=serving,
                    key=time_key,
                ),
                skip=_no_event_loop,
            ),
            Case(
                key=f"W16 {serving} threads",
                title="most threads alive during the row above",
                unit=THREADS,
                measure=functools.partial(threads_alive, key=time_key),
                skip=_no_event_loop,
            ),
        ]
    return cases


def _memory_of(contender: Contender, n: int) -> float:
    return kb_per_process(contender.name, n, contender.source)


Comparison = Literal["<", "≤", "≥"]

RESTART_TARGET_US = 60.0
"""W6's target: µs per restart on a 2-core machine, one of the issue's absolute targets."""

TASK_MEMORY_KB = 0.8
"""W4's second memory target: KB per otpy process at 100,000, beside the time target vs asyncio."""

ACQUIRE_TARGET = 200_000.0
"""W11's target: ``try_acquire`` calls per second from 8 threads on one bucket (absolute)."""

RATE_TOLERANCE = 2.0
"""W11's target: the granted rate within this many per cent of the bucket's rate."""

GATHER_SLACK = 2.0
"""W16's target: otpy done within this many times the ideal time (``Sizes.gather_ideal``)..."""

MAX_THREADS_ALIVE = 16
"""... with at most this many threads alive (``threading.active_count()``, sampled)."""


@dataclass(frozen=True)
class Target:
    """A target from the issue: ``subject / reference`` (or ``subject`` alone) against a bound."""

    row: str
    """The case key of the row that shows the verdict."""
    text: str
    subject: tuple[str, str]
    """``(case key, contender name)`` of the measured figure."""
    comparison: Comparison
    bound: float
    reference: tuple[str, str] | None = None
    """``(case key, contender name)`` to divide by; ``None`` for an absolute bound."""
    magnitude: bool = False
    """Compare ``abs(value)`` with the bound (a signed deviation that must stay small)."""

    def passes(self, value: float) -> bool:
        """Whether ``value`` (the ratio, or the figure itself) meets the target."""
        if self.magnitude:
            value = abs(value)
        if self.comparison == "<":
            return value < self.bound
        if self.comparison == "≤":
            return value <= self.bound
        return value >= self.bound


def build_targets(sizes: Sizes) -> list[Target]:
    """Return the issue's targets for the rows of ``build_cases(sizes)``."""
    _, middle, large = sizes.spawn

    def versus(key: str, other: str, comparison: Comparison, bound: float) -> Target:
        return Target(
            key,
            f"otpy/{other} {comparison} {bound:g}",
            (key, "otpy"),
            comparison,
            bound,
            (key, other),
        )

    return [
        versus("W1", "pykka", "≤", 0.2),
        versus("W1", "asyncio", "≤", 0.5),
        versus("W2", "pykka", "≥", 5),
        versus("W2", "asyncio", "≥", 1),
        versus("W3", "pykka", "≥", 5),
        versus("W3", "asyncio", "≥", 1),
        Target(
            f"W4 time {large}",
            f"otpy {large:,} < 0.5 x threads {middle:,}",
            (f"W4 time {large}", "otpy"),
            "<",
            0.5,
            (f"W4 time {middle}", "threads"),
        ),
        versus(f"W4 time {large}", "asyncio", "≤", 0.3),
        Target(f"W4 memory {large}", "otpy ≤ 2 KB", (f"W4 memory {large}", "otpy"), "≤", 2.0),
        Target(
            f"W4 memory {large}",
            f"otpy ≤ {TASK_MEMORY_KB:g} KB (with the asyncio time target)",
            (f"W4 memory {large}", "otpy"),
            "≤",
            TASK_MEMORY_KB,
        ),
        versus("W5", "pykka", "≤", 0.2),
        versus("W5", "asyncio", "≤", 0.5),
        *(
            target
            for how in CRASHES
            for target in (
                Target(
                    f"W6 {how}",
                    f"otpy ≤ {RESTART_TARGET_US:g} µs (absolute)",
                    (f"W6 {how}", "otpy"),
                    "≤",
                    RESTART_TARGET_US,
                ),
                versus(f"W6 {how}", "asyncio", "≤", 1),
            )
        ),
        versus("W7", "threads", "≥", 1.5),
        versus("W7", "asyncio", "≥", 2),
        versus("W8 batch 1", "threads", "≥", 1.0),
        versus("W10", "threads", "≥", 0.5),
        Target(
            "W11 calls",
            f"otpy ≥ {ACQUIRE_TARGET:,.0f}/s (absolute)",
            ("W11 calls", "otpy"),
            "≥",
            ACQUIRE_TARGET,
        ),
        Target(
            "W11 rate",
            f"|otpy| ≤ {RATE_TOLERANCE:g} %",
            ("W11 rate", "otpy"),
            "≤",
            RATE_TOLERANCE,
            magnitude=True,
        ),
        versus("W12", "threads", "≥", 1),
        versus("W13", "threads", "≥", 1),
        versus("W14", "threads", "≥", 0.5),
        versus("W15 inline", "asyncio", "≤", 2),
        Target(
            "W16 timer time",
            f"otpy ≤ {GATHER_SLACK:g} x ideal {sizes.gather_ideal:g} s",
            ("W16 timer time", "otpy"),
            "≤",
            GATHER_SLACK * sizes.gather_ideal,
        ),
        Target(
            "W16 timer threads",
            f"otpy ≤ {MAX_THREADS_ALIVE}",
            ("W16 timer threads", "otpy"),
            "≤",
            MAX_THREADS_ALIVE,
        ),
    ]
