"""ConsumerSupervisor: a consumer that starts one child per event.

Example::

    class Job(otpy.GenServer):                    # or any start function
        def init(self, event):
            ...                                   # the event is the last start argument

    stage.ConsumerSupervisor.start_link(
        [Job.child_spec().replace(restart="temporary")],
        subscribe_to=[(producer, {"max_demand": 50, "min_demand": 10})],
    )

Each event starts a child from the one child spec, with the event appended to
its start arguments. The supervisor asks its producers for ``max_demand``
events and asks for more as children end (``max_demand - min_demand`` at a
time), so the number of running children stays between ``min_demand`` and
``max_demand`` per subscription: back-pressure counted in running processes.

Children must be ``"temporary"`` (never restarted) or ``"transient"``
(restarted after an abnormal exit, within the restart intensity
``max_restarts`` in ``max_seconds``; its event is not done until it ends
normally). A child whose start fails is logged and counts as done.
``which_children`` and ``count_children`` work as for supervisors.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import _core as core
from .._child_spec import ChildSpec
from .._core import Exit, Pid, Ref
from .._supervision import (
    ChildCount,
    ChildInfo,
    ChildStartFailed,
    CountChildren,
    RestartIntensity,
    WhichChildren,
    check_intensity,
    child_spec_of,
    report_restart,
    request_of,
    should_restart,
    shutdown_children,
    start_child,
    supervisor_label,
)
from ._demand import Demand
from ._stage import Consumer, ask

__all__ = ["ConsumerSupervisor"]

_log = logging.getLogger("otpy.supervisor")


class ConsumerSupervisor(Consumer):
    """Starts a child per event; see the module documentation."""

    __module__ = "otpy.stage"

    @classmethod
    def start_link(  # type: ignore[override]
        cls,
        children: list[object],
        *,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: object = None,
        subscribe_to: list[object] | None = None,
    ) -> Pid:
        """Start the consumer supervisor linked to the caller.

        Raises:
            ValueError / TypeError: not exactly one child spec, a permanent
                child, an unknown strategy, bad subscription options.
        """
        spec = cls._otpy_check(children, strategy, max_restarts, max_seconds)
        pid = super().start_link(
            spec, max_restarts, max_seconds, name=name, subscribe_to=subscribe_to or []
        )
        assert pid is not None
        return pid

    @staticmethod
    def _otpy_check(
        children: list[object], strategy: str, max_restarts: int, max_seconds: float
    ) -> ChildSpec:
        if strategy != "one_for_one":
            raise ValueError(
                f"a ConsumerSupervisor supports strategy='one_for_one' only; got {strategy!r}"
            )
        if not isinstance(children, (list, tuple)) or len(children) != 1:
            raise ValueError(
                f"a ConsumerSupervisor takes exactly one child spec (a template); got {children!r}"
            )
        spec = child_spec_of(children[0])
        if spec.restart == "permanent":
            raise ValueError(
                "a ConsumerSupervisor's children must be restart='temporary' or 'transient' "
                f"(an event's child ends when its work is done); got {spec.restart!r} in {spec!r}"
            )
        check_intensity(max_restarts, max_seconds)
        return spec

    # -- inside the process ---------------------------------------------------------------

    def init(self, spec: ChildSpec, max_restarts: int, max_seconds: float) -> None:
        core.trap_exits(True)
        self.template = spec
        self.running: dict[Pid, tuple[tuple[Pid, Ref], Any]] = {}  # child -> (from_, event)
        self.demand: dict[Ref, Demand] = {}  # per subscription; a child ending is an event done
        self.label = supervisor_label("ConsumerSupervisor", self)
        self.intensity = RestartIntensity(self.label, max_restarts, float(max_seconds))

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: tuple[Pid, Ref]) -> str:
        if kind == "producer":
            self.demand[from_[1]] = Demand(opts["max_demand"], opts["min_demand"])
            ask(from_, opts["max_demand"])
        return "manual"

    def handle_cancel(self, reason: Any, from_: tuple[Pid, Ref]) -> Any:
        self.demand.pop(from_[1], None)
        return None

    def handle_events(self, events: list[Any], from_: tuple[Pid, Ref]) -> Any:
        for event in events:
            self._start_for(from_, event)
        return None

    def _start_for(self, from_: tuple[Pid, Ref], event: Any) -> Pid | None:
        try:
            pid, _ = start_child(self.template, after=(event,))  # the event: the last argument
        except ChildStartFailed as failed:
            _log.error("%s: a child for %r failed to start: %r", self.label, event, failed.reason)
            self._done(from_)
            return None
        if pid is None:
            self._done(from_)
        else:
            self.running[pid] = (from_, event)
        return pid

    def _done(self, from_: tuple[Pid, Ref]) -> None:
        demand = self.demand.get(from_[1])
        if demand is None:
            return
        more = demand.handled(1)
        if more:
            ask(from_, more)

    def handle_info(self, message: Any) -> Any:
        if type(message) is Exit and message.pid in self.running:
            from_, event = self.running.pop(message.pid)
            if should_restart(self.template.restart, message.reason):
                _log.error(
                    "%s: child %r exited: %r; restarting", self.label, message.pid, message.reason
                )
                self.intensity.count(f"child {message.pid!r} exited: {message.reason!r}")
                new = self._start_for(from_, event)
                report_restart(None, message.pid, new, message.reason, 1)
            else:
                self._done(from_)
            return None
        return super().handle_info(message)

    def handle_call(self, request: Any, caller: Any) -> Any:
        request = request_of(request)
        if type(request) is WhichChildren:
            return [ChildInfo(None, pid, self.template.type) for pid in self.running]
        if type(request) is CountChildren:
            n = len(self.running)
            supervisors = n if self.template.type == "supervisor" else 0
            return ChildCount(1, n, supervisors, n - supervisors)  # one spec: the template
        return super().handle_call(request, caller)

    def terminate(self, reason: Any) -> None:
        shutdown_children([(pid, self.template.shutdown) for pid in self.running], self.label)
        self.running.clear()

    # -- the supervisor functions ---------------------------------------------------------------

    @classmethod
    def child_spec(  # type: ignore[override]
        cls, children: list[object], *, id: Any = None, **options: Any
    ) -> ChildSpec:
        """A child spec to run this consumer supervisor under a supervisor (``type="supervisor"``)."""
        cls._otpy_check(
            children,
            options.get("strategy", "one_for_one"),
            options.get("max_restarts", 3),
            options.get("max_seconds", 5.0),
        )
        return ChildSpec(
            id=cls if id is None else id,
            start=(cls.start_link, (children,), options),
            type="supervisor",
        )

    @staticmethod
    def which_children(sup: object) -> list[ChildInfo]:
        """The running children, one per event being worked on."""
        return core.call(sup, WhichChildren(), None, "ConsumerSupervisor.which_children")  # type: ignore[no-any-return]

    @staticmethod
    def count_children(sup: object) -> ChildCount:
        """``ChildCount(specs, active, supervisors, workers)`` of the running children."""
        return core.call(sup, CountChildren(), None, "ConsumerSupervisor.count_children")  # type: ignore[no-any-return]
