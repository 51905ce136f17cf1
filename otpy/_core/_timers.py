"""One timer thread per runtime, serving a heap of deadlines.

``send_after`` and every deferred action of the runtime (a delayed kill, a
restart backoff) go through :meth:`TimerWheel.schedule`. Blocking waits
(receive, call, sleep) do not: they wait on their own lock with the OS
timeout, which wakes exactly one thread at exactly the deadline without a
detour through this thread.

The thread starts on the first timer (or :meth:`TimerWheel.start`) and stops
when the runtime closes. It sleeps on a ``SimpleQueue``, not a Condition, so
that :meth:`TimerWheel.defer` can hand it an action from a finaliser: the
garbage collector runs finalisers inside whatever allocation a thread makes,
also while it holds a runtime lock, so a finaliser must take no lock, and
``SimpleQueue.put`` takes none that a finaliser could find held (it is
reentrant).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

from ._scheduler import thread_start_lock

__all__ = ["Timer", "TimerWheel"]

_log = logging.getLogger("otpy.timers")
_TIMEOUT_MAX = threading.TIMEOUT_MAX


class Timer:
    """A timer from ``otpy.send_after`` (``otpy.TimerRef``): cancel it, or ask how long is left.

    Example::

        tref = otpy.send_after(5.0, otpy.self(), "tick")
        tref.read()       # seconds until it fires (None once it fired or was cancelled)
        tref.cancel()     # the seconds that were left, or None if it fired already
        otpy.cancel_timer(tref)   # the same as tref.cancel()

    A timer whose target is a pid dies with that process: it never fires for
    a dead process, and ``read()`` says None then.
    """

    __module__ = "otpy"

    __slots__ = ("_action", "_state", "deadline", "owner", "wheel")

    # _state: 0 pending, 1 fired, 2 cancelled; changed only under wheel._lock.

    def __init__(
        self, wheel: TimerWheel, deadline: float, action: Callable[[], Any], owner: Any = None
    ) -> None:
        self.wheel = wheel
        self.owner = owner  # a timer dies with its owner (anything with an ``alive`` flag)
        self.deadline = deadline
        self._action = action
        self._state = 0

    def __repr__(self) -> str:
        state = self._state
        if state == 1:
            return "<otpy.TimerRef fired>"
        if state == 2:
            return "<otpy.TimerRef cancelled>"
        return f"<otpy.TimerRef due in {max(0.0, self.deadline - time.monotonic()):.3f}s>"

    def cancel(self) -> float | None:
        """Cancel the timer: the seconds that were left, or None if it fired or was cancelled."""
        return self.wheel._cancel(self)

    def read(self) -> float | None:
        """Seconds until the timer fires, or None if it fired or was cancelled."""
        with self.wheel._lock:
            if self._state != 0 or (self.owner is not None and not self.owner.alive):
                return None
            return max(0.0, self.deadline - time.monotonic())


class TimerWheel:
    # _lock guards _heap, _thread, _closed and every Timer._state. The thread waits on
    # _wake until the earliest deadline: None there means "look at the heap again"
    # (a new earliest timer, or the close), a callable is an action to run now (defer).
    # Actions run on the timer thread outside the lock, one after the other; an
    # action that raises is logged and does not stop the thread.

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._wake: SimpleQueue[Callable[[], Any] | None] = SimpleQueue()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, delay: float, action: Callable[[], Any], owner: Any = None) -> Timer:
        timer = Timer(self, time.monotonic() + delay, action, owner)
        with self._lock:
            if self._closed:
                timer._state = 2
                return timer
            if self._thread is None:
                self._start_thread()  # raises (nothing scheduled) if no thread can start
            heapq.heappush(self._heap, (timer.deadline, next(self._seq), timer))
            earliest = self._heap[0][2] is timer
        if earliest:
            self._wake.put(None)
        return timer

    def start(self) -> None:
        """Start the thread now if it has not started (for :meth:`defer`, which cannot)."""
        with self._lock:
            if self._thread is None and not self._closed:
                self._start_thread()

    def defer(self, action: Callable[[], Any]) -> None:
        """Run ``action()`` on the timer thread as soon as it can; safe in a finaliser.

        Takes no lock. Runs only once the thread has started (:meth:`start`),
        and never after the runtime closed (its shutdown ends every process).
        """
        self._wake.put(action)

    def _start_thread(self) -> None:
        # Called with _lock held. _thread is set only once the thread runs, so a failed
        # start (no thread to be had now) is tried again by the next schedule() or start().
        thread = threading.Thread(target=self._loop, name=f"{self._name}-timers", daemon=True)
        with thread_start_lock:  # see there
            thread.start()
        self._thread = thread

    def _cancel(self, timer: Timer) -> float | None:
        with self._lock:
            if timer._state != 0:
                return None
            timer._state = 2
            if timer.owner is not None and not timer.owner.alive:
                return None
            # The heap entry stays until its deadline; the loop skips cancelled timers.
            return max(0.0, timer.deadline - time.monotonic())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for _, _, timer in self._heap:
                timer._state = 2
            self._heap.clear()
            thread = self._thread
        self._wake.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        wake = self._wake
        while True:
            due: Timer | None = None
            delay: float | None = None
            with self._lock:
                while True:
                    if self._closed:
                        return
                    if not self._heap:
                        break
                    deadline, _, timer = self._heap[0]
                    if timer._state != 0:
                        heapq.heappop(self._heap)
                        continue
                    delay = deadline - time.monotonic()
                    if delay <= 0:
                        heapq.heappop(self._heap)
                        timer._state = 1
                        due = timer
                    break
            if due is not None:
                self._run(due._action)
                continue
            try:
                action = wake.get() if delay is None else wake.get(True, min(delay, _TIMEOUT_MAX))
            except Empty:
                continue  # the earliest deadline came
            if action is not None:
                self._run(action)

    @staticmethod
    def _run(action: Callable[[], Any]) -> None:
        try:
            action()
        except BaseException:  # an action's failure is a bug in its owner, not ours
            _log.exception("otpy timer action %r failed", action)
