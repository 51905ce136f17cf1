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
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import attrs

from . import _core as core
from ._child_spec import ChildSpec, spec_with
from ._core import Exit, Pid
from ._exceptions import AlreadyStartedError, NotFoundError, StartError
from ._gen_server import GenServer, Stop
from ._supervision import (
    RESTARTING,
    Backoff,
    ChildCount,
    ChildInfo,
    ChildState,
    CountChildren,
    DeleteChild,
    RestartChild,
    RestartIntensity,
    StartChild,
    TerminateChild,
    WhichChildren,
    _check_number,
    answer,
    check_intensity,
    child_count,
    child_spec_of,
    count_restart,
    give_up,
    report_restart,
    should_restart,
    shutdown_child,
    shutdown_children,
    start_child_process,
    start_server,
    supervisor_label,
)
from ._supervision import ChildStartFailed as _ChildStartFailed
from ._supervision import start_server as _start_server

# The building blocks live in otpy._supervision; the ones other modules (otpy.pool,
# otpy.pipeline, ...) import from here stay importable from here.
__all__ = [
    "RESTARTING",
    "Backoff",
    "ChildCount",
    "ChildInfo",
    "Introspect",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "_ChildStartFailed",
    "_check_number",
    "_start_server",
    "child_spec_of",
    "count_restart",
    "give_up",
    "report_restart",
    "shutdown_children",
    "start_child_process",
    "supervise",
    "supervisor_label",
]

_log = logging.getLogger("otpy.supervisor")

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


# -- the supervisor's options ------------------------------------------------------------


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
    seconds = check_intensity(max_restarts, max_seconds)
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
    return SupervisorSpec(specs, strategy, max_restarts, seconds, backoff)


# -- the supervisor ---------------------------------------------------------------------


class _Child(ChildState):
    """A Supervisor's record of one child; owned by the supervisor process."""

    __slots__ = ("waiting",)

    def __init__(self, spec: ChildSpec) -> None:
        super().__init__(spec)
        # Waiting for a backoff restart: the supervisor's _Restart message for its group
        # restarts it if it is still waiting then. Stopping or restarting it by hand
        # meanwhile just clears the flag; the message finds nothing to do for it.
        self.waiting = False


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
        self.intensity = RestartIntensity(self.label, spec.max_restarts, spec.max_seconds)
        self.backoff = spec.backoff
        self.on_start = on_start
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
        child.started(start_child_process(child.spec))
        if child.pid is not None:
            self.by_pid[child.pid] = child
        if self.on_start is not None:
            self.on_start(child.spec.id, child.pid)

    def _stop(self, children: Sequence[_Child]) -> None:
        """Stop running children one after the other, in the given order."""
        for child in children:
            child.waiting = False
            if child.pid is not None:
                self.by_pid.pop(child.pid, None)
                shutdown_child(child.pid, child.spec.shutdown, self.label)
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
            intensity = self.intensity
            children = self._which_children()
            return self.strategy, intensity.max_restarts, intensity.max_seconds, children
        try:
            return self._handle_request(request)
        except NotFoundError as exc:
            return exc  # raised in the caller, not here: a bad id must not crash the supervisor

    def _which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(
                c.spec.id, RESTARTING if c.waiting else c.pid, c.spec.type, restarts=c.restarts
            )
            for c in self.children
        ]

    def _handle_request(self, request: Any) -> Any:
        kind = type(request)
        if kind is WhichChildren:
            return self._which_children()
        if kind is CountChildren:
            active = sum(1 for c in self.children if c.pid is not None)
            return child_count((c.spec for c in self.children), active)
        if kind is StartChild:
            return self._call_start_child(request.spec)
        if kind is TerminateChild:
            child = self._find(request.child)
            self._stop([child])
            if child.spec.restart == "temporary":
                self.children.remove(child)
            return None
        if kind is RestartChild:
            child = self._find(request.child_id)
            if child.pid is not None:
                return AlreadyStartedError(child.pid, child.spec.id, "the child id")
            try:
                self._launch(child)
            except _ChildStartFailed as failed:
                return StartError(failed.reason, failed.child_id)
            return child.pid
        if kind is DeleteChild:
            child = self._find(request.child_id)
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
        if not should_restart(child.spec.restart, reason):
            if child.spec.restart == "temporary":
                self.children.remove(child)
            return
        group = self._group(child)
        for member in group:  # a sibling restarts for the same reason as the child
            member.exited = (pid if member is child else member.pid, reason)
        backoff = child.spec.backoff or self.backoff
        if backoff is None:
            self.intensity.count(lambda: f"child {child.spec.id!r} ({pid!r}) exited: {reason!r}")
        if not core.is_normal_exit(reason):
            _log.error(
                "%s: child %r (%r) exited: %r; restarting", self.label, child.spec.id, pid, reason
            )
        group = self._stop_siblings(child, group)
        if backoff is not None:
            delay = child.backoff_delay(backoff, self.rng)
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
                    self.intensity.count(f"child {failed.child_id!r} failed to restart")
                    rest = group[group.index(child) :]
                    core.send(core.self(), _Restart(tuple(c.spec.id for c in rest), backoff=False))
                else:
                    self._child_exited(child, failed.reason)
                return
            if not backoff:
                child.attempt = 0
            child.report_restarted()


# -- the public face --------------------------------------------------------------------


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
        return start_server(_SupervisorServer, init_args, name, link)

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
        return core.call(sup, WhichChildren(), None, "Supervisor.which_children")  # type: ignore[no-any-return]

    @staticmethod
    def count_children(sup: object) -> ChildCount:
        """``ChildCount(specs, active, supervisors, workers)``."""
        return core.call(sup, CountChildren(), None, "Supervisor.count_children")  # type: ignore[no-any-return]

    @staticmethod
    def start_child(sup: object, spec: object) -> Pid | None:
        """Add a child and start it; its pid (None if its start ignored it).

        Raises:
            otpy.StartError: it failed to start (it is not added).
            otpy.AlreadyStartedError: a child with that id exists.
        """
        child = child_spec_of(spec)
        return answer(core.call(sup, StartChild(child), None, "Supervisor.start_child"))  # type: ignore[no-any-return]

    @staticmethod
    def terminate_child(sup: object, child_id: Any) -> None:
        """Stop a child; its spec stays (except a temporary child's).

        Raises:
            otpy.NotFoundError: no child has that id.
        """
        answer(core.call(sup, TerminateChild(child_id), None, "Supervisor.terminate_child"))

    @staticmethod
    def restart_child(sup: object, child_id: Any) -> Pid | None:
        """Start a stopped child again; its new pid.

        Raises:
            otpy.NotFoundError: no child has that id.
            otpy.AlreadyStartedError: it is running.
            otpy.StartError: it failed to start.
        """
        result = core.call(sup, RestartChild(child_id), None, "Supervisor.restart_child")
        return answer(result)  # type: ignore[no-any-return]

    @staticmethod
    def delete_child(sup: object, child_id: Any) -> None:
        """Remove a stopped child's spec.

        Raises:
            otpy.NotFoundError: no child has that id.
            otpy.AlreadyStartedError: it is running (terminate it first).
        """
        answer(core.call(sup, DeleteChild(child_id), None, "Supervisor.delete_child"))

    @staticmethod
    def stop(sup: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the supervisor: its children stop in reverse order, then it exits."""
        GenServer.stop(sup, reason, timeout)
