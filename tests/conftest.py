"""Shared fixtures and helpers: every test gets its own Runtime and must leave nothing behind."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import otpy

WAIT = 5.0
"""Deadline for something that must happen; a passing test never waits this long."""


def recv(match=None, timeout: float = WAIT):
    """The next message (that ``match`` accepts), within ``timeout``."""
    return otpy.receive(timeout=timeout, match=match)


def down_of(ref):
    """Matches the Down of monitor ``ref``."""
    return lambda m: isinstance(m, otpy.Down) and m.ref == ref


def exit_from(pid):
    """Matches an Exit from ``pid``."""
    return lambda m: isinstance(m, otpy.Exit) and m.pid == pid


def tagged(tag):
    """Matches a tuple message whose first item is ``tag``."""
    return lambda m: type(m) is tuple and len(m) >= 1 and m[0] == tag


def idle() -> None:
    """A process body: wait until told "stop"."""
    otpy.receive(match=lambda m: m == "stop")


def raise_(exc: BaseException) -> None:
    """A process body that raises ``exc``."""
    raise exc


def nothing_pending(match) -> bool:
    """Whether no message matching ``match`` is in the mailbox right now."""
    try:
        otpy.receive(timeout=0, match=match)
    except otpy.Timeout:
        return True
    return False


def in_thread(fn):
    """Run ``fn`` in a new plain thread; return what it returned or raise what it raised."""
    result: queue.Queue = queue.Queue()

    def body():
        try:
            result.put(("ok", fn()))
        except BaseException as exc:  # handed to the test thread
            result.put(("error", exc))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(WAIT * 2)
    assert not thread.is_alive(), "the plain thread did not finish"
    kind, value = result.get_nowait()
    if kind == "error":
        raise value
    return value


def wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.002
) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition {predicate!r} not met within {timeout}s")
        time.sleep(interval)  # noqa: SLEEP001 polling with a deadline


@pytest.fixture
def trap(runtime: otpy.Runtime) -> Iterator[None]:
    """The test's own process traps exits while the test runs."""
    otpy.trap_exits(True)
    yield
    with contextlib.suppress(otpy.ExitError):
        otpy.trap_exits(False)


@pytest.fixture
def runtime() -> Iterator[otpy.Runtime]:
    """A fresh Runtime entered for the test; fails if processes or threads outlive it."""
    before = set(threading.enumerate())
    rt = otpy.Runtime()
    with rt:
        yield rt
    # Leaving the block shut the runtime down: nothing of it may survive.
    leftover = rt.processes()
    deadline = time.monotonic() + 5.0
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.005)  # noqa: SLEEP001 polling with a deadline
    assert not extra, f"threads left behind: {extra}"
    assert not leftover, f"processes left behind by the test: {leftover}"
