"""Assertions on a process's mailbox, for tests of code that uses otpy.

Example::

    import otpy
    from otpy.testing import ANY, assert_receive, assert_received, refute_receive

    def test_worker_reports_ready(otpy_runtime, start_supervised):
        pid = start_supervised(Worker.child_spec(otpy.self()))
        assert assert_receive(("ready", ANY)) == ("ready", pid)   # waits up to 1 s
        refute_receive(("error", ANY))                             # nothing within 0.1 s

        otpy.send(otpy.self(), "ping")
        assert_received("ping")                                    # already there: no wait

These are ExUnit's ``assert_receive``, ``assert_received`` and
``refute_receive`` for otpy. They read the mailbox of the calling process (a
test's thread is a process as soon as it calls otpy) and raise
``AssertionError`` when they fail, which pytest (or any test runner) reports
as a failure. Importing this module does not import pytest; the fixtures
(``otpy_runtime``, ``start_supervised``, ``capture_telemetry``) live in
:mod:`otpy.testing.plugin`, which pytest loads by itself.

Patterns:
    A pattern says which message is wanted. It is one of:

    * ``ANY``: any message (the default).
    * A type, such as ``otpy.Down`` or ``str``: a message that is an instance
      of it (``isinstance``); also a union such as ``int | str``.
    * A predicate: a callable that is not a type, such as
      ``lambda m: m[0] == "ready"``; a message matches when it returns a true
      value. A predicate that raises an ``Exception`` for a message does not
      match that message (so ``m[0]`` may meet messages that are not
      tuples); the failure report lists what it raised.
    * Anything else is a value, compared with ``pattern == message``, in
      which ``ANY`` matches anything, also inside tuples, lists and dicts
      (a tuple matches a tuple of the same length, a dict one with the same
      keys) and inside values whose ``==`` compares their fields (attrs
      classes such as ``otpy.Down``, dataclasses):
      ``otpy.Down(ref, ANY, "normal")``.

    Only ``ANY`` is special inside a value: a type or a function inside a
    tuple is compared with ``==`` like any other item. To check an item's
    type, pass a predicate. Patterns that cannot match meaningfully raise
    ``ValueError`` at the call: an iterator or generator (it equals only
    itself; pass a list or tuple of the items instead), a coroutine (call or
    await what made it), ``ANY`` inside a set or as a dict key (those compare
    by hash), and a type that ``isinstance`` cannot check (``typing.Any``:
    use ``ANY``; ``list[int]``: use ``list`` or a predicate).

Timeouts and ``OTPY_TEST_TIMEFACTOR``:
    Every timeout here (and the plugin's own waits) is multiplied by the
    environment variable ``OTPY_TEST_TIMEFACTOR``, a finite number above 0
    (default 1; unset or empty means 1). Set it on a slow CI machine,
    ``OTPY_TEST_TIMEFACTOR=3``, rather than raising timeouts in the tests. A
    value that is not such a number makes every call raise ``ValueError``
    naming it. ``timeout=None`` waits forever.

Which messages a failure shows:
    The messages the call looked at and left in the mailbox, oldest first,
    each cut to a few hundred characters, and at most 50 of them. A failed
    ``assert_receive`` leaves the mailbox as it was; ``refute_receive``
    takes the message it complains about.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import os
import time
import types
from collections.abc import Callable
from typing import Any, Final, final

import otpy
from otpy._core import check_timeout

__all__ = ["ANY", "assert_receive", "assert_received", "refute_receive"]

_TIMEFACTOR_VARIABLE: Final = "OTPY_TEST_TIMEFACTOR"
"""The environment variable every otpy.testing timeout is multiplied by."""

_MAX_SHOWN = 50  # messages listed in a failure report
_MAX_REPR = 300  # characters of one message's repr in a failure report


@final
class _AnyType:
    """The type of :data:`ANY`: equal to everything."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _AnyType()
"""Matches any message, or any item of a tuple, list or dict pattern.

Example::

    assert_receive(("result", ANY, 200))    # ("result", <anything>, 200)
    assert_receive()                        # the oldest message, whatever it is
"""


# -- the time factor ---------------------------------------------------------------


def _time_factor() -> float:
    """``OTPY_TEST_TIMEFACTOR`` as a float (1.0 when unset or empty).

    Raises:
        ValueError: the variable is set to something that is not a finite number > 0.
    """
    raw = os.environ.get(_TIMEFACTOR_VARIABLE)
    if raw is None or not raw.strip():
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        factor = math.nan
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(
            f"the environment variable {_TIMEFACTOR_VARIABLE} must be a finite number above 0 "
            f"(such as 2 or 0.5), the factor every otpy.testing timeout is multiplied by; "
            f"got {raw!r}"
        )
    return factor


def _scaled(timeout: object) -> tuple[float | None, float]:
    """The checked timeout times the time factor, and the factor."""
    checked = check_timeout(timeout)
    factor = _time_factor()
    return (None if checked is None else checked * factor), factor


# -- patterns ----------------------------------------------------------------------


def _is_type_like(pattern: object) -> bool:
    return (
        isinstance(pattern, (type, types.UnionType))
        or type(pattern).__module__ == "typing"  # Union[...], Literal[...], TypeVar, ...
        or isinstance(pattern, types.GenericAlias)  # list[int]
    )


def _has_any(value: object) -> bool:
    """Whether ANY is somewhere in ``value``'s tuples, lists and dict values."""
    if value is ANY:
        return True
    if type(value) is tuple or type(value) is list:
        return any(_has_any(item) for item in value)
    if type(value) is dict:
        return any(_has_any(item) for item in value.values())
    return False


def _check_value(value: object, where: str) -> None:
    """Raise ValueError for a value that can never mean what its writer meant."""
    if isinstance(value, collections.abc.Iterator):
        raise ValueError(
            f"{where}: {_short(value)} is an iterator (a generator?), which is equal only to "
            "itself, so it matches no message; pass a list or tuple of the items, a type or "
            "a predicate"
        )
    if inspect.isawaitable(value):
        raise ValueError(
            f"{where}: {_short(value)} is an awaitable, which matches no message; call or "
            "await what made it, or pass a value, a type or a predicate"
        )
    if isinstance(value, (set, frozenset)):
        if any(item is ANY for item in value):
            raise ValueError(
                f"{where}: ANY cannot match inside a set, which compares its items by hash; "
                "pass a predicate instead"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if key is ANY:
                raise ValueError(
                    f"{where}: ANY cannot be a dict key (keys compare by hash); "
                    "pass a predicate instead"
                )
            _check_value(item, where)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _check_value(item, where)


def _value_matcher(pattern: Any) -> Callable[[Any], bool]:
    """``pattern == message``, where ANY matches anything inside tuples, lists and dicts.

    Without ANY inside, it is exactly ``==`` (so a message's own ``__eq__``
    has its usual say); with ANY inside a tuple, list or dict, the container
    is matched item by item: same type (a tuple subclass counts as a tuple,
    as for ``==``), same length or the same keys.
    """
    if pattern is ANY:
        return _always
    kind = type(pattern)
    if (kind is tuple or kind is list) and _has_any(pattern):
        items = [_value_matcher(item) for item in pattern]
        size = len(items)
        return lambda m: (
            isinstance(m, kind)
            and len(m) == size
            and all(match(x) for match, x in zip(items, m, strict=True))
        )
    if kind is dict and _has_any(pattern):
        values = {key: _value_matcher(item) for key, item in pattern.items()}
        keys = pattern.keys()
        return lambda m: (
            isinstance(m, dict)
            and m.keys() == keys
            and all(match(m[key]) for key, match in values.items())
        )
    return lambda m: m is pattern or bool(pattern == m)


def _always(message: Any) -> bool:
    return True


def _compile(pattern: object, where: str) -> Callable[[Any], bool]:
    """The predicate for ``pattern``; raises ValueError for a meaningless one."""
    if pattern is ANY:
        return _always
    if _is_type_like(pattern):
        if pattern is Any:
            raise ValueError(
                f"{where}: typing.Any cannot be used with isinstance; "
                "use otpy.testing.ANY to match any message"
            )
        try:
            isinstance(None, pattern)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ValueError(
                f"{where}: {pattern!r} cannot be used with isinstance ({exc}); pass a plain "
                "class such as list, or a predicate"
            ) from None
        cls: Any = pattern
        return lambda message: isinstance(message, cls)
    if callable(pattern):
        return pattern
    _check_value(pattern, where)
    return _value_matcher(pattern)


def _describe(pattern: object) -> str:
    if pattern is ANY:
        return "ANY"
    if isinstance(pattern, type):
        return f"an instance of {pattern.__module__}.{pattern.__qualname__}"
    if _is_type_like(pattern):
        return f"an instance of {pattern!r}"
    if callable(pattern):
        name = getattr(pattern, "__qualname__", None)
        return f"predicate {name}" if isinstance(name, str) else f"predicate {_short(pattern)}"
    return _short(pattern)


def _short(value: object) -> str:
    """``repr(value)``, cut to ``_MAX_REPR`` characters."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the failure being reported
        text = f"<{type(value).__name__} whose repr raised {type(exc).__name__}>"
    return _cut(text)


def _describe_error(exc: Exception) -> str:
    try:
        text = str(exc)
    except Exception:  # as for repr above
        text = "<its str raised>"
    return _cut(f"{type(exc).__name__}: {text}")


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


# -- looking at the mailbox --------------------------------------------------------


class _Scan:
    """The predicate handed to ``otpy.receive``; remembers what it turned down.

    ``receive`` offers each message of the mailbox to the predicate once per
    call, oldest first (the ones it kept back earlier, then new arrivals), so
    ``seen`` is the mailbox in order. Used only by the calling thread; no lock.
    """

    __slots__ = ("errors", "matcher", "seen")

    def __init__(self, matcher: Callable[[Any], bool]) -> None:
        self.matcher = matcher
        self.seen: list[Any] = []
        self.errors: list[tuple[Any, Exception]] = []

    def __call__(self, message: Any) -> bool:
        try:
            ok = bool(self.matcher(message))
        except Exception as exc:  # a predicate that raises does not match; reported below
            self.errors.append((message, exc))
            ok = False
        if not ok:
            self.seen.append(message)
        return ok

    def report(self, besides: bool = False) -> str:
        if not self.seen:
            return "No other message was in the mailbox." if besides else "The mailbox was empty."
        lines = [f"The mailbox held {len(self.seen)} other message(s), oldest first:"]
        lines += [f"  {_short(m)}" for m in self.seen[:_MAX_SHOWN]]
        if len(self.seen) > _MAX_SHOWN:
            lines.append(f"  ... and {len(self.seen) - _MAX_SHOWN} more")
        if self.errors:
            lines.append(f"The predicate raised for {len(self.errors)} of them (no match):")
            for message, exc in self.errors[:5]:
                lines.append(f"  {_short(message)}: {_describe_error(exc)}")
            if len(self.errors) > 5:
                lines.append(f"  ... and {len(self.errors) - 5} more")
        return "\n".join(lines)


def _window(timeout: object, scaled: float | None, factor: float) -> str:
    """How long a call waited, for its failure message: ``1s`` or ``3s (timeout=1.0 x ...=3)``."""
    if scaled is None:
        return "forever"
    if factor == 1.0:
        return f"{scaled:g}s"
    return f"{scaled:g}s (timeout={timeout!r} x {_TIMEFACTOR_VARIABLE}={factor:g})"


def assert_receive(pattern: object = ANY, timeout: float | None = 1.0) -> Any:
    """Wait for a message that matches ``pattern``; take it out of the mailbox and return it.

    Example::

        otpy.GenServer.cast(server, ("work", otpy.self()))
        reply = assert_receive(("done", ANY))          # ("done", result)
        down = assert_receive(lambda m: isinstance(m, otpy.Down) and m.ref == ref)

    The first (oldest) message that matches is returned; the others stay in
    the mailbox, in order.

    Args:
        pattern: what to wait for (see the module documentation); ``ANY``
            by default, the oldest message.
        timeout: seconds to wait, multiplied by ``OTPY_TEST_TIMEFACTOR``;
            ``None`` waits forever.

    Raises:
        AssertionError: no matching message arrived in time; the message
            shows the pattern and the messages left in the mailbox.
        ValueError: ``pattern`` can never match meaningfully (see the module
            documentation), ``timeout`` is negative, or
            ``OTPY_TEST_TIMEFACTOR`` is malformed.
        TypeError: ``timeout`` is not a number.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this function's
    scan = _Scan(_compile(pattern, "assert_receive"))
    scaled, factor = _scaled(timeout)
    try:
        return otpy.receive(timeout=scaled, match=scan)
    except otpy.Timeout:
        raise AssertionError(
            f"assert_receive: no message matching {_describe(pattern)} arrived within "
            f"{_window(timeout, scaled, factor)}.\n{scan.report()}"
        ) from None


def assert_received(pattern: object) -> Any:
    """Take a matching message that is already in the mailbox, without waiting.

    Example::

        otpy.send(otpy.self(), ("note", 1))
        assert assert_received(("note", ANY)) == ("note", 1)

    Args:
        pattern: what to look for (see the module documentation).

    Returns:
        The oldest matching message, taken out of the mailbox.

    Raises:
        AssertionError: no message in the mailbox matches; the message shows
            the pattern and the mailbox.
        ValueError: ``pattern`` can never match meaningfully.
    """
    __tracebackhide__ = True
    scan = _Scan(_compile(pattern, "assert_received"))
    try:
        return otpy.receive(timeout=0, match=scan)
    except otpy.Timeout:
        raise AssertionError(
            f"assert_received: no message matching {_describe(pattern)} is in the mailbox.\n"
            f"{scan.report()}"
        ) from None


def refute_receive(pattern: object = ANY, timeout: float | None = 0.1) -> None:
    """Fail if a message that matches ``pattern`` is in the mailbox or arrives within ``timeout``.

    Example::

        otpy.GenServer.cast(server, ("ignore_me",))
        refute_receive(("reply", ANY))       # waits 0.1 s (times OTPY_TEST_TIMEFACTOR)
        refute_receive(timeout=0)            # the mailbox is empty right now

    The matching message, if one comes, is taken out of the mailbox (and
    shown in the failure); the others stay.

    Args:
        pattern: what must not come (see the module documentation); ``ANY``
            by default: no message at all.
        timeout: seconds to watch, multiplied by ``OTPY_TEST_TIMEFACTOR``.
            ``None`` watches forever, which can only fail; it is allowed
            for symmetry with the other helpers.

    Raises:
        AssertionError: a matching message came; the message shows it, the
            pattern and the other messages in the mailbox.
        ValueError: ``pattern`` can never match meaningfully, ``timeout`` is
            negative, or ``OTPY_TEST_TIMEFACTOR`` is malformed.
        TypeError: ``timeout`` is not a number.
    """
    __tracebackhide__ = True
    scan = _Scan(_compile(pattern, "refute_receive"))
    scaled, factor = _scaled(timeout)
    started = time.monotonic()
    try:
        message = otpy.receive(timeout=scaled, match=scan)
    except otpy.Timeout:
        return
    after = time.monotonic() - started
    raise AssertionError(
        f"refute_receive: a message matching {_describe(pattern)} arrived after "
        f"{after:.3f}s (watching for {_window(timeout, scaled, factor)}):\n"
        f"  {_short(message)}\n{scan.report(besides=True)}"
    )
