"""Messages, batch information and acknowledgement: the values a pipeline passes around.

A :class:`Message` is what a producer emits and what every callback of a
pipeline gets: frozen, so a processor that changes it returns a new one.
Its ``acknowledger`` is ``(acknowledger, ack_ref, ack_data)``: the object
that tells the broker, what it needs to find the delivery (``ack_ref``:
for example the producer's connection and channel), and the delivery's own
data (``ack_data``: the delivery tag, the entry id). :func:`ack_messages`
groups finished messages by ``(acknowledger, ack_ref)`` and makes one
``ack`` call per group, as Broadway does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

__all__ = [
    "NOOP",
    "Ack",
    "Acknowledger",
    "BatchInfo",
    "Message",
    "NoopAcknowledger",
    "ack_immediately",
    "ack_messages",
]

_log = logging.getLogger("otpy.pipeline")

BatchMode = Literal["bulk", "flush"]


@runtime_checkable
class Acknowledger(Protocol):
    """What tells the broker that messages are done (Broadway's ``Acknowledger``).

    ``ack(ack_ref, successful, failed)`` gets every finished message of one
    ``ack_ref``, at most once each; ``failed`` messages have
    ``status == ("failed", reason)``. It runs in the stage that finished the
    messages and must not block for long; an exception in it is logged, never
    crashes the stage. An acknowledger may also define
    ``configure(ack_ref, ack_data, options) -> ack_data`` for
    :meth:`Message.configure_ack` (e.g. ``on_failure="reject"`` for one
    message).
    """

    def ack(self, ack_ref: Any, successful: list[Message], failed: list[Message]) -> None: ...


class NoopAcknowledger:
    """An acknowledger that does nothing: for messages already acked, or never to be."""

    __module__ = "otpy.pipeline"

    def ack(self, ack_ref: Any, successful: list[Message], failed: list[Message]) -> None:
        return None

    def configure(self, ack_ref: Any, ack_data: Any, options: dict[str, Any]) -> Any:
        return ack_data

    def __repr__(self) -> str:
        return "otpy.pipeline.NOOP"


NOOP = NoopAcknowledger()
"""The shared no-op acknowledger."""


def _check_status(value: object) -> None:
    if value == "ok":
        return
    if type(value) is tuple and len(value) == 2 and value[0] == "failed":
        return
    raise ValueError(f"a message's status is 'ok' or ('failed', reason); got {value!r}")


def _check_mode(value: object) -> None:
    if value not in ("bulk", "flush"):
        raise ValueError(f"batch_mode must be 'bulk' or 'flush'; got {value!r}")


# The types whose ``ack`` attribute (on the type itself) was found callable: a
# message of such an acknowledger needs no getattr, unless the instance has an
# ``ack`` of its own. Adding is idempotent and a
# set's add and lookup are each atomic (also on free-threaded CPython, where
# every set has its own lock), so it needs no lock of ours; a type missing here
# only costs the full check once more.
_ACKER_TYPES: set[type] = {NoopAcknowledger}


def _check_acknowledger(value: object) -> None:
    """The full check of a message's acknowledger (``Message.__init__`` passes known kinds)."""
    if not (type(value) is tuple and len(value) == 3):
        raise TypeError(
            f"a message's acknowledger is (acknowledger, ack_ref, ack_data); got {value!r}"
        )
    acknowledger = value[0]
    kind = type(acknowledger)
    if not callable(getattr(acknowledger, "ack", None)):
        raise TypeError(
            f"the acknowledger of a message needs an ack(ack_ref, successful, failed) method; "
            f"got {acknowledger!r}"
        )
    if callable(getattr(kind, "ack", None)):
        _ACKER_TYPES.add(kind)


_NOOP_ACK = (NOOP, None, None)


@attrs.frozen(repr=False, init=False, slots=False)
class Message:
    """One message of a pipeline: data, metadata, and how to acknowledge it.

    Example::

        msg = pl.Message(b'{"id": 1}', metadata={"delivery_tag": 7})
        msg = msg.update_data(json.loads).put_batcher("db").put_batch_key(msg.data["id"] % 4)
        msg.failed(ValueError("bad order"))       # a new message with status ("failed", exc)

    Attributes:
        data: the payload (the producer decides its type: bytes from RabbitMQ,
            a dict of fields from a Redis stream).
        metadata: a dict about the delivery (ids, headers, delivery counts).
        acknowledger: ``(acknowledger, ack_ref, ack_data)``; ``None`` at
            construction means a no-op acknowledger.
        batcher: the batcher a processor routes it to (``"default"``).
        batch_key: messages with the same key are batched together (``"default"``).
        batch_mode: ``"bulk"`` (batches fill up or time out) or ``"flush"``
            (its batch leaves as soon as it reaches the batcher).
        status: ``"ok"`` or ``("failed", reason)``; the reason is the exception
            object for a callback that raised.

    Raises:
        TypeError: ``metadata`` is not a dict (or None), or ``acknowledger`` is
            not ``(object with ack(), ack_ref, ack_data)``.
        ValueError: ``batch_mode`` or ``status`` is not one of its values.
    """

    # Every producer makes one per delivery, so __init__ is written by hand: it
    # checks what attrs' converters and validators would, and stores the fields
    # straight into the instance dict (a frozen class refuses setattr), about
    # three times faster than the generated one.
    data: Any
    metadata: dict[str, Any] = attrs.field(factory=dict)
    acknowledger: tuple[Any, Any, Any] = _NOOP_ACK
    batcher: Any = "default"
    batch_key: Any = "default"
    batch_mode: BatchMode = "bulk"
    status: Any = "ok"

    def __init__(
        self,
        data: Any,
        metadata: dict[str, Any] | None = None,
        acknowledger: tuple[Any, Any, Any] | None = None,
        batcher: Any = "default",
        batch_key: Any = "default",
        batch_mode: BatchMode = "bulk",
        status: Any = "ok",
    ) -> None:
        if metadata is None:
            metadata = {}
        elif type(metadata) is not dict and not isinstance(metadata, dict):
            raise TypeError(f"a message's metadata is a dict (or None); got {metadata!r}")
        if acknowledger is None:
            acknowledger = _NOOP_ACK
        elif (
            type(acknowledger) is not tuple
            or len(acknowledger) != 3
            or type(acknowledger[0]) not in _ACKER_TYPES
            or "ack" in getattr(acknowledger[0], "__dict__", ())  # an instance's own ack
        ):
            _check_acknowledger(acknowledger)  # a kind not seen yet, or a wrong value
        if batch_mode != "bulk":
            _check_mode(batch_mode)
        if status != "ok":
            _check_status(status)
        fields = self.__dict__
        fields["data"] = data
        fields["metadata"] = metadata
        fields["acknowledger"] = acknowledger
        fields["batcher"] = batcher
        fields["batch_key"] = batch_key
        fields["batch_mode"] = batch_mode
        fields["status"] = status

    def __repr__(self) -> str:
        extra = ""
        if self.batcher != "default":
            extra += f", batcher={self.batcher!r}"
        if self.batch_key != "default":
            extra += f", batch_key={self.batch_key!r}"
        if self.status != "ok":
            extra += f", status={self.status!r}"
        return f"otpy.pipeline.Message({self.data!r}, metadata={self.metadata!r}{extra})"

    def update_data(self, fn: Callable[[Any], Any]) -> Message:
        """A copy with ``data`` replaced by ``fn(data)``."""
        return attrs.evolve(self, data=fn(self.data))

    def put_data(self, data: Any) -> Message:
        """A copy with ``data`` replaced."""
        return attrs.evolve(self, data=data)

    def put_batcher(self, batcher: Any) -> Message:
        """A copy routed to the batcher named ``batcher``."""
        return attrs.evolve(self, batcher=batcher)

    def put_batch_key(self, batch_key: Any) -> Message:
        """A copy batched with the other messages of ``batch_key`` (must be hashable)."""
        hash(batch_key)
        return attrs.evolve(self, batch_key=batch_key)

    def put_batch_mode(self, batch_mode: BatchMode) -> Message:
        """A copy in ``batch_mode`` ``"bulk"`` or ``"flush"``."""
        return attrs.evolve(self, batch_mode=batch_mode)

    def failed(self, reason: Any) -> Message:
        """A copy marked failed with ``reason``: it is acked as failed (after ``handle_failed``)."""
        return attrs.evolve(self, status=("failed", reason))

    def configure_ack(self, **options: Any) -> Message:
        """A copy whose acknowledger was reconfigured with ``options`` (broker-specific).

        Raises:
            ValueError: the acknowledger does not support ``configure`` or the options.
        """
        acknowledger, ack_ref, ack_data = self.acknowledger
        configure = getattr(acknowledger, "configure", None)
        if configure is None:
            raise ValueError(
                f"{acknowledger!r} cannot be configured (it has no configure method); "
                f"got options {options!r}"
            )
        return attrs.evolve(self, acknowledger=(acknowledger, ack_ref, configure(ack_ref, ack_data, options)))


@attrs.frozen
class BatchInfo:
    """What ``handle_batch`` learns about its batch.

    Attributes:
        batcher: the batcher's name.
        batch_key: the batch key of every message in it.
        partition: the batch processor's index (when a batcher has
            ``concurrency > 1`` or the pipeline has ``partition_by``), else ``None``.
        size: how many messages the batch holds.
        trigger: why it left: ``"size"`` (full), ``"timeout"``
            (``batch_timeout`` after its first message) or ``"flush"`` (a
            flush-mode message, or a drain).
    """

    batcher: Any
    batch_key: Any
    partition: int | None
    size: int
    trigger: Literal["size", "timeout", "flush"]


@attrs.frozen
class Ack:
    """What a pipeline sends for ``Pipeline.test_message`` / ``test_batch`` once they are acked.

    Example::

        ref = pl.Pipeline.test_message("orders", {"id": 1})
        ack = otpy.receive(match=lambda m: isinstance(m, pl.Ack) and m.ref == ref)
        assert ack.failed == []

    Attributes:
        ref: the reference ``test_message``/``test_batch`` returned.
        successful: the messages acked as successful (as the pipeline left them).
        failed: the messages acked as failed.
    """

    ref: Any
    successful: list[Message]
    failed: list[Message]


def ack_messages(successful: Sequence[Message], failed: Sequence[Message]) -> int:
    """Acknowledge finished messages: one ``ack`` call per ``(acknowledger, ack_ref)`` group.

    Groups keep the order of the messages. An acknowledger that raises is
    logged on the ``otpy.pipeline`` logger and the other groups are still
    acked. Returns the number of groups.
    """
    groups: dict[tuple[int, Any], tuple[Any, Any, list[Message], list[Message]]] = {}
    first = successful[0] if successful else failed[0] if failed else None
    if first is not None:
        # The common case, one producer: every message has the first one's acknowledger
        # and ack_ref (the same objects), so they form one group without any hashing.
        acknowledger, ack_ref, _ = first.acknowledger
        for m in chain(successful, failed):  # a loop, not all(...): no generator per message
            ack = m.acknowledger
            if ack[0] is not acknowledger or ack[1] is not ack_ref:
                break
        else:
            groups[(0, 0)] = (acknowledger, ack_ref, list(successful), list(failed))
            successful = failed = ()
    for messages, failed_side in ((successful, False), (failed, True)):
        for message in messages:
            acknowledger, ack_ref, _ = message.acknowledger
            try:
                key = (id(acknowledger), ack_ref)
                hash(key)
            except TypeError:
                key = (id(acknowledger), id(ack_ref))
            group = groups.get(key)
            if group is None:
                group = groups[key] = (acknowledger, ack_ref, [], [])
            group[3 if failed_side else 2].append(message)
    for acknowledger, ack_ref, ok, bad in groups.values():
        try:
            acknowledger.ack(ack_ref, ok, bad)
        except Exception:
            _log.exception(
                "acknowledger %r failed to ack %d successful and %d failed message(s) of %r",
                acknowledger,
                len(ok),
                len(bad),
                ack_ref,
            )
    return len(groups)


def ack_immediately(messages: Message | Iterable[Message]) -> Any:
    """Acknowledge ``messages`` now (at-most-once for them) and return them with a no-op acknowledger.

    Messages whose status is failed are acked as failed. The returned
    messages are acked again by nobody: the pipeline's own ack at the end
    reaches the no-op acknowledger. One message in, one message out; a list
    in, a list out.

    Example::

        def handle_message(self, processor, message, context):
            message = pl.ack_immediately(message)   # the broker forgets it now
            slow_side_effect(message.data)
            return message
    """
    single = isinstance(messages, Message)
    batch: list[Message] = [messages] if isinstance(messages, Message) else list(messages)
    ok = [m for m in batch if m.status == "ok"]
    bad = [m for m in batch if m.status != "ok"]
    ack_messages(ok, bad)
    done = [attrs.evolve(m, acknowledger=(NOOP, None, None)) for m in batch]
    return done[0] if single else done


for _cls in (Message, BatchInfo, Ack):
    _cls.__module__ = "otpy.pipeline"
