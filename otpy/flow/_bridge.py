"""The source of ``Flow.from_stages``: a stage.Consumer that feeds a flow.

It subscribes to the given producers with ``cancel="transient"`` in manual
mode, and (once the flow's consumer says ``GO``) asks each of them for
events (``max_demand`` at first, then in
batches of ``max_demand - min_demand``) only while the events it holds for
the flow stay below the flow's demand limit. A producer whose subscription
ends normally (it exited with ``"normal"`` or ``"shutdown"``, or cancelled)
is done; when all are, the flow's input has ended. Any other end of a
subscription stops the bridge with that reason, which ends the flow with an
``otpy.ExitError``.

Imported only when such a flow runs, so that ``otpy.flow`` does not import
``otpy.stage`` (which exposes ``otpy.stage.Flow``).
"""

from __future__ import annotations

from typing import Any

from .. import _core as core
from .. import stage
from .._core import Down, Pid, Ref
from .._gen_server import Stop
from ._stages import Inlet, Route, _Ask, _Go, _Outlet

__all__ = ["FlowBridge"]


class FlowBridge(stage.Consumer):
    """Consumes otpy.stage producers on the flow's behalf."""

    inline_calls = False

    _owner: Ref
    _outlet: _Outlet
    _subs: list[tuple[Pid, Ref]]
    _inlet: Inlet
    _limit: int

    def init(
        self,
        consumers: int,
        route: Route | None,
        discard: bool,
        limit: int,
        max_demand: int,
        min_demand: int,
        producers: int,
        owner: Pid,
    ) -> None:
        self._owner = core.monitor(owner)
        self._outlet = _Outlet(0, consumers, route, discard)
        self._limit = limit
        self._subs = []
        self._inlet = Inlet(producers, max_demand, min_demand, self._ask_producer)

    def _ask_producer(self, producer: int, n: int) -> None:
        stage.ask(self._subs[producer], n)

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: tuple[Pid, Ref]) -> str:
        self._subs.append(from_)  # in subscribe_to's order: producer number i is _subs[i]
        return "manual"

    def handle_events(self, events: list[Any], from_: tuple[Pid, Ref]) -> None:
        self._inlet.received(self._subs.index(from_), len(events))
        self._outlet.push(events)
        self._pump()

    def handle_cancel(self, reason: Any, from_: tuple[Pid, Ref]) -> None:
        # After an abnormal end the bridge stops (the subscriptions are transient) right
        # after this callback: that producer must not count as done meanwhile.
        if core.is_normal_exit(reason[1]) and self._inlet.finished(self._subs.index(from_)):
            self._outlet.finish()

    def handle_info(self, message: Any) -> None:
        if type(message) is _Ask:
            self._outlet.ask(message.consumer, message.pid, message.tag, message.n)
            self._pump()
        elif type(message) is _Go:
            self._inlet.start()
        elif type(message) is Down and message.ref == self._owner:
            raise Stop("normal")  # whoever consumed the flow is gone

    def _pump(self) -> None:
        if self._outlet.backlog < self._limit:
            self._inlet.pump()
