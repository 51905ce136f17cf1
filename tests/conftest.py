"""Shared fixtures and helpers: every test gets its own Runtime and must leave nothing behind.

The Runtime comes from otpy's own pytest plugin (``otpy.testing.plugin``):
``runtime`` is its ``otpy_runtime`` under the name the suite has always used,
and this file adds the suite's stricter rule that no thread a test started
(not only the runtime's pool threads) may outlive it. The plugin is loaded by
its ``pytest11`` entry point once otpy is installed with it; until then (or
with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), :func:`pytest_configure` loads it.
"""

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
    """The next message (that ``match`` accepts), within ``timeout``; else ``otpy.Timeout``.

    For a message that must come, use ``otpy.testing.assert_receive(match, WAIT)``
    (a failure shows the mailbox); this is for code that handles the Timeout.
    """
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
    """Whether no message matching ``match`` is in the mailbox right now (it takes one that is).

    ``assert nothing_pending(m)`` reads better as ``refute_receive(m, timeout=0)``.
    """
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


def pytest_configure(config: pytest.Config) -> None:
    """Load otpy's plugin unless pytest has it already (its entry point) or was told not to.

    Declaring ``pytest_plugins = ["otpy.testing.plugin"]`` here instead would
    register the module a second time once the ``pytest11`` entry point
    (named ``otpy``) has loaded it, which pytest refuses; asking the plugin
    manager at configure time works with and without the entry point, and
    ``-p no:otpy`` is respected (the suite's fixtures are then missing).
    """
    plugins = config.pluginmanager
    if not (
        plugins.has_plugin("otpy")
        or plugins.has_plugin("otpy.testing.plugin")
        or plugins.is_blocked("otpy")
    ):
        plugins.import_plugin("otpy.testing.plugin")


@pytest.fixture
def _no_thread_left() -> Iterator[None]:
    """Fail the test if a thread it started is still running after its runtime shut down."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.005)  # noqa: SLEEP001 polling with a deadline
    assert not extra, f"threads left behind: {extra}"


@pytest.fixture
def otpy_runtime(_no_thread_left: None, otpy_runtime: otpy.Runtime) -> otpy.Runtime:
    """The plugin's otpy_runtime, set up after (so torn down before) the thread check."""
    return otpy_runtime


@pytest.fixture
def runtime(otpy_runtime: otpy.Runtime) -> otpy.Runtime:
    """A fresh Runtime entered for the test (the plugin's ``otpy_runtime``); fails if
    processes or threads outlive it."""
    return otpy_runtime
