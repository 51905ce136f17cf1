"""The stages of a pipeline after its producers: processors, batchers, batch processors.

Broadway's ``ProcessorStage``, ``BatcherStage`` and ``BatchProcessorStage``,
on ``otpy.stage``:

* A **processor** subscribes to every producer (``max_demand``,
  ``min_demand``, and ``partition=`` its index with ``partition_by``). For
  each batch of messages it receives it runs ``prepare_messages``, then
  ``handle_message`` on each message (in a telemetry span, retried under the
  processor's ``retry`` policy). It is a consumer when the pipeline has no
  batchers and acks every message itself; otherwise a producer-consumer
  that acks the failed messages and sends the others on to the batcher
  their ``batcher`` names (by partition: each batcher subscribes with
  ``partition=`` its name).
* A **batcher** (one per batcher name) subscribes to every processor
  (``max_demand`` = the batcher's, default ``batch_size``) and groups
  messages by ``(batch_key, partition)``; a group leaves as a batch when it
  has ``batch_size`` messages (trigger ``"size"``), ``batch_timeout``
  seconds after its first message (``"timeout"``), when a flush-mode
  message joins it (``"flush"``), and on a drain (``"flush"``).
* A **batch processor** (``concurrency`` per batcher) subscribes to its
  batcher with ``max_demand=1`` and runs ``handle_batch`` on each batch,
  then acks it.

Every callback runs in the stage that handles the message (``otpy.self()``
is that processor or batch processor), each stage with an instance of the
pipeline class of its own. A callback that raises fails what it was given
(the message, the batch, the messages of ``prepare_messages``): status
``("failed", exc)``, logged with its traceback on the ``otpy.pipeline``
logger. Failed messages go through ``handle_failed`` and are acked with the
successful ones of the same stage, in one ``ack_messages`` call.

Subscriptions come back: all are ``cancel="temporary"``, and a stage whose
upstream stage went down subscribes again to its successor (looked up by
name) after ``resubscribe_interval``, so a killed stage is restarted by its
supervisor without taking its neighbours down. The messages the killed stage
held are never acked (the broker redelivers them).

The drain cascades in order. A producer that drained cancels its
subscriptions behind the last message it sent; a stage whose every upstream
subscription ended while the pipeline drains has handled everything it
received: a batcher then flushes its open batches, a producer-consumer waits
until its router sent every queued message on and cancels its own
subscriptions, and a consumer (a processor without batchers, a batch
processor) tells the pipeline it is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import attrs

from .. import _core as core
from .. import retry, stage, telemetry
from .._core import Pid, Ref, TimerRef
from ._message import BatchInfo, Message
from ._options import BatcherConfig
from ._router import Router
from ._shared import Shared, fail_all, finish, run_handle_failed

__all__ = [
    "Batch",
    "BatchProcessor",
    "Batcher",
    "Done",
    "ForwardingProcessor",
    "Processor",
    "WillTerminate",
]

_log = logging.getLogger("otpy.pipeline")

MESSAGE = ("otpy", "pipeline", "processor", "message")
MESSAGE_EVENTS = ((*MESSAGE, "start"), (*MESSAGE, "stop"), (*MESSAGE, "exception"))
BATCH_START = ("otpy", "pipeline", "batch_processor", "start")
BATCH_STOP = ("otpy", "pipeline", "batch_processor", "stop")


class WillTerminate:
    """Sent to every stage when the drain starts: finish once nothing more can come."""

    __slots__ = ()


class Done:
    """Sent by a consumer stage to the pipeline when it has finished in a drain."""

    __slots__ = ("pid",)

    def __init__(self, pid: Pid) -> None:
        self.pid = pid


class _Resubscribe:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _TryFinish:
    __slots__ = ()


_TRY_FINISH = _TryFinish()


@attrs.frozen
class Batch:
    """What a batcher sends a batch processor: the messages and their BatchInfo."""

    messages: list[Message]
    info: BatchInfo


def _overrides(module: type[Any], method: str) -> bool:
    from ._pipeline import Pipeline

    return getattr(module, method) is not getattr(Pipeline, method)


class _Member:
    """What every stage after the producers shares: coming-back subscriptions and the drain.

    State owned by the stage's process; no lock.
    """

    _shared: Shared
    _index: int
    _up_options: dict[str, Any]
    _names: dict[Pid, str]  # upstream pids being subscribed to -> their names
    _ups: dict[Ref, str]  # upstream subscriptions -> the upstream's name
    _downs: dict[Ref, Pid]  # downstream subscriptions (producer-consumers)
    _router: Router | None  # producer-consumers' dispatcher
    _finishing: bool
    _downs_cancelled: bool

    def _member_init(
        self,
        shared: Shared,
        index: int,
        names: dict[Pid, str],
        missing: list[str],
        options: dict[str, Any],
        router: Router | None,
    ) -> None:
        self._shared = shared
        self._index = index
        self._up_options = options
        self._names = dict(names)
        self._ups = {}
        self._downs = {}
        self._router = router
        self._finishing = False
        self._downs_cancelled = False
        for name in missing:
            self._later(name)
        if shared.draining.is_set():
            core.send(core.self(), WillTerminate())

    def _later(self, name: str) -> None:
        core.send_after(self._shared.config.resubscribe_interval, core.self(), _Resubscribe(name))

    # -- subscriptions ------------------------------------------------------------------

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: tuple[Pid, Ref]) -> str:
        pid, ref = from_
        if kind == "producer":
            self._ups[ref] = self._names.pop(pid, "")
        else:
            self._downs[ref] = pid
            if self._downs_cancelled:
                stage.cancel((core.self(), ref), "shutdown")
        return "automatic"

    def handle_cancel(self, reason: Any, from_: tuple[Pid, Ref]) -> Any:
        ref = from_[1]
        name = self._ups.pop(ref, None)
        if name is None:
            self._downs.pop(ref, None)
            return None
        if not self._shared.draining.is_set():
            if name:
                self._later(name)
            return None
        return self._maybe_finish()

    def _resubscribe(self, name: str) -> Any:
        if self._shared.draining.is_set():
            return self._maybe_finish()
        pid = core.whereis(name)
        if pid is None:
            self._later(name)
            return None
        self._names[pid] = name
        stage.async_subscribe(core.self(), to=pid, **self._up_options)
        return None

    def _member_info(self, message: Any) -> tuple[bool, Any]:
        """Handle a message of the pipeline's own; (handled, events to emit)."""
        kind = type(message)
        if kind is _Resubscribe:
            return True, self._resubscribe(message.name)
        if kind is WillTerminate:
            return True, self._maybe_finish()
        if kind is _TryFinish:
            self._try_finish()
            return True, None
        return False, None

    # -- the drain ----------------------------------------------------------------------

    def _flush(self) -> Any:
        """What to emit when finishing (a batcher's open batches)."""
        return None

    def _maybe_finish(self) -> Any:
        if self._finishing or self._ups or not self._shared.draining.is_set():
            return None
        self._finishing = True
        events = self._flush()
        core.send(core.self(), _TRY_FINISH)  # after what _flush returned was sent on
        return events

    def _try_finish(self) -> None:
        router = self._router
        me = core.self()
        if router is None:  # a consumer: done
            core.send(self._shared.topology, Done(me))
            return
        if self._downs_cancelled:
            return
        if router.pending():
            router.watch = lambda: core.send(me, _TRY_FINISH)
            return
        self._downs_cancelled = True
        for ref in list(self._downs):
            stage.cancel((me, ref), "shutdown")

    def _unexpected(self, message: Any) -> None:
        _log.warning(
            "pipeline %r: %s %r received an unexpected message: %r",
            self._shared.name,
            type(self).__name__,
            core.self(),
            message,
        )


# -- processors ----------------------------------------------------------------------------


class _ProcessorLogic(_Member):
    """handle_events of a processor (a consumer or a producer-consumer)."""

    _instance: Any
    _key: str
    _context: Any
    _policy: retry.RetryPolicy | None
    _batchers: frozenset[str] | None
    _prepare: bool
    _meta: dict[str, Any]

    def init(
        self,
        shared: Shared,
        index: int,
        names: dict[Pid, str],
        missing: list[str],
        options: dict[str, Any],
        router: Router | None,
    ) -> None:
        self._member_init(shared, index, names, missing, options, router)
        config = shared.config
        self._instance = config.module()
        self._key = config.processor_key
        self._context = config.context
        self._policy = config.retry
        self._batchers = frozenset(b.name for b in config.batchers) or None
        self._prepare = _overrides(config.module, "prepare_messages")
        self._meta = {"pipeline": shared.name, "processor": self._key, "index": index}

    def handle_info(self, message: Any) -> Any:
        handled, events = self._member_info(message)
        if not handled:
            self._unexpected(message)
        return events

    def handle_events(self, events: list[Message], from_: tuple[Pid, Ref]) -> Any:
        messages = events
        failed: list[Message] = []
        if self._prepare:
            messages, failed = self._prepare_messages(events)
        successful: list[Message] = []
        handlers = telemetry._handlers_for
        start, stop, exception = MESSAGE_EVENTS
        traced = bool(handlers(start) or handlers(stop) or handlers(exception))
        if traced or self._policy is not None:
            handle = self._traced if traced else self._handle
            for message in messages:
                done = handle(message)
                (successful if done.status == "ok" else failed).append(done)
        else:
            # The common case, written out: _handle without a retry policy, and
            # _check's work only for what is not a plain successful message.
            handle_message = self._instance.handle_message
            key, context, batchers = self._key, self._context, self._batchers
            for message in messages:
                try:
                    done = handle_message(key, message, context)
                except Exception as exc:
                    self._log_failure(message, exc)
                    failed.append(message.failed(exc))
                    continue
                if type(done) is not Message or batchers is not None or done.status != "ok":
                    done = self._check(message, done)
                (successful if done.status == "ok" else failed).append(done)
        failed = run_handle_failed(self._instance, failed, self._context)
        if self._batchers is None:
            finish(self._shared, successful, failed)
            return None
        finish(self._shared, (), failed)
        return successful

    def _prepare_messages(self, events: list[Message]) -> tuple[list[Message], list[Message]]:
        try:
            prepared = self._instance.prepare_messages(list(events), self._context)
            if (
                not isinstance(prepared, list)
                or len(prepared) != len(events)
                or not all(isinstance(m, Message) for m in prepared)
            ):
                raise ValueError(
                    f"prepare_messages must return the {len(events)} messages it got "
                    f"(as pl.Message); got {prepared!r}"
                )
        except Exception as exc:
            _log.exception(
                "pipeline %r: prepare_messages failed; its %d message(s) fail",
                self._shared.name,
                len(events),
            )
            return [], fail_all(events, exc)
        return prepared, []

    def _call(self, message: Message) -> Any:
        instance = self._instance
        if self._policy is None:
            return instance.handle_message(self._key, message, self._context)
        return retry.call(
            instance.handle_message, self._key, message, self._context, policy=self._policy
        )

    def _handle(self, message: Message) -> Message:
        """handle_message on one message: the message it returned, or the original failed."""
        try:
            result = self._call(message)
        except Exception as exc:
            self._log_failure(message, exc)
            return message.failed(exc)
        return self._check(message, result)

    def _traced(self, message: Message) -> Message:
        try:
            with telemetry.span(MESSAGE, {**self._meta, "message": message}) as meta:
                result = self._call(message)
                meta["message"] = result
        except Exception as exc:
            self._log_failure(message, exc)
            return message.failed(exc)
        return self._check(message, result)

    def _check(self, message: Message, result: Any) -> Message:
        if not isinstance(result, Message):
            exc: Exception = TypeError(
                f"handle_message must return a pl.Message (the message it got, maybe "
                f"changed); got {result!r}"
            )
            self._log_failure(message, exc)
            return message.failed(exc)
        batchers = self._batchers
        if batchers is not None and result.status == "ok" and result.batcher not in batchers:
            exc = ValueError(
                f"handle_message routed the message to batcher {result.batcher!r}, which this "
                f"pipeline does not have; its batchers are {sorted(batchers)!r}"
            )
            self._log_failure(message, exc)
            return result.failed(exc)
        return result

    def _log_failure(self, message: Message, exc: Exception) -> None:
        _log.error(
            "pipeline %r: handle_message failed on %r; the message fails",
            self._shared.name,
            message,
            exc_info=exc,
        )


class Processor(_ProcessorLogic, stage.Consumer):
    """A processor of a pipeline without batchers: it acks every message."""


class ForwardingProcessor(_ProcessorLogic, stage.ProducerConsumer):
    """A processor of a pipeline with batchers: it sends successful messages on."""


# -- batchers ------------------------------------------------------------------------------


class _Open:
    """A batch being filled; owned by its batcher."""

    __slots__ = ("batch_key", "messages", "partition", "timer", "token")

    def __init__(self, batch_key: Any, partition: int | None, token: int) -> None:
        self.batch_key = batch_key
        self.partition = partition
        self.token = token
        self.messages: list[Message] = []
        self.timer: TimerRef | None = None


class _BatchTimeout:
    __slots__ = ("key", "token")

    def __init__(self, key: tuple[Any, int | None], token: int) -> None:
        self.key = key
        self.token = token


class Batcher(_Member, stage.ProducerConsumer):
    """Groups the messages of one batcher name into batches (see the module documentation)."""

    _config: BatcherConfig
    _open: dict[tuple[Any, int | None], _Open]
    _tokens: int
    _partition: Callable[[Any], int] | None
    _instance: Any

    def init(
        self,
        shared: Shared,
        index: int,
        names: dict[Pid, str],
        missing: list[str],
        options: dict[str, Any],
        router: Router | None,
        config: BatcherConfig,
    ) -> None:
        self._member_init(shared, index, names, missing, options, router)
        self._config = config
        self._open = {}
        self._tokens = 0
        partition_by = shared.config.partition_by
        if partition_by is None:
            self._partition = None
        else:
            from ._router import partition_key

            self._partition = partition_key(partition_by, config.concurrency)
        self._instance = None

    def handle_events(self, events: list[Message], from_: tuple[Pid, Ref]) -> Any:
        out: list[Batch] = []
        size = self._config.batch_size
        for message in events:
            partition: int | None = None
            try:
                if self._partition is not None:
                    partition = self._partition(message)
                key = (message.batch_key, partition)
                batch = self._open.get(key)
            except Exception as exc:
                self._fail(message, exc)
                continue
            if batch is None:
                batch = self._open_batch(key)
            batch.messages.append(message)
            if len(batch.messages) >= size:
                out.append(self._close(key, "flush" if message.batch_mode == "flush" else "size"))
            elif message.batch_mode == "flush":
                out.append(self._close(key, "flush"))
        return out

    def _open_batch(self, key: tuple[Any, int | None]) -> _Open:
        self._tokens += 1
        batch = _Open(key[0], key[1], self._tokens)
        batch.timer = core.send_after(
            self._config.batch_timeout, core.self(), _BatchTimeout(key, batch.token)
        )
        self._open[key] = batch
        return batch

    def _close(self, key: tuple[Any, int | None], trigger: Any) -> Batch:
        batch = self._open.pop(key)
        if batch.timer is not None:
            core.cancel_timer(batch.timer)
        info = BatchInfo(
            batcher=self._config.name,
            batch_key=batch.batch_key,
            partition=batch.partition,
            size=len(batch.messages),
            trigger=trigger,
        )
        return Batch(batch.messages, info)

    def _flush(self) -> Any:
        return [self._close(key, "flush") for key in list(self._open)]

    def _fail(self, message: Message, exc: Exception) -> None:
        _log.error(
            "pipeline %r: batcher %r cannot batch %r; the message fails",
            self._shared.name,
            self._config.name,
            message,
            exc_info=exc,
        )
        if self._instance is None:
            self._instance = self._shared.module()
        failed = run_handle_failed(
            self._instance, [message.failed(exc)], self._shared.config.context
        )
        finish(self._shared, (), failed)

    def handle_info(self, message: Any) -> Any:
        if type(message) is _BatchTimeout:
            batch = self._open.get(message.key)
            if batch is not None and batch.token == message.token:
                return [self._close(message.key, "timeout")]
            return None
        handled, events = self._member_info(message)
        if not handled:
            self._unexpected(message)
        return events


# -- batch processors ------------------------------------------------------------------------


class BatchProcessor(_Member, stage.Consumer):
    """Runs handle_batch on the batches of one batcher, and acks them."""

    _config: BatcherConfig
    _instance: Any
    _context: Any

    def init(
        self,
        shared: Shared,
        index: int,
        names: dict[Pid, str],
        missing: list[str],
        options: dict[str, Any],
        router: Router | None,
        config: BatcherConfig,
    ) -> None:
        self._member_init(shared, index, names, missing, options, router)
        self._config = config
        self._instance = shared.config.module()
        self._context = shared.config.context

    def handle_info(self, message: Any) -> Any:
        handled, events = self._member_info(message)
        if not handled:
            self._unexpected(message)
        return events

    def handle_events(self, events: list[Batch], from_: tuple[Pid, Ref]) -> None:
        for batch in events:
            self._handle(batch)

    def _handle(self, batch: Batch) -> None:
        info = batch.info
        if info.partition is None and self._config.concurrency > 1:
            info = attrs.evolve(info, partition=self._index)
        messages = batch.messages
        started = time.monotonic()
        if telemetry._handlers_for(BATCH_START):
            telemetry.execute(
                BATCH_START,
                {"monotonic_time": started, "system_time": time.time()},
                {"pipeline": self._shared.name, "batch_info": info},
            )
        try:
            result = self._instance.handle_batch(info.batcher, list(messages), info, self._context)
            if (
                not isinstance(result, list)
                or len(result) != len(messages)
                or not all(isinstance(m, Message) for m in result)
            ):
                raise ValueError(
                    f"handle_batch must return the {len(messages)} messages it got "
                    f"(as pl.Message); got {result!r}"
                )
        except Exception as exc:
            _log.error(
                "pipeline %r: handle_batch failed on a batch of %d message(s) of batcher %r; "
                "the batch fails",
                self._shared.name,
                len(messages),
                info.batcher,
                exc_info=exc,
            )
            successful: list[Message] = []
            failed = fail_all(messages, exc)
        else:
            successful = [m for m in result if m.status == "ok"]
            failed = [m for m in result if m.status != "ok"]
        failed = run_handle_failed(self._instance, failed, self._context)
        finish(self._shared, successful, failed)
        if telemetry._handlers_for(BATCH_STOP):
            now = time.monotonic()
            telemetry.execute(
                BATCH_STOP,
                {
                    "duration": now - started,
                    "monotonic_time": now,
                    "successful": len(successful),
                    "failed": len(failed),
                },
                {"pipeline": self._shared.name, "batch_info": info},
            )


# -- starting them ---------------------------------------------------------------------------


def start_member(
    cls: type[Any],
    shared: Shared,
    index: int,
    name: str,
    upstream: list[str],
    options: dict[str, Any],
    router: Router | None,
    *extra: Any,
) -> Pid | None:
    """Start a stage subscribed to the upstream stages (by name) that are running now.

    The others are subscribed to later, as they come (after ``resubscribe_interval``).
    """
    names: dict[Pid, str] = {}
    targets: list[tuple[Pid, dict[str, Any]]] = []
    missing: list[str] = []
    if not shared.draining.is_set():
        for up in upstream:
            pid = core.whereis(up)
            if pid is None:
                missing.append(up)
            else:
                names[pid] = up
                targets.append((pid, dict(options)))
    keywords: dict[str, Any] = {"subscribe_to": targets, "name": name}
    if router is not None:
        keywords["dispatcher"] = router
    started: Pid | None = cls.start_link(
        shared, index, names, missing, options, router, *extra, **keywords
    )
    return started
