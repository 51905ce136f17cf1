"""otpy's pytest plugin: a fresh Runtime per test, supervised children, captured telemetry.

Example::

    import otpy
    import pytest
    from otpy.retry import RetryPolicy
    from otpy.testing import ANY, assert_receive

    def test_worker_comes_back(otpy_runtime, start_supervised):
        pid = start_supervised(Worker.child_spec(otpy.self()))   # says ("ready", pid)
        assert_receive(("ready", pid))
        otpy.exit(pid, "kill")
        _, new = assert_receive(("ready", ANY))                   # restarted by the supervisor
        assert new != pid

    def test_retries_are_reported(capture_telemetry):
        events = capture_telemetry(("otpy", "retry"))
        policy = RetryPolicy(on=ConnectionError, attempts=2, wait_initial=0, wait_jitter=0)
        with pytest.raises(ConnectionError):
            otpy.retry.call(connect, policy=policy)               # fails twice
        assert [event for event, _, _ in events] == [
            ("otpy", "retry", "scheduled"), ("otpy", "retry", "exhausted")]

Installing otpy installs this plugin: pytest finds it through the
``pytest11`` entry point named ``otpy``, so ``pytest -p no:otpy`` turns it
off. It adds three fixtures and no hooks or options.

``otpy_runtime``:
    A new ``otpy.Runtime()`` for the test, entered with ``with`` before the
    test starts (so everything the test does, from any thread that is not
    an otpy process, runs in it) and shut down when the test ends: every
    process gets its ``"shutdown"`` exit, what is still alive after 5 s is
    killed, and the pool threads are joined. Then the test errors (at
    teardown) if a process of the runtime is still alive, or if one of its
    pool or timer threads is still running 5 s (times
    ``OTPY_TEST_TIMEFACTOR``) later: code of a dead process stuck in a call
    that otpy cannot interrupt holds its thread. The fixture's value is the
    runtime.

``start_supervised(child) -> Pid``:
    Starts ``child`` (an ``otpy.ChildSpec``, a class with ``child_spec()``
    such as a GenServer subclass, or a ``(class, arg)`` pair) under a
    supervisor of the test, started on first use in ``otpy_runtime``
    (``one_for_one``, unlinked, with ExUnit's restart intensity of a million
    restarts a second, so crash tests never make it give up), and returns
    the child's pid (``None`` if the child's start returned
    ``otpy.IGNORE``). The child restarts as its spec says. At teardown,
    before the runtime shuts down, the supervisor is stopped: its children
    stop in reverse start order, each as its spec's ``shutdown`` says. Two
    children need different ids (``spec.replace(id=...)``), as under any
    supervisor. Raises what ``otpy.Supervisor.start_child`` raises:
    ``otpy.StartError`` when the child fails to start,
    ``otpy.AlreadyStartedError`` for a duplicate id.

``capture_telemetry(*prefixes) -> list``:
    Attaches a handler to every event under each prefix and returns a list
    that fills with ``(event, measurements, metadata)`` tuples (copies of the
    two dicts) as the events are emitted, from any thread; the handler is
    detached at teardown. A prefix is a tuple of str: ``("otpy",
    "supervisor")``, a whole event, or ``()`` for all of otpy's events.

    otpy's telemetry calls the handlers of an exact event (it has no
    wildcard), so "under a prefix" means: every event otpy itself emits
    (the table in the documentation, also ``("telemetry", "handler",
    "failure")``) that starts with the prefix, plus the prefix itself and
    the three events of a span on it (``prefix + ("start",)``, ``("stop",)``,
    ``("exception",)``). Your own events are caught when you pass their
    names, or the prefix of your ``telemetry.span``; any other event of your
    own under a prefix is not. Each call makes a new list with a handler of
    its own.

    An event is in the list before ``telemetry.execute`` returns to its
    emitter, so events emitted by the test's own thread are there at once.
    An event another process emits may come after the message you waited
    for (a crash is reported after the ``Down``, a restart after the new
    child's ``init``): poll the list with a deadline before asserting on it.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest

import otpy
from otpy import telemetry
from otpy.testing import _time_factor

__all__ = ["capture_telemetry", "otpy_runtime", "start_supervised"]

LEAK_GRACE: Final = 5.0
"""Seconds (times OTPY_TEST_TIMEFACTOR) a pool thread may take to end after the shutdown."""

# The restart intensity of the test supervisor, as ExUnit's: a crash test never exhausts it.
_MAX_RESTARTS: Final = 1_000_000
_MAX_SECONDS: Final = 1.0


# -- otpy_runtime --------------------------------------------------------------------


@pytest.fixture
def otpy_runtime() -> Iterator[otpy.Runtime]:
    """A fresh Runtime, entered for the test and shut down after it; errors on leftovers.

    Example::

        def test_echo(otpy_runtime):
            pid = otpy.spawn(lambda to: otpy.send(to, "hi"), otpy.self())
            assert assert_receive("hi") == "hi"
    """
    rt = otpy.Runtime()
    with rt:
        yield rt
    _check_left_behind(rt)


def _runtime_threads(rt: otpy.Runtime) -> list[threading.Thread]:
    # The runtime names its pool workers "otpy-<id>-worker-<n>" and its timer
    # thread "otpy-<id>-timers"; there is no other way to tell them apart.
    prefix = f"otpy-{rt.id}-"
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def _check_left_behind(rt: otpy.Runtime) -> None:
    """After ``rt``'s shutdown: fail if a process is alive or a thread of it still runs."""
    problems = []
    leftover = rt.processes()
    if leftover:
        problems.append(
            f"processes of {rt!r} still alive after its shutdown: {leftover}; this is a bug in otpy"
        )
    grace = LEAK_GRACE * _time_factor()
    deadline = time.monotonic() + grace
    threads = _runtime_threads(rt)
    while threads and time.monotonic() < deadline:
        time.sleep(0.005)  # noqa: SLEEP001 polling with a deadline
        threads = _runtime_threads(rt)
    if threads:
        problems.append(
            f"threads of {rt!r} still running {grace:g}s after its shutdown: "
            f"{[t.name for t in threads]}; the code of a process that was stopped is stuck "
            "in a call otpy cannot interrupt (time.sleep, blocking I/O, a busy loop), or "
            "catches the interrupt and goes on"
        )
    if problems:
        pytest.fail("otpy_runtime: " + "\n".join(problems), pytrace=False)


# -- start_supervised ------------------------------------------------------------------


class _TestSupervisor:
    """The supervisor behind ``start_supervised``, started on first use."""

    # _lock guards _sup and _closed; it is held while the supervisor starts (which
    # runs no user code), never while a child starts.

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sup: otpy.Pid | None = None
        self._closed = False

    def start(self, child: object) -> otpy.Pid | None:
        """Start ``child`` under the test's supervisor; see the module documentation."""
        with self._lock:
            if self._closed:
                raise RuntimeError(
                    "start_supervised was called after its test ended; "
                    "call it from the test (or a fixture it uses)"
                )
            if self._sup is None:
                self._sup = otpy.Supervisor.start(
                    [], strategy="one_for_one", max_restarts=_MAX_RESTARTS, max_seconds=_MAX_SECONDS
                )
            sup = self._sup
        return otpy.Supervisor.start_child(sup, child)

    def close(self) -> None:
        """Stop the supervisor: its children stop in reverse start order."""
        with self._lock:
            self._closed = True
            sup, self._sup = self._sup, None
        if sup is None:
            return
        # If the test's own process was killed during the test (a linked
        # process crashed), this thread's next otpy call raises ExitError once
        # and the thread gets a fresh process: take that call here.
        with contextlib.suppress(otpy.ExitError):
            otpy.self()
        with contextlib.suppress(otpy.NoProcError):  # it died during the test: nothing to stop
            otpy.Supervisor.stop(sup, "shutdown")


@pytest.fixture
def start_supervised(otpy_runtime: otpy.Runtime) -> Iterator[Callable[[object], otpy.Pid | None]]:
    """``start_supervised(child) -> Pid``: start a child under the test's own supervisor.

    Example::

        def test_stack(start_supervised):
            pid = start_supervised(Stack.child_spec([1]))
            assert Stack.call(pid, "pop") == 1
    """
    supervisor = _TestSupervisor()
    yield supervisor.start
    supervisor.close()


# -- capture_telemetry -----------------------------------------------------------------


def _span(*prefix: str) -> tuple[telemetry.Event, ...]:
    return ((*prefix, "start"), (*prefix, "stop"), (*prefix, "exception"))


OTPY_EVENTS: Final[tuple[telemetry.Event, ...]] = (
    ("otpy", "process", "crash"),
    ("otpy", "supervisor", "restart"),
    ("otpy", "supervisor", "max_intensity"),
    ("otpy", "mailbox", "drop"),
    *_span("otpy", "pool", "checkout"),
    ("otpy", "ratelimit", "reject"),
    ("otpy", "retry", "scheduled"),
    ("otpy", "retry", "exhausted"),
    *_span("otpy", "pipeline", "processor", "message"),
    *_span("otpy", "pipeline", "batch_processor"),
    ("otpy", "pipeline", "ack"),
    *_span("otpy", "pipeline", "drain"),
    ("telemetry", "handler", "failure"),
)
"""Every event otpy emits, as documented: what ``capture_telemetry`` attaches to under a prefix."""

_ids = itertools.count(1)
_ids_lock = threading.Lock()  # guards _ids


def _events_under(prefix: object) -> list[telemetry.Event]:
    if not isinstance(prefix, tuple) or not all(isinstance(item, str) for item in prefix):
        raise TypeError(
            "capture_telemetry takes event prefixes, each a tuple of str such as "
            f"('otpy', 'supervisor') or () for all of otpy's events; got {prefix!r}"
        )
    n = len(prefix)
    events = [event for event in OTPY_EVENTS if event[:n] == prefix]
    if prefix:
        events += [prefix, *_span(*prefix)]
    return events


class _Sink:
    """The list one ``capture_telemetry`` call returns, and the lock its appends take."""

    # lock guards appends to items (handlers run in whichever thread emits).

    __slots__ = ("items", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[telemetry.Event, dict[str, Any], dict[str, Any]]] = []


def _record(
    event: telemetry.Event, measurements: dict[str, Any], metadata: dict[str, Any], sink: _Sink
) -> None:
    entry = (event, dict(measurements), dict(metadata))
    with sink.lock:
        sink.items.append(entry)


class _Capture:
    """What the ``capture_telemetry`` fixture returns; detaches its handlers at :meth:`close`."""

    # _lock guards _attached and _closed.

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attached: list[object] = []
        self._closed = False

    def __call__(
        self, *prefixes: telemetry.Event
    ) -> list[tuple[telemetry.Event, dict[str, Any], dict[str, Any]]]:
        if not prefixes:
            raise TypeError(
                "capture_telemetry needs at least one event prefix, such as "
                "('otpy', 'supervisor'); pass () for all of otpy's events"
            )
        events: list[telemetry.Event] = []
        for prefix in prefixes:
            events += [e for e in _events_under(prefix) if e not in events]
        sink = _Sink()
        with _ids_lock:
            handler_id = ("otpy.testing.capture_telemetry", next(_ids))
        with self._lock:
            if self._closed:
                raise RuntimeError("capture_telemetry was called after its test ended")
            telemetry.attach_many(handler_id, events, _record, config=sink)
            self._attached.append(handler_id)
        return sink.items

    def close(self) -> None:
        with self._lock:
            self._closed = True
            attached, self._attached = self._attached, []
        for handler_id in attached:
            telemetry.detach(handler_id)


@pytest.fixture
def capture_telemetry() -> Iterator[_Capture]:
    """``capture_telemetry(*prefixes) -> list`` of ``(event, measurements, metadata)``.

    Example::

        def test_rejects_are_reported(otpy_runtime, capture_telemetry):
            rejects = capture_telemetry(("otpy", "ratelimit"))
            ...                                  # exhaust a limiter from this thread
            [(event, measurements, metadata)] = rejects
            assert measurements["tokens"] == 1
    """
    capture = _Capture()
    yield capture
    capture.close()
