"""Flow: a description of a parallel, back-pressured computation, run on processes.

See the package documentation (``otpy.flow``) for the guide; this module
holds the :class:`Flow` class and its chained methods.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar

from ._materialize import (
    Departitioned,
    Enumerables,
    FlowIterator,
    FromStages,
    Input,
    Partitioned,
    default_stages,
)
from ._ops import Emit, Mapper, MapperKind, OnTrigger, Op, Reduce, Tag, TopN, merge_top
from ._window import TriggerInfo, Window

__all__ = ["Flow"]

T = TypeVar("T")
U = TypeVar("U")
A = TypeVar("A")
K = TypeVar("K")

DEFAULT_MAX_DEMAND = 1000
"""Elixir Flow's (and GenStage's) default: batches of 500 events once the flow runs."""

_GLOBAL = Window.global_()


def _check_fn(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} needs a function; got {fn!r} of type {type(fn).__name__}")


def _check_int(value: object, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{what} must be an int >= {low}; got {value!r}")
    return value


def _options(
    stages: int | None, max_demand: int | None, min_demand: int | None, window: Window | None
) -> tuple[int, int, int | None, Window]:
    n = default_stages() if stages is None else _check_int(stages, "stages", 1)
    most = DEFAULT_MAX_DEMAND if max_demand is None else _check_int(max_demand, "max_demand", 1)
    if min_demand is not None:
        _check_int(min_demand, "min_demand", 0)
        if min_demand >= most:
            raise ValueError(
                f"min_demand must be less than max_demand; got min_demand={min_demand!r}, "
                f"max_demand={most!r}"
            )
    if window is None:
        window = _GLOBAL
    elif not isinstance(window, Window):
        raise TypeError(
            f"window must be an otpy.flow.Window (Window.global_(), .fixed(...), .periodic(...), "
            f".count(...)); got {window!r}"
        )
    return n, most, min_demand, window


class Flow(Generic[T]):
    """A computation over a stream of events, run in parallel on processes, back-pressured.

    Example::

        from otpy.flow import Flow

        counts = dict(
            Flow.from_enumerable(lines)
            .flat_map(str.split)
            .partition()                       # the same word always goes to the same stage
            .reduce(dict, lambda word, acc: acc.update({word: acc.get(word, 0) + 1}) or acc)
        )

    A flow is an immutable description: every method returns a new flow and
    nothing runs until the flow is iterated (``for event in flow``,
    ``list(flow)``, :meth:`stream`) or :meth:`run`. See the package
    documentation (``help(otpy.flow)``) for layers, partitions, windows and
    what runs where.
    """

    __module__ = "otpy.flow"
    __slots__ = ("_input", "_max_demand", "_min_demand", "_ops", "_stages", "_window")

    _input: Input
    _ops: tuple[Op, ...]
    _stages: int
    _max_demand: int
    _min_demand: int | None
    _window: Window

    def __init__(
        self,
        input: Input,
        ops: tuple[Op, ...],
        stages: int,
        max_demand: int,
        min_demand: int | None,
        window: Window,
    ) -> None:
        self._input = input
        self._ops = ops
        self._stages = stages
        self._max_demand = max_demand
        self._min_demand = min_demand
        self._window = window

    # -- sources -------------------------------------------------------------------------------

    @staticmethod
    def from_enumerable(
        iterable: Iterable[U],
        stages: int | None = None,
        max_demand: int | None = None,
        *,
        min_demand: int | None = None,
        window: Window | None = None,
    ) -> Flow[U]:
        """A flow reading ``iterable`` (any iterable, also an endless one) on demand.

        Options (they configure the first layer: the stages after the source):
            stages: how many stages (default ``os.cpu_count()``).
            max_demand: events a stage asks from its source at once (default
                1000); the source reads the iterable only as far as stages ask.
            min_demand: a stage asks again after ``max_demand - min_demand``
                events (default ``max_demand // 2``).
            window: the layer's window (default ``Window.global_()``).

        The iterable is iterated in a process of its own (the source); an
        iterator can be consumed once, so a flow over one runs once. Items are
        spread over the stages by demand, so their order is not kept. A flow
        with no operation before its first ``partition`` starts no stages
        here: the next layer takes the items from the source directly.

        Raises:
            TypeError: ``iterable`` is not iterable, or ``window`` is not a Window.
            ValueError: a bad number of stages or demand.
        """
        return Flow.from_enumerables(
            [iterable], stages, max_demand, min_demand=min_demand, window=window
        )

    @staticmethod
    def from_enumerables(
        iterables: Sequence[Iterable[U]],
        stages: int | None = None,
        max_demand: int | None = None,
        *,
        min_demand: int | None = None,
        window: Window | None = None,
    ) -> Flow[U]:
        """A flow reading several iterables, each in a source process of its own.

        Options as :meth:`from_enumerable`.

        Raises:
            TypeError: ``iterables`` is not a non-empty sequence of iterables.
            ValueError: a bad number of stages or demand.
        """
        if isinstance(iterables, (str, bytes)) or not isinstance(iterables, Sequence):
            raise TypeError(f"from_enumerables needs a list of iterables; got {iterables!r}")
        if not iterables:
            raise ValueError("from_enumerables needs at least one iterable; got an empty list")
        for iterable in iterables:
            if not isinstance(iterable, Iterable):
                raise TypeError(f"from_enumerables needs iterables; got {iterable!r}")
        n, most, least, win = _options(stages, max_demand, min_demand, window)
        return Flow(Enumerables(tuple(iterables)), (), n, most, least, win)

    @staticmethod
    def from_stages(
        producers: Sequence[object],
        stages: int | None = None,
        max_demand: int | None = None,
        *,
        min_demand: int | None = None,
        window: Window | None = None,
    ) -> Flow[Any]:
        """A flow consuming the events of ``otpy.stage`` producers (pids or names).

        The flow subscribes to every producer with ``cancel="transient"``: a
        producer ends its part of the input by exiting with ``"normal"`` or
        ``"shutdown"`` (for example by raising ``otpy.Stop("normal")`` after
        its last events); an abnormal exit makes the flow's iterator raise
        ``otpy.ExitError``. The flow does not stop the producers.

        Options as :meth:`from_enumerable` (``max_demand`` is what the flow asks
        of each producer at once).

        Raises:
            TypeError: ``producers`` is not a non-empty list.
            ValueError: a bad number of stages or demand.
        """
        if isinstance(producers, (str, bytes)) or not isinstance(producers, Sequence):
            raise TypeError(f"from_stages needs a list of producers; got {producers!r}")
        if not producers:
            raise ValueError("from_stages needs at least one producer; got an empty list")
        n, most, least, win = _options(stages, max_demand, min_demand, window)
        return Flow(FromStages(tuple(producers)), (), n, most, least, win)

    # -- building ---------------------------------------------------------------------------------

    def _with(self, op: Op) -> Flow[Any]:
        return Flow(
            self._input,
            (*self._ops, op),
            self._stages,
            self._max_demand,
            self._min_demand,
            self._window,
        )

    def _mapper(self, kind: MapperKind, fn: Callable[[Any], Any]) -> Flow[Any]:
        _check_fn(fn, f"Flow.{kind}")
        return self._with(Mapper(kind, fn))

    def _reduces(self) -> bool:
        return any(isinstance(op, Reduce) for op in self._ops)

    def _emits(self) -> bool:
        return any(isinstance(op, (Emit, OnTrigger)) for op in self._ops)

    def map(self, fn: Callable[[T], U]) -> Flow[U]:
        """Apply ``fn`` to every event, in the stages."""
        return self._mapper("map", fn)

    def flat_map(self, fn: Callable[[T], Iterable[U]]) -> Flow[U]:
        """Replace every event by the items of the iterable ``fn(event)``."""
        return self._mapper("flat_map", fn)

    def filter(self, fn: Callable[[T], object]) -> Flow[T]:
        """Keep the events for which ``fn(event)`` is true."""
        return self._mapper("filter", fn)

    def reject(self, fn: Callable[[T], object]) -> Flow[T]:
        """Drop the events for which ``fn(event)`` is true."""
        return self._mapper("reject", fn)

    def each(self, fn: Callable[[T], object]) -> Flow[T]:
        """Call ``fn(event)`` for its side effects; the events go on unchanged."""
        return self._mapper("each", fn)

    def partition(
        self,
        key: Callable[[T], Hashable] | None = None,
        hash: Callable[[T], int | None] | None = None,
        stages: int | None = None,
        *,
        window: Window | None = None,
        max_demand: int | None = None,
        min_demand: int | None = None,
    ) -> Flow[T]:
        """Start a new layer of ``stages`` stages; each event goes to the stage of its partition.

        Options:
            key: ``key(event)`` is hashed to choose the partition (default: the
                event itself). The hash is stable between runs
                (``otpy.PartitionSupervisor``'s), so equal keys always meet in
                the same stage.
            hash: ``hash(event)`` returns the partition number in
                ``range(stages)`` itself, or None to drop the event; it wins
                over ``key``.
            stages: how many stages (default ``os.cpu_count()``).
            window: the new layer's window (default ``Window.global_()``).
            max_demand / min_demand: the demand of the new stages towards the
                layer before (defaults 1000 and ``max_demand // 2``).

        The key or hash runs in the stages of the layer before.

        Raises:
            TypeError: ``key``/``hash`` is not callable, or ``window`` is not a Window.
            ValueError: a bad number of stages or demand.
        """
        if key is not None:
            _check_fn(key, "partition(key=)")
        if hash is not None:
            _check_fn(hash, "partition(hash=)")
        n, most, least, win = _options(stages, max_demand, min_demand, window)
        return Flow(Partitioned(self, key, hash), (), n, most, least, win)

    def reduce(self, acc_factory: Callable[[], A], reducer: Callable[[T, A], A]) -> Flow[Any]:
        """Fold the events of each stage and window: ``acc = reducer(event, acc)``.

        ``acc_factory()`` makes the accumulator of every window of every stage.
        When a window triggers, the stage emits per :meth:`emit` (by default
        the accumulator's items: a dict's ``(key, value)`` pairs). A layer
        reduces at most once; partition again to reduce again.

        Raises:
            TypeError: an argument is not callable.
            ValueError: this layer reduces already.
        """
        _check_fn(acc_factory, "Flow.reduce (acc_factory)")
        _check_fn(reducer, "Flow.reduce (reducer)")
        if self._reduces():
            raise ValueError(
                "this part of the flow reduces already (reduce/group_by); call partition() "
                "before reducing again, or use on_trigger() to change what the reduce emits"
            )
        return self._with(Reduce(acc_factory, reducer))

    def group_by(
        self, key_fn: Callable[[T], Hashable], value_fn: Callable[[T], Any] | None = None
    ) -> Flow[tuple[Any, list[Any]]]:
        """Reduce into a dict ``key_fn(event) -> [value_fn(event), ...]`` per stage and window.

        Values keep the order in which the stage received them; ``value_fn``
        defaults to the event itself.

        Raises:
            TypeError: an argument is not callable.
            ValueError: this layer reduces already.
        """
        _check_fn(key_fn, "Flow.group_by")
        if value_fn is not None:
            _check_fn(value_fn, "Flow.group_by (value_fn)")

        def group(event: Any, acc: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
            value = event if value_fn is None else value_fn(event)
            key = key_fn(event)
            values = acc.get(key)
            if values is None:
                acc[key] = [value]
            else:
                values.append(value)
            return acc

        return self.reduce(dict, group)

    def emit(self, what: Literal["events", "state", "nothing"]) -> Flow[Any]:
        """Choose what a reducing stage emits when a window triggers.

        ``"events"`` (the default): the accumulator's items (a mapping's
        ``(key, value)`` pairs, or an iterable's elements); ``"state"``: the
        accumulator itself, as one event; ``"nothing"``.

        Raises:
            ValueError: an unknown choice, no reduce before it, or an emit/on_trigger already.
        """
        if what not in ("events", "state", "nothing"):
            raise ValueError(f"emit takes 'events', 'state' or 'nothing'; got {what!r}")
        self._check_trigger_op("emit")
        return self._with(Emit(what))

    def on_trigger(self, fn: Callable[[Any, TriggerInfo], tuple[Iterable[Any], Any]]) -> Flow[Any]:
        """Decide what a trigger emits: ``fn(acc, info)`` returns ``(events, new_acc)``.

        ``info`` is a :class:`TriggerInfo` (partition, window, trigger name).
        ``new_acc`` is what the window goes on with (after ``"done"`` it is
        dropped); return a fresh accumulator to reset the window.

        Raises:
            TypeError: ``fn`` is not callable.
            ValueError: no reduce before it, or an emit/on_trigger already.
        """
        _check_fn(fn, "Flow.on_trigger")
        self._check_trigger_op("on_trigger")
        return self._with(OnTrigger(fn))

    def _check_trigger_op(self, what: str) -> None:
        if not self._reduces():
            raise ValueError(f"{what} works on what reduce/group_by accumulates; reduce first")
        if self._emits():
            raise ValueError(f"{what}: this part of the flow has an emit/on_trigger already")

    def departition(
        self,
        acc_factory: Callable[[], A],
        merge: Callable[[Any, A], A],
        done: Callable[[A], U] | None = None,
        *,
        max_demand: int | None = None,
        min_demand: int | None = None,
    ) -> Flow[U]:
        """Merge the states of all partitions into one stage, per window.

        Every stage of this layer sends what its triggers produce: its
        accumulator (or, after ``emit``/``on_trigger``/a mapper, each event it
        emits). The single new stage merges them per window,
        ``acc = merge(state, acc)`` starting from ``acc_factory()``, and emits
        ``done(acc)`` (default: ``acc``) once every partition has sent that
        window's ``"done"``, or at the end of input. Later operations run in
        that one stage.

        Raises:
            TypeError: an argument is not callable.
            ValueError: this layer does not reduce.
        """
        _check_fn(acc_factory, "Flow.departition (acc_factory)")
        _check_fn(merge, "Flow.departition (merge)")
        if done is not None:
            _check_fn(done, "Flow.departition (done)")
        return self._departition(
            "departition", acc_factory, merge, done or _identity, "state", max_demand, min_demand
        )

    def take_sort(
        self,
        n: int,
        key: Callable[[Any], Any] | None = None,
        reverse: bool = False,
        *,
        max_demand: int | None = None,
        min_demand: int | None = None,
    ) -> Flow[list[Any]]:
        """The ``n`` first events in sort order over all partitions, as one list per window.

        Each stage sorts what its triggers emit (``sorted(events, key=key,
        reverse=reverse)``; by default the accumulator's items), keeps ``n``,
        and one stage merges them. ``reverse=True`` keeps the largest.

        Raises:
            ValueError: ``n`` is not an int >= 1, or this layer does not reduce.
            TypeError: ``key`` is not callable.
        """
        n = _check_int(n, "take_sort's n", 1)
        if key is not None:
            _check_fn(key, "Flow.take_sort (key)")
        return self._departition(
            "take_sort",
            list,
            merge_top(n, key, bool(reverse)),
            _identity,
            TopN(n, key, bool(reverse)),
            max_demand,
            min_demand,
        )

    def _departition(
        self,
        what: str,
        acc_factory: Callable[[], Any],
        merge: Callable[[Any, Any], Any],
        done: Callable[[Any], Any],
        tag: Tag,
        max_demand: int | None,
        min_demand: int | None,
    ) -> Flow[Any]:
        if not self._reduces():
            raise ValueError(
                f"{what} merges what the partitions accumulate; call reduce/group_by before it"
            )
        _, most, least, _ = _options(1, max_demand, min_demand, None)
        inp = Departitioned(self, acc_factory, merge, done, tag)
        return Flow(inp, (), 1, most, least, _GLOBAL)

    # -- running ----------------------------------------------------------------------------------

    def __iter__(self) -> FlowIterator[T]:
        """Start the flow at the first ``next()``; see :class:`FlowIterator`."""
        return FlowIterator(self)

    def stream(self) -> FlowIterator[T]:
        """An iterator over the results that is also a context manager closing the flow.

        Example::

            with flow.stream() as results:
                first = next(results)       # leaving the block stops the flow
        """
        return FlowIterator(self)

    def run(self) -> None:
        """Run the flow to its end for its side effects; results are not sent anywhere.

        Raises:
            otpy.ExitError: a process of the flow crashed (``.reason`` says why).
        """
        for _ in FlowIterator(self, discard=True):
            pass

    def __repr__(self) -> str:
        return f"<otpy.Flow {' | '.join(_describe(self))}>"


def _identity(x: Any) -> Any:
    return x


def _describe(flow: Flow[Any]) -> list[str]:
    inp = flow._input
    if isinstance(inp, Enumerables):
        parts = [f"from_enumerables({len(inp.iterables)})"]
    elif isinstance(inp, FromStages):
        parts = [f"from_stages({len(inp.producers)})"]
    elif isinstance(inp, Partitioned):
        parts = [*_describe(inp.parent), f"partition(stages={flow._stages})"]
    else:
        parts = [*_describe(inp.parent), "departition"]
    if not flow._window.is_plain:
        parts[-1] += f" [{flow._window.kind} window]"
    for op in flow._ops:
        if isinstance(op, Mapper):
            parts.append(op.kind)
        elif isinstance(op, Reduce):
            parts.append("reduce")
        elif isinstance(op, Emit):
            parts.append(f"emit({op.mode!r})")
        else:
            parts.append("on_trigger")
    return parts
