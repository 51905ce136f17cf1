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
from collections import deque
from typing import Any

from .. import _core as core
from .._child_spec import ChildSpec
from .._core import Exit, Pid, Ref
from .._exceptions import StartError
from .._supervisor import (
    ChildCount,
    ChildInfo,
    child_spec_of,
    count_restart,
    give_up,
    report_restart,
    shutdown_children,
    supervisor_label,
)
from ._stage import Consumer, ask

__all__ = ["ConsumerSupervisor"]

_log = logging.getLogger("otpy.supervisor")


class _Demand:
    __slots__ = ("done", "max", "min")

    def __init__(self, max_demand: int, min_demand: int) -> None:
        self.max = max_demand
        self.min = min_demand
        self.done = 0


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
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be an int >= 0; got {max_restarts!r}")
        if (
            isinstance(max_seconds, bool)
            or not isinstance(max_seconds, (int, float))
            or not max_seconds > 0
        ):
            raise ValueError(f"max_seconds must be a number > 0; got {max_seconds!r}")
        return spec

    # -- inside the process ---------------------------------------------------------------

    def init(self, spec: ChildSpec, max_restarts: int, max_seconds: float) -> None:
        core.trap_exits(True)
        self.template = spec
        self.max_restarts = max_restarts
        self.max_seconds = float(max_seconds)
        self.restarts: deque[float] = deque()
        self.running: dict[Pid, tuple[tuple[Pid, Ref], Any]] = {}  # child -> (from_, event)
        self.demand: dict[Ref, _Demand] = {}
        self.label = supervisor_label("ConsumerSupervisor", self)

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: tuple[Pid, Ref]) -> str:
        if kind == "producer":
            self.demand[from_[1]] = _Demand(opts["max_demand"], opts["min_demand"])
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
        fn, args, kwargs = self.template.start
        try:
            pid: Pid | None = fn(*args, event, **kwargs)
        except StartError as exc:
            _log.error("%s: a child for %r failed to start: %r", self.label, event, exc.reason)
            self._done(from_)
            return None
        except Exception as exc:
            _log.error("%s: a child for %r failed to start: %r", self.label, event, exc)
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
        demand.done += 1
        if demand.done >= demand.max - demand.min:
            more, demand.done = demand.done, 0
            ask(from_, more)

    def handle_info(self, message: Any) -> Any:
        if type(message) is Exit and message.pid in self.running:
            from_, event = self.running.pop(message.pid)
            if self.template.restart == "transient" and not core.is_normal_exit(message.reason):
                _log.error(
                    "%s: child %r exited: %r; restarting", self.label, message.pid, message.reason
                )
                if count_restart(self.restarts, self.max_restarts, self.max_seconds):
                    give_up(
                        self.label,
                        f"child {message.pid!r} exited: {message.reason!r}",
                        len(self.restarts),
                        self.max_restarts,
                        self.max_seconds,
                    )
                new = self._start_for(from_, event)
                report_restart(None, message.pid, new, message.reason, 1)
            else:
                self._done(from_)
            return None
        return super().handle_info(message)

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == ("which_children",):
            return [ChildInfo(None, pid, self.template.type) for pid in self.running]
        if request == ("count_children",):
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
        return core.call(sup, ("which_children",), None, "ConsumerSupervisor.which_children")  # type: ignore[no-any-return]

    @staticmethod
    def count_children(sup: object) -> ChildCount:
        """``ChildCount(specs, active, supervisors, workers)`` of the running children."""
        return core.call(sup, ("count_children",), None, "ConsumerSupervisor.count_children")  # type: ignore[no-any-return]
