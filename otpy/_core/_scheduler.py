"""The run queue and the elastic pool of worker threads.

The scheduling loop::

    send(pid, msg)                          worker thread (one of N)
    ──────────────                          ────────────────────────
    proc.mailbox.put(msg)                   loop:
    if proc.sched_flag.acquire(False):  ──▶     proc = run_queue.get()      (idle while empty)
        run_queue.put(proc)                     proc.run():   up to BUDGET messages,
                                                              then sched_flag.release(),
                                                              and if the mailbox is not
                                                              empty, re-acquire + requeue

A process is in the run queue at most once, and is run by at most one thread
at a time: the ``sched_flag`` (a Lock used only as a test-and-set with
``acquire(False)``) is held from the moment a process is queued until its turn
ends. Nobody ever blocks on it, so there is no lock convoy when a thread that
holds it loses the GIL. Whoever releases it re-checks the mailbox afterwards,
so a message put while the flag was held is never stranded.

The hand-off slot (Go's ``runnext``, Tokio's LIFO slot): a process that a
worker's current turn makes runnable (a message to an idle process) usually
has nothing to do until that turn ends, and waking another thread for it
costs more than running it. So while a worker runs the turn of a quick process
(its recent handlers took less than ``SLOT_COST`` each), the first process it
makes runnable goes into the worker's own slot and runs on the same thread
right after the turn: a ring passes its token, a supervisor hears of its
child's crash, a consumer gets its events, with no thread hand-off. The slot
goes to the run queue like any other submission before the turn handles
another message, and before the worker blocks in an otpy wait. A handler
that makes a process runnable and then runs on without an otpy wait
(computing, or blocking outside otpy, even on something the process in the
slot would do) does not strand it: the slot watcher, a thread that looks at
the workers' slots every ``SLOT_WATCH`` seconds while they are in use, moves a
process that sat in a slot for a whole look to the run queue, where any
worker takes it. Inline runs of other processes' code (an inline call, a
child's ``init``) close the slot while they run. Runs through the slot are
chained while the run queue is empty; with work queued, at most
``SLOT_CHAIN`` in a row before the slot's process queues too.

Blocking compensation: a worker that enters an otpy wait (receive, call,
await, sleep) calls :meth:`Scheduler.blocking`; while it is blocked it does not
count against ``max_threads``, and if work is queued with no idle worker the
pool grows (up to ``hard_cap``). So a chain of synchronous calls deeper than
the pool completes. Idle workers retire after ``IDLE_SECONDS``.

Lock order (outermost first): ``Runtime._lock`` > ``Process._lock`` >
``Scheduler._lock``; the scheduler's lock guards only its counters and is never
held while running process code.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from queue import Empty, SimpleQueue
from typing import Any, Protocol

__all__ = [
    "Runnable",
    "Scheduler",
    "ThreadState",
    "default_max_threads",
    "thread_start_lock",
    "thread_state",
]

IDLE_SECONDS = 5.0

SLOT_COST = 0.0002
"""Seconds per handler below which a process's turn may use its worker's hand-off slot."""

SLOT_CHAIN = 4
"""Slot runs in a row on one worker while the run queue holds work."""

SLOT_WATCH = 0.001
"""Seconds between two looks of the slot watcher while slots are in use."""

SLOT_PARK = 0.1
"""Seconds the slot watcher sleeps at most while no slot is in use."""

SLOT_IDLE_LOOKS = 10
"""Looks in a row with no slot in use after which the slot watcher sleeps until woken
(so that traffic with short pauses does not pay a wake-up of the watcher per slot)."""

_log = logging.getLogger("otpy.scheduler")


class ThreadState:
    """What the runtime knows about one OS thread; owned by that thread.

    ``proc`` is the process whose code the thread runs right now (``None`` in a
    plain thread outside any inline run), ``pool`` the scheduler if the thread is
    one of its workers, ``depth`` the nesting of inline runs, ``waiting`` whether
    the thread is blocked in an otpy wait, and ``thread_procs`` the processes a
    plain thread got in each runtime; ``fanout`` is the work list of deaths
    whose signals this thread is sending (``None`` when it sends none). Other threads only read ``proc`` and
    ``waiting`` (to decide on an interrupt), and re-check under the process lock.
    """

    __slots__ = (
        "depth",
        "elapsed",
        "fanout",
        "fills",
        "next",
        "pool",
        "proc",
        "slot",
        "spare_ctx",
        "task_procs",
        "thread_procs",
        "tid",
        "waiting",
    )

    def __init__(self) -> None:
        self.proc: object = None
        self.pool: Scheduler | None = None
        self.depth = 0
        self.waiting = False
        self.tid = threading.get_ident()
        self.thread_procs: dict[object, object] = {}
        self.fanout: deque[Any] | None = None  # the deaths to signal; see _process._fan_out
        self.spare_ctx: Any = None  # an empty contextvars.Context to reuse; see Process._guarded
        # The hand-off slot (see Scheduler): while ``slot`` is True (a worker runs the
        # turn of a quick process), the first process this thread makes runnable waits
        # in ``next`` and runs on this thread right after the turn, instead of waking
        # another worker.
        self.slot = False
        # The slot itself: empty, or one process. A list because the worker and the
        # slot watcher both take from it with list.pop(), which is atomic (also on
        # free-threaded CPython, where a list has its own lock): exactly one gets it.
        self.next: list[Runnable] = []
        self.fills = 0  # how often the slot was filled: the watcher's clock (owner writes)
        self.elapsed = 0.0  # seconds the last inline run on this thread took (Process._run_here)
        # The processes of the asyncio tasks running on this thread, by (runtime, task).
        self.task_procs: dict[tuple[object, object], object] | None = None


class _ThreadEnd:
    """Held only by the thread-local storage: freed when its thread ends.

    Then the processes the thread had as a plain thread end too, with reason
    ``"normal"``, as a process whose function returned.
    """

    __slots__ = ("ts",)

    def __init__(self, ts: ThreadState) -> None:
        self.ts = ts

    def __del__(self) -> None:
        procs = list(self.ts.thread_procs.values())
        self.ts.thread_procs.clear()
        for proc in procs:
            proc.die("normal")  # type: ignore[attr-defined]


class _ThreadLocal(threading.local):
    """Each thread's :class:`ThreadState`, made on the thread's first look (``_tls.ts``).

    The hot paths read ``_tls.ts`` directly: an attribute, not a call.
    """

    def __init__(self) -> None:
        self.ts = ts = ThreadState()
        self.end = _ThreadEnd(ts)


_tls = _ThreadLocal()

thread_start_lock = threading.Lock()
"""Held while the runtime starts a thread, and while it interrupts one.

A thread that is being started carries its parent's id until it boots
(CPython 3.11), and ``PyThreadState_SetAsyncExc`` picks the newest thread state
with an id: an interrupt meant for the parent would kill the new thread before
it runs. So interrupts wait until no runtime thread is booting.
"""


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``None``: no deadline), at least 0."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def thread_state() -> ThreadState:
    """The calling thread's :class:`ThreadState`, made on first use."""
    return _tls.ts


class Runnable(Protocol):
    def run(self) -> None: ...


def default_max_threads() -> int:
    """Four threads per CPU, at least 8 and at most 64."""
    return max(8, min(64, 4 * (os.cpu_count() or 1)))


class _Stop:
    def run(self) -> None:  # pragma: no cover - never run, recognised by identity
        raise AssertionError("this is a bug in otpy: the stop marker was run")


_STOP = _Stop()


class Scheduler:
    # _lock guards _total, _idle, _blocked, _pending, _workers and _closed.
    # _pending counts queued items no worker has taken yet; _idle counts workers
    # waiting on the run queue; _blocked counts workers in an otpy wait. A new
    # worker starts while _pending > _idle and _total - _blocked < max_threads.

    def __init__(self, max_threads: int, name: str) -> None:
        self.max_threads = max_threads
        self.hard_cap = max(1024, 16 * max_threads)
        self._name = name
        self._runq: SimpleQueue[Runnable] = SimpleQueue()
        self._lock = threading.Lock()
        self._total = 0
        self._idle = 0
        self._blocked = 0
        self._pending = 0
        self._serial = 0
        self._closed = False
        self._workers: set[threading.Thread] = set()
        # The slot watcher (see _watch_slots): _watch guards _states (the workers'
        # thread states), _watcher (its thread, started with the first slot used)
        # and _parked (it sleeps: no slot was in use at its last look).
        self._watch = threading.Condition(threading.Lock())
        self._states: set[ThreadState] = set()
        self._watcher: threading.Thread | None = None
        self._parked = True

    # -- submitting work ---------------------------------------------------

    def submit(self, item: Runnable, ts: ThreadState | None = None) -> None:
        """Queue ``item.run()`` for a worker thread (this one's slot, when it is open).

        ``ts`` is the calling thread's state, if the caller has it at hand.
        """
        if ts is None:
            ts = thread_state()
        if ts.slot and not ts.next and ts.pool is self:
            ts.fills += 1
            ts.next.append(item)
            # _parked is read without the lock: a stale False only lets the watcher
            # sleep out its SLOT_PARK before it looks (see _watch_slots).
            if self._parked:
                self._wake_watcher()
            return
        self._enqueue(item)

    def _enqueue(self, item: Runnable) -> None:
        self._runq.put(item)
        with self._lock:
            self._pending += 1
            grow = self._should_grow()
        if grow:
            self._start_worker()

    def flush_slot(self, ts: ThreadState) -> None:
        """Queue the process waiting in ``ts``'s slot, if any: the thread will not run it soon."""
        if ts.next:
            try:
                item = ts.next.pop()
            except IndexError:
                return  # the watcher took it first
            self._enqueue(item)

    # -- the slot watcher ----------------------------------------------------

    def _wake_watcher(self) -> None:
        with self._watch:
            if self._closed:
                return
            if self._watcher is None:
                watcher = threading.Thread(
                    target=self._watch_slots, name=f"{self._name}-slots", daemon=True
                )
                try:
                    with thread_start_lock:
                        watcher.start()
                except Exception:  # no thread to be had now: the next fill tries again
                    _log.warning("could not start the slot watcher", exc_info=True)
                    return
                self._watcher = watcher
            self._parked = False
            self._watch.notify()

    def _watch_slots(self) -> None:
        """Move a process that sat in a worker's slot for a whole look to the run queue.

        A worker's turn that filled its slot may go on for long without an
        otpy wait (computing, or blocking in code otpy cannot see, such as a
        ``threading.Event`` that the process in the slot would set). The
        watcher looks every ``SLOT_WATCH`` seconds while slots are in use: a
        slot that holds a process and was not filled again since its last look
        has held it for at least that long, and its process is queued for any
        worker. After ``SLOT_IDLE_LOOKS`` looks with no slot in use it sleeps
        until a worker fills one (``SLOT_PARK`` at most); once every worker
        has retired, it ends.
        """
        seen: dict[ThreadState, int] = {}
        idle = 0  # looks in a row that found no slot in use
        with self._watch:
            # _closed is read without _lock: it only ever turns True, and close()
            # notifies us after setting it.
            while not self._closed:
                states = list(self._states)
                if not states and self._parked:
                    # Every worker retired (an idle pool): end, as they did. A worker
                    # that fills a slot later starts a new watcher.
                    self._watcher = None
                    return
                seen = {ts: fills for ts, fills in seen.items() if ts in self._states}
                used = False
                for ts in states:
                    if not ts.next:
                        continue
                    used = True
                    fills = ts.fills
                    if seen.get(ts) != fills:
                        seen[ts] = fills
                        continue
                    try:
                        item = ts.next.pop()
                    except IndexError:
                        continue  # its worker took it meanwhile
                    self._watch.release()  # _enqueue takes _lock, never under _watch
                    try:
                        self._enqueue(item)
                    finally:
                        self._watch.acquire()
                idle = 0 if used else idle + 1
                if idle < SLOT_IDLE_LOOKS:
                    self._watch.wait(SLOT_WATCH)
                else:  # sleep until a worker fills a slot (it wakes us: see submit),
                    # or SLOT_PARK at most (a wake-up that a stale _parked missed)
                    seen.clear()
                    self._parked = True
                    self._watch.wait(SLOT_PARK)

    def _should_grow(self) -> bool:
        # Called with _lock held; reserves the new thread's place when it says yes.
        if self._closed or self._pending <= self._idle:
            return False
        # Idle workers will take the pending items, so only blocked ones make room.
        if self._total - self._blocked >= self.max_threads or self._total >= self.hard_cap:
            return False
        self._total += 1
        return True

    def _start_worker(self) -> None:
        # The thread starts outside the lock (a thread that fails to boot must not
        # leave the lock held); close() may run meanwhile, so a worker that close()
        # did not see gets its own stop marker here.
        with self._lock:
            if self._closed:
                self._total -= 1  # give back the place _should_grow reserved
                return
            self._serial += 1
            name = f"{self._name}-worker-{self._serial}"
        thread = threading.Thread(target=self._work, name=name, daemon=True)
        try:
            with thread_start_lock:
                thread.start()
        except BaseException:
            with self._lock:
                self._total -= 1  # it never ran: give its place back
            raise
        with self._lock:
            self._workers.add(thread)
            if self._closed:
                self._runq.put(_STOP)
                self._pending += 1

    # -- blocking compensation ---------------------------------------------

    def blocking(self) -> None:
        """The calling worker is about to block in an otpy wait."""
        with self._lock:
            self._blocked += 1
            grow = self._should_grow()
        if grow:
            self._start_worker()

    def unblocked(self) -> None:
        with self._lock:
            self._blocked -= 1

    # -- the worker loop ---------------------------------------------------

    def _work(self) -> None:
        ts = thread_state()
        ts.pool = self
        with self._watch:
            self._states.add(ts)
        runq = self._runq
        lock = self._lock
        try:
            while True:
                with lock:
                    self._idle += 1
                try:
                    item = runq.get(timeout=IDLE_SECONDS)
                except Empty:
                    with lock:
                        self._idle -= 1
                        if self._pending == 0 or self._closed:
                            self._total -= 1
                            self._workers.discard(threading.current_thread())
                            return
                    continue
                with lock:
                    self._idle -= 1
                    self._pending -= 1
                if item is _STOP:
                    with lock:
                        self._total -= 1
                        self._workers.discard(threading.current_thread())
                    return
                self._run_chain(item, ts)
        finally:
            ts.pool = None
            with self._watch:
                self._states.discard(ts)

    def _run_chain(self, item: Runnable, ts: ThreadState) -> None:
        """Run ``item``, then what the turns of this worker put in its slot, one after the other."""
        chain = 0  # slot runs so far
        while True:
            try:
                item.run()
            except BaseException:
                _log.critical("this is a bug in otpy: %r escaped its run()", item, exc_info=True)
            if not ts.next:
                return
            # _pending is read without the lock: a stale value only changes when a
            # long chain gives way to queued work, never whether the item runs.
            if chain >= SLOT_CHAIN and self._pending:
                self.flush_slot(ts)
                return
            try:
                item = ts.next.pop()
            except IndexError:
                return  # the watcher queued it
            chain += 1

    # -- shutdown ----------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stop every worker once the queue drains, and join them."""
        with self._lock:
            if self._closed:
                workers = list(self._workers)
            else:
                self._closed = True
                workers = list(self._workers)
                for _ in workers:
                    self._runq.put(_STOP)
                    self._pending += 1
        with self._watch:  # the watcher ends at its next look (it reads _closed)
            self._watch.notify()
            watcher = self._watcher
        me = threading.current_thread()
        deadline = None if timeout is None else time.monotonic() + timeout
        if watcher is not None and watcher is not me and watcher.ident is not None:
            watcher.join(_left(deadline))
        for thread in workers:
            if thread is not me:
                thread.join(_left(deadline))
        with self._lock:  # workers started while we joined (see _start_worker)
            late = [t for t in self._workers if t not in workers and t is not me]
        for thread in late:
            thread.join(_left(deadline))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "threads": self._total,
                "idle": self._idle,
                "blocked": self._blocked,
                "queued": self._pending,
            }
