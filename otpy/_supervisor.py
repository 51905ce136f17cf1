"""Supervisor: starts children, restarts the ones that crash, stops them in order.

Example::

    children = [
        otpy.Registry.child_spec(keys="unique", name="sessions"),
        Cache.child_spec(name="cache"),            # a GenServer class's spec
        Worker,                                    # a class alone: Worker.child_spec()
    ]
    sup = otpy.Supervisor.start_link(children, strategy="one_for_one", name="root")
    otpy.Supervisor.which_children(sup)            # [ChildInfo(id=..., pid=..., type=...), ...]

    class App(otpy.Supervisor):                    # the class form
        def init(self, arg):
            return otpy.supervise([Cache.child_spec(arg)], strategy="one_for_all")

    App.start_link("config", name="app")

Strategies (``strategy=``, default ``"one_for_one"``):

* ``"one_for_one"``: only the child that exited is restarted;
* ``"one_for_all"``: all other children are stopped (in reverse start order),
  then all are started again (in order);
* ``"rest_for_one"``: the children started after the one that exited are
  stopped, then it and they are started again.

Restart values (a child spec's ``restart``): ``"permanent"`` children are
always restarted, ``"transient"`` ones only after an abnormal exit (anything
but ``"normal"``, ``"shutdown"`` or ``("shutdown", term)``), ``"temporary"``
ones never (and they leave ``which_children`` when they exit).

Restart intensity: more than ``max_restarts`` (default 3) restarts within
``max_seconds`` (default 5.0) make the supervisor give up: it stops all
children and exits with ``"shutdown"``, so the failure climbs the tree to its
own supervisor. A failure counts once, also when ``one_for_all`` or
``rest_for_one`` restarts several children for it.

Shutdown values (a child spec's ``shutdown``): seconds to wait after a
``"shutdown"`` exit signal before ``"kill"`` (5.0 for workers),
``otpy.BRUTAL_KILL`` to kill at once, or ``None`` to wait as long as it takes
(the default for supervisors). Children start in list order and stop in
reverse order, when the supervisor stops and when its parent shuts it down.

Beyond OTP, restart with backoff: ``backoff=otpy.Backoff(...)`` on the
supervisor (for every child) or on a child spec delays each restart of a
crashing child by a growing, jittered delay, so a child that crashes because
a dependency is down neither spins nor trips the restart intensity. Restarts
under a backoff policy do not count toward the intensity; the delay grows
from ``min`` to ``max`` seconds and starts over once the child has stayed up
for ``reset_after`` seconds. While a child waits, ``which_children`` shows its
pid as ``"restarting"``.

A supervisor is a GenServer that traps exits; its calls (``which_children``
and the rest) wait as long as they need, as in OTP.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import attrs

from . import _core as core
from . import telemetry
from ._child_spec import BRUTAL_KILL, ChildSpec, spec_with
from ._core import Down, Exit, Pid
from ._exceptions import AlreadyStartedError, NotFoundError, OtpError, StartError, Timeout
from ._gen_server import GenServer, Stop

__all__ = [
    "RESTARTING",
    "Backoff",
    "ChildCount",
    "ChildInfo",
    "Introspect",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "child_spec_of",
    "count_restart",
    "shutdown_children",
    "supervise",
    "supervisor_label",
]

_log = logging.getLogger("otpy.supervisor")

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")

RESTARTING: Final = "restarting"
"""The ``pid`` that ``which_children`` shows for a child waiting for its backoff delay."""


# -- values ----------------------------------------------------------------------


def _check_number(
    value: object, name: str, *, minimum: float = 0.0, allow_none: bool = False
) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        allowed = f"a number >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {allowed}; got {value!r}")


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
    """

    id: Any
    pid: Pid | str | None
    type: str
    restarts: int = attrs.field(default=0, kw_only=True)


ChildInfo.__module__ = "otpy"


@attrs.frozen
class ChildCount:
    """What ``count_children`` reports: specs, active (running) children, and how
    many of the specs are supervisors and workers."""

    specs: int
    active: int
    supervisors: int
    workers: int


ChildCount.__module__ = "otpy"


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


def report_restart(child_id: Any, old: Pid | None, new: Pid | None, reason: Any, restarts: int) -> None:
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


def supervisor_label(kind: str, server: GenServer) -> str:
    """How a supervisor names itself in its log lines: kind, registered name, pid."""
    name = getattr(server, "_otpy_name", None)
    return f"{kind} {name!r} {core.self()!r}" if name is not None else f"{kind} {core.self()!r}"


def child_spec_of(child: object) -> ChildSpec:
    """Turn a list entry into a ChildSpec: a ChildSpec, a class (``cls.child_spec()``),
    a ``(cls, arg)`` pair (``cls.child_spec(arg)``), or an object with ``child_spec()``."""
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


@attrs.frozen
class SupervisorSpec:
    """What a class-form supervisor's ``init`` returns; made by :func:`supervise`."""

    children: tuple[ChildSpec, ...]
    strategy: Strategy = "one_for_one"
    max_restarts: int = 3
    max_seconds: float = 5.0
    backoff: Backoff | None = None


SupervisorSpec.__module__ = "otpy"


def supervise(
    children: Iterable[object],
    *,
    strategy: Strategy = "one_for_one",
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    backoff: Backoff | None = None,
) -> SupervisorSpec:
    """Validate a supervisor's children and options (for a class-form ``init``).

    Raises:
        ValueError / TypeError: an unknown strategy, a bad number, a bad child,
            or two children with the same id.
    """
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}; got {strategy!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an int >= 0; got {max_restarts!r}")
    _check_number(max_seconds, "max_seconds")
    if max_seconds == 0:
        raise ValueError(f"max_seconds must be a number > 0; got {max_seconds!r}")
    if backoff is not None and not isinstance(backoff, Backoff):
        raise TypeError(f"backoff must be an otpy.Backoff or None; got {backoff!r}")
    if isinstance(children, (str, bytes)) or not isinstance(children, Iterable):
        raise TypeError(f"children must be a list of child specs; got {children!r}")
    specs = tuple(child_spec_of(child) for child in children)
    seen: set[Any] = set()
    for spec in specs:
        if spec.id in seen:
            raise ValueError(f"two children have the id {spec.id!r}; child ids must be unique")
        seen.add(spec.id)
    return SupervisorSpec(specs, strategy, max_restarts, float(max_seconds), backoff)


# -- starting and stopping children ---------------------------------------------------


class _ChildStartFailed(Exception):
    def __init__(self, child_id: Any, reason: Any) -> None:
        super().__init__(child_id, reason)
        self.child_id = child_id
        self.reason = reason


def start_child_process(spec: ChildSpec) -> Pid | None:
    """Run a child spec's start function (in the supervisor); its pid, or None if ignored.

    Raises:
        _ChildStartFailed: the start function raised, or returned something else.
    """
    fn, args, kwargs = spec.start
    try:
        pid = fn(*args, **kwargs)
    except StartError as exc:
        raise _ChildStartFailed(spec.id, exc.reason) from exc
    except core.ProcessExit:
        raise
    except Exception as exc:
        raise _ChildStartFailed(spec.id, exc) from exc
    if pid is not None and not isinstance(pid, Pid):
        raise _ChildStartFailed(spec.id, ("bad_return", pid))
    return pid


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
    reason than the one it was sent is reported on the log.
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


# -- the supervisor ---------------------------------------------------------------------


class _Child:
    """A supervisor's record of one child; owned by the supervisor process."""

    __slots__ = ("attempt", "exited", "pid", "restarts", "spec", "started_at", "waiting")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.pid: Pid | None = None
        self.restarts = 0
        self.attempt = 0  # backoff restarts in a row
        self.started_at = 0.0
        # Waiting for a backoff restart: the supervisor's _Restart message for its group
        # restarts it if it is still waiting then. Stopping or restarting it by hand
        # meanwhile just clears the flag; the message finds nothing to do for it.
        self.waiting = False
        # The pid it had and why it went, until its restart reports them.
        self.exited: tuple[Pid | None, Any] = (None, None)


class _Restart:
    """A restart the supervisor sends itself: after a backoff delay, or to try again."""

    __slots__ = ("backoff", "ids")

    def __init__(self, ids: tuple[Any, ...], backoff: bool) -> None:
        self.ids = ids
        self.backoff = backoff


class Introspect:
    """``otpy.observer``'s request: ``(strategy, max_restarts, max_seconds, which_children)``.

    A class of its own, so that no request of a user looks like it.
    """

    __slots__ = ()


class _SupervisorServer(GenServer):
    """The process behind a Supervisor: a GenServer that traps exits."""

    inline_calls = True  # its calls wait without a timeout, so inline runs cost nothing
    kind = "Supervisor"  # how it names itself in logs (a class-form one: by its class)
    _otpy_behaviour = "Supervisor"

    def init(
        self,
        module: Supervisor | None,
        arg: Any,
        on_start: Callable[[Any, Pid | None], None] | None = None,
    ) -> None:
        core.trap_exits(True)
        spec = module.init(arg) if module is not None else arg
        if not isinstance(spec, SupervisorSpec):
            raise TypeError(
                f"{type(module).__name__}.init must return otpy.supervise(...); got {spec!r}"
            )
        self.label = supervisor_label(self.kind if module is None else type(module).__name__, self)
        self.strategy = spec.strategy
        self.max_restarts = spec.max_restarts
        self.max_seconds = spec.max_seconds
        self.backoff = spec.backoff
        self.on_start = on_start
        self.restarts: deque[float] = deque()
        self.rng = random.Random()
        self.children: list[_Child] = []  # in start order
        self.by_pid: dict[Pid, _Child] = {}  # the running ones
        for child_spec in spec.children:
            child = _Child(child_spec)
            try:
                self._launch(child)
            except _ChildStartFailed as failed:
                self._stop_all()
                raise Stop(
                    ("shutdown", ("failed_to_start_child", failed.child_id, failed.reason))
                ) from None
            if child.pid is not None or child_spec.restart != "temporary":
                self.children.append(child)

    # -- child life cycle --------------------------------------------------------------

    def _launch(self, child: _Child) -> None:
        child.waiting = False
        child.pid = start_child_process(child.spec)
        child.started_at = time.monotonic()
        if child.pid is not None:
            self.by_pid[child.pid] = child
            if child.restarts:
                core.set_restarts(child.pid, child.restarts)
        if self.on_start is not None:
            self.on_start(child.spec.id, child.pid)

    def _stop(self, children: Sequence[_Child]) -> None:
        """Stop running children one after the other, in the given order."""
        for child in children:
            child.waiting = False
            if child.pid is not None:
                self.by_pid.pop(child.pid, None)
                shutdown_children([(child.pid, child.spec.shutdown)], self.label)
                child.pid = None
                if self.on_start is not None:
                    self.on_start(child.spec.id, None)

    def _stop_all(self) -> None:
        self._stop(self.children[::-1])

    def _find(self, child_id: Any) -> _Child:
        for child in self.children:
            if child.spec.id == child_id:
                return child
        raise NotFoundError(child_id)

    # -- callbacks -----------------------------------------------------------------------

    def handle_call(self, request: Any, caller: Any) -> Any:
        if type(request) is Introspect:
            children = self._handle_request(("which_children",))
            return self.strategy, self.max_restarts, self.max_seconds, children
        try:
            return self._handle_request(request)
        except NotFoundError as exc:
            return exc  # raised in the caller, not here: a bad id must not crash the supervisor

    def _handle_request(self, request: Any) -> Any:
        op = request[0]
        if op == "which_children":
            return [
                ChildInfo(
                    c.spec.id, RESTARTING if c.waiting else c.pid, c.spec.type, restarts=c.restarts
                )
                for c in self.children
            ]
        if op == "count_children":
            supervisors = sum(1 for c in self.children if c.spec.type == "supervisor")
            active = sum(1 for c in self.children if c.pid is not None)
            return ChildCount(
                len(self.children), active, supervisors, len(self.children) - supervisors
            )
        if op == "start_child":
            return self._call_start_child(request[1])
        if op == "terminate_child":
            child = self._find(request[1])
            self._stop([child])
            if child.spec.restart == "temporary":
                self.children.remove(child)
            return None
        if op == "restart_child":
            child = self._find(request[1])
            if child.pid is not None:
                return AlreadyStartedError(child.pid, child.spec.id, "the child id")
            try:
                self._launch(child)
            except _ChildStartFailed as failed:
                return StartError(failed.reason, failed.child_id)
            return child.pid
        if op == "delete_child":
            child = self._find(request[1])
            if child.pid is not None:
                return AlreadyStartedError(child.pid, child.spec.id, "the child id")
            self.children.remove(child)
            return None
        raise ValueError(f"unknown supervisor request {request!r}")

    def _call_start_child(self, spec: ChildSpec) -> Any:
        for child in self.children:
            if child.spec.id == spec.id:
                return AlreadyStartedError(child.pid, spec.id, "the child id")
        child = _Child(spec)
        try:
            self._launch(child)
        except _ChildStartFailed as failed:
            return StartError(failed.reason, failed.child_id)
        if child.pid is not None or spec.restart != "temporary":
            self.children.append(child)
        return child.pid

    def handle_info(self, message: Any) -> Any:
        if type(message) is Exit:
            child = self.by_pid.pop(message.pid, None)
            if child is not None:
                self._child_exited(child, message.reason)
            return None
        if type(message) is _Restart:
            group = [c for c in self.children if c.spec.id in message.ids]
            self._restart_group(group, backoff=message.backoff)
            return None
        return super().handle_info(message)

    def terminate(self, reason: Any) -> None:
        self._stop_all()

    # -- restarts ------------------------------------------------------------------------

    def _child_exited(self, child: _Child, reason: Any) -> None:
        pid, child.pid = child.pid, None
        if self.on_start is not None:
            self.on_start(child.spec.id, None)
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and core.is_normal_exit(reason)):
            if restart == "temporary":
                self.children.remove(child)
            return
        group = self._group(child)
        for member in group:  # a sibling restarts for the same reason as the child
            member.exited = (pid if member is child else member.pid, reason)
        backoff = child.spec.backoff or self.backoff
        if backoff is None:
            self._count_restart(lambda: f"child {child.spec.id!r} ({pid!r}) exited: {reason!r}")
        if not core.is_normal_exit(reason):
            _log.error(
                "%s: child %r (%r) exited: %r; restarting", self.label, child.spec.id, pid, reason
            )
        group = self._stop_siblings(child, group)
        if backoff is not None:
            if time.monotonic() - child.started_at >= backoff.reset_after:
                child.attempt = 0
            delay = backoff.delay(child.attempt, self.rng)
            child.attempt += 1
            ids = tuple(c.spec.id for c in group)
            core.send_after(delay, core.self(), _Restart(ids, backoff=True))
            for c in group:
                c.waiting = True
            return
        self._restart_group(group, backoff=False)

    def _stop_siblings(self, child: _Child, group: list[_Child]) -> list[_Child]:
        """Stop the rest of ``child``'s restart group; temporary ones leave for good (as OTP)."""
        siblings = [c for c in group if c is not child]
        self._stop(siblings[::-1])
        for sibling in siblings:
            if sibling.spec.restart == "temporary":
                self.children.remove(sibling)
        return [c for c in group if c is child or c.spec.restart != "temporary"]

    def _group(self, child: _Child) -> list[_Child]:
        if self.strategy == "one_for_one":
            return [child]
        if self.strategy == "one_for_all":
            return list(self.children)
        return self.children[self.children.index(child) :]

    def _count_restart(self, why: str | Callable[[], str]) -> None:
        if count_restart(self.restarts, self.max_restarts, self.max_seconds):
            give_up(self.label, why, len(self.restarts), self.max_restarts, self.max_seconds)

    def _restart_group(self, group: list[_Child], *, backoff: bool) -> None:
        for child in group:
            if child not in self.children:
                continue
            if child.pid is not None or (backoff and not child.waiting):
                continue  # running, or taken care of by hand while it waited
            child.waiting = False
            child.restarts += 1
            try:
                self._launch(child)
            except _ChildStartFailed as failed:
                _log.error(
                    "%s: child %r failed to restart: %r", self.label, failed.child_id, failed.reason
                )
                # As OTP: try again (counting toward the intensity), after the other messages.
                if not backoff:
                    self._count_restart(f"child {failed.child_id!r} failed to restart")
                    rest = group[group.index(child) :]
                    core.send(core.self(), _Restart(tuple(c.spec.id for c in rest), backoff=False))
                else:
                    self._child_exited(child, failed.reason)
                return
            if not backoff:
                child.attempt = 0
            old, reason = child.exited
            child.exited = (None, None)
            report_restart(child.spec.id, old, child.pid, reason, child.restarts)


# -- the public face --------------------------------------------------------------------


def _answer(result: Any) -> Any:
    if isinstance(result, OtpError):
        raise result
    return result


class Supervisor:
    """Starts, watches and restarts child processes; see the module documentation.

    Example::

        sup = otpy.Supervisor.start_link([Stack.child_spec([], name="stack")],
                                         strategy="one_for_one", name="root")
        otpy.Supervisor.which_children(sup)

    Subclass it and define ``init(self, arg)`` returning ``otpy.supervise(...)``
    for the class form (started with ``App.start_link(arg, name=...)``).
    """

    __module__ = "otpy"

    def init(self, arg: Any) -> SupervisorSpec:
        """The class form's callback: return ``otpy.supervise(children, ...)``."""
        raise NotImplementedError(f"{type(self).__name__} must define init(self, arg)")

    @classmethod
    def start_link(cls, *args: Any, name: object = None, **options: Any) -> Pid:
        """Start a supervisor linked to the caller; returns once every child started.

        Function form: ``Supervisor.start_link(children, strategy=, max_restarts=,
        max_seconds=, backoff=, name=)``. Class form: ``App.start_link(arg, name=)``.

        Raises:
            otpy.StartError: a child failed to start (``.child_id``, ``.reason``);
                the children already started were stopped.
            otpy.AlreadyStartedError: ``name`` is taken.
        """
        return cls._start(args, options, name, link=True)

    @classmethod
    def start(cls, *args: Any, name: object = None, **options: Any) -> Pid:
        """Like :meth:`start_link`, without the link."""
        return cls._start(args, options, name, link=False)

    @classmethod
    def _start(
        cls, args: tuple[Any, ...], options: dict[str, Any], name: object, link: bool
    ) -> Pid:
        if cls is Supervisor:
            if len(args) != 1:
                raise TypeError(
                    "Supervisor.start_link takes the list of children, then keyword options; "
                    f"got {len(args)} positional arguments"
                )
            init_args: tuple[Any, ...] = (None, supervise(args[0], **options))
        else:
            if len(args) > 1 or options:
                raise TypeError(
                    f"{cls.__name__}.start_link takes one argument for init (and name=); "
                    f"got {args!r} {options!r}"
                )
            init_args = (cls(), args[0] if args else None)
        return _start_server(_SupervisorServer, init_args, name, link)

    @classmethod
    def child_spec(
        cls,
        *args: Any,
        id: Any = None,
        restart: str | None = None,
        shutdown: Any = attrs.NOTHING,
        **options: Any,
    ) -> ChildSpec:
        """A child spec for this supervisor (``type="supervisor"``, ``shutdown=None``)."""
        start = (cls.start_link, args, options)
        return spec_with(
            cls if id is None else id, start, restart=restart, shutdown=shutdown, type="supervisor"
        )

    @staticmethod
    def which_children(sup: object) -> list[ChildInfo]:
        """The children in start order: ``ChildInfo(id, pid, type)``."""
        return core.call(sup, ("which_children",), None, "Supervisor.which_children")  # type: ignore[no-any-return]

    @staticmethod
    def count_children(sup: object) -> ChildCount:
        """``ChildCount(specs, active, supervisors, workers)``."""
        return core.call(sup, ("count_children",), None, "Supervisor.count_children")  # type: ignore[no-any-return]

    @staticmethod
    def start_child(sup: object, spec: object) -> Pid | None:
        """Add a child and start it; its pid (None if its start ignored it).

        Raises:
            otpy.StartError: it failed to start (it is not added).
            otpy.AlreadyStartedError: a child with that id exists.
        """
        child = child_spec_of(spec)
        return _answer(core.call(sup, ("start_child", child), None, "Supervisor.start_child"))  # type: ignore[no-any-return]

    @staticmethod
    def terminate_child(sup: object, child_id: Any) -> None:
        """Stop a child; its spec stays (except a temporary child's).

        Raises:
            otpy.NotFoundError: no child has that id.
        """
        _answer(core.call(sup, ("terminate_child", child_id), None, "Supervisor.terminate_child"))

    @staticmethod
    def restart_child(sup: object, child_id: Any) -> Pid | None:
        """Start a stopped child again; its new pid.

        Raises:
            otpy.NotFoundError: no child has that id.
            otpy.AlreadyStartedError: it is running.
            otpy.StartError: it failed to start.
        """
        result = core.call(sup, ("restart_child", child_id), None, "Supervisor.restart_child")
        return _answer(result)  # type: ignore[no-any-return]

    @staticmethod
    def delete_child(sup: object, child_id: Any) -> None:
        """Remove a stopped child's spec.

        Raises:
            otpy.NotFoundError: no child has that id.
            otpy.AlreadyStartedError: it is running (terminate it first).
        """
        _answer(core.call(sup, ("delete_child", child_id), None, "Supervisor.delete_child"))

    @staticmethod
    def stop(sup: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the supervisor: its children stop in reverse order, then it exits."""
        GenServer.stop(sup, reason, timeout)


def _start_server(
    server: type[GenServer], init_args: tuple[Any, ...], name: object, link: bool
) -> Pid:
    """Start a supervisor-like server; turn a child's start failure into StartError(child_id)."""
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
