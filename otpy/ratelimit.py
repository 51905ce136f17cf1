"""Rate limiting: a token bucket and a concurrency limiter, both supervised processes.

Example::

    import otpy
    from otpy.ratelimit import ConcurrencyLimiter, TokenBucket

    with otpy.Runtime():
        TokenBucket.start_link(rate=100.0, name="api")        # 100 tokens/s, capacity 100, full
        if TokenBucket.try_acquire("api"):                     # never waits
            call_the_api()
        TokenBucket.acquire("api", tokens=5, timeout=2.0)      # waits its turn, or otpy.Timeout

        ConcurrencyLimiter.start_link(limit=4, name="db")
        with ConcurrencyLimiter.slot("db", timeout=5.0):       # at most 4 processes in here
            run_query()

:class:`TokenBucket` bounds *how often* (tokens per second, with bursts up to
its capacity); :class:`ConcurrencyLimiter` bounds *how many at once* (slots,
held by processes). Both are GenServers: they have names, ``child_spec`` and
``stop``, and live in supervision trees like any other worker.

Why hand-written: libraries such as ``limits`` and ``pyrate-limiter`` are
storage-backed counters (memory, Redis, SQL) that answer "allowed or not" for a
key. What otpy needs is different: callers that *wait their turn* in first
come, first served order inside a process, a wait that times out having taken
nothing, slots that are released when the process holding them dies, and
limiters that a supervisor starts, names and restarts. That is a small amount
of code on top of GenServer and monitors.

Telemetry: ``("otpy", "ratelimit", "reject")`` with measurements
``{"tokens": n}`` and metadata ``{"limiter": name or pid, "operation":
"try_acquire" | "acquire"}`` whenever a bucket says no: ``try_acquire``
returned False, or ``acquire`` raised ``otpy.Timeout``. It runs on the
caller's thread, after the bucket's lock is released.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

import attrs

from . import _core as core
from . import telemetry
from ._child_spec import ChildSpec, spec_with
from ._core import Call, Down, Pid, Ref, TimerRef
from ._exceptions import NoProcError, Timeout
from ._gen_server import NOREPLY, GenServer

__all__ = ["ConcurrencyLimiter", "TokenBucket"]

_REJECT: Final = ("otpy", "ratelimit", "reject")

_NO_WAIT_ANSWER = 5.0
"""How long a ``timeout=0`` request waits for the limiter's immediate yes or no."""

_MAX_WAKE = 3600.0
"""Longest timer the bucket sets; a wake-up before the tokens are there just re-evaluates."""


class _Marker:
    """A reply the server sends instead of a value (printed by name in debugging)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<otpy.ratelimit {self._name}>"


_GRANTED: Final = _Marker("granted")
_EXPIRED: Final = _Marker("expired")  # the waiter's deadline passed in the queue
_NOT_HOLDER: Final = _Marker("not a holder")


class _TooBig:
    """Reply to a waiter whose request no longer fits the bucket (capacity was lowered)."""

    __slots__ = ("capacity",)

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity


class _Tick:
    """The bucket's timer message; ``gen`` tells a stale (cancelled) timer from the live one."""

    __slots__ = ("gen",)

    def __init__(self, gen: int) -> None:
        self.gen = gen


class _Waiter:
    """A caller queued in a limiter's process (owned by that process; no lock)."""

    __slots__ = ("caller", "deadline", "ref", "tokens")

    def __init__(self, caller: Call, tokens: float, deadline: float | None, ref: Ref) -> None:
        self.caller = caller
        self.tokens = tokens
        self.deadline = deadline
        self.ref = ref  # the monitor on the caller


# -- checking arguments ------------------------------------------------------------------------


def _positive(value: object, what: str) -> float:
    """``value`` as a float if it is a finite number > 0, else TypeError / ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{what} must be a number > 0; got {value!r} of type {type(value).__name__}"
        )
    number = float(value)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{what} must be a finite number > 0; got {value!r}")
    return number


def _bucket_options(rate: object, capacity: object) -> tuple[float, float]:
    r = _positive(rate, "TokenBucket rate (tokens per second)")
    c = r if capacity is None else _positive(capacity, "TokenBucket capacity")
    return r, c


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(
            f"ConcurrencyLimiter limit must be an int >= 1; got {limit!r} "
            f"of type {type(limit).__name__}"
        )
    if limit < 1:
        raise ValueError(f"ConcurrencyLimiter limit must be an int >= 1; got {limit!r}")
    return limit


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


# -- the bucket's shared state ----------------------------------------------------------------
#
# try_acquire must be fast from many threads at once, so it does not talk to the bucket's
# process: the tokens live in a _Bucket that the process attaches to itself with
# core.set_data, and callers reach it with core.data_of(bucket). Everything that waits
# (acquire's queue, the timer, monitors on waiters) belongs to the process.
#
# FIFO across both paths: `waiting` counts the callers queued in the process; it is
# changed only by the process, under the lock, in the same critical section as the
# check that queued (or granted) the caller. While it is non-zero the callers' fast path
# takes nothing, so nobody overtakes a queued caller.
#
# The window bound (at most capacity + rate * T tokens granted in any T seconds) holds
# because tokens never exceed capacity and only grow by rate * elapsed; a refund (a grant
# whose caller had given up) only returns tokens that were taken and not granted.


class _Bucket:
    __slots__ = ("capacity", "ident", "lock", "pid", "rate", "stamp", "tokens", "waiting")

    def __init__(self, pid: Pid, ident: object, rate: float, capacity: float) -> None:
        self.pid = pid  # the bucket's process (immutable)
        self.ident = ident  # its name, else its pid: telemetry and errors (immutable)
        self.lock = threading.Lock()
        # lock guards rate, capacity, tokens, stamp and waiting. Nothing is called while
        # holding it but time.monotonic(), and take() (the fast path) calls nothing: it
        # reads the clock first (see there).
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity  # as of `stamp`; starts full
        self.stamp = time.monotonic()
        self.waiting = 0  # callers queued in the bucket's process; written only by it

    def refill(self, now: float) -> float:
        """Bring ``tokens`` up to ``now`` and return it; the caller holds ``lock``."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.tokens = tokens
        self.stamp = now
        return tokens

    def take(self, n: float) -> bool | None:
        """Take ``n`` tokens now if nobody is queued: True, False, or None if ``n`` > capacity.

        The clock is read before the lock is taken, so that nothing is called while it is
        held. A call is where a thread may be made to hand the GIL on: holding the lock
        then stalls every other thread at it, which hand the GIL on in turn (8 threads
        asking at once got an eighth of one thread's rate). A clock read that another
        thread's newer one overtook refills nothing: ``stamp`` only moves forward, so
        each moment is counted once.
        """
        now = time.monotonic()
        with self.lock:
            capacity = self.capacity
            if n > capacity:
                return None
            if self.waiting:
                return False
            tokens = self.tokens
            stamp = self.stamp
            if now > stamp:
                tokens += (now - stamp) * self.rate
                if tokens > capacity:
                    tokens = capacity
                self.stamp = now
            if tokens >= n:
                self.tokens = tokens - n
                return True
            self.tokens = tokens
            return False

    def give_back(self, n: float) -> None:
        """Return ``n`` tokens taken for a grant that did not reach its caller."""
        with self.lock:
            tokens = self.refill(time.monotonic()) + n
            self.tokens = tokens if tokens < self.capacity else self.capacity

    def peek(self) -> float:
        with self.lock:
            tokens = self.tokens + (time.monotonic() - self.stamp) * self.rate
            return tokens if tokens < self.capacity else self.capacity


_TRY_TOKENS: Final = "TokenBucket.try_acquire tokens"


def _tokens_arg(tokens: object, what: str) -> float:
    if type(tokens) is int and tokens > 0:  # the common case, checked first
        return tokens
    return _positive(tokens, f"{what} tokens")


def _bucket_of(bucket: object, what: str) -> _Bucket:
    """The shared state of bucket ``bucket`` (a pid or a name).

    Raises:
        NoProcError: no live process is ``bucket``.
        TypeError: ``bucket`` is not a pid or name, or its process is not a TokenBucket.
    """
    state = core.data_of(bucket)
    if type(state) is _Bucket:
        return state
    if type(bucket) is Pid:
        pid: Pid | None = bucket
    else:
        pid = core.whereis(bucket) if isinstance(bucket, str) else None
    if pid is not None and core.is_alive(pid):
        raise TypeError(f"{what}: {bucket!r} is a process but not an otpy.ratelimit.TokenBucket")
    raise NoProcError(bucket, what)


def _too_big(what: str, n: float, capacity: float) -> ValueError:
    return ValueError(
        f"{what}: tokens={n!r} is more than the bucket's capacity {capacity!r}, so it could "
        "never be granted; ask for at most the capacity, or raise it with TokenBucket.update"
    )


def _reject(state: _Bucket, n: float, operation: str) -> None:
    telemetry.execute(_REJECT, {"tokens": n}, {"limiter": state.ident, "operation": operation})


class TokenBucket(GenServer):
    """A token bucket: ``rate`` tokens per second, bursts up to ``capacity``.

    Example::

        bucket = TokenBucket.start_link(rate=10.0, capacity=20.0, name="mail")
        TokenBucket.try_acquire("mail")              # True: the bucket starts full
        TokenBucket.acquire("mail", tokens=3)        # waits until 3 tokens are there
        TokenBucket.available("mail")                # e.g. 16.0
        TokenBucket.update("mail", rate=50.0)        # retune the live bucket
        TokenBucket.stop("mail")

    Options (of ``start_link``, ``start`` and ``child_spec``):

    * ``rate`` (100.0): tokens added per second, a finite number > 0. Refill is
      continuous: tokens are computed from the elapsed time when asked, and no
      timer runs while nobody waits.
    * ``capacity`` (``rate``): the most tokens the bucket holds, and so the
      largest burst and the largest request. The bucket starts full. With a
      ``rate`` below 1, pass a capacity of at least the request size.
    * ``name`` (None): a registered name (str or ``otpy.via``).

    Guarantees: over any window of ``T`` seconds the bucket grants at most
    ``capacity + rate * T`` tokens, and a caller that keeps asking is served
    at ``rate``. Requests may be fractional (``tokens=0.5``).

    Fairness: ``acquire`` callers are served first come, first served, strictly:
    a caller waiting for 10 tokens holds back a later caller that wants 1.
    While anyone waits, ``try_acquire`` (and ``acquire``'s no-wait fast path)
    returns False / queues, so it cannot overtake.

    Timeouts take nothing. The rule: a grant counts only if it reaches its
    caller. The reply to a waiting caller is a one-shot slot that exactly one
    of the grant and the caller's timeout (or death) claims. The bucket takes
    the tokens under its lock, then claims the reply slot; if the caller had
    claimed it first, the bucket puts the tokens back. So ``acquire`` either
    returns having taken ``tokens`` or raises ``otpy.Timeout`` having taken
    none, however the grant and the timeout cross. Each waiter carries its
    deadline, and the bucket's process monitors it: waiters whose deadline
    passed, who gave up (``acquire`` casts a cancel on timeout) or whose
    process died are dropped before anyone behind them is considered.

    Which thread: ``try_acquire``, ``available`` and an ``acquire`` that need
    not wait run on the caller's thread (a lock and some arithmetic); waiting,
    timers and ``update`` go through the bucket's process. Stopping the bucket
    makes its waiting callers' ``acquire`` raise ``otpy.ExitError``.

    Child spec: ``TokenBucket.child_spec(rate=..., capacity=..., name=...)``;
    ``id`` defaults to ``name`` (else the class), ``restart`` to
    ``"permanent"``, ``shutdown`` to 5.0. A restarted bucket starts full.
    """

    __module__ = "otpy.ratelimit"

    # Owned by the bucket's process (no lock): the waiting callers in arrival order
    # (keyed by the unique object each acquire sends, which its cancel names), the
    # monitors on them, and the one timer that wakes the process when the head of the
    # queue can be served or its deadline passes.
    _state: _Bucket
    _queue: dict[object, _Waiter]
    _refs: dict[Ref, object]
    _timer: TimerRef | None
    _due: float
    _gen: int

    # -- starting and stopping --------------------------------------------------------------

    @classmethod
    def start_link(  # type: ignore[override]
        cls, rate: float = 100.0, capacity: float | None = None, name: object = None
    ) -> Pid:
        """Start a full bucket linked to the caller; see the class documentation.

        Returns:
            The bucket's pid.

        Raises:
            ValueError: ``rate`` or ``capacity`` is not a finite number > 0.
            TypeError: ``rate`` or ``capacity`` is not a number.
            otpy.AlreadyStartedError: ``name`` is taken.
        """
        r, c = _bucket_options(rate, capacity)
        pid = super().start_link(r, c, name=name)
        assert pid is not None
        return pid

    @classmethod
    def start(  # type: ignore[override]
        cls, rate: float = 100.0, capacity: float | None = None, name: object = None
    ) -> Pid:
        """Like :meth:`start_link`, without the link."""
        r, c = _bucket_options(rate, capacity)
        pid = super().start(r, c, name=name)
        assert pid is not None
        return pid

    @classmethod
    def child_spec(  # type: ignore[override]
        cls,
        rate: float = 100.0,
        capacity: float | None = None,
        name: object = None,
        *,
        id: Any = None,
        restart: str | None = None,
        shutdown: Any = attrs.NOTHING,
    ) -> ChildSpec:
        """A child spec that starts a bucket with these options.

        ``id`` defaults to ``name`` (to the class without a name); ``restart``
        to ``"permanent"``; ``shutdown`` to 5.0.

        Raises:
            ValueError / TypeError: as :meth:`start_link`, at once.
        """
        _bucket_options(rate, capacity)
        start: tuple[Any, tuple[Any, ...], dict[str, Any]] = (
            cls.start_link,
            (rate, capacity, name),
            {},
        )
        default_id = cls if name is None else name
        return spec_with(
            default_id if id is None else id, start, restart=restart, shutdown=shutdown
        )

    @staticmethod
    def stop(bucket: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the bucket with ``reason`` and wait until it is gone.

        Raises:
            otpy.NoProcError: the bucket is not alive.
            otpy.Timeout: it did not stop within ``timeout``.
            otpy.ExitError: it exited with a reason other than ``reason``.
        """
        GenServer.stop(bucket, reason, timeout)

    # -- the client API ----------------------------------------------------------------------

    @staticmethod
    def try_acquire(bucket: object, tokens: float = 1) -> bool:
        """Take ``tokens`` if they are there and nobody is waiting; never waits.

        Returns:
            True if the tokens were taken, else False (and a reject event).

        Raises:
            ValueError: ``tokens`` is not a finite number > 0, or more than the capacity.
            otpy.NoProcError: the bucket is not alive.
        """
        state = core.data_of(bucket)
        if type(state) is not _Bucket:
            state = _bucket_of(bucket, "TokenBucket.try_acquire")
        n = tokens if type(tokens) is int and tokens > 0 else _positive(tokens, _TRY_TOKENS)
        taken = state.take(n)
        if taken:
            return True
        if taken is None:
            raise _too_big("TokenBucket.try_acquire", n, state.capacity)
        _reject(state, n, "try_acquire")
        return False

    @staticmethod
    def acquire(bucket: object, tokens: float = 1, timeout: float | None = 5.0) -> None:
        """Take ``tokens``, waiting first come, first served until they are there.

        ``timeout=0`` takes them only if that needs no wait; ``None`` waits
        forever.

        Raises:
            otpy.Timeout: not granted within ``timeout``; then nothing was taken.
            ValueError: ``tokens`` is not a finite number > 0, or more than the
                capacity (also when ``update`` lowers the capacity below it while
                it waits).
            otpy.NoProcError: the bucket is not alive.
            otpy.ExitError: the bucket stopped while the caller waited.
        """
        what = "TokenBucket.acquire"
        state = _bucket_of(bucket, what)
        n = _tokens_arg(tokens, what)
        t = core.check_timeout(timeout)
        taken = state.take(n)
        if taken:
            return
        if taken is None:
            raise _too_big(what, n, state.capacity)
        if t == 0:
            _reject(state, n, "acquire")
            raise Timeout(f"{what}({bucket!r}, tokens={n!r})", timeout)
        key = object()
        try:
            answer = core.call(
                state.pid,
                ("acquire", n, _deadline(t), key),
                t,
                lambda: f"{what}({bucket!r}, tokens={n!r})",
            )
        except Timeout:
            GenServer.cast(state.pid, ("cancel", key))  # so the queue forgets it at once
            _reject(state, n, "acquire")
            raise
        if answer is _GRANTED:
            return
        if answer is _EXPIRED:
            _reject(state, n, "acquire")
            raise Timeout(f"{what}({bucket!r}, tokens={n!r})", timeout)
        assert type(answer) is _TooBig, f"this is a bug in otpy: acquire got {answer!r}"
        raise _too_big(what, n, answer.capacity)

    @staticmethod
    def available(bucket: object) -> float:
        """The tokens in the bucket now (queued callers' requests are not subtracted).

        Raises:
            otpy.NoProcError: the bucket is not alive.
        """
        return _bucket_of(bucket, "TokenBucket.available").peek()

    @staticmethod
    def update(bucket: object, rate: float | None = None, capacity: float | None = None) -> None:
        """Retune a live bucket; ``None`` leaves a setting unchanged.

        Tokens gathered so far count at the old rate. A lower capacity clamps
        the tokens to it; a waiting caller whose request exceeds the new
        capacity gets ``ValueError``. Waiters are re-evaluated at once.

        Raises:
            ValueError / TypeError: ``rate`` or ``capacity`` is not a finite number > 0.
            otpy.NoProcError: the bucket is not alive.
        """
        r = None if rate is None else _positive(rate, "TokenBucket rate (tokens per second)")
        c = None if capacity is None else _positive(capacity, "TokenBucket capacity")
        state = _bucket_of(bucket, "TokenBucket.update")
        core.call(state.pid, ("update", r, c), 5.0, lambda: f"TokenBucket.update({bucket!r})")

    # -- inside the bucket's process ---------------------------------------------------------

    def init(self, rate: float, capacity: float) -> None:
        me = core.self()
        name = getattr(self, "_otpy_name", None)
        self._state = _Bucket(me, me if name is None else name, rate, capacity)
        self._queue = {}
        self._refs = {}
        self._timer = None
        self._due = 0.0
        self._gen = 0
        core.set_data(self._state)

    def handle_call(self, request: Any, caller: Call) -> Any:
        if request[0] == "acquire":
            _, n, deadline, key = request
            self._enqueue(caller, n, deadline, key)
            return NOREPLY
        if request[0] == "update":
            _, rate, capacity = request
            state = self._state
            with state.lock:
                state.refill(time.monotonic())  # what was gathered counts at the old rate
                if rate is not None:
                    state.rate = rate
                if capacity is not None:
                    state.capacity = capacity
                    if state.tokens > capacity:
                        state.tokens = capacity
            self._serve()
            return None
        raise ValueError(f"unknown TokenBucket request {request!r}")

    def handle_cast(self, request: Any) -> None:
        if request[0] == "cancel" and request[1] in self._queue:
            self._drop(request[1])
            self._serve()

    def handle_info(self, message: Any) -> None:
        if type(message) is _Tick:
            if message.gen == self._gen and self._timer is not None:
                self._timer = None
                self._serve()
        elif type(message) is Down:
            key = self._refs.get(message.ref)
            if key is not None:
                self._drop(key)
                self._serve()
        else:
            super().handle_info(message)

    def _enqueue(self, caller: Call, n: float, deadline: float | None, key: object) -> None:
        if caller.done:  # it gave up while the request sat in the mailbox
            return
        state = self._state
        granted = expired = False
        with state.lock:
            capacity = state.capacity
            if n <= capacity:
                if not state.waiting and state.refill(time.monotonic()) >= n:
                    state.tokens -= n
                    granted = True
                elif _expired(deadline):
                    expired = True
                else:
                    state.waiting += 1
        if n > capacity:
            caller.resolve(True, _TooBig(capacity))
        elif granted:
            if not caller.resolve(True, _GRANTED):
                state.give_back(n)
        elif expired:
            caller.resolve(True, _EXPIRED)
        else:
            ref = core.monitor(caller.pid)
            self._queue[key] = _Waiter(caller, n, deadline, ref)
            self._refs[ref] = key
            if len(self._queue) == 1:
                self._serve()  # a new head: set its timer

    def _drop(self, key: object) -> _Waiter:
        """Remove a waiter from the queue (and from ``waiting``)."""
        waiter = self._queue.pop(key)
        del self._refs[waiter.ref]
        core.demonitor(waiter.ref)
        with self._state.lock:
            self._state.waiting -= 1
        return waiter

    def _serve(self) -> None:
        """Grant to the head of the queue while it can be served, then set the head's timer."""
        state = self._state
        queue = self._queue
        while queue:
            key, waiter = next(iter(queue.items()))
            caller, n = waiter.caller, waiter.tokens
            if caller.done:  # timed out or died; its cancel or Down may still be on the way
                self._drop(key)
                continue
            if _expired(waiter.deadline):
                self._drop(key)
                caller.resolve(True, _EXPIRED)
                continue
            wait = 0.0
            granted = False
            with state.lock:
                capacity = state.capacity
                fits = n <= capacity
                if fits:
                    tokens = state.refill(time.monotonic())
                    granted = tokens >= n
                    if granted:
                        state.tokens = tokens - n
                        state.waiting -= 1
                    else:
                        wait = (n - tokens) / state.rate
            if not fits:
                self._drop(key)
                caller.resolve(True, _TooBig(capacity))
                continue
            if granted:
                del queue[key]
                del self._refs[waiter.ref]
                core.demonitor(waiter.ref)
                if not caller.resolve(True, _GRANTED):  # its timeout won the race
                    state.give_back(n)
                continue
            if waiter.deadline is not None:
                wait = min(wait, waiter.deadline - time.monotonic())
            self._wake_in(wait)
            return
        self._cancel_timer()

    def _wake_in(self, delay: float) -> None:
        """Have a _Tick arrive within ``delay`` seconds (an earlier pending one will do)."""
        delay = min(max(delay, 0.0), _MAX_WAKE)
        due = time.monotonic() + delay
        if self._timer is not None:
            if self._due <= due:
                return
            self._cancel_timer()
        self._due = due
        self._timer = core.send_after(delay, self._state.pid, _Tick(self._gen))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            core.cancel_timer(self._timer)
            self._timer = None
            self._gen += 1  # a _Tick already in the mailbox is now stale


# -- the concurrency limiter ------------------------------------------------------------------


@attrs.frozen
class _Status:
    """What ``ConcurrencyLimiter.status`` reports (a frozen value).

    Example::

        s = ConcurrencyLimiter.status("db")    # Status(active=4, waiting=2, limit=4)
        if s.waiting:
            log.info("db saturated: %d waiting", s.waiting)

    Attributes:
        active: slots held now (by all processes together).
        waiting: callers waiting for a slot.
        limit: the most slots that may be held at once.
    """

    active: int
    waiting: int
    limit: int


_Status.__name__ = "Status"
_Status.__qualname__ = "ConcurrencyLimiter.Status"
_Status.__module__ = "otpy.ratelimit"


class _Holder:
    """The slots one process holds (owned by the limiter's process; no lock)."""

    __slots__ = ("count", "ref")

    def __init__(self, ref: Ref) -> None:
        self.ref = ref  # the monitor on the holder
        self.count = 0


class ConcurrencyLimiter(GenServer):
    """At most ``limit`` slots held at once; a slot belongs to the process that took it.

    Example::

        ConcurrencyLimiter.start_link(limit=2, name="uploads")
        with ConcurrencyLimiter.slot("uploads", timeout=10.0):
            upload(file)                                  # at most 2 processes at a time
        ConcurrencyLimiter.acquire("uploads")             # the same, by hand
        try:
            upload(other)
        finally:
            ConcurrencyLimiter.release("uploads")
        ConcurrencyLimiter.status("uploads")              # Status(active=0, waiting=0, limit=2)

    Options: ``limit`` (10), an int >= 1; ``name`` (None).

    Slots are counted per process: one process may hold several, and must
    release them itself (``release`` from a process that holds none raises
    ``ValueError``). The limiter monitors holders: the slots of a process that
    dies are released. Waiters are served first come, first served; a waiter
    that times out or dies is dropped and has taken nothing (a slot goes to a
    waiter only if the grant reaches it before its timeout claims the reply).

    Child spec: ``ConcurrencyLimiter.child_spec(limit=..., name=...)``; ``id``
    defaults to ``name`` (else the class). A restarted limiter starts with no
    slots held: processes that held slots in the old one get ``ValueError``
    from ``release`` on the new one.
    """

    __module__ = "otpy.ratelimit"

    Status = _Status

    # Owned by the limiter's process (no lock).
    _limit: int
    _active: int  # sum of the holders' counts
    _holders: dict[Pid, _Holder]
    _holder_refs: dict[Ref, Pid]
    _queue: dict[object, _Waiter]  # in arrival order; keyed like TokenBucket's
    _waiter_refs: dict[Ref, object]

    # -- starting and stopping --------------------------------------------------------------

    @classmethod
    def start_link(cls, limit: int = 10, name: object = None) -> Pid:  # type: ignore[override]
        """Start a limiter linked to the caller.

        Returns:
            The limiter's pid.

        Raises:
            ValueError: ``limit`` < 1.
            TypeError: ``limit`` is not an int.
            otpy.AlreadyStartedError: ``name`` is taken.
        """
        pid = super().start_link(_check_limit(limit), name=name)
        assert pid is not None
        return pid

    @classmethod
    def start(cls, limit: int = 10, name: object = None) -> Pid:  # type: ignore[override]
        """Like :meth:`start_link`, without the link."""
        pid = super().start(_check_limit(limit), name=name)
        assert pid is not None
        return pid

    @classmethod
    def child_spec(  # type: ignore[override]
        cls,
        limit: int = 10,
        name: object = None,
        *,
        id: Any = None,
        restart: str | None = None,
        shutdown: Any = attrs.NOTHING,
    ) -> ChildSpec:
        """A child spec that starts a limiter; ``id`` defaults to ``name`` (else the class).

        Raises:
            ValueError / TypeError: as :meth:`start_link`, at once.
        """
        _check_limit(limit)
        start: tuple[Any, tuple[Any, ...], dict[str, Any]] = (cls.start_link, (limit, name), {})
        default_id = cls if name is None else name
        return spec_with(
            default_id if id is None else id, start, restart=restart, shutdown=shutdown
        )

    @staticmethod
    def stop(limiter: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the limiter with ``reason`` and wait until it is gone.

        Raises:
            otpy.NoProcError: the limiter is not alive.
            otpy.Timeout: it did not stop within ``timeout``.
            otpy.ExitError: it exited with a reason other than ``reason``.
        """
        GenServer.stop(limiter, reason, timeout)

    # -- the client API ----------------------------------------------------------------------

    @staticmethod
    def acquire(limiter: object, timeout: float | None = 5.0) -> None:
        """Take a slot for the calling process, waiting first come, first served.

        ``timeout=0`` takes a slot only if one is free now and nobody waits;
        ``None`` waits forever.

        Raises:
            otpy.Timeout: no slot within ``timeout``; then none was taken.
            otpy.NoProcError: the limiter is not alive.
            otpy.ExitError: the limiter stopped while the caller waited.
        """
        t = core.check_timeout(timeout)
        key = object()
        what = f"ConcurrencyLimiter.acquire({limiter!r})"
        # timeout=0 asks "is a slot free now?": the limiter answers at once, so give the
        # answer time to come back instead of timing out before the limiter saw the request.
        call_timeout = _NO_WAIT_ANSWER if t == 0 else t
        try:
            answer = core.call(limiter, ("acquire", _deadline(t), key), call_timeout, what)
        except Timeout:
            GenServer.cast(limiter, ("cancel", key))
            raise
        if answer is _EXPIRED:
            raise Timeout(what, timeout)
        assert answer is _GRANTED, f"this is a bug in otpy: acquire got {answer!r}"

    @staticmethod
    def release(limiter: object) -> None:
        """Give back one slot of the calling process.

        Raises:
            ValueError: the calling process holds no slot of this limiter.
            otpy.NoProcError: the limiter is not alive.
        """
        what = f"ConcurrencyLimiter.release({limiter!r})"
        if core.call(limiter, ("release",), 5.0, what) is _NOT_HOLDER:
            raise ValueError(
                f"{what}: process {core.self()!r} holds no slot of this limiter; release "
                "only what the same process acquired (a dead holder's slots are released "
                "for it)"
            )

    @staticmethod
    @contextlib.contextmanager
    def slot(limiter: object, timeout: float | None = 5.0) -> Iterator[None]:
        """Hold a slot for the ``with`` block; released on exit, also on an exception.

        Raises:
            As :meth:`acquire` on entry and :meth:`release` on exit.
        """
        ConcurrencyLimiter.acquire(limiter, timeout)
        try:
            yield
        finally:
            ConcurrencyLimiter.release(limiter)

    @staticmethod
    def status(limiter: object) -> _Status:
        """``Status(active, waiting, limit)`` of the limiter now.

        Raises:
            otpy.NoProcError: the limiter is not alive.
        """
        status: _Status = core.call(
            limiter, ("status",), 5.0, f"ConcurrencyLimiter.status({limiter!r})"
        )
        return status

    # -- inside the limiter's process --------------------------------------------------------

    def init(self, limit: int) -> None:
        self._limit = limit
        self._active = 0
        self._holders = {}
        self._holder_refs = {}
        self._queue = {}
        self._waiter_refs = {}

    def handle_call(self, request: Any, caller: Call) -> Any:
        op = request[0]
        if op == "acquire":
            _, deadline, key = request
            if caller.done:  # gave up while the request sat in the mailbox
                return NOREPLY
            if self._active < self._limit and not self._queue:
                self._grant(caller)
            elif _expired(deadline):  # timeout=0, or it sat in the mailbox that long
                return _EXPIRED
            else:
                ref = core.monitor(caller.pid)
                self._queue[key] = _Waiter(caller, 1, deadline, ref)
                self._waiter_refs[ref] = key
            return NOREPLY
        if op == "release":
            holder = self._holders.get(caller.pid)
            if holder is None:
                return _NOT_HOLDER
            holder.count -= 1
            if holder.count == 0:
                self._forget_holder(caller.pid)
            self._active -= 1
            self._serve()
            return None
        if op == "status":
            # A waiter that timed out counts no more, even if its cancel is still on the way.
            waiting = sum(1 for w in self._queue.values() if not w.caller.done)
            return _Status(self._active, waiting, self._limit)
        raise ValueError(f"unknown ConcurrencyLimiter request {request!r}")

    def handle_cast(self, request: Any) -> None:
        if request[0] == "cancel" and request[1] in self._queue:
            self._drop(request[1])

    def handle_info(self, message: Any) -> None:
        if type(message) is Down:
            pid = self._holder_refs.get(message.ref)
            if pid is not None:
                self._active -= self._holders[pid].count
                self._forget_holder(pid)
                self._serve()
                return
            key = self._waiter_refs.get(message.ref)
            if key is not None:
                self._drop(key)
            return
        super().handle_info(message)

    def _grant(self, caller: Call) -> bool:
        """Offer a slot; record it only if the offer reached the caller."""
        if not caller.resolve(True, _GRANTED):
            return False
        holder = self._holders.get(caller.pid)
        if holder is None:
            holder = self._holders[caller.pid] = _Holder(core.monitor(caller.pid))
            self._holder_refs[holder.ref] = caller.pid
        holder.count += 1
        self._active += 1
        return True

    def _forget_holder(self, pid: Pid) -> None:
        holder = self._holders.pop(pid)
        del self._holder_refs[holder.ref]
        core.demonitor(holder.ref)

    def _drop(self, key: object) -> _Waiter:
        waiter = self._queue.pop(key)
        del self._waiter_refs[waiter.ref]
        core.demonitor(waiter.ref)
        return waiter

    def _serve(self) -> None:
        """Give free slots to the waiters in order, skipping those that gave up."""
        while self._queue and self._active < self._limit:
            key = next(iter(self._queue))
            waiter = self._drop(key)
            if _expired(waiter.deadline):
                waiter.caller.resolve(True, _EXPIRED)
                continue
            self._grant(waiter.caller)
