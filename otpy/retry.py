"""Retries with exponential backoff and jitter, for code that runs in otpy processes.

Example::

    import otpy.retry
    from otpy.retry import RetryPolicy, retry

    @retry(on=(ConnectionError, TimeoutError), attempts=5)
    def fetch(url):
        return http_get(url)                # retried up to 4 times, waits growing

    policy = RetryPolicy(on=ConnectionError, timeout=10.0)
    page = otpy.retry.call(http_get, url, policy=policy)

    results = otpy.Task.async_stream(urls, http_get, retry=policy)   # per item

The design is stamina's: ``on`` is required (there is no retry-everything
default), the defaults are sane for network calls (10 attempts within 45
seconds, waits from 0.1 s growing to 5 s, up to 1 s of jitter), and tests
switch the waits off with :func:`set_testing`. It is written here rather than
borrowed because stamina and tenacity wait with ``time.sleep`` (or asyncio):
inside a process that would hold a pool thread invisibly to the scheduler,
and an exit signal could not interrupt it. Here every wait is ``otpy.sleep``:
a process that waits can be killed at once and holds no slot of
``max_threads``. (A plain thread that waits gets a process of its own for it,
as any otpy call from a plain thread does; ``async_stream``'s workers wait
with a timer message instead, holding no thread at all.)

What is retried:
    An ``Exception`` that ``on`` selects: an exception class or a tuple of
    them (matched with ``isinstance``), or a function ``exc -> bool | float``
    that decides (``True``: retry after the usual wait; ``False``: do not
    retry; a number: retry after exactly that many seconds, no jitter, e.g.
    from a Retry-After header). An exception that ``on`` does not select
    propagates at once. A ``BaseException`` that is not an ``Exception``
    (``KeyboardInterrupt``, an exit signal unwinding the process) is never
    retried, whatever ``on`` says.

How long:
    ``attempts`` counts calls (1 means no retry). The wait before retry ``n``
    (1-based) is ``min(wait_max, wait_initial * wait_exp_base ** (n - 1))
    + uniform(0, wait_jitter)``. ``timeout`` bounds the whole run, waits
    included: a retry whose wait would end after the deadline is not made.
    When retries run out, the last exception propagates as it is (the same
    object, with its traceback), not wrapped.

Testing:
    ``set_testing(True, attempts=1)`` makes every run wait nothing and call
    at most ``min(policy.attempts, attempts)`` times; ``set_testing(False)``
    restores normal runs. Like stamina's switch it is global: it holds for
    every Runtime of the interpreter. A run reads it once, when its first
    call fails.

Telemetry:
    ``("otpy", "retry", "scheduled")`` before every wait, with measurements
    ``{"attempt": n, "delay": seconds}`` (``n``: the 1-based number of the
    call that just failed) and metadata ``{"target": fn, "exception": exc}``;
    ``("otpy", "retry", "exhausted")`` when a selected exception ends the run
    because no attempt or no time is left, with measurements
    ``{"attempts": calls made}`` and the same metadata. ``target`` is the
    function being retried (the undecorated one for ``@retry``), so a handler
    can tell functions apart by identity or name them with
    ``target.__qualname__``. As in stamina, an exception that ``on`` does not
    select emits nothing: it was never a retry. The events are emitted by
    the process that retries.
"""

from __future__ import annotations

import functools
import inspect
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias, TypeVar, overload

import attrs
from typing_extensions import ParamSpec

from . import _core as core
from . import telemetry

__all__ = ["RetryPolicy", "call", "retry", "set_testing"]

P = ParamSpec("P")
T = TypeVar("T")

Predicate: TypeAlias = Callable[[Exception], bool | float]
"""``on`` as a function: ``True`` retry, ``False`` don't, a number: retry after that many seconds."""

On: TypeAlias = type[Exception] | tuple[type[Exception], ...] | Predicate
"""What ``RetryPolicy.on`` accepts."""

SCHEDULED = ("otpy", "retry", "scheduled")
EXHAUSTED = ("otpy", "retry", "exhausted")

_ON_HELP = "an exception class, a tuple of exception classes, or a function exc -> bool | float"


# -- validation ----------------------------------------------------------------------


def _check_exception_class(cls: type, on: object) -> None:
    if not issubclass(cls, BaseException):
        raise TypeError(
            f"RetryPolicy on= needs {_ON_HELP}; {cls.__qualname__} (in on={on!r}) "
            "is not an exception class"
        )
    if not issubclass(cls, Exception):
        raise ValueError(
            f"RetryPolicy on= selects subclasses of Exception; {cls.__qualname__} "
            f"(in on={on!r}) is a BaseException that is never retried (KeyboardInterrupt, "
            "SystemExit and exit signals always propagate); use on=Exception to retry everything"
        )


def _check_on(policy: RetryPolicy, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, type):
        _check_exception_class(value, value)
    elif isinstance(value, tuple):
        if not value:
            raise ValueError("RetryPolicy on=() selects nothing; give at least one exception class")
        for cls in value:
            if not isinstance(cls, type):
                raise TypeError(
                    f"RetryPolicy on= as a tuple holds exception classes; got {cls!r} "
                    f"of type {type(cls).__name__} in on={value!r}"
                )
            _check_exception_class(cls, value)
    elif isinstance(value, BaseException):
        raise TypeError(
            f"RetryPolicy on= takes exception classes, not an exception instance; got "
            f"{value!r}: write on={type(value).__qualname__}"
        )
    elif not callable(value):
        raise TypeError(
            f"RetryPolicy on= needs {_ON_HELP}; got {value!r} of type {type(value).__name__}"
        )


def _check_attempts(policy: RetryPolicy, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_count(value, "RetryPolicy attempts", "the number of calls; 1 means no retry")


def _check_count(value: object, what: str, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int >= 1 ({meaning}); got {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be an int >= 1 ({meaning}); got {value!r}")


def _check_timeout(policy: RetryPolicy, attribute: attrs.Attribute[Any], value: object) -> None:
    core.check_timeout(value, "RetryPolicy timeout")


def _seconds(minimum: float, meaning: str) -> Callable[[Any, attrs.Attribute[Any], object], None]:
    """A validator: a finite real number >= ``minimum``."""

    def check(policy: RetryPolicy, attribute: attrs.Attribute[Any], value: object) -> None:
        what = f"RetryPolicy {attribute.name} must be a finite number >= {minimum:g} ({meaning})"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{what}; got {value!r} of type {type(value).__name__}")
        if not math.isfinite(value) or value < minimum:
            raise ValueError(f"{what}; got {value!r}")

    return check


# -- the policy ----------------------------------------------------------------------


@attrs.frozen
class RetryPolicy:
    """When to retry a failed call, how often, and how long to wait in between.

    Example::

        policy = RetryPolicy(on=(ConnectionError, TimeoutError), attempts=5)
        otpy.retry.call(fetch, url, policy=policy)
        list(policy.delays(seed=1))       # the 4 waits: [0.23..., 1.04..., 1.16..., 1.05...]

        def transient(exc):               # on= as a function
            if isinstance(exc, HttpError) and exc.status == 429:
                return float(exc.headers.get("Retry-After", 1))   # wait exactly that
            return isinstance(exc, HttpError) and exc.status >= 500

        RetryPolicy(on=transient, timeout=None)

    A frozen value: share it freely; derive a variant with
    ``attrs.evolve(policy, attempts=3)``.

    Attributes:
        on: what to retry (required): an exception class, a tuple of them, or
            a function ``exc -> bool | float`` (see the module documentation).
        attempts: calls in all, at least 1 (default 10; 1 = no retry).
        timeout: seconds the whole run may take, waits included (default
            45.0; None: no bound). A retry whose wait would end after it is
            not made.
        wait_initial: the first wait before jitter, seconds (default 0.1).
        wait_max: the largest wait before jitter, seconds (default 5.0).
        wait_exp_base: each wait is this many times the one before (default
            2.0; at least 1).
        wait_jitter: a random ``uniform(0, wait_jitter)`` added to every
            computed wait, seconds (default 1.0; 0: none).

    Raises:
        TypeError: ``on`` is not one of the three forms (an exception instance
            or a class that is not an exception, too), or a number is not a
            number.
        ValueError: ``attempts < 1``, a negative or infinite wait,
            ``wait_exp_base < 1``, a negative timeout, ``on=()``, or ``on``
            naming a ``BaseException`` that is not an ``Exception``.
    """

    on: On = attrs.field(validator=_check_on)
    attempts: int = attrs.field(default=10, kw_only=True, validator=_check_attempts)
    timeout: float | None = attrs.field(default=45.0, kw_only=True, validator=_check_timeout)
    wait_initial: float = attrs.field(default=0.1, kw_only=True, validator=_seconds(0, "seconds"))
    wait_max: float = attrs.field(default=5.0, kw_only=True, validator=_seconds(0, "seconds"))
    wait_exp_base: float = attrs.field(
        default=2.0, kw_only=True, validator=_seconds(1, "the growth factor of the waits")
    )
    wait_jitter: float = attrs.field(default=1.0, kw_only=True, validator=_seconds(0, "seconds"))

    def delays(self, seed: int | float | str | bytes | None = None) -> Iterator[float]:
        """The ``attempts - 1`` waits this policy would use, for inspection.

        The jitter is drawn from ``random.Random(seed)``: the same seed gives
        the same list. The waits a ``on`` function returns are not foreseen,
        and :func:`set_testing` does not apply here.

        Example::

            >>> list(RetryPolicy(on=OSError, attempts=4, wait_jitter=0).delays())
            [0.1, 0.2, 0.4]

        Raises:
            TypeError: ``seed`` is not something ``random.Random`` takes.
        """
        rng = random.Random(seed)
        return (self._wait(n, rng) for n in range(1, self.attempts))

    def _wait(self, n: int, rng: random.Random) -> float:
        """The computed wait before retry ``n`` (1-based), jitter included."""
        jitter = float(self.wait_jitter)
        return self._base_wait(n) + (rng.uniform(0.0, jitter) if jitter else 0.0)

    def _base_wait(self, n: int) -> float:
        initial = float(self.wait_initial)
        cap = float(self.wait_max)
        base = float(self.wait_exp_base)
        if initial == 0.0 or base == 1.0:
            return min(cap, initial)
        try:
            grown = initial * base ** (n - 1)  # floats: a huge n overflows, it never takes long
        except OverflowError:
            return cap
        return min(cap, grown)

    def _select(self, exc: Exception) -> bool | float:
        """Whether ``on`` selects ``exc``: False, True (the computed wait), or a wait."""
        on = self.on
        if isinstance(on, (type, tuple)):
            return isinstance(exc, on)
        verdict = on(exc)  # user code; no lock is held
        if isinstance(verdict, bool):
            return verdict
        what = (
            f"RetryPolicy on={on!r} returned {verdict!r} for {exc!r}; it must return True "
            "(retry after the usual wait), False (do not retry) or a wait in seconds "
            "(a finite number >= 0)"
        )
        if not isinstance(verdict, (int, float)):
            raise TypeError(what)
        if not math.isfinite(verdict) or verdict < 0:
            raise ValueError(what)
        return float(verdict)


RetryPolicy.__module__ = "otpy.retry"


# -- testing mode --------------------------------------------------------------------

_testing_lock = threading.Lock()
# _testing_lock guards _testing_attempts: None (normal runs) or the cap on calls
# per run while testing (no waits then). An int, replaced whole by set_testing.
_testing_attempts: int | None = None


def set_testing(testing: bool, attempts: int = 1) -> None:
    """Switch testing mode on or off for every retry in this Python process.

    In testing mode runs do not wait, and call at most
    ``min(policy.attempts, attempts)`` times: a test sees the failure of a
    retried function at once, or checks that it would have been retried with
    ``attempts=2``. Telemetry events are still emitted (with ``delay`` 0).

    Example::

        otpy.retry.set_testing(True, attempts=1)    # e.g. in a pytest fixture
        ...
        otpy.retry.set_testing(False)

    Raises:
        TypeError: ``testing`` is not a bool, or ``attempts`` is not an int.
        ValueError: ``attempts < 1``.
    """
    global _testing_attempts
    if not isinstance(testing, bool):
        raise TypeError(f"set_testing needs True or False; got {testing!r}")
    _check_count(attempts, "set_testing attempts", "the most calls a run makes while testing")
    with _testing_lock:
        _testing_attempts = attempts if testing else None


# -- running -------------------------------------------------------------------------


class _Run:
    """One run of a policy over one target: counts its calls and decides each wait.

    Used by :func:`call` and by ``async_stream``'s workers (which wait with a
    timer message instead of a sleep). Owned by the one process that runs
    the retries; no lock.
    """

    __slots__ = ("_deadline", "_no_waits", "_rng", "attempts", "made", "policy", "target")

    def __init__(self, policy: RetryPolicy, target: object, started: float) -> None:
        with _testing_lock:
            cap = _testing_attempts
        self.policy = policy
        self.target = target
        self.made = 0  # calls that failed so far
        self.attempts = policy.attempts if cap is None else min(policy.attempts, cap)
        self._no_waits = cap is not None
        timeout = policy.timeout
        self._deadline = None if timeout is None else started + timeout
        self._rng: random.Random | None = None

    def failed(self, exc: Exception) -> float | None:
        """The seconds to wait before the next call, after the current one raised ``exc``.

        None: give up, the caller re-raises ``exc``. Emits the telemetry events.

        Raises:
            TypeError, ValueError: an ``on`` function returned something else
                than a bool or a wait (raised while ``exc`` is handled, so it
                shows as its context).
        """
        self.made += 1
        choice = self.policy._select(exc)
        if choice is False:
            return None
        if self.made >= self.attempts:
            self._exhausted(exc)
            return None
        if self._no_waits:
            delay = 0.0
        elif choice is True:
            rng = self._rng
            if rng is None:
                rng = self._rng = random.Random()
            delay = self.policy._wait(self.made, rng)
        else:
            delay = choice
        if self._deadline is not None and time.monotonic() + delay > self._deadline:
            self._exhausted(exc)
            return None
        telemetry.execute(
            SCHEDULED,
            {"attempt": self.made, "delay": delay},
            {"target": self.target, "exception": exc},
        )
        return delay

    def _exhausted(self, exc: Exception) -> None:
        telemetry.execute(
            EXHAUSTED, {"attempts": self.made}, {"target": self.target, "exception": exc}
        )


def _run(
    policy: RetryPolicy, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    started = time.monotonic()
    run: _Run | None = None
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if run is None:
                run = _Run(policy, fn, started)
            delay = run.failed(exc)
            if delay is None:
                raise
        # Outside the except block: the next call's exception gets no stale context.
        if delay > 0:
            core.sleep(delay)


def _check_policy(policy: object, what: str) -> RetryPolicy:
    if not isinstance(policy, RetryPolicy):
        raise TypeError(f"{what} needs policy=otpy.retry.RetryPolicy(...); got {policy!r}")
    return policy


def call(fn: Callable[..., T], /, *args: Any, policy: RetryPolicy, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried under ``policy``.

    Example::

        policy = RetryPolicy(on=ConnectionError, attempts=3)
        row = otpy.retry.call(db.fetch_one, "SELECT 1", policy=policy)

    Returns:
        What the first call that did not raise returned.

    Raises:
        Exception: the last exception ``fn`` raised, as it is, when ``on``
            did not select it or no attempt or time was left.
        TypeError: ``fn`` is not callable or ``policy`` not a RetryPolicy.
    """
    _check_policy(policy, "otpy.retry.call")
    if not callable(fn):
        raise TypeError(f"otpy.retry.call needs a callable; got {fn!r}")
    return _run(policy, fn, args, kwargs)


@overload
def retry(policy: RetryPolicy, /) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


@overload
def retry(
    *,
    on: On,
    attempts: int = 10,
    timeout: float | None = 45.0,
    wait_initial: float = 0.1,
    wait_max: float = 5.0,
    wait_exp_base: float = 2.0,
    wait_jitter: float = 1.0,
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def retry(
    policy: RetryPolicy | None = None, /, **options: Any
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """A decorator that retries the function under a policy.

    Takes a :class:`RetryPolicy`, or its fields as keywords.

    Example::

        @retry(on=ConnectionError, attempts=5)
        def fetch(url): ...

        policy = RetryPolicy(on=(ConnectionError, TimeoutError), timeout=10.0)

        @retry(policy)
        def store(row): ...

    The wrapper keeps the function's name, docstring and signature
    (``functools.wraps``); it works on plain functions and methods, not on
    coroutine or generator functions.

    Raises:
        TypeError: neither a policy nor ``on=``, both, a bare ``@retry``, or
            (when decorating) a coroutine or generator function; and what
            :class:`RetryPolicy` raises for bad options.
    """
    if policy is None:
        if "on" not in options:
            raise TypeError(
                "retry needs on= (which exceptions to retry; there is no retry-everything "
                "default) or a RetryPolicy: @retry(on=ConnectionError) or @retry(policy)"
            )
        chosen = RetryPolicy(**options)
    elif isinstance(policy, RetryPolicy):
        if options:
            raise TypeError(
                f"retry takes a RetryPolicy or keyword options, not both; got {policy!r} and "
                f"{', '.join(sorted(options))}: use @retry(attrs.evolve(policy, ...))"
            )
        chosen = policy
    elif callable(policy) and not isinstance(policy, type):
        raise TypeError(
            f"retry needs arguments: write @retry(on=ConnectionError) or @retry(policy), "
            f"not a bare @retry (over {core.describe(policy)})"
        )
    else:
        raise TypeError(
            f"retry takes a RetryPolicy or keyword options; got {policy!r}: "
            f"write retry(on={policy!r}) to retry on it"
        )

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        if not callable(fn):
            raise TypeError(f"@retry decorates a function; got {fn!r}")
        if (
            inspect.iscoroutinefunction(fn)
            or inspect.isgeneratorfunction(fn)
            or inspect.isasyncgenfunction(fn)
        ):
            raise TypeError(
                f"@retry works on plain functions; {core.describe(fn)} is a coroutine or "
                "generator function, whose body runs after the call returned"
            )

        @functools.wraps(fn)
        def retried(*args: P.args, **kwargs: P.kwargs) -> T:
            return _run(chosen, fn, args, kwargs)

        return retried

    return decorate
