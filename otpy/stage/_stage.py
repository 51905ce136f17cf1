"""Stages: producers and consumers that exchange events under back-pressure.

Example::

    import otpy.stage as stage

    class Numbers(stage.Producer):
        def init(self, start):
            self.next = start

        def handle_demand(self, demand):            # returns the events to emit
            events = list(range(self.next, self.next + demand))
            self.next += demand
            return events

    class Double(stage.ProducerConsumer):
        def handle_events(self, events, from_):     # returns the events to emit
            return [2 * e for e in events]

    class Printer(stage.Consumer):
        def handle_events(self, events, from_):     # a consumer emits nothing
            print(events)

    numbers = Numbers.start_link(0)
    double = Double.start_link(subscribe_to=[numbers])
    Printer.start_link(subscribe_to=[(double, {"max_demand": 10})])

The demand protocol (GenStage's). Events flow downstream only as far as
consumers asked for them. A consumer subscribes with ``max_demand`` (default
1000) and ``min_demand`` (default half of ``max_demand``): it asks its
producer for ``max_demand`` events, handles what arrives in batches of at
most ``max_demand - min_demand``, and after each batch asks for as many again.
So at most ``max_demand`` events are ever in flight per subscription.

A producer makes events in ``handle_demand(demand)``, called with the total
demand its consumers asked for; events it makes beyond that wait in its buffer
(``buffer_size=10_000`` events; when full, the oldest are dropped with
``buffer_keep="last"``, the newest with ``"first"``, and a warning is logged).
With ``demand="accumulate"`` a producer collects demand without calling
``handle_demand`` until ``stage.demand(producer, "forward")``.

A producer-consumer handles events from upstream only while its consumers
have demand; the rest wait in it, and it asks upstream for more only as it
handles them. Its output buffer is unbounded by default.

Every callback may emit events by returning them: ``handle_demand``,
``handle_events``, ``handle_cast``, ``handle_info`` and ``handle_cancel``
return a list of events (or ``None``); ``handle_call`` returns the reply, or
``stage.Reply(value, events)`` to reply and emit. A consumer emits nothing.

Subscriptions are made by consumers: ``subscribe_to=[producer, (producer,
options), ...]`` at start, :func:`sync_subscribe` or :func:`async_subscribe`.
Options: ``max_demand``, ``min_demand``, ``cancel`` (``"permanent"``
(default): the consumer exits when the producer goes away or cancels,
``"transient"``: only if that was abnormal, ``"temporary"``: never) and the
dispatcher's own options (``partition=``, ``selector=``). A consumer whose
``handle_subscribe`` returns ``"manual"`` asks for events itself with
:func:`ask`.

Stages are GenServers: ``GenServer.call``/``cast``/``stop``, ``handle_info``
and ``terminate`` work as there, and stages are supervised like any GenServer.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import attrs

from .. import _core as core
from .._core import Call, Down, Exit, NameResolver, Pid, Ref
from .._gen_server import _CAST, NOREPLY, Continue, GenServer, Stop, _ContinueMsg, _SysStop
from ._demand import Demand
from ._dispatchers import DemandDispatcher, Dispatcher, Subscription, fresh

__all__ = [
    "Consumer",
    "Producer",
    "ProducerConsumer",
    "Reply",
    "ask",
    "async_subscribe",
    "cancel",
    "demand",
    "sync_subscribe",
]

_log = logging.getLogger("otpy.stage")

CancelMode = Literal["permanent", "transient", "temporary"]
_CANCEL_MODES = ("permanent", "transient", "temporary")
_CONSUMER_OPTIONS = frozenset({"max_demand", "min_demand", "cancel"})


@attrs.frozen
class Reply:
    """Returned by a stage's ``handle_call``: reply ``value`` and emit ``events``."""

    value: Any
    events: list[Any] = attrs.field(factory=list, converter=list)


Reply.__module__ = "otpy.stage"


# -- the protocol ---------------------------------------------------------------------


class _Subscribe:
    __slots__ = ("consumer", "opts", "ref")

    def __init__(self, consumer: Pid, ref: Ref, opts: dict[str, Any]) -> None:
        self.consumer = consumer
        self.ref = ref
        self.opts = opts


class _Ask:
    __slots__ = ("n", "ref")

    def __init__(self, ref: Ref, n: int) -> None:
        self.ref = ref
        self.n = n


class _Events:
    __slots__ = ("events", "ref")

    def __init__(self, ref: Ref, events: list[Any]) -> None:
        self.ref = ref
        self.events = events


class _Cancel:
    __slots__ = ("reason", "ref")

    def __init__(self, ref: Ref, reason: Any) -> None:
        self.ref = ref
        self.reason = reason


class _Cancelled:
    """In a producer-consumer's input queue: the producer's subscription ended here."""

    __slots__ = ("reason",)

    def __init__(self, reason: tuple[str, Any]) -> None:
        self.reason = reason


class _SubscribeCmd:
    __slots__ = ("opts", "producer")

    def __init__(self, producer: object, opts: dict[str, Any]) -> None:
        self.producer = producer
        self.opts = opts


class _DemandCmd:
    __slots__ = ("mode",)

    def __init__(self, mode: str | None) -> None:
        self.mode = mode


class _Outbox:
    """How a producer's dispatcher reaches its consumers (it runs in the producer)."""

    def send(self, sub: Subscription, events: list[Any]) -> None:
        core.send(sub[0], _Events(sub[1], events))

    def reask(self, sub: Subscription, n: int) -> None:
        core.send(core.self(), _Ask(sub[1], n))


_OUTBOX = _Outbox()


# -- subscription options ------------------------------------------------------------------


@attrs.frozen
class _Options:
    max_demand: int
    min_demand: int
    cancel: CancelMode
    dispatcher: dict[str, Any]


def _check_options(opts: object, allowed: frozenset[str] | None = None) -> _Options:
    """Validate subscription options (a dict); raise ValueError/TypeError naming the value."""
    if not isinstance(opts, dict):
        raise TypeError(f"subscription options must be a dict; got {opts!r}")
    max_demand = opts.get("max_demand", 1000)
    if isinstance(max_demand, bool) or not isinstance(max_demand, int) or max_demand < 1:
        raise ValueError(f"max_demand must be an int >= 1; got {max_demand!r}")
    min_demand = opts.get("min_demand", max_demand // 2)
    if isinstance(min_demand, bool) or not isinstance(min_demand, int) or min_demand < 0:
        raise ValueError(f"min_demand must be an int >= 0; got {min_demand!r}")
    if min_demand >= max_demand:
        raise ValueError(
            f"min_demand must be less than max_demand; got min_demand={min_demand!r}, "
            f"max_demand={max_demand!r}"
        )
    cancel_mode = opts.get("cancel", "permanent")
    if cancel_mode not in _CANCEL_MODES:
        raise ValueError(f"cancel must be one of {_CANCEL_MODES}; got {cancel_mode!r}")
    rest = {k: v for k, v in opts.items() if k not in _CONSUMER_OPTIONS}
    known = allowed if allowed is not None else frozenset({"partition", "selector"})
    unknown = sorted(set(rest) - known, key=str)
    if unknown:
        raise ValueError(
            f"unknown subscription option(s) {unknown!r}; allowed: max_demand, min_demand, "
            f"cancel, and the dispatcher's {sorted(known)!r}"
        )
    return _Options(max_demand, min_demand, cancel_mode, rest)


def _split_target(entry: object) -> tuple[object, dict[str, Any]]:
    if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], dict):
        return entry[0], entry[1]
    return entry, {}


class _Upstream:
    """A consumer's subscription to one producer; owned by the consumer process."""

    __slots__ = ("demand", "manual", "monitor", "options", "producer", "ref")

    def __init__(self, producer: Pid, ref: Ref, options: _Options) -> None:
        self.producer = producer
        self.ref = ref
        self.options = options
        self.monitor: Ref | None = None
        self.demand = Demand(options.max_demand, options.min_demand)
        self.manual = False

    @property
    def from_(self) -> tuple[Pid, Ref]:
        return (self.producer, self.ref)


# -- the stages --------------------------------------------------------------------------


class _Stage(GenServer):
    """What producers, producer-consumers and consumers share."""

    _otpy_produces: ClassVar[bool] = False
    _otpy_consumes: ClassVar[bool] = False

    _otpy_targets: list[tuple[object, _Options]]  # subscribe_to, until init has run

    # Owned by the stage's process:
    _otpy_upstream: dict[Ref, _Upstream]
    _otpy_monitors: dict[Ref, Ref]  # monitor ref -> subscription ref (both directions)
    _otpy_downstream: dict[Ref, Pid]
    _otpy_dispatcher: Dispatcher
    _otpy_buffer: deque[Any]
    _otpy_buffer_size: int | None
    _otpy_buffer_keep: str
    _otpy_demand_mode: str
    _otpy_pending_demand: int
    _otpy_pc_queue: deque[tuple[_Upstream, Any]]  # (subscription, events or _Cancelled)
    _otpy_pc_demand: int

    # -- starting ----------------------------------------------------------------------

    @classmethod
    def start_link(cls, *args: Any, name: object = None, **kwargs: Any) -> Pid | None:
        """Start the stage linked to the caller; see the module documentation for the options.

        Stage keywords (reserved like ``name=``): ``subscribe_to=`` (consumers),
        ``dispatcher=``, ``buffer_size=``, ``buffer_keep=``, ``demand=`` (producers).
        """
        server, kwargs = cls._otpy_prepare(kwargs)
        return server._otpy_spawn(args, kwargs, name, link=True)

    @classmethod
    def start(cls, *args: Any, name: object = None, **kwargs: Any) -> Pid | None:
        """Like :meth:`start_link`, without the link."""
        server, kwargs = cls._otpy_prepare(kwargs)
        return server._otpy_spawn(args, kwargs, name, link=False)

    @classmethod
    def _otpy_prepare(cls, kwargs: dict[str, Any]) -> tuple[_Stage, dict[str, Any]]:
        kwargs = dict(kwargs)
        server = cls()
        subscribe_to = kwargs.pop("subscribe_to", None) if cls._otpy_consumes else None
        targets: list[tuple[object, _Options]] = []
        if subscribe_to is not None:
            if isinstance(subscribe_to, (str, bytes)) or not isinstance(subscribe_to, Iterable):
                raise TypeError(f"subscribe_to must be a list of producers; got {subscribe_to!r}")
            for entry in subscribe_to:
                producer, opts = _split_target(entry)
                targets.append((producer, _check_options(opts)))
        server._otpy_targets = targets
        if cls._otpy_produces:
            dispatcher = kwargs.pop("dispatcher", None)
            if dispatcher is None:
                dispatcher = DemandDispatcher()
            elif isinstance(dispatcher, type) or not all(
                hasattr(dispatcher, m) for m in ("subscribe", "cancel", "ask", "dispatch")
            ):
                raise TypeError(
                    "dispatcher must be a stage dispatcher (DemandDispatcher(), "
                    f"BroadcastDispatcher(), PartitionDispatcher(...)); got {dispatcher!r}"
                )
            default_size = None if cls._otpy_consumes else 10_000
            size = kwargs.pop("buffer_size", default_size)
            if size is not None and (
                isinstance(size, bool) or not isinstance(size, int) or size < 0
            ):
                raise ValueError(
                    f"buffer_size must be an int >= 0 or None (unbounded); got {size!r}"
                )
            keep = kwargs.pop("buffer_keep", "last")
            if keep not in ("last", "first"):
                raise ValueError(f"buffer_keep must be 'last' or 'first'; got {keep!r}")
            mode = kwargs.pop("demand", "forward")
            if mode not in ("forward", "accumulate"):
                raise ValueError(f"demand must be 'forward' or 'accumulate'; got {mode!r}")
            server._otpy_dispatcher = fresh(dispatcher)
            server._otpy_buffer_size = size
            server._otpy_buffer_keep = keep
            server._otpy_demand_mode = mode
        for reserved in ("subscribe_to", "dispatcher", "buffer_size", "buffer_keep", "demand"):
            if reserved in kwargs:
                raise TypeError(
                    f"{cls.__name__} is not a {_kind_needing(reserved)}; it takes no {reserved}="
                )
        return server, kwargs

    def _otpy_init(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._otpy_upstream = {}
        self._otpy_monitors = {}
        self._otpy_downstream = {}
        self._otpy_buffer = deque()
        self._otpy_pending_demand = 0
        self._otpy_pc_queue = deque()
        self._otpy_pc_demand = 0
        super()._otpy_init(args, kwargs)
        for producer, options in self._otpy_targets:
            self._otpy_subscribe(producer, options)
        self._otpy_targets = []

    # -- callbacks users may define --------------------------------------------------------

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: tuple[Pid, Ref]) -> str:
        """A subscription was made (``kind`` is ``"producer"`` on the consumer side,
        ``"consumer"`` on the producer side); return ``"automatic"`` or, for a
        consumer, ``"manual"`` to ask for events with :func:`ask` yourself."""
        return "automatic"

    def handle_cancel(self, reason: Any, from_: tuple[Pid, Ref]) -> Any:
        """A subscription ended (``reason`` is ``("cancel", r)`` or ``("down", r)``);
        may return events to emit."""
        return None

    # -- the message loop ---------------------------------------------------------------------

    def _otpy_handle(self, msg: Any) -> None:
        kind = type(msg)
        try:
            if kind is _Events:
                self._otpy_on_events(msg)
            elif kind is _Ask:
                self._otpy_on_ask(msg)
            elif kind is _Subscribe:
                self._otpy_on_subscribe(msg)
            elif kind is _Cancel:
                self._otpy_on_cancel(msg.ref, ("cancel", msg.reason))
            elif kind is Down and msg.ref in self._otpy_monitors:
                self._otpy_on_cancel(self._otpy_monitors[msg.ref], ("down", msg.reason))
            elif kind is Call:
                self._otpy_on_call(msg)
            elif kind is tuple and len(msg) == 2 and msg[0] is _CAST:
                self._otpy_emit(self.handle_cast(msg[1]))
            elif kind is _ContinueMsg:
                self._otpy_emit(self.handle_continue(msg.arg))
            elif kind is _SubscribeCmd:  # async_subscribe
                self._otpy_subscribe(msg.producer, _check_options(msg.opts))
            elif kind is Exit and msg.pid == core.parent():
                self._otpy_stop(msg.reason, None)  # trapping exits: the parent stops us
            else:
                self._otpy_emit(self.handle_info(msg))
        except Stop as stop:
            if stop.reply is not NOREPLY and kind is Call:
                msg.reply(stop.reply)
            self._otpy_stop(stop.reason, None)
        except Exception as exc:
            self._otpy_crash(exc, msg)

    def _otpy_continue(self, arg: Any) -> None:
        self._otpy_emit(self.handle_continue(arg))

    def _otpy_on_call(self, msg: Call) -> None:
        request = msg.request
        kind = type(request)
        if kind is _SysStop:
            self._otpy_stop(request.reason, msg)
        elif kind is _SubscribeCmd:
            msg.reply(self._otpy_subscribe(request.producer, _check_options(request.opts)))
        elif kind is _DemandCmd:
            msg.reply(self._otpy_set_demand(request.mode))
        else:
            result = self.handle_call(request, msg)
            if result is NOREPLY:
                return
            if type(result) is Reply:
                msg.reply(result.value)
                self._otpy_emit(result.events)
            elif type(result) is Continue:
                if result.reply is not NOREPLY:
                    msg.reply(result.reply)
                self._otpy_emit(self.handle_continue(result.arg))
            else:
                msg.reply(result)

    # -- producer side -------------------------------------------------------------------------

    def _otpy_emit(self, events: Any) -> None:
        """Send events a callback returned downstream (or buffer them)."""
        if events is None:
            return
        if not self._otpy_produces:
            if events:
                raise TypeError(
                    f"{type(self).__name__} is a Consumer: its callbacks emit nothing, "
                    f"but one returned {events!r}"
                )
            return
        if not isinstance(events, list):
            if isinstance(events, (str, bytes, dict)) or not isinstance(events, Iterable):
                raise TypeError(
                    f"a stage callback must return a list of events or None; got {events!r}"
                )
            events = list(events)
        if not events:
            return
        if self._otpy_consumes:  # a producer-consumer: what it sends uses up downstream demand
            self._otpy_pc_demand -= min(len(events), self._otpy_pc_demand)
        if self._otpy_buffer:
            self._otpy_store(events)  # keep the order: buffered events go first
            return
        left = self._otpy_dispatcher.dispatch(events, _OUTBOX)
        if left:
            self._otpy_store(left)

    def _otpy_store(self, events: list[Any]) -> None:
        buffer = self._otpy_buffer
        buffer.extend(events)
        size = self._otpy_buffer_size
        if size is not None and len(buffer) > size:
            excess = len(buffer) - size
            if self._otpy_buffer_keep == "last":
                for _ in range(excess):
                    buffer.popleft()
            else:
                for _ in range(excess):
                    buffer.pop()
            _log.warning(
                "%s %r dropped %d event(s) from its buffer (buffer_size=%d, buffer_keep=%r)",
                type(self).__name__,
                core.self(),
                excess,
                size,
                self._otpy_buffer_keep,
            )

    def _otpy_on_subscribe(self, msg: _Subscribe) -> None:
        if not self._otpy_produces:
            core.send(msg.consumer, _Cancel(msg.ref, "not a producer"))
            return
        sub = (msg.consumer, msg.ref)
        try:
            self._otpy_dispatcher.subscribe(msg.opts, sub)
        except (TypeError, ValueError) as exc:
            core.send(msg.consumer, _Cancel(msg.ref, exc))
            return
        self._otpy_downstream[msg.ref] = msg.consumer
        self._otpy_monitors[core.monitor(msg.consumer)] = msg.ref
        self.handle_subscribe("consumer", msg.opts, sub)

    def _otpy_on_ask(self, msg: _Ask) -> None:
        consumer = self._otpy_downstream.get(msg.ref)
        if consumer is None:
            return  # cancelled meanwhile
        counter = self._otpy_dispatcher.ask(msg.n, (consumer, msg.ref), _OUTBOX)
        if counter > 0:
            self._otpy_supply(counter)

    def _otpy_supply(self, counter: int) -> None:
        """The dispatcher wants ``counter`` more events: from the buffer first, then made."""
        buffer = self._otpy_buffer
        if buffer:
            n = min(counter, len(buffer))
            taken = [buffer.popleft() for _ in range(n)]
            counter -= n
            left = self._otpy_dispatcher.dispatch(taken, _OUTBOX)
            if left:
                buffer.extendleft(reversed(left))
        if counter > 0:
            self._otpy_demand_arrived(counter)

    def _otpy_demand_arrived(self, counter: int) -> None:
        """Downstream wants ``counter`` more events than are buffered."""
        if self._otpy_consumes:  # a producer-consumer: handle queued input
            self._otpy_pc_demand += counter
            self._otpy_drain()
        elif self._otpy_demand_mode == "forward":
            self._otpy_emit(self.handle_demand(counter))  # type: ignore[attr-defined]
        else:
            self._otpy_pending_demand += counter

    def _otpy_set_demand(self, mode: str | None) -> str:
        if not self._otpy_produces:
            raise TypeError(f"{type(self).__name__} is not a producer: it has no demand mode")
        if mode is None:
            return self._otpy_demand_mode
        if mode not in ("forward", "accumulate"):
            raise ValueError(f"demand mode must be 'forward' or 'accumulate'; got {mode!r}")
        self._otpy_demand_mode = mode
        if mode == "forward" and self._otpy_pending_demand:
            pending, self._otpy_pending_demand = self._otpy_pending_demand, 0
            self._otpy_emit(self.handle_demand(pending))  # type: ignore[attr-defined]
        return mode

    # -- consumer side -----------------------------------------------------------------------

    def _otpy_subscribe(self, producer: object, options: _Options) -> Ref:
        if not self._otpy_consumes:
            raise TypeError(f"{type(self).__name__} is a Producer: it cannot subscribe")
        ref = core.Ref()
        target = producer if isinstance(producer, Pid) else _whereis(producer)
        if target is None:  # as if the producer went down at once
            self._otpy_emit(self.handle_cancel(("down", "noproc"), (producer, ref)))  # type: ignore[arg-type]
            if options.cancel != "temporary":
                raise Stop("noproc")
            return ref
        up = _Upstream(target, ref, options)
        self._otpy_upstream[ref] = up
        up.monitor = core.monitor(target)
        self._otpy_monitors[up.monitor] = ref
        opts = {
            "max_demand": options.max_demand,
            "min_demand": options.min_demand,
            "cancel": options.cancel,
            **options.dispatcher,
        }
        core.send(target, _Subscribe(core.self(), ref, dict(options.dispatcher)))
        mode = self.handle_subscribe("producer", opts, up.from_)
        if mode == "manual":
            up.manual = True
        elif mode != "automatic":
            raise ValueError(f"handle_subscribe must return 'automatic' or 'manual'; got {mode!r}")
        else:
            core.send(target, _Ask(ref, options.max_demand))
        return ref

    def _otpy_on_events(self, msg: _Events) -> None:
        up = self._otpy_upstream.get(msg.ref)
        if up is None:
            return  # cancelled meanwhile
        if self._otpy_produces:
            self._otpy_pc_queue.append((up, msg.events))
            self._otpy_drain()
            return
        self._otpy_consume(up, msg.events)

    def _otpy_consume(self, up: _Upstream, events: list[Any]) -> None:
        step = up.demand.step
        for start in range(0, len(events), step):
            batch = events[start : start + step]
            self._otpy_emit(self.handle_events(batch, up.from_))  # type: ignore[attr-defined]
            self._otpy_handled(up, len(batch))

    def _otpy_handled(self, up: _Upstream, n: int) -> None:
        """``n`` events from ``up`` were handled: ask for more once enough were."""
        if up.manual or up.ref not in self._otpy_upstream:
            return
        more = up.demand.handled(n)
        if more:
            core.send(up.producer, _Ask(up.ref, more))

    def _otpy_drain(self) -> None:
        """A producer-consumer handles queued input while downstream has demand.

        As in GenStage, the demand is used up by the events it sends on, not by
        the ones it takes in: a stage that filters or folds keeps taking input.
        A cancellation from upstream waits in the queue behind that producer's
        events, so they are handled first.
        """
        queue = self._otpy_pc_queue
        while queue and self._otpy_pc_demand > 0:
            up, item = queue[0]
            if type(item) is _Cancelled:
                queue.popleft()
                self._otpy_cancelled(up, item.reason)
                continue
            step = up.demand.step
            batch, rest = item[:step], item[step:]
            if rest:
                queue[0] = (up, rest)
            else:
                queue.popleft()
            self._otpy_emit(self.handle_events(batch, up.from_))  # type: ignore[attr-defined]
            self._otpy_handled(up, len(batch))

    # -- cancellation ---------------------------------------------------------------------------

    def _otpy_on_cancel(self, ref: Ref, reason: tuple[str, Any]) -> None:
        up = self._otpy_upstream.pop(ref, None)
        if up is not None:
            if up.monitor is not None:
                self._otpy_monitors.pop(up.monitor, None)
                core.demonitor(up.monitor, flush=True)
            if any(entry[0] is up for entry in self._otpy_pc_queue):
                self._otpy_pc_queue.append((up, _Cancelled(reason)))  # after its events
                self._otpy_drain()
            else:
                self._otpy_cancelled(up, reason)
            return
        consumer = self._otpy_downstream.pop(ref, None)
        if consumer is not None:
            for mon, sub_ref in list(self._otpy_monitors.items()):
                if sub_ref == ref:
                    del self._otpy_monitors[mon]
                    core.demonitor(mon, flush=True)
            more = self._otpy_dispatcher.cancel((consumer, ref))
            if more:
                self._otpy_supply(more)
            if reason[0] == "cancel":
                core.send(consumer, _Cancel(ref, reason[1]))  # the consumer learns it too
            self._otpy_emit(self.handle_cancel(reason, (consumer, ref)))

    def _otpy_cancelled(self, up: _Upstream, reason: tuple[str, Any]) -> None:
        """A subscription to a producer ended: tell the callback, then follow the cancel mode."""
        self._otpy_emit(self.handle_cancel(reason, up.from_))
        why = reason[1]
        mode = up.options.cancel
        if mode == "permanent" or (mode == "transient" and not core.is_normal_exit(why)):
            raise Stop(why)


def _whereis(producer: object) -> Pid | None:
    if isinstance(producer, str):
        return core.whereis(producer)
    if isinstance(producer, NameResolver):
        return producer.whereis_name()
    raise TypeError(f"a producer must be a pid, a name or otpy.via(...); got {producer!r}")


def _kind_needing(option: str) -> str:
    return (
        "Consumer or ProducerConsumer"
        if option == "subscribe_to"
        else "Producer or ProducerConsumer"
    )


class Producer(_Stage):
    """A stage that makes events on demand: define ``handle_demand(demand) -> events``.

    Example::

        class Counter(stage.Producer):
            def init(self, start=0):
                self.n = start
            def handle_demand(self, demand):
                events = list(range(self.n, self.n + demand))
                self.n += demand
                return events

    Start keywords: ``dispatcher=`` (default ``DemandDispatcher()``),
    ``buffer_size=`` (10,000), ``buffer_keep=`` (``"last"``), ``demand=``
    (``"forward"``).
    """

    __module__ = "otpy.stage"
    _otpy_produces = True

    def handle_demand(self, demand: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define handle_demand(demand)")


class ProducerConsumer(_Stage):
    """A stage between two others: define ``handle_events(events, from_) -> events``.

    Example::

        class Double(stage.ProducerConsumer):
            def handle_events(self, events, from_):
                return [2 * e for e in events]

    Start keywords: ``subscribe_to=``, ``dispatcher=``, ``buffer_size=``
    (default unbounded), ``buffer_keep=``.
    """

    __module__ = "otpy.stage"
    _otpy_produces = True
    _otpy_consumes = True

    def handle_events(self, events: list[Any], from_: tuple[Pid, Ref]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define handle_events(events, from_)")


class Consumer(_Stage):
    """A stage at the end: define ``handle_events(events, from_)`` (returns nothing).

    Example::

        class Printer(stage.Consumer):
            def handle_events(self, events, from_):
                print(events)

    Start keyword: ``subscribe_to=``.
    """

    __module__ = "otpy.stage"
    _otpy_consumes = True

    def handle_events(self, events: list[Any], from_: tuple[Pid, Ref]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define handle_events(events, from_)")


# -- functions -------------------------------------------------------------------------------


def sync_subscribe(consumer: object, *, to: object, **options: Any) -> Ref:
    """Subscribe ``consumer`` to the producer ``to``; returns the subscription ref.

    Options: ``max_demand=1000``, ``min_demand=max_demand // 2``,
    ``cancel="permanent"``, and the producer's dispatcher options.

    Raises:
        ValueError / TypeError: a bad option (checked here, before anything is sent).
        otpy.NoProcError: the consumer is not alive.
    """
    _check_options(options)
    return core.call(consumer, _SubscribeCmd(to, options), None, "stage.sync_subscribe")  # type: ignore[no-any-return]


def async_subscribe(consumer: object, *, to: object, **options: Any) -> None:
    """Like :func:`sync_subscribe`, without waiting (options are still checked here)."""
    _check_options(options)
    core.send_quiet(consumer, _SubscribeCmd(to, options))


def ask(from_: tuple[Pid, Ref], n: int) -> None:
    """A consumer in manual mode asks the producer of subscription ``from_`` for ``n`` events."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"ask needs a demand that is an int >= 1; got {n!r}")
    producer, ref = from_
    core.send(producer, _Ask(ref, n))


def demand(producer: object, mode: str | None = None) -> str:
    """Set a producer's demand mode (``"forward"`` or ``"accumulate"``); returns the mode.

    Without ``mode``, returns the current one.

    Raises:
        ValueError: ``mode`` is not one of those.
    """
    if mode is not None and mode not in ("forward", "accumulate"):
        raise ValueError(f"demand mode must be 'forward' or 'accumulate'; got {mode!r}")
    return core.call(producer, _DemandCmd(mode), None, "stage.demand")  # type: ignore[no-any-return]


def cancel(from_: tuple[Pid, Ref], reason: Any = "normal") -> None:
    """Cancel the subscription ``from_`` (as ``handle_events`` receives it).

    The producer drops the subscription and tells the consumer, which then
    follows its ``cancel`` mode (a ``"permanent"`` consumer exits with ``reason``).
    """
    producer, ref = from_
    core.send(producer, _Cancel(ref, reason))
