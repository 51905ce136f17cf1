"""Back-pressured pipelines: GenStage's producers, consumers and dispatchers.

Example::

    import otpy.stage as stage

    class Numbers(stage.Producer):
        def init(self, start):
            self.next = start
        def handle_demand(self, demand):
            events = list(range(self.next, self.next + demand))
            self.next += demand
            return events

    class Printer(stage.Consumer):
        def handle_events(self, events, from_):
            print(events)

    numbers = Numbers.start_link(0)
    Printer.start_link(subscribe_to=[(numbers, {"max_demand": 10})])

See :class:`Producer` and the module ``otpy.stage._stage`` for the demand
protocol, the dispatchers for how events are shared, and
:class:`ConsumerSupervisor` for a child process per event.

``otpy.stage.Flow`` is ``otpy.flow.Flow``, imported on first use: ``otpy.flow``
builds on this package, so importing it here would make the two import each
other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._consumer_supervisor import ConsumerSupervisor as ConsumerSupervisor
from ._dispatchers import BroadcastDispatcher as BroadcastDispatcher
from ._dispatchers import DemandDispatcher as DemandDispatcher
from ._dispatchers import Dispatcher as Dispatcher
from ._dispatchers import PartitionDispatcher as PartitionDispatcher
from ._stage import Consumer as Consumer
from ._stage import Producer as Producer
from ._stage import ProducerConsumer as ProducerConsumer
from ._stage import Reply as Reply
from ._stage import ask as ask
from ._stage import async_subscribe as async_subscribe
from ._stage import cancel as cancel
from ._stage import demand as demand
from ._stage import sync_subscribe as sync_subscribe

if TYPE_CHECKING:
    from ..flow import Flow as Flow

__all__ = [
    "BroadcastDispatcher",
    "Consumer",
    "ConsumerSupervisor",
    "DemandDispatcher",
    "Dispatcher",
    "Flow",
    "PartitionDispatcher",
    "Producer",
    "ProducerConsumer",
    "Reply",
    "ask",
    "async_subscribe",
    "cancel",
    "demand",
    "sync_subscribe",
]


def __getattr__(name: str) -> Any:
    if name == "Flow":
        from ..flow import Flow

        return Flow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
