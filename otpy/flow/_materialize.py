"""Turning a flow into processes, and the iterator that consumes them.

Materializing happens in two steps. :func:`plan` walks the flow from its end
back to its sources and decides every process (validating the flow, so a bad
flow raises before anything starts); :func:`start` starts them, sources
first, each linked to the consuming process. A layer of stages is skipped
only where a source layer (``from_enumerable``/``from_stages``) has no
operations and no window: then the next layer, or the consumer, takes the
events from the sources directly, as in Elixir's Flow.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import attrs

from .. import _core as core
from .._core import Down, Pid, Ref
from .._exceptions import ExitError, Timeout
from .._partition_supervisor import stable_hash
from ..stage._demand import Demand
from ..stage._stage import _Ask, _Cancel, _Events, _Subscribe
from ._ops import Tag, split
from ._stages import GO, FlowSource, FlowStage, HashRoute, Route, StagePlan, dispatcher
from ._window import Window

if TYPE_CHECKING:
    from ._flow import Flow

__all__ = [
    "Departitioned",
    "Enumerables",
    "FlowIterator",
    "FromStages",
    "Input",
    "Partitioned",
]

T = TypeVar("T")


# -- where a layer's events come from ---------------------------------------------------------------


@attrs.frozen
class Enumerables:
    iterables: tuple[Iterable[Any], ...]


@attrs.frozen
class FromStages:
    producers: tuple[object, ...]


@attrs.frozen
class Partitioned:
    parent: Flow[Any]
    key: Callable[[Any], Any] | None
    hash: Callable[[Any], Any] | None


@attrs.frozen
class Departitioned:
    parent: Flow[Any]
    acc_factory: Callable[[], Any]
    merge: Callable[[Any, Any], Any]
    done: Callable[[Any], Any]
    tag: Tag


Input: TypeAlias = Enumerables | FromStages | Partitioned | Departitioned


# -- planning -----------------------------------------------------------------------------------------


@attrs.frozen
class _Sources:
    iterables: tuple[Iterable[Any], ...]
    consumers: int
    route: Route | None
    discard: bool


@attrs.frozen
class _Bridge:
    """One stage that subscribes to the producers of ``from_stages`` (on ``GO``)."""

    producers: tuple[object, ...]
    plan: StagePlan


@attrs.frozen
class _Stages:
    upstream: _Node
    count: int
    plan: StagePlan


_Node: TypeAlias = "_Sources | _Bridge | _Stages"


def _route(partitioned: Partitioned, n: int) -> Route | None:
    """How the layer before a partition of ``n`` stages routes each event."""
    hash_fn, key_fn = partitioned.hash, partitioned.key
    if hash_fn is not None:
        return HashRoute(hash_fn, n)
    if n == 1:
        return None
    if key_fn is not None:
        return lambda event: stable_hash(key_fn(event)) % n
    return lambda event: stable_hash(event) % n


def _demands(flow: Flow[Any]) -> tuple[int, int]:
    max_demand = flow._max_demand
    min_demand = flow._min_demand
    return max_demand, max_demand // 2 if min_demand is None else min_demand


def plan(
    flow: Flow[Any],
    consumers: int,
    route: Route | None,
    discard: bool,
    tag: Tag | None,
) -> _Node:
    """The processes of ``flow``, whose last layer feeds ``consumers`` through ``route``.

    Raises:
        ValueError: a window is set on a layer that does not reduce.
    """
    inp = flow._input
    layer = split(flow._ops)
    window = flow._window
    if not window.is_plain and layer.reduce is None:
        raise ValueError(
            f"a {window.kind} window (or a trigger) was set on a part of the flow that does not "
            "reduce; add reduce()/group_by() after the partition() or from_*() that sets it"
        )
    max_demand, min_demand = _demands(flow)
    if isinstance(inp, (Enumerables, FromStages)) and layer.empty and window.is_plain and not tag:
        return _source(inp, consumers, route, discard, max_demand, min_demand)
    count = 1 if isinstance(inp, Departitioned) else flow._stages
    upstream: _Node
    if isinstance(inp, (Enumerables, FromStages)):
        upstream = _source(inp, count, None, False, max_demand, min_demand)
    elif isinstance(inp, Partitioned):
        upstream = plan(inp.parent, count, _route(inp, count), False, None)
    else:
        upstream = plan(inp.parent, 1, None, False, inp.tag)
    departition = None
    if isinstance(inp, Departitioned):
        departition = (inp.parent._stages, inp.acc_factory, inp.merge, inp.done)
    stage_plan = StagePlan(
        layer=layer,
        window=window,
        partitions=count,
        max_demand=max_demand,
        min_demand=min_demand,
        consumers=consumers,
        route=route,
        discard=discard,
        tag=tag,
        departition=departition,
    )
    return _Stages(upstream, count, stage_plan)


def _source(
    inp: Enumerables | FromStages,
    consumers: int,
    route: Route | None,
    discard: bool,
    max_demand: int,
    min_demand: int,
) -> _Node:
    if isinstance(inp, Enumerables):
        return _Sources(inp.iterables, consumers, route, discard)
    stage_plan = StagePlan(
        layer=split(()),
        window=Window.global_(),
        partitions=1,
        max_demand=max_demand,
        min_demand=min_demand,
        consumers=consumers,
        route=route,
        discard=discard,
        tag=None,
        departition=None,
    )
    return _Bridge(inp.producers, stage_plan)


def _routes(node: _Node) -> bool:
    """Whether the processes of ``node`` send each event to the consumer of its partition."""
    if isinstance(node, _Sources):
        return node.route is not None
    return node.plan.route is not None


def start(node: _Node, started: list[Pid]) -> tuple[Pid, ...]:
    """Start the processes of ``node`` (sources first), linked to the caller.

    Every pid started is appended to ``started``, also when a later start fails.
    """
    owner = core.self()
    pids = []
    if isinstance(node, _Sources):
        for iterable in node.iterables:
            pid = FlowSource.start_link(
                iterable,
                node.consumers,
                node.route,
                node.discard,
                owner,
                dispatcher=dispatcher(node.consumers, node.route),
                buffer_size=None,
                demand="accumulate",
            )
            assert pid is not None
            started.append(pid)
            pids.append(pid)
        return tuple(pids)
    stage_plan = node.plan
    options = {
        "dispatcher": dispatcher(stage_plan.consumers, stage_plan.route),
        "buffer_size": None,
    }
    if isinstance(node, _Bridge):
        pid = FlowStage.start_link(
            stage_plan, 0, len(node.producers), node.producers, owner, **options
        )
        assert pid is not None
        started.append(pid)
        return (pid,)
    producers = start(node.upstream, started)
    routed = _routes(node.upstream)
    for index in range(node.count):
        subscription = stage_plan.subscription()
        if routed:
            subscription["partition"] = index
        pid = FlowStage.start_link(
            stage_plan,
            index,
            len(producers),
            (),
            owner,
            subscribe_to=[(p, subscription) for p in producers],
            **options,
        )
        assert pid is not None
        started.append(pid)
        pids.append(pid)
    return tuple(pids)


def default_stages() -> int:
    return os.cpu_count() or 1


# -- consuming ----------------------------------------------------------------------------------------


def _exit_error(reason: Any) -> ExitError:
    err = ExitError(reason, "Flow")
    if isinstance(reason, BaseException):
        err.__cause__ = reason
    return err


class _Matcher:
    """Selects a flow's messages in its consumer's mailbox (holds no reference to the iterator).

    Those are the events and cancels of its subscriptions, and the Downs of its
    monitors of the flow's processes: ``refs`` holds both kinds of refs.
    """

    __slots__ = ("refs",)

    def __init__(self) -> None:
        self.refs: set[Ref] = set()

    def __call__(self, message: Any) -> bool:
        kind = type(message)
        return (kind is _Events or kind is _Cancel or kind is Down) and message.ref in self.refs


class FlowIterator(Iterator[T]):
    """The lazy iterator over a flow's results; what ``iter(flow)`` returns.

    The flow's processes start at the first ``next()``, in the current
    runtime, linked to the process that iterates (the *owner*), which is the
    flow's final consumer: it subscribes to the last stages as an otpy.stage
    consumer does, asks each for ``max_demand`` events, asks again (in steps
    of ``max_demand - min_demand``) for those it has received, and takes new events from its mailbox only when it has yielded
    all it holds, so a slow reader slows the whole flow down.

    When the flow ends, when :meth:`close` is called (``with flow.stream()
    as it:`` calls it), or when the iterator is garbage collected (as after
    ``break`` in a ``for`` loop over the flow), every process of the flow is
    stopped. A crash in any of them (a user function that raised, an
    iterable that failed, a ``from_stages`` producer that exited abnormally)
    kills the owner through the link, unless it traps exits; either way the
    iterator raises ``otpy.ExitError`` with the crash's reason and stops the
    rest of the flow. If the owner exits (even normally) the flow stops too.

    The owner alone may wait for events: ``next()`` from another process
    raises ``ValueError`` when the events already received are used up.
    """

    __module__ = "otpy.flow"

    def __init__(self, flow: Flow[T], *, discard: bool = False) -> None:
        self._flow = flow
        self._discard = discard
        self._owner: Pid | None = None
        self._pids: list[Pid] = []
        self._refs: list[Ref] = []
        self._buffer: deque[Any] = deque()
        self._subs: dict[Ref, tuple[Pid, Demand]] | None = None  # once started
        self._matcher = _Matcher()
        self._closed = False

    def __iter__(self) -> FlowIterator[T]:
        return self

    def __enter__(self) -> FlowIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __next__(self) -> T:
        if self._buffer:
            return self._buffer.popleft()  # type: ignore[no-any-return]
        if self._closed:
            raise StopIteration
        try:
            if self._subs is None:
                self._start()
            elif core.self() != self._owner:
                raise ValueError(
                    f"this flow is consumed by {self._owner!r}; iterate it in one process"
                )
            subs = self._subs
            assert subs is not None
            while not self._buffer and subs:
                self._handle(core.receive(match=self._matcher), subs)
        except ExitError as exc:  # killed through the link to a crashed process of the flow
            self.close()
            if exc.what == "Flow":
                raise
            raise _exit_error(exc.reason)  # its __cause__ is the crash, as with a Down
        except BaseException:
            self.close()
            raise
        if self._buffer:
            return self._buffer.popleft()  # type: ignore[no-any-return]
        self.close()
        raise StopIteration

    def _start(self) -> None:
        self._owner = core.self()
        flow = self._flow
        max_demand = flow._max_demand
        min_demand = max_demand // 2 if flow._min_demand is None else flow._min_demand
        node = plan(flow, 1, None, self._discard, None)
        try:
            producers = start(node, self._pids)
        finally:
            for pid in self._pids:  # also those started before a failed start
                ref = core.monitor(pid)
                self._refs.append(ref)
                self._matcher.refs.add(ref)
        if self._pids:
            core.prepare_kill_later(self._pids[0])  # for __del__
        me = core.self()
        subs: dict[Ref, tuple[Pid, Demand]] = {}
        for pid in producers:  # subscribe as a stage consumer does (automatic demand)
            ref = core.Ref()
            subs[ref] = (pid, Demand(max_demand, min_demand))
            self._matcher.refs.add(ref)
            core.send(pid, _Subscribe(me, ref, {}))
            core.send(pid, _Ask(ref, max_demand))
        self._subs = subs
        for pid in self._pids:
            core.send(pid, GO)

    def _handle(self, message: Any, subs: dict[Ref, tuple[Pid, Demand]]) -> None:
        kind = type(message)
        if kind is _Events:
            self._buffer.extend(message.events)
            sub = subs.get(message.ref)
            if sub is not None:
                more = sub[1].handled(len(message.events))
                if more:
                    core.send(sub[0], _Ask(message.ref, more))
        elif kind is _Cancel:  # a producer has sent its last events
            subs.pop(message.ref, None)
            if not core.is_normal_exit(message.reason):
                raise _exit_error(message.reason)
        else:  # the Down of one of the flow's processes: it died before the flow ended
            raise _exit_error(message.reason)

    def close(self) -> None:
        """Stop the flow's processes; the iterator yields nothing more (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        owner = self._owner
        if owner is None:
            return
        try:
            alive = core.self() == owner
        except ExitError:  # the owner was killed through a link: this was its last word
            alive = False
        if alive:
            for ref in self._refs:
                core.demonitor(ref, flush=True)
        for pid in self._pids:
            core.kill_quietly(pid, unlink=owner)
        if alive:
            while True:  # events sent before the kill must not linger in the owner's mailbox
                try:
                    core.receive(timeout=0, match=self._matcher)
                except Timeout:
                    break

    def __del__(self) -> None:
        # Dropped unfinished: stop the processes from whatever thread the collector runs
        # on, maybe inside a runtime lock (so the timer thread kills them).
        if not getattr(self, "_closed", True) and self._owner is not None:
            for pid in self._pids:
                core.kill_later(pid, unlink=self._owner)
