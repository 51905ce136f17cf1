"""The supervision toolkit: what every otpy supervisor does the same way.

``Supervisor``, ``DynamicSupervisor`` (and ``TaskSupervisor`` on it),
``PartitionSupervisor`` (a ``Supervisor``), ``stage.ConsumerSupervisor`` and
``Pool`` build on these pieces, so the restart policy is written once:

* the values they report: :class:`ChildInfo`, :class:`ChildCount`,
  :data:`RESTARTING`, and :func:`child_spec_of` for a list entry;
* the restart policy: :func:`should_restart` (``restart`` and exit reason),
  :class:`RestartIntensity` (``max_restarts`` in ``max_seconds``, then
  :func:`give_up`), :class:`Backoff` and the per-child backoff state in
  :class:`ChildState`, and :func:`report_restart` (telemetry);
* starting and stopping: :func:`start_child` / :func:`start_child_process`
  (a spec's start function, its failure as :class:`ChildStartFailed`),
  :func:`shutdown_children` (the shutdown protocol), :func:`start_server`;
* the requests a supervisor's API functions send its process
  (:class:`WhichChildren`, :class:`StartChild`, ...), matched with
  ``type(request) is X``, and :func:`answer` for the errors that come back
  as values.

Example (a supervisor process's view)::

    self.intensity = RestartIntensity(supervisor_label("MySup", self), 3, 5.0)
    ...
    if should_restart(child.spec.restart, reason):
        self.intensity.count(lambda: f"child {child.spec.id!r} exited: {reason!r}")
        child.started(start_child_process(child.spec))

Everything here runs in the supervisor process that calls it and keeps no
shared state of its own.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import attrs

from . import _core as core
from . import telemetry
from ._child_spec import BRUTAL_KILL, ChildSpec
from ._core import Down, Exit, Pid
from ._exceptions import OtpError, StartError, Timeout
from ._gen_server import GenServer, Stop

__all__ = [
    "RESTARTING",
    "Backoff",
    "ChildCount",
    "ChildInfo",
    "ChildStartFailed",
    "ChildState",
    "Children",
    "CountChildren",
    "DeleteChild",
    "RestartChild",
    "RestartIntensity",
    "StartChild",
    "TerminateChild",
    "WhichChildren",
    "answer",
    "check_intensity",
    "child_count",
    "child_spec_of",
    "count_restart",
    "give_up",
    "report_restart",
    "request_of",
    "should_restart",
    "shutdown_child",
    "shutdown_children",
    "start_child",
    "start_child_process",
    "start_server",
    "supervisor_label",
]

_log = logging.getLogger("otpy.supervisor")

RESTARTING: Final = "restarting"
"""The ``pid`` that ``which_children`` shows for a child waiting for its backoff delay."""


# -- checking options --------------------------------------------------------------------


def _check_number(
    value: object, name: str, *, minimum: float = 0.0, allow_none: bool = False
) -> None:
    """Raise ValueError unless ``value`` is a number (not a bool) >= ``minimum``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        allowed = f"a number >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {allowed}; got {value!r}")


def check_intensity(max_restarts: object, max_seconds: object) -> float:
    """Check a restart intensity's options; ``max_seconds`` as a float.

    Raises:
        ValueError: ``max_restarts`` is not an int >= 0, or ``max_seconds`` is
            not a number > 0.
    """
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an int >= 0; got {max_restarts!r}")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float))
        or not max_seconds > 0
    ):
        raise ValueError(f"max_seconds must be a number > 0; got {max_seconds!r}")
    return float(max_seconds)


# -- values ------------------------------------------------------------------------------


@attrs.frozen
class Backoff:
    """Restart with growing delays instead of at once (Akka's ``restartWithBackoff``).

    Example::

        spec = Db.child_spec().replace(backoff=otpy.Backoff(min=0.1, max=30.0))
        otpy.Supervisor.start_link([spec])

    The n-th restart in a row waits ``min * 2**n`` seconds, at most ``max``,
    spread by ``jitter`` (0.2: up to 20% more or less). A child that has been
    up for ``reset_after`` seconds starts over at ``min``.
    """

    min: float = attrs.field(default=0.1)
    max: float = attrs.field(default=10.0)
    jitter: float = attrs.field(default=0.2)
    reset_after: float = attrs.field(default=30.0)

    def __attrs_post_init__(self) -> None:
        _check_number(self.min, "Backoff min")
        _check_number(self.max, "Backoff max", minimum=self.min)
        _check_number(self.jitter, "Backoff jitter")
        if self.jitter > 1:
            raise ValueError(f"Backoff jitter must be between 0 and 1; got {self.jitter!r}")
        _check_number(self.reset_after, "Backoff reset_after")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before restart number ``attempt`` (0-based) in a row."""
        base = min(float(self.max), float(self.min) * 2.0 ** min(attempt, 64))
        spread = base * self.jitter
        return max(0.0, base + rng.uniform(-spread, spread))


Backoff.__module__ = "otpy"


@attrs.frozen
class ChildInfo:
    """One child as ``which_children`` reports it.

    ``pid`` is None for a child that is not running, and ``"restarting"`` for
    one waiting for its backoff delay; ``restarts`` counts its restarts.

    Example::

        [info.id for info in otpy.Supervisor.which_children(sup)]
    """

    id: Any
    pid: Pid | str | None
    type: str
    restarts: int = attrs.field(default=0, kw_only=True)


ChildInfo.__module__ = "otpy"


@attrs.frozen
class ChildCount:
    """What ``count_children`` reports: specs, active (running) children, and how
    many of the specs are supervisors and workers.

    Example::

        otpy.Supervisor.count_children(sup).active
    """

    specs: int
    active: int
    supervisors: int
    workers: int


ChildCount.__module__ = "otpy"


def child_count(specs: Iterable[ChildSpec], active: int) -> ChildCount:
    """The :class:`ChildCount` of these specs, ``active`` of them running."""
    n = supervisors = 0
    for spec in specs:
        n += 1
        supervisors += spec.type == "supervisor"
    return ChildCount(n, active, supervisors, n - supervisors)


def child_spec_of(child: object) -> ChildSpec:
    """Turn a list entry into a ChildSpec: a ChildSpec, a class (``cls.child_spec()``),
    a ``(cls, arg)`` pair (``cls.child_spec(arg)``), or an object with ``child_spec()``.

    Raises:
        TypeError: it is none of those, or its ``child_spec()`` returned no ChildSpec.
    """
    if isinstance(child, ChildSpec):
        return child
    if isinstance(child, tuple) and len(child) == 2 and hasattr(child[0], "child_spec"):
        spec = child[0].child_spec(child[1])
    elif hasattr(child, "child_spec"):
        spec = child.child_spec()
    else:
        raise TypeError(
            "a child must be an otpy.ChildSpec, a class with child_spec() (such as a GenServer "
            f"subclass) or a (class, arg) pair; got {child!r}"
        )
    if not isinstance(spec, ChildSpec):
        raise TypeError(f"{child!r}.child_spec() must return an otpy.ChildSpec; got {spec!r}")
    return spec


# -- requests ------------------------------------------------------------------------------
# What a supervisor's API functions send its process. Classes of their own, so that no
# user message looks like one, matched with ``type(request) is X``.


@attrs.frozen
class WhichChildren:
    """Ask for ``which_children``: a list of :class:`ChildInfo`."""


@attrs.frozen
class CountChildren:
    """Ask for ``count_children``: a :class:`ChildCount`."""


@attrs.frozen
class Children:
    """Ask for the pids of the running children (``TaskSupervisor.children``)."""


@attrs.frozen
class StartChild:
    """Add a child and start it: its pid, or an error to raise in the caller."""

    spec: ChildSpec


@attrs.frozen
class TerminateChild:
    """Stop a child, by its id (``Supervisor``) or its pid (``DynamicSupervisor``)."""

    child: Any


@attrs.frozen
class RestartChild:
    """Start a stopped child again, by its id."""

    child_id: Any


@attrs.frozen
class DeleteChild:
    """Remove a stopped child's spec, by its id."""

    child_id: Any


def request_of(message: Any) -> Any:
    """``message``, with the tuple ``("which_children",)`` read as :class:`WhichChildren`.

    ``otpy.observer`` asks the supervisors that are not a ``Supervisor`` with
    that tuple; the request classes took the tuples' place everywhere else.
    """
    if type(message) is tuple and message == ("which_children",):
        return WhichChildren()
    return message


def answer(result: Any) -> Any:
    """A supervisor returns errors as values (a bad request must not crash it);
    raise them in the caller."""
    if isinstance(result, OtpError):
        raise result
    return result


# -- the restart policy ----------------------------------------------------------------------


def should_restart(restart: str, reason: Any) -> bool:
    """Whether a child with this ``restart`` value is restarted after exiting with ``reason``.

    ``"permanent"``: always; ``"transient"``: unless the exit is normal
    (``"normal"``, ``"shutdown"``, ``("shutdown", term)``); ``"temporary"``: never.
    """
    return restart == "permanent" or (restart == "transient" and not core.is_normal_exit(reason))


def count_restart(restarts: deque[float], max_restarts: int, max_seconds: float) -> bool:
    """Record a restart now; True if that makes more than ``max_restarts`` in ``max_seconds``."""
    now = time.monotonic()
    restarts.append(now)
    while restarts and restarts[0] < now - max_seconds:
        restarts.popleft()
    return len(restarts) > max_restarts


_RESTART = ("otpy", "supervisor", "restart")
_MAX_INTENSITY = ("otpy", "supervisor", "max_intensity")


def give_up(
    label: str, why: str | Callable[[], str], restarts: int, max_restarts: int, max_seconds: float
) -> None:
    """The restart intensity is reached: log it, report it, and stop the calling supervisor.

    Emits ``("otpy", "supervisor", "max_intensity")`` and raises ``Stop("shutdown")``,
    so the failure climbs the tree.
    """
    _log.error(
        "%s: %s; that reaches its restart intensity (%d restarts within %ss): shutting down",
        label,
        why if isinstance(why, str) else why(),
        max_restarts,
        max_seconds,
    )
    if telemetry._handlers_for(_MAX_INTENSITY):
        telemetry.execute(
            _MAX_INTENSITY,
            {"restarts": restarts},
            {"supervisor": core.self(), "max_restarts": max_restarts, "max_seconds": max_seconds},
        )
    raise Stop("shutdown")


class RestartIntensity:
    """A supervisor's restart intensity: at most ``max_restarts`` in ``max_seconds``.

    Owned by its supervisor process (not shared). Example::

        self.intensity = RestartIntensity(self.label, 3, 5.0)
        self.intensity.count(f"child {child_id!r} failed to restart")  # may give up
    """

    __slots__ = ("label", "max_restarts", "max_seconds", "times")

    def __init__(self, label: str, max_restarts: int, max_seconds: float) -> None:
        self.label = label
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.times: deque[float] = deque()  # of the recent restarts

    def count(self, why: str | Callable[[], str]) -> None:
        """Count a restart now; past the intensity, :func:`give_up` (``why`` says what failed).

        Raises:
            otpy.Stop: ``Stop("shutdown")``, to the supervisor's GenServer loop.
        """
        if count_restart(self.times, self.max_restarts, self.max_seconds):
            give_up(self.label, why, len(self.times), self.max_restarts, self.max_seconds)


def report_restart(
    child_id: Any, old: Pid | None, new: Pid | None, reason: Any, restarts: int
) -> None:
    """Emit ``("otpy", "supervisor", "restart")`` for a child the calling supervisor restarted."""
    if not telemetry._handlers_for(_RESTART):
        return
    telemetry.execute(
        _RESTART,
        {"restarts": restarts},
        {
            "supervisor": core.self(),
            "child_id": child_id,
            "pid": old,
            "new_pid": new,
            "reason": reason,
        },
    )


class ChildState:
    """A supervisor's record of one child; owned by the supervisor process.

    Subclasses add what their supervisor needs (with ``__slots__``). Example::

        child = ChildState(spec)
        child.started(start_child_process(spec))
        delay = child.backoff_delay(backoff, rng)    # after it crashed
    """

    __slots__ = ("attempt", "exited", "pid", "restarts", "spec", "started_at")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.pid: Pid | None = None
        self.restarts = 0
        self.attempt = 0  # backoff restarts in a row
        self.started_at = 0.0
        # The pid it had and why it went, until its restart reports them.
        self.exited: tuple[Pid | None, Any] = (None, None)

    def started(self, pid: Pid | None) -> None:
        """It is running as ``pid`` now (None: its start ignored it); tell the runtime its
        restart count."""
        self.pid = pid
        self.started_at = time.monotonic()
        if pid is not None and self.restarts:
            core.set_restarts(pid, self.restarts)

    def backoff_delay(self, backoff: Backoff, rng: random.Random) -> float:
        """Seconds to wait before restarting it under ``backoff``; counts the attempt.

        The attempts start over when it had stayed up for ``backoff.reset_after``.
        """
        if time.monotonic() - self.started_at >= backoff.reset_after:
            self.attempt = 0
        delay = backoff.delay(self.attempt, rng)
        self.attempt += 1
        return delay

    def report_restarted(self) -> None:
        """Emit the restart telemetry for the exit recorded in ``exited``, then forget it."""
        old, reason = self.exited
        self.exited = (None, None)
        report_restart(self.spec.id, old, self.pid, reason, self.restarts)


# -- starting children ---------------------------------------------------------------------------


class ChildStartFailed(Exception):
    """A child's start function raised or returned something else than a pid or None."""

    def __init__(self, child_id: Any, reason: Any) -> None:
        super().__init__(child_id, reason)
        self.child_id = child_id
        self.reason = reason


def start_child(
    spec: ChildSpec,
    *,
    before: tuple[Any, ...] = (),
    after: tuple[Any, ...] = (),
    extra: bool = False,
) -> tuple[Pid | None, Any]:
    """Run ``spec``'s start function (in the supervisor), with ``before`` and ``after``
    around its arguments; ``(pid, what it returned)``.

    It must return a pid or None (ignored), or, with ``extra``, a tuple that
    starts with one (``(pid, reply)``).

    Raises:
        ChildStartFailed: the start function raised (its ``StartError`` reason,
            or the exception), or returned something else (``("bad_return", it)``).
    """
    fn, args, kwargs = spec.start
    try:
        result = fn(*before, *args, *after, **kwargs)
    except StartError as exc:
        raise ChildStartFailed(spec.id, exc.reason) from exc
    except Exception as exc:  # a ProcessExit (BaseException) ends the supervisor
        raise ChildStartFailed(spec.id, exc) from exc
    pid = result[0] if extra and isinstance(result, tuple) and result else result
    if pid is not None and not isinstance(pid, Pid):
        raise ChildStartFailed(spec.id, ("bad_return", result))
    return pid, result


def start_child_process(spec: ChildSpec) -> Pid | None:
    """Run a child spec's start function (in the supervisor); its pid, or None if ignored.

    Raises:
        ChildStartFailed: the start function raised, or returned something else.
    """
    return start_child(spec)[0]


def start_server(
    server: type[GenServer], init_args: tuple[Any, ...], name: object, link: bool
) -> Pid:
    """Start a supervisor-like server; turn a child's start failure into StartError(child_id).

    A server's ``init`` reports a child that failed to start as
    ``Stop(("shutdown", ("failed_to_start_child", child_id, reason)))``.
    """
    try:
        pid = (
            server.start_link(*init_args, name=name)
            if link
            else server.start(*init_args, name=name)
        )
    except StartError as exc:
        reason = exc.reason
        if (
            isinstance(reason, tuple)
            and len(reason) == 2
            and reason[0] == "shutdown"
            and isinstance(reason[1], tuple)
            and len(reason[1]) == 3
            and reason[1][0] == "failed_to_start_child"
        ):
            _, child_id, child_reason = reason[1]
            raise StartError(child_reason, child_id) from (
                child_reason if isinstance(child_reason, BaseException) else None
            )
        raise
    assert pid is not None
    return pid


# -- stopping children --------------------------------------------------------------------------


def _flush_exit(pid: Pid) -> None:
    """Drop an Exit from ``pid`` that came before it was unlinked."""
    while True:
        try:
            core.receive(timeout=0, match=lambda m: type(m) is Exit and m.pid == pid)
        except Timeout:
            return


def shutdown_children(children: Sequence[tuple[Pid, Any]], who: str) -> None:
    """Stop children (``(pid, shutdown value)`` pairs) at once and wait for all of them.

    Each gets ``"shutdown"`` (or ``"kill"`` for ``BRUTAL_KILL``), is killed if it
    is still alive after its shutdown time, and is unlinked from the caller so
    that its exit is not taken for a crash. A child that exits with another
    reason than the one it was sent is reported on the log. For an ordered
    shutdown, call it (or :func:`shutdown_child`) once per child, in order.
    """
    refs: dict[Any, tuple[Pid, Any, str]] = {}
    deadlines: list[tuple[float, Any]] = []
    now = time.monotonic()
    for pid, shutdown in children:
        ref = core.monitor(pid)
        core.unlink(pid)
        if shutdown == BRUTAL_KILL:
            core.exit(pid, "kill")
            refs[ref] = (pid, shutdown, "killed")
        else:
            core.exit(pid, "shutdown")
            refs[ref] = (pid, shutdown, "shutdown")
            if shutdown is not None:
                deadlines.append((now + shutdown, ref))
    deadlines.sort(key=lambda d: d[0])
    while refs:
        timeout = None
        while deadlines and deadlines[0][1] not in refs:
            deadlines.pop(0)
        if deadlines:
            timeout = max(0.0, deadlines[0][0] - time.monotonic())
        try:
            down = core.receive(timeout=timeout, match=lambda m: type(m) is Down and m.ref in refs)
        except Timeout:
            _, ref = deadlines.pop(0)
            pid, shutdown, _ = refs[ref]
            core.exit(pid, "kill")
            refs[ref] = (pid, shutdown, "killed")
            continue
        pid, _, expected = refs.pop(down.ref)
        _flush_exit(pid)
        if (
            down.reason != expected
            and down.reason not in ("shutdown", "noproc")
            and not (expected == "killed" and core.is_normal_exit(down.reason))
        ):
            _log.error("%s: child %r ended with %r while shutting down", who, pid, down.reason)


def shutdown_child(pid: Pid, shutdown: Any, who: str) -> None:
    """Stop one child by its ``shutdown`` value and wait for it (see :func:`shutdown_children`)."""
    shutdown_children([(pid, shutdown)], who)


def supervisor_label(kind: str, server: GenServer) -> str:
    """How a supervisor names itself in its log lines: kind, registered name, pid."""
    name = getattr(server, "_otpy_name", None)
    return f"{kind} {name!r} {core.self()!r}" if name is not None else f"{kind} {core.self()!r}"
