"""Shared fixtures: every test gets its own Runtime and must leave nothing behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

import otpy


def wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.002
) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition {predicate!r} not met within {timeout}s")
        time.sleep(interval)  # noqa: polling with a deadline


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
        time.sleep(0.005)  # noqa: polling with a deadline
    assert not extra, f"threads left behind: {extra}"
    assert not leftover, f"processes left behind by the test: {leftover}"
