"""The dispatchers of a pipeline's stages: who gets which message, and what waits.

Every stage of a pipeline that sends messages on (producers, processors that
feed batchers, batchers) dispatches with a :class:`Router`, an
``otpy.stage`` dispatcher of ours (the protocol of
``otpy.stage.Dispatcher``), for two reasons the stock dispatchers cannot
serve:

* It keeps every event it cannot send yet in its own queues and never hands
  any back to the stage's buffer, so the stage knows exactly what it still
  holds: a drain ends a stage's subscriptions only once what it holds has
  gone out (Broadway gets the same from GenStage's ``async_info``, which
  otpy's stages do not have).
* A producer's router counts what the producer emits (for the drain's
  ``unacked``) and applies the pipeline's rate limit to it.

Two modes, as GenStage's dispatchers: by demand (each event goes to the
consumer with the most demand; a stock ``DemandDispatcher``) or by
partition (``key(event)`` names the partition; each consumer subscribes with
``partition=`` one of them; a ``PartitionDispatcher``). A router belongs to
one stage process and runs inside it: no locks. ``otpy.stage`` copies a
dispatcher when it starts a stage; a router returns itself from that copy,
because the stage that owns it also keeps a reference (each start function
makes a fresh router, so no two processes ever share one).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ..stage._dispatchers import Outbox, Subscription, send_by_demand
from ._message import Message
from ._shared import Shared, finish, run_handle_failed

__all__ = ["ProducerRouter", "Router"]

_log = logging.getLogger("otpy.pipeline")


class _Skip:
    """What a partition key function returns for an event that was failed instead."""


_SKIP = _Skip()


class Router:
    """A dispatcher that queues what it cannot send yet (see the module documentation).

    Args:
        partitions: the partition names, or ``None`` for dispatch by demand.
        key: ``event -> partition`` (partitioned mode only).
    """

    options = frozenset({"partition"})

    def __init__(
        self,
        partitions: Sequence[Hashable] | None = None,
        key: Callable[[Any], Hashable] | None = None,
    ) -> None:
        # Owned by the stage's process; no lock.
        self._out: Outbox | None = None
        # Called (once) when pending() reaches 0 after it was set.
        self.watch: Callable[[], None] | None = None
        self._partitioned = partitions is not None
        # By demand: pending demand per subscription (keyed by its ref, which hashes
        # at C speed; _subs maps it back), and one queue. Invariant: the queue is
        # empty, or no subscription has demand.
        self._demands: dict[Any, int] = {}
        self._subs: dict[Any, Subscription] = {}
        self._queue: deque[Any] = deque()
        # By partition: the same per partition.
        self._key = key
        names = list(partitions or ())
        self._owner: dict[Hashable, Subscription] = {}
        self._partition_of: dict[Subscription, Hashable] = {}
        self._want: dict[Hashable, int] = dict.fromkeys(names, 0)
        self._queues: dict[Hashable, deque[Any]] = {name: deque() for name in names}

    def __deepcopy__(self, memo: dict[int, Any]) -> Router:
        return self  # one router per stage process: see the module documentation

    def __repr__(self) -> str:
        mode = f"partitions={list(self._queues)!r}" if self._partitioned else "by demand"
        return f"<otpy.pipeline router {mode}, {self.pending()} queued>"

    # -- what the owner asks --------------------------------------------------------

    def pending(self) -> int:
        """Events queued that a subscribed consumer can still get.

        Events queued for a partition nobody subscribes to (its stage is down)
        are not counted: a drain does not wait for them.
        """
        if self._partitioned:
            return sum(len(self._queues[name]) for name in self._owner)
        return len(self._queue) if self._demands else 0

    def _check_watch(self) -> None:
        watch = self.watch
        if watch is not None and self.pending() == 0:
            self.watch = None
            watch()

    # -- the Dispatcher protocol ----------------------------------------------------

    def subscribe(self, opts: dict[str, Any], sub: Subscription) -> None:
        if not self._partitioned:
            self._demands[sub[1]] = 0
            self._subs[sub[1]] = sub
            return
        if "partition" not in opts:
            raise ValueError(
                f"a subscription to this stage needs partition= one of {list(self._queues)!r}"
            )
        name = opts["partition"]
        if name not in self._queues:
            raise ValueError(
                f"unknown partition {name!r}; the partitions are {list(self._queues)!r}"
            )
        if name in self._owner:
            raise ValueError(f"partition {name!r} already has a consumer")
        self._owner[name] = sub
        self._partition_of[sub] = name
        self._want[name] = 0

    def cancel(self, sub: Subscription) -> int:
        if self._partitioned:
            name = self._partition_of.pop(sub, None)
            if name is not None:
                del self._owner[name]
                self._want[name] = 0
        else:
            self._demands.pop(sub[1], None)
            self._subs.pop(sub[1], None)
        self._check_watch()
        return 0

    def ask(self, demand: int, sub: Subscription, out: Outbox) -> int:
        self._out = out
        if self._partitioned:
            name = self._partition_of.get(sub)
            if name is None:
                return 0
            queue = self._queues[name]
            want = self._want[name] + demand
        else:
            if sub[1] not in self._demands:
                return 0
            queue = self._queue
            want = self._demands[sub[1]] + demand
        sent = 0
        if queue:
            sent = min(want, len(queue))
            out.send(sub, [queue.popleft() for _ in range(sent)])
            want -= sent
        if sent:
            self._check_watch()
        if self._partitioned:
            # What a partition's queue held was made for the demand of the partitions
            # that asked before (which is still unmet): it must not count against this
            # ask too, or partitions would wait for events nobody makes any more. So
            # the stage makes the whole ask; the queues hold at most the demand that
            # is still unmet (a consumer asks only for what it has room for).
            self._want[name] = want
            return demand
        self._demands[sub[1]] = want
        return max(0, demand - sent)

    def dispatch(self, events: list[Any], out: Outbox) -> list[Any]:
        self._out = out
        self.route(events)
        return []

    # -- routing --------------------------------------------------------------------

    def _partition(self, event: Any) -> Hashable:
        assert self._key is not None
        return self._key(event)

    def route(self, events: list[Any]) -> None:
        """Send ``events`` as far as demand allows; queue the rest (in order)."""
        if not events:
            return
        out = self._out
        if self._partitioned:
            batches: dict[Hashable, list[Any]] = {}
            for event in events:
                name = self._partition(event)
                if name is _SKIP:
                    continue
                queue = self._queues[name]
                if not queue and self._want[name] > 0:
                    self._want[name] -= 1
                    batches.setdefault(name, []).append(event)
                else:
                    queue.append(event)
            if batches:
                assert out is not None  # demand came with an ask, which set it
                for name, batch in batches.items():
                    out.send(self._owner[name], batch)
            return
        queue = self._queue
        if not queue and self._demands:
            assert out is not None  # demand came with an ask, which set it
            events = send_by_demand(self._demands, self._subs, events, out)
        queue.extend(events)


class ProducerRouter(Router):
    """A producer's router: counts and rate-limits what the producer emits.

    Every event must be a :class:`~otpy.pipeline.Message` (anything else
    crashes the producer with a ``TypeError``, as in Broadway). With a rate
    limit, emitted messages wait in ``held`` until the allowance grants them.
    With ``partition_by``, a message whose partition cannot be computed is
    failed with that exception and acked at once.
    """

    def __init__(
        self,
        shared: Shared,
        partitions: Sequence[Hashable] | None = None,
        key: Callable[[Any], Hashable] | None = None,
    ) -> None:
        super().__init__(partitions, key)
        self._shared = shared
        self._allowance = shared.allowance
        self._held: deque[Message] = deque()  # emitted, waiting for the rate limiter
        self._instance: Any = None  # the Pipeline instance, for handle_failed

    def pending(self) -> int:
        return len(self._held) + super().pending()

    def holding(self) -> bool:
        """Whether emitted messages wait for the rate limiter."""
        return bool(self._held)

    def dispatch(self, events: list[Any], out: Outbox) -> list[Any]:
        self._out = out
        for event in events:
            if not isinstance(event, Message):
                raise TypeError(
                    "a pipeline's producer must emit otpy.pipeline.Message values; got "
                    f"{event!r}: wrap each event in pl.Message(data, acknowledger=...)"
                )
        self._shared.count_emitted(len(events))
        if self._allowance is None:
            self.route(events)
        else:
            self._held.extend(events)
            self.release()
        self._check_watch()
        return []

    def push(self, messages: list[Message]) -> None:
        """Messages from ``test_message``/``test_batch``: counted, not rate limited."""
        self._shared.count_emitted(len(messages))
        self.route(messages)

    def release(self) -> None:
        """Send on the held messages the allowance grants now."""
        held = self._held
        allowance = self._allowance
        while held and allowance is not None:
            n = allowance.take(len(held))
            if n == 0:
                break
            self.route([held.popleft() for _ in range(n)])
        self._check_watch()

    def _partition(self, event: Any) -> Hashable:
        assert self._key is not None
        try:
            return self._key(event)
        except Exception as exc:
            _log.exception(
                "pipeline %r: partition_by raised for %r; the message fails",
                self._shared.name,
                event,
            )
            self._fail(event, exc)
            return _SKIP

    def _fail(self, message: Message, reason: Any) -> None:
        if self._instance is None:
            self._instance = self._shared.module()
        failed = run_handle_failed(
            self._instance, [message.failed(reason)], self._shared.config.context
        )
        finish(self._shared, [], failed)


def partition_key(partition_by: Callable[[Any], int], n: int) -> Callable[[Any], int]:
    """``message -> partition_by(message) % n``, checking that it is an int."""

    def key(message: Any) -> int:
        value = partition_by(message)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"partition_by must return an int; got {value!r} for {message!r}")
        return value % n

    return key
