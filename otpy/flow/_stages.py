"""The processes a flow runs on, and the demand protocol between them.

A running flow is a fixed graph, built before any event moves: sources (one
per iterable, or one bridge to the producers of ``from_stages``), then one
layer of stages per partition, then the consumer (the process iterating the
flow). Every process is started by the consumer, linked to it, and knows its
place: its index in its layer, its producers (the whole layer before it, in
order) and how many consumers it has.

The protocol is GenStage's, reduced to what a fixed graph needs:

* ``_Ask(consumer, pid, tag, n)``: consumer number ``consumer`` wants ``n``
  more events. A consumer first asks ``max_demand`` of each producer, then
  asks again, in batches of at least ``max_demand - min_demand``, for the
  events it has received; so at most ``max_demand`` events per producer are
  ever in flight to it.
* ``_Events(tag, producer, events)``: never more than asked for.
* ``GO``: from the consumer, once all processes are started; only then do
  consumers start asking.
* ``_Done(tag, producer)``: the producer will send nothing more. It comes
  after the producer's last events (messages between two processes keep
  their order), so a stage is done when every producer has said so, and not
  before its last event has been handled.

A stage handles every batch as it arrives (so a reducing stage, which emits
nothing until a window triggers, never stalls), keeps what it emits in its
:class:`_Outlet` until consumers ask for it, and asks its producers for more
only while that backlog is smaller than its consumers' ``max_demand``:
back-pressure reaches the sources, which read their iterables only on demand.
Nothing ends by exiting: the consumer stops every process (``kill``, after
unlinking) when it has its last ``_Done``, or when it is closed or dropped.
Every process also monitors the consumer and stops when it is gone, also
after a normal exit, which the links would not propagate.

This is not ``otpy.stage``'s machinery (which this protocol mirrors): its
ProducerConsumer counts demand by the events it receives rather than by those
it emits, so a reducing or filtering producer-consumer stalls once it has
received its consumers' demand, and it drops the events still queued from a
producer whose subscription is cancelled. ``from_stages`` meets otpy.stage
producers through a stage.Consumer (``_bridge.py``), which has neither problem.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

from .. import _core as core
from .._core import Down, Pid, Ref
from .._gen_server import GenServer, Stop
from ._ops import Departitioner, Layer, LayerFold, Tag, compile_mappers
from ._window import Window, WindowState, window_state

__all__ = ["FlowSource", "FlowStage", "Inlet", "Route", "StagePlan"]

Route = Callable[[Any], "int | None"]
"""Which consumer gets an event (a partition number), or None to drop it."""


# -- messages -------------------------------------------------------------------------------------


class _Ask:
    __slots__ = ("consumer", "n", "pid", "tag")

    def __init__(self, consumer: int, pid: Pid, tag: object, n: int) -> None:
        self.consumer = consumer
        self.pid = pid
        self.tag = tag
        self.n = n

    def __repr__(self) -> str:
        return f"<flow ask: consumer {self.consumer} wants {self.n} more>"


class _Events:
    __slots__ = ("events", "producer", "tag")

    def __init__(self, tag: object, producer: int, events: list[Any]) -> None:
        self.tag = tag
        self.producer = producer
        self.events = events

    def __repr__(self) -> str:
        return f"<flow events: {len(self.events)} from producer {self.producer}>"


class _Done:
    __slots__ = ("producer", "tag")

    def __init__(self, tag: object, producer: int) -> None:
        self.tag = tag
        self.producer = producer

    def __repr__(self) -> str:
        return f"<flow done: producer {self.producer}>"


class _Tick:
    """A timer of the stage's window or of a periodic trigger has fired."""

    __slots__ = ("token",)

    def __init__(self, token: Hashable) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"<flow timer {self.token!r}>"


class _Produce:
    """A source reminds itself to read more (it reads one chunk per message)."""

    __slots__ = ()


_PRODUCE = _Produce()


class _Go:
    """From the consumer, once every process of the flow is started: ask your producers.

    Until then no event moves, so no user function runs and nothing can crash
    while the consumer is still starting processes (one started while the
    consumer was being killed through a link would be left behind).
    """

    __slots__ = ()


GO = _Go()


# -- the producer side ----------------------------------------------------------------------------


class _Outlet:
    """Where a process's output waits for its consumers' demand.

    Owned by the process (no lock). Consumers are numbered ``0..n-1`` and
    known by their first ask. With a ``route`` each consumer is a partition
    with a queue of its own; without, the consumers share one queue and each
    batch goes to the consumer with the most demand (GenStage's
    DemandDispatcher). After :meth:`finish`, each consumer gets ``_Done``
    once its queue is empty. ``discard`` drops all output (``Flow.run``).
    """

    __slots__ = (
        "_demand",
        "_discard",
        "_done_sent",
        "_finished",
        "_index",
        "_pids",
        "_queues",
        "_route",
        "_shared",
        "_tags",
    )

    def __init__(self, index: int, consumers: int, route: Route | None, discard: bool) -> None:
        self._index = index
        self._pids: list[Pid | None] = [None] * consumers
        self._tags: list[object] = [None] * consumers
        self._demand = [0] * consumers
        self._done_sent = [False] * consumers
        self._route = route
        self._queues: list[list[Any]] = [[] for _ in range(consumers)] if route else []
        self._shared: list[Any] = []
        self._discard = discard
        self._finished = False

    @property
    def backlog(self) -> int:
        """Events waiting for demand."""
        if self._route is None:
            return len(self._shared)
        return sum(len(q) for q in self._queues)

    @property
    def demand(self) -> int:
        """Demand not yet met."""
        return sum(self._demand)

    def ask(self, consumer: int, pid: Pid, tag: object, n: int) -> None:
        self._pids[consumer] = pid
        self._tags[consumer] = tag
        self._demand[consumer] += n
        if self._route is None:
            self._flush_shared()
        else:
            self._flush(consumer)

    def push(self, events: list[Any]) -> None:
        if self._discard or not events:
            return
        route = self._route
        if route is None:
            self._shared.extend(events)
            self._flush_shared()
            return
        queues = self._queues
        for event in events:
            partition = route(event)
            if partition is not None:
                queues[partition].append(event)
        for consumer, queue in enumerate(queues):
            if queue and self._demand[consumer] > 0:
                self._flush(consumer)

    def finish(self) -> None:
        self._finished = True
        if self._route is None:
            self._flush_shared()
        else:
            for consumer in range(len(self._pids)):
                self._flush(consumer)

    def _flush(self, consumer: int) -> None:
        pid = self._pids[consumer]
        if pid is None:
            return
        queue = self._queues[consumer] if self._route is not None else []
        want = self._demand[consumer]
        if queue and want > 0:
            batch = queue[:want]
            del queue[:want]
            self._demand[consumer] = want - len(batch)
            core.send(pid, _Events(self._tags[consumer], self._index, batch))
        if self._finished and not queue and not self._done_sent[consumer]:
            self._done_sent[consumer] = True
            core.send(pid, _Done(self._tags[consumer], self._index))

    def _flush_shared(self) -> None:
        shared = self._shared
        demand = self._demand
        pids = self._pids
        while shared:
            consumer = max(range(len(demand)), key=demand.__getitem__)
            want = demand[consumer]
            pid = pids[consumer]
            if want <= 0 or pid is None:
                break
            batch = shared[:want]
            del shared[:want]
            demand[consumer] = want - len(batch)
            core.send(pid, _Events(self._tags[consumer], self._index, batch))
        if self._finished and not shared:
            for consumer, pid in enumerate(pids):
                if pid is not None and not self._done_sent[consumer]:
                    self._done_sent[consumer] = True
                    core.send(pid, _Done(self._tags[consumer], self._index))


# -- the consumer side ----------------------------------------------------------------------------


class Inlet:
    """A consumer's demand towards each of its producers (owned by the consumer's process).

    ``ask(producer, n)`` sends the demand; the consumer calls :meth:`start`
    once, :meth:`received` for every batch, and :meth:`pump` whenever it may
    take more.
    """

    __slots__ = ("_ask", "_batch", "_credit", "_done", "_max", "left")

    def __init__(
        self, producers: int, max_demand: int, min_demand: int, ask: Callable[[int, int], None]
    ) -> None:
        self._ask = ask
        self._max = max_demand
        self._batch = max(1, max_demand - min_demand)
        self._credit = [0] * producers  # received since the last ask
        self._done = [False] * producers
        self.left = producers  # producers not done yet

    def start(self) -> None:
        for producer in range(len(self._credit)):
            self._ask(producer, self._max)

    def received(self, producer: int, n: int) -> None:
        self._credit[producer] += n

    def finished(self, producer: int) -> bool:
        """Producer ``producer`` is done; True if it was the last one."""
        if not self._done[producer]:
            self._done[producer] = True
            self.left -= 1
        return self.left == 0

    def pump(self) -> None:
        credit = self._credit
        for producer, n in enumerate(credit):
            if n >= self._batch and not self._done[producer]:
                credit[producer] = 0
                self._ask(producer, n)


def send_ask(producers: tuple[Pid, ...], consumer: int, tag: object) -> Callable[[int, int], None]:
    """The ``ask`` of an :class:`Inlet` whose producers speak this module's protocol."""
    me = core.self()

    def ask(producer: int, n: int) -> None:
        core.send(producers[producer], _Ask(consumer, me, tag, n))

    return ask


# -- sources ----------------------------------------------------------------------------------------


class FlowSource(GenServer):
    """Reads an iterable on demand: the producer of ``Flow.from_enumerable``.

    It reads no more items than its consumers asked for, in chunks of at most
    their demand, one chunk per message (so it stays responsive while it
    reads). The iterable is iterated in this process.
    """

    inline_calls = False

    _owner: Ref
    _items: Iterator[Any]
    _outlet: _Outlet
    _limit: int
    _exhausted: bool
    _scheduled: bool

    def init(
        self,
        iterable: Iterable[Any],
        index: int,
        consumers: int,
        route: Route | None,
        discard: bool,
        limit: int,
        owner: Pid,
    ) -> None:
        self._owner = core.monitor(owner)
        self._items = iter(iterable)
        self._outlet = _Outlet(index, consumers, route, discard)
        self._limit = limit
        self._exhausted = False
        self._scheduled = False

    def handle_info(self, message: Any) -> None:
        kind = type(message)
        if kind is _Ask:
            self._outlet.ask(message.consumer, message.pid, message.tag, message.n)
        elif kind is _Produce:
            self._scheduled = False
        elif kind is Down and message.ref == self._owner:
            raise Stop("normal")  # whoever consumed the flow is gone
        else:
            return
        self._produce()

    def _produce(self) -> None:
        outlet = self._outlet
        if self._exhausted:
            return
        want = outlet.demand
        if want <= 0 or outlet.backlog >= self._limit:
            return
        items = list(itertools.islice(self._items, want))
        if len(items) < want:
            self._exhausted = True
        outlet.push(items)
        if self._exhausted:
            outlet.finish()
        elif outlet.demand > 0 and not self._scheduled:
            self._scheduled = True
            core.send(core.self(), _PRODUCE)


# -- stages -----------------------------------------------------------------------------------------


class StagePlan:
    """Everything the stages of one layer share (built before the flow starts)."""

    __slots__ = (
        "consumers",
        "departition",
        "discard",
        "layer",
        "limit",
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
        limit: int,
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
        self.limit = limit
        self.tag = tag
        self.departition = departition


class FlowStage(GenServer):
    """One stage of a flow: runs its layer's operations on the events of its producers.

    Events go, batch by batch, through the departition merge (after
    ``departition``), the mappers, and the layer's windows (with ``reduce``);
    what comes out waits in the outlet for the consumers. Timers (periodic
    windows and triggers, allowed lateness) are messages to itself.
    """

    inline_calls = False

    _owner: Ref
    _inlet: Inlet
    _outlet: _Outlet
    _mappers: Callable[[list[Any]], list[Any]] | None
    _windows: WindowState | None
    _departition: Departitioner | None
    _periodically: tuple[tuple[float, Any], ...]
    _limit: int
    _finished: bool

    def init(self, plan: StagePlan, index: int, producers: tuple[Pid, ...], owner: Pid) -> None:
        self._owner = core.monitor(owner)
        self._outlet = _Outlet(index, plan.consumers, plan.route, plan.discard)
        self._limit = plan.limit
        self._finished = False
        self._mappers = compile_mappers(plan.layer.pre)
        self._departition = None
        if plan.departition is not None:
            self._departition = Departitioner(*plan.departition)
        self._windows = None
        self._periodically = ()
        if plan.layer.reduce is not None:
            fold = LayerFold(plan.layer, index, plan.partitions, plan.tag)
            self._windows = window_state(plan.window, fold, len(producers), self._schedule)
            self._periodically = plan.window.periodically
            for number, (seconds, _) in enumerate(self._periodically):
                self._schedule(seconds, ("periodically", number))
        self._inlet = Inlet(
            len(producers), plan.max_demand, plan.min_demand, send_ask(producers, index, None)
        )

    def _schedule(self, seconds: float, token: Hashable) -> None:
        core.send_after(seconds, core.self(), _Tick(token))

    def handle_info(self, message: Any) -> None:
        kind = type(message)
        if kind is _Events:
            self._inlet.received(message.producer, len(message.events))
            self._outlet.push(self._run(message.producer, message.events))
        elif kind is _Ask:
            self._outlet.ask(message.consumer, message.pid, message.tag, message.n)
        elif kind is _Done:
            last = self._inlet.finished(message.producer)
            if self._windows is not None:
                self._outlet.push(self._windows.producer_done(message.producer))
            if last:
                self._finish()
        elif kind is _Tick:
            self._tick(message.token)
        elif kind is _Go:
            self._inlet.start()
        elif kind is Down and message.ref == self._owner:
            raise Stop("normal")  # whoever consumed the flow is gone
        else:
            return
        if self._outlet.backlog < self._limit:
            self._inlet.pump()

    def _run(self, producer: int, events: list[Any]) -> list[Any]:
        if self._departition is not None:
            events = self._departition.events(events)
        if self._mappers is not None and events:
            events = self._mappers(events)
        if self._windows is None or not events:
            return events
        return self._windows.events(producer, events)

    def _tick(self, token: Hashable) -> None:
        if self._finished or self._windows is None:
            return
        if type(token) is tuple and len(token) == 2 and token[0] == "periodically":
            seconds, name = self._periodically[token[1]]
            self._outlet.push(self._windows.trigger(name))
            self._schedule(seconds, token)
        else:
            self._outlet.push(self._windows.timer(token))

    def _finish(self) -> None:
        self._finished = True
        if self._departition is not None:
            merged = self._departition.done()
            if self._mappers is not None and merged:
                merged = self._mappers(merged)
            if self._windows is not None and merged:
                merged = self._windows.events(0, merged)
            self._outlet.push(merged)
        if self._windows is not None:
            self._outlet.push(self._windows.done())
        self._outlet.finish()
