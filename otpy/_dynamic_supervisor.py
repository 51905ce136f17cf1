"""DynamicSupervisor: a supervisor that starts with no children and adds them on demand.

Example::

    ds = otpy.DynamicSupervisor.start_link(max_children=1000, name="sessions")
    pid = otpy.DynamicSupervisor.start_child("sessions", Session.child_spec(user_id))
    otpy.DynamicSupervisor.terminate_child("sessions", pid)
    otpy.DynamicSupervisor.count_children("sessions")

Options (all keyword, with defaults):

* ``max_children=None``: at most this many children at once; ``start_child``
  raises ``otpy.MaxChildrenError`` beyond it.
* ``max_restarts=3``, ``max_seconds=5.0``: the restart intensity, as for
  ``otpy.Supervisor``: past it, every child stops and the supervisor exits
  with ``"shutdown"``.
* ``extra_args=()``: prepended to every child's start arguments (a pool of
  connections can pass its configuration this way).
* ``backoff=None``: an ``otpy.Backoff`` for every child (see ``otpy.Supervisor``).
* ``name=None``: a name to register the supervisor under.

Children restart one for one, by their ``restart`` value. When the supervisor
stops, it stops all children at the same time (each within its own
``shutdown`` time), not one after the other.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import attrs

from . import _core as core
from ._child_spec import ChildSpec
from ._core import Exit, Pid
from ._exceptions import MaxChildrenError, NotFoundError, StartError
from ._gen_server import GenServer
from ._supervision import (
    RESTARTING,
    Backoff,
    ChildCount,
    ChildInfo,
    Children,
    ChildStartFailed,
    ChildState,
    CountChildren,
    RestartIntensity,
    StartChild,
    TerminateChild,
    WhichChildren,
    answer,
    check_intensity,
    child_count,
    child_spec_of,
    request_of,
    should_restart,
    shutdown_child,
    shutdown_children,
    start_child,
    start_server,
    supervisor_label,
)

__all__ = ["DynamicSupervisor", "DynamicSupervisorServer", "answer"]

_log = logging.getLogger("otpy.supervisor")


@attrs.frozen
class _Options:
    max_children: int | None
    max_restarts: int
    max_seconds: float
    extra_args: tuple[Any, ...]
    backoff: Backoff | None


def _options(
    max_children: int | None = None,
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    extra_args: Sequence[Any] = (),
    backoff: Backoff | None = None,
) -> _Options:
    if max_children is not None and (
        isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0
    ):
        raise ValueError(f"max_children must be None or an int >= 0; got {max_children!r}")
    seconds = check_intensity(max_restarts, max_seconds)
    if isinstance(extra_args, (str, bytes)) or not isinstance(extra_args, Sequence):
        raise TypeError(f"extra_args must be a tuple or list of arguments; got {extra_args!r}")
    if backoff is not None and not isinstance(backoff, Backoff):
        raise TypeError(f"backoff must be an otpy.Backoff or None; got {backoff!r}")
    return _Options(max_children, max_restarts, seconds, tuple(extra_args), backoff)


class _DynChild(ChildState):
    """A DynamicSupervisor's record of one child; owned by the supervisor process."""

    __slots__ = ("timer",)

    def __init__(self, spec: ChildSpec) -> None:
        super().__init__(spec)
        self.timer: Any = None  # the backoff restart it waits for


class _Retry:
    """A restart the supervisor sends itself: after a backoff delay, or to try again."""

    __slots__ = ("backoff", "key")

    def __init__(self, key: int, backoff: bool) -> None:
        self.key = key
        self.backoff = backoff


class DynamicSupervisorServer(GenServer):
    """The process behind a DynamicSupervisor (and a TaskSupervisor)."""

    _otpy_behaviour = "DynamicSupervisor"

    def init(self, options: _Options) -> None:
        core.trap_exits(True)
        self.options = options
        self.label = supervisor_label("DynamicSupervisor", self)
        self.children: dict[int, _DynChild] = {}  # in start order
        self.by_pid: dict[Pid, int] = {}
        self.next_key = 0
        self.intensity = RestartIntensity(self.label, options.max_restarts, options.max_seconds)
        self.rng = random.Random()

    # -- starting --------------------------------------------------------------------

    def _launch(self, key: int, child: _DynChild) -> Any:
        """Start a child; what its start function returned (a pid, or (pid, extra))."""
        child.timer = None
        pid, result = start_child(child.spec, before=self.options.extra_args, extra=True)
        child.started(pid)
        if pid is not None:
            self.by_pid[pid] = key
        return result

    def start_new(self, spec: ChildSpec) -> Any:
        """Add and start a child (inside the server); its start function's result or an error."""
        limit = self.options.max_children
        if limit is not None and len(self.children) >= limit:
            return MaxChildrenError(limit)
        key = self.next_key
        self.next_key += 1
        child = _DynChild(spec)
        try:
            result = self._launch(key, child)
        except ChildStartFailed as failed:
            return StartError(failed.reason, failed.child_id)
        if child.pid is not None:
            self.children[key] = child
        return result

    # -- callbacks ------------------------------------------------------------------------

    def handle_call(self, request: Any, caller: Any) -> Any:
        request = request_of(request)
        kind = type(request)
        if kind is StartChild:
            return self.start_new(request.spec)
        if kind is TerminateChild:
            pid = request.child
            key = self.by_pid.get(pid)
            if key is None:
                return NotFoundError(pid)
            child = self.children.pop(key)
            del self.by_pid[pid]
            shutdown_child(pid, child.spec.shutdown, self.label)
            return None
        if kind is WhichChildren:
            return [
                ChildInfo(
                    None,
                    RESTARTING if c.timer is not None else c.pid,
                    c.spec.type,
                    restarts=c.restarts,
                )
                for c in self.children.values()
            ]
        if kind is CountChildren:
            active = sum(1 for c in self.children.values() if c.pid is not None)
            return child_count((c.spec for c in self.children.values()), active)
        if kind is Children:
            return [c.pid for c in self.children.values() if c.pid is not None]
        raise ValueError(f"unknown DynamicSupervisor request {request!r}")

    def handle_info(self, message: Any) -> Any:
        if type(message) is Exit:
            key = self.by_pid.pop(message.pid, None)
            if key is not None:
                self._child_exited(key, message.reason)
            return None
        if type(message) is _Retry:
            child = self.children.get(message.key)
            if child is not None and child.pid is None:
                self._restart(message.key, child, backoff=message.backoff)
            return None
        return super().handle_info(message)

    def terminate(self, reason: Any) -> None:
        running = [(c.pid, c.spec.shutdown) for c in self.children.values() if c.pid is not None]
        for child in self.children.values():
            if child.timer is not None:
                core.cancel_timer(child.timer)
        self.children.clear()
        self.by_pid.clear()
        shutdown_children(running, self.label)

    # -- restarts ---------------------------------------------------------------------------

    def _child_exited(self, key: int, reason: Any) -> None:
        child = self.children[key]
        pid, child.pid = child.pid, None
        child.exited = (pid, reason)
        if not should_restart(child.spec.restart, reason):
            del self.children[key]
            return
        backoff = child.spec.backoff or self.options.backoff
        if backoff is None:
            self.intensity.count(lambda: f"child {pid!r} exited: {reason!r}")
        if not core.is_normal_exit(reason):
            _log.error("%s: child %r exited: %r; restarting", self.label, pid, reason)
        if backoff is not None:
            self._schedule(key, child, backoff)
            return
        self._restart(key, child, backoff=False)

    def _schedule(self, key: int, child: _DynChild, backoff: Backoff) -> None:
        delay = child.backoff_delay(backoff, self.rng)
        child.timer = core.send_after(delay, core.self(), _Retry(key, backoff=True))

    def _restart(self, key: int, child: _DynChild, *, backoff: bool) -> None:
        child.restarts += 1
        try:
            self._launch(key, child)
        except ChildStartFailed as failed:
            _log.error("%s: a child failed to restart: %r", self.label, failed.reason)
            if backoff:
                policy = child.spec.backoff or self.options.backoff
                assert policy is not None
                self._schedule(key, child, policy)
            else:
                self.intensity.count(f"a child failed to restart: {failed.reason!r}")
                core.send(core.self(), _Retry(key, backoff=False))
            return
        if child.pid is None:  # its start ignored it this time
            del self.children[key]
        child.report_restarted()


class DynamicSupervisor:
    """A supervisor of children started on demand; see the module documentation.

    Example::

        ds = otpy.DynamicSupervisor.start_link(max_children=2)
        otpy.DynamicSupervisor.start_child(ds, Worker.child_spec())
    """

    __module__ = "otpy"

    @staticmethod
    def start_link(
        *,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        extra_args: Sequence[Any] = (),
        backoff: Backoff | None = None,
        name: object = None,
    ) -> Pid:
        """Start a dynamic supervisor linked to the caller, with no children."""
        options = _options(max_children, max_restarts, max_seconds, extra_args, backoff)
        return start_server(DynamicSupervisorServer, (options,), name, link=True)

    @staticmethod
    def start(*, name: object = None, **options: Any) -> Pid:
        """Like :meth:`start_link` (same options), without the link."""
        return start_server(DynamicSupervisorServer, (_options(**options),), name, link=False)

    @staticmethod
    def child_spec(*, id: Any = None, **options: Any) -> ChildSpec:
        """A child spec to run this dynamic supervisor under another supervisor."""
        return ChildSpec(
            id=DynamicSupervisor if id is None else id,
            start=(DynamicSupervisor.start_link, (), options),
            type="supervisor",
        )

    @staticmethod
    def start_child(sup: object, spec: object) -> Pid | None:
        """Start a child under the supervisor; its pid (None if its start ignored it).

        Raises:
            otpy.MaxChildrenError: the supervisor runs ``max_children`` already.
            otpy.StartError: the child failed to start.
        """
        child = child_spec_of(spec)
        result = answer(core.call(sup, StartChild(child), None, "DynamicSupervisor.start_child"))
        return result[0] if isinstance(result, tuple) else result  # type: ignore[no-any-return]

    @staticmethod
    def terminate_child(sup: object, pid: Pid) -> None:
        """Stop a child (within its shutdown time); it is not restarted.

        Raises:
            otpy.NotFoundError: ``pid`` is not a child of the supervisor.
        """
        answer(core.call(sup, TerminateChild(pid), None, "DynamicSupervisor.terminate_child"))

    @staticmethod
    def which_children(sup: object) -> list[ChildInfo]:
        """The children in start order, as ``ChildInfo(None, pid, type)``."""
        return core.call(sup, WhichChildren(), None, "DynamicSupervisor.which_children")  # type: ignore[no-any-return]

    @staticmethod
    def count_children(sup: object) -> ChildCount:
        """``ChildCount(specs, active, supervisors, workers)``."""
        return core.call(sup, CountChildren(), None, "DynamicSupervisor.count_children")  # type: ignore[no-any-return]

    @staticmethod
    def stop(sup: object, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the supervisor; all its children stop at the same time first."""
        GenServer.stop(sup, reason, timeout)
