"""The consumer side of the demand protocol: how much to ask a producer, and when.

One subscription's accounting, shared by every consumer in otpy that speaks
the stage protocol: stage consumers and producer-consumers, the
ConsumerSupervisor and Flow's final consumer (the iterator). A consumer asks
``max_demand`` events at first, then, once it has handled (or, for some
consumers, received or finished) ``max_demand - min_demand`` of them, asks for
that many again: so at most ``max_demand`` events are ever in flight on one
subscription, and asks come in steps, not one per event.

Example::

    demand = Demand(max_demand=10, min_demand=5)
    ask(demand.max_demand)           # the first ask
    ...
    more = demand.handled(3)         # 0: not enough handled yet
    more = demand.handled(2)         # 5: ask for 5 more now

A :class:`Demand` belongs to the process that consumes (no lock).
"""

from __future__ import annotations

__all__ = ["Demand"]


class Demand:
    """One subscription's demand accounting (owned by the consumer's process).

    Example::

        demand = Demand(1000, 500)
        assert demand.step == 500
        assert demand.handled(499) == 0 and demand.handled(1) == 500
    """

    __slots__ = ("_handled", "max_demand", "min_demand", "step")

    def __init__(self, max_demand: int, min_demand: int) -> None:
        self.max_demand = max_demand
        self.min_demand = min_demand
        self.step = max(1, max_demand - min_demand)
        """The size of a re-ask, and of the batches a consumer handles at once."""
        self._handled = 0  # handled since the last ask

    def __repr__(self) -> str:
        return (
            f"<Demand max_demand={self.max_demand} min_demand={self.min_demand} "
            f"handled since the last ask: {self._handled}>"
        )

    def handled(self, n: int) -> int:
        """``n`` more events are done with; how many to ask for now (0: not yet)."""
        done = self._handled + n
        if done >= self.step:
            self._handled = 0
            return done
        self._handled = done
        return 0
