"""The processes a flow runs on: otpy.stage producers and producer-consumers.

A running flow is a fixed graph, built before any event moves: sources (one
:class:`FlowSource` per iterable; for ``from_stages``, one :class:`FlowStage`
subscribed to the given producers), then one layer of :class:`FlowStage` per
partition, then the consumer (the process iterating the flow). Every process
is started by the consumer, linked to it, and knows its place: its index in
its layer, its producers (the whole layer before it, in order) and how many
consumers it has.

They speak ``otpy.stage``'s demand protocol, as Elixir's ``Flow.MapReducer``
is a GenStage: a source is a ``stage.Producer``, a stage a
``stage.ProducerConsumer`` subscribed to every process of the layer before it
(``max_demand``/``min_demand`` of its layer, ``cancel="transient"``), and the
events go to the next layer through a stage dispatcher: the consumer with the
most demand, or, after ``partition()``, the consumer of the event's partition
(:class:`Partitions`, a ``PartitionDispatcher`` whose hash is the flow's
route). Back-pressure is the stages': a stage handles its input while its
consumers' demand is not met by what it sent (so a reducing stage, which
emits nothing until a window triggers, never stalls), and asks its producers
for more as it handles it; the sources read their iterables only on demand.

Two things a flow adds:

* ``GO``: from the consumer, once all processes are started. The sources are
  started with ``demand="accumulate"`` and turn to ``"forward"`` on ``GO``,
  and the ``from_stages`` stage subscribes to the given producers only then:
  until then no event moves, so no user function runs and nothing can crash
  while the consumer is still starting processes (one started while the
  consumer was being killed through a link would be left behind).
* The end of the input. A process is *finished* when its iterable is
  exhausted, or when the subscriptions to all its producers have ended
  normally (a flow's own producer cancels them, a ``from_stages`` producer
  exits with ``"normal"``/``"shutdown"``); a stage then triggers ``"done"``
  on its windows and emits what that produces. Once a finished process has
  sent a consumer everything it holds for it, it cancels that subscription
  with ``"normal"``: that cancel comes after the last events (messages
  between two processes keep their order), so the consumer has handled all
  of them when it learns the producer is done.

Nothing ends by exiting: the consumer stops every process (``kill``, after
unlinking) when its last subscription is cancelled, or when it is closed or
dropped. Every process also monitors the consumer and stops when it is gone,
also after a normal exit, which the links would not propagate.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

from .. import _core as core
from .. import stage
from .._core import Down, Pid, Ref
from .._gen_server import Stop
from ..stage._dispatchers import DemandDispatcher, Outbox, PartitionDispatcher, Subscription
from ..stage._stage import _Ask, _Stage
from ._ops import Departitioner, Layer, LayerFold, Tag, compile_mappers
from ._window import Window, WindowState, window_state

__all__ = [
    "GO",
    "FlowSource",
    "FlowStage",
    "HashRoute",
    "Partitions",
    "Route",
    "Shared",
    "StagePlan",
    "dispatcher",
    "routed",
]

Route = Callable[[Any], "int | None"]
"""Which consumer gets an event (a partition number), or None to drop it.

Only a :class:`HashRoute` returns None; the others always give a partition.
"""


class HashRoute:
    """The route of ``partition(hash=fn)``: ``fn(event)``, checked; None drops the event."""

    __slots__ = ("hash", "partitions")

    def __init__(self, hash: Callable[[Any], Any], partitions: int) -> None:
        self.hash = hash
        self.partitions = partitions

    def __call__(self, event: Any) -> int | None:
        partition = self.hash(event)
        if partition is None:
            return None
        if (
            isinstance(partition, bool)
            or not isinstance(partition, int)
            or not (0 <= partition < self.partitions)
        ):
            raise ValueError(
                "the hash function of partition() must return a partition in "
                f"range(0, {self.partitions}) or None; {self.hash!r} returned {partition!r} "
                f"for {event!r}"
            )
        return partition


# -- messages a flow adds ---------------------------------------------------------------------------


class _Tick:
    """A timer of the stage's window or of a periodic trigger has fired."""

    __slots__ = ("token",)

    def __init__(self, token: Hashable) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"<flow timer {self.token!r}>"


class _Read:
    """A discarding source reminds itself to read on (it reads one chunk per message)."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


class _Close:
    """A source that has just read its last item: cancel the consumers it owes nothing."""

    __slots__ = ()


_CLOSE = _Close()


class _Go:
    """From the consumer, once every process of the flow is started (see the module docs)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<flow go>"


GO = _Go()


# -- dispatchers ------------------------------------------------------------------------------------


class Shared(DemandDispatcher):
    """A flow's DemandDispatcher: it holds no events (what waits is in the producer's buffer)."""

    def queued(self, sub: Subscription) -> int:
        """Events held for ``sub``: none."""
        return 0


class Partitions(PartitionDispatcher):
    """A PartitionDispatcher over partitions ``0..n-1``, routed by a flow's route.

    The route is already checked (it gives a partition in range), so
    ``dispatch`` groups a batch by partition in one pass. A route that may
    drop events (a :class:`HashRoute`) runs in the producer instead, before it
    emits (:func:`routed`): what it emits, and what waits in its buffer, are
    ``(partition, event)`` pairs, so a dropped event is never emitted and uses
    up no demand, and the user's hash runs once per event. The dispatcher
    sends the events alone.
    """

    def __init__(self, partitions: int, route: Route) -> None:
        super().__init__(partitions, _partition_of_pair)
        self._route: Route | None = None if isinstance(route, HashRoute) else route

    def __repr__(self) -> str:
        return f"<flow partitions: {len(self._names)}>"

    def queued(self, sub: Subscription) -> int:
        """Events held for ``sub`` (its partition had no demand left for them)."""
        name = self._partition_of.get(sub)
        return 0 if name is None else len(self._queues[name])

    def dispatch(self, events: list[Any], out: Outbox) -> list[Any]:
        waiting = self._waiting
        if waiting <= 0:
            return events
        now, rest = (events, []) if len(events) <= waiting else (events[:waiting], events[waiting:])
        self._waiting = waiting - len(now)
        grouped: dict[Hashable, list[Any]] = {}
        route = self._route
        if route is None:  # routed by the producer
            for partition, event in now:
                batch = grouped.get(partition)
                if batch is None:
                    grouped[partition] = [event]
                else:
                    batch.append(event)
        else:
            for event in now:
                partition = route(event)
                batch = grouped.get(partition)
                if batch is None:
                    grouped[partition] = [event]
                else:
                    batch.append(event)
        demands = self._demands
        queues = self._queues
        for name, batch in grouped.items():
            queue = queues[name]
            want = demands[name]
            if queue or want <= 0:
                queue.extend(batch)
                continue
            if len(batch) > want:
                queue.extend(batch[want:])
                batch = batch[:want]
            demands[name] = want - len(batch)
            out.send(self._owner[name], batch)
        return rest


def _partition_of_pair(pair: Any) -> Any:
    return pair[0]


def routed(route: HashRoute, events: list[Any]) -> list[tuple[int, Any]]:
    """``events`` as :class:`Partitions` takes them from a producer routing by ``hash=``.

    The events ``route`` drops are left out.
    """
    pairs = []
    for event in events:
        partition = route(event)
        if partition is not None:
            pairs.append((partition, event))
    return pairs


def dispatcher(consumers: int, route: Route | None) -> Shared | Partitions:
    """How a process of a flow shares its events among its ``consumers``."""
    return Shared() if route is None else Partitions(consumers, route)


# -- what sources and stages share ----------------------------------------------------------------


class _Finishing(_Stage):
    """Cancels each consumer's subscription once a finished process owes it nothing.

    Owned by the process: ``_flow_finished`` is set when its input ended,
    ``_flow_consumers`` is how many consumers it will have and
    ``_flow_subscribed`` how many have subscribed (so it cannot end before a
    consumer it does not know yet).
    """

    _flow_owner: Ref
    _flow_consumers: int
    _flow_subscribed: int
    _flow_finished: bool

    def _flow_start(self, consumers: int, owner: Pid) -> None:
        self._flow_owner = core.monitor(owner)
        self._flow_consumers = consumers
        self._flow_subscribed = 0
        self._flow_finished = False

    def _flow_close(self) -> None:
        if (
            not self._flow_finished
            or self._otpy_buffer
            or self._flow_subscribed < self._flow_consumers
        ):
            return
        queued = self._otpy_dispatcher.queued  # type: ignore[attr-defined]
        for ref, pid in list(self._otpy_downstream.items()):
            if not queued((pid, ref)):
                self._otpy_on_cancel(ref, ("cancel", "normal"))  # tells the consumer

    def _otpy_on_ask(self, msg: _Ask) -> None:
        super()._otpy_on_ask(msg)
        if self._flow_finished:
            self._flow_close()


# -- sources ----------------------------------------------------------------------------------------


class FlowSource(_Finishing, stage.Producer):
    """Reads an iterable on demand: the producer of ``Flow.from_enumerable``.

    It reads no more items than its consumers asked for, when they ask (from
    ``GO`` on). The iterable is iterated in this process. With ``discard``
    (``Flow.run`` of a flow without operations) it reads the iterable to its
    end, one chunk per message, and emits nothing.
    """

    inline_calls = False

    _items: Iterator[Any]
    _route: HashRoute | None  # a route that may drop events runs here, not in the dispatcher
    _discard: bool

    def init(
        self,
        iterable: Iterable[Any],
        consumers: int,
        route: Route | None,
        discard: bool,
        owner: Pid,
    ) -> None:
        self._flow_start(consumers, owner)
        self._items = iter(iterable)
        self._route = route if isinstance(route, HashRoute) else None
        self._discard = discard

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: tuple[Pid, Ref]) -> str:
        self._flow_subscribed += 1
        return "automatic"

    def handle_demand(self, demand: int) -> Any:
        if self._flow_finished:
            return None
        items = list(itertools.islice(self._items, demand))
        if len(items) < demand:
            self._flow_finished = True
            core.send(core.self(), _CLOSE)  # after these items are sent or buffered
        if self._discard:
            out: list[Any] = []
        elif self._route is not None:
            out = routed(self._route, items)
        else:
            out = items
        if len(out) < len(items) and not self._flow_finished:
            # What the route dropped (or discard) met no demand: read as many again.
            core.send(core.self(), _Read(len(items) - len(out)))
        return out

    def handle_info(self, message: Any) -> Any:
        kind = type(message)
        if kind is _Go:
            self._otpy_set_demand("forward")
        elif kind is _Read:
            return self.handle_demand(message.n)
        elif kind is _Close:
            self._flow_close()
        elif kind is Down and message.ref == self._flow_owner:
            raise Stop("normal")  # whoever consumed the flow is gone
        return None


# -- stages -----------------------------------------------------------------------------------------


class StagePlan:
    """Everything the stages of one layer share (built before the flow starts)."""

    __slots__ = (
        "consumers",
        "departition",
        "discard",
        "layer",
        "max_demand",
        "min_demand",
        "partitions",
        "route",
        "tag",
        "window",
    )

    def __init__(
        self,
        *,
        layer: Layer,
        window: Window,
        partitions: int,
        max_demand: int,
        min_demand: int,
        consumers: int,
        route: Route | None,
        discard: bool,
        tag: Tag | None,
        departition: tuple[int, Callable[[], Any], Callable[[Any, Any], Any], Callable[[Any], Any]]
        | None,
    ) -> None:
        self.layer = layer
        self.window = window
        self.partitions = partitions
        self.max_demand = max_demand
        self.min_demand = min_demand
        self.consumers = consumers
        self.route = route
        self.discard = discard
        self.tag = tag
        self.departition = departition

    def subscription(self) -> dict[str, Any]:
        """The options a stage of this layer subscribes to each producer with."""
        return {
            "max_demand": self.max_demand,
            "min_demand": self.min_demand,
            "cancel": "transient",
        }


class FlowStage(_Finishing, stage.ProducerConsumer):
    """One stage of a flow: runs its layer's operations on the events of its producers.

    Events go, batch by batch, through the departition merge (after
    ``departition``), the mappers, and the layer's windows (with ``reduce``);
    what comes out goes to the consumers through the dispatcher, or waits in
    the stage's buffer. Timers (periodic windows and triggers, allowed
    lateness) are messages to itself. Producer number ``i`` is the ``i``-th
    subscription (the order of ``subscribe_to``, or of ``external``: the
    producers of ``from_stages``, subscribed to on ``GO``).
    """

    inline_calls = False

    _plan: StagePlan
    _inputs: dict[Ref, int]  # subscription -> producer number
    _left: int  # producers not done yet
    _external: tuple[object, ...]
    _mappers: Callable[[list[Any]], list[Any]] | None
    _windows: WindowState | None
    _departition: Departitioner | None
    _periodically: tuple[tuple[float, Any], ...]
    _route: HashRoute | None  # a route that may drop events runs here, not in the dispatcher
    _discard: bool

    def init(
        self, plan: StagePlan, index: int, producers: int, external: tuple[object, ...], owner: Pid
    ) -> None:
        self._flow_start(plan.consumers, owner)
        self._plan = plan
        self._inputs = {}
        self._left = producers
        self._external = external
        self._route = plan.route if isinstance(plan.route, HashRoute) else None
        self._discard = plan.discard
        self._mappers = compile_mappers(plan.layer.pre)
        self._departition = None
        if plan.departition is not None:
            self._departition = Departitioner(*plan.departition)
        self._windows = None
        self._periodically = ()
        if plan.layer.reduce is not None:
            fold = LayerFold(plan.layer, index, plan.partitions, plan.tag)
            self._windows = window_state(plan.window, fold, producers, self._schedule)
            self._periodically = plan.window.periodically
            for number, (seconds, _) in enumerate(self._periodically):
                self._schedule(seconds, ("periodically", number))

    def _schedule(self, seconds: float, token: Hashable) -> None:
        core.send_after(seconds, core.self(), _Tick(token))

    def _out(self, events: list[Any]) -> list[Any] | None:
        if self._discard or not events:
            return None
        if self._route is not None:
            return routed(self._route, events)
        return events

    # -- stage callbacks ---------------------------------------------------------------------------

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: tuple[Pid, Ref]) -> str:
        if kind == "producer":
            self._inputs[from_[1]] = len(self._inputs)
        else:
            self._flow_subscribed += 1
        return "automatic"

    def handle_events(self, events: list[Any], from_: tuple[Pid, Ref]) -> Any:
        return self._out(self._run(self._inputs[from_[1]], events))

    def handle_cancel(self, reason: Any, from_: tuple[Pid, Ref]) -> Any:
        producer = self._inputs.get(from_[1])
        # A consumer's subscription, or one that ended abnormally: then the stage stops
        # (the subscriptions are transient) right after this callback, and that producer
        # must not count as done meanwhile.
        if producer is None or not core.is_normal_exit(reason[1]):
            return None
        del self._inputs[from_[1]]
        self._left -= 1
        if self._windows is not None:
            self._otpy_emit(self._out(self._windows.producer_done(producer)))
        if self._left == 0:
            self._finish()
        return None

    def handle_info(self, message: Any) -> Any:
        kind = type(message)
        if kind is _Tick:
            return self._out(self._tick(message.token))
        if kind is _Go:
            opts = self._plan.subscription()
            for producer in self._external:
                stage.async_subscribe(core.self(), to=producer, **opts)
        elif kind is Down and message.ref == self._flow_owner:
            raise Stop("normal")  # whoever consumed the flow is gone
        return None

    # -- running the layer ---------------------------------------------------------------------------

    def _run(self, producer: int, events: list[Any]) -> list[Any]:
        if self._departition is not None:
            events = self._departition.events(events)
        if self._mappers is not None and events:
            events = self._mappers(events)
        if self._windows is None or not events:
            return events
        return self._windows.events(producer, events)

    def _tick(self, token: Hashable) -> list[Any]:
        if self._flow_finished or self._windows is None:
            return []
        if type(token) is tuple and len(token) == 2 and token[0] == "periodically":
            seconds, name = self._periodically[token[1]]
            self._schedule(seconds, token)
            return self._windows.trigger(name)
        return self._windows.timer(token)

    def _finish(self) -> None:
        if self._departition is not None:
            merged = self._departition.done()
            if self._mappers is not None and merged:
                merged = self._mappers(merged)
            if self._windows is not None and merged:
                merged = self._windows.events(0, merged)
            self._otpy_emit(self._out(merged))
        if self._windows is not None:
            self._otpy_emit(self._out(self._windows.done()))
        self._flow_finished = True
        self._flow_close()
