"""``RabbitMQProducer``: a pipeline producer that consumes a RabbitMQ queue through pika.

Example::

    import otpy.pipeline as pl

    class Orders(pl.Pipeline):
        def handle_message(self, processor, message, context):
            order = json.loads(message.data)              # the body: bytes
            if "id" not in order:
                return message.failed("no id")            # settled per on_failure
            return message.put_data(order)

    Orders.start_link(
        name="orders",
        producer={"module": (pl.RabbitMQProducer, {
            "queue": "orders",
            "url": "amqp://guest:guest@localhost:5672/%2F",
            "declare": {"durable": True,
                        "arguments": {"x-dead-letter-exchange": "",
                                      "x-dead-letter-routing-key": "orders.dead"}},
        })},
        processors={"default": {"concurrency": 8, "max_demand": 10}},
    )

Each message's ``data`` is the delivery's body (``bytes``); ``metadata`` has
``delivery_tag``, ``redelivered``, ``exchange``, ``routing_key``, ``headers``
(a dict, ``{}`` when the message has none), ``content_type``, ``message_id``,
``correlation_id``, ``reply_to``, ``priority`` and ``timestamp`` (the last six
``None`` when the publisher did not set them).

Options (a dict, the producer's one ``init`` argument):

* ``queue`` (required): the queue to consume. ``""`` lets the broker name a
  new queue, which needs ``declare`` (each connection then gets a queue of its
  own).
* ``url`` (``"amqp://guest:guest@localhost:5672/%2F"``): an ``amqp://`` or
  ``amqps://`` URL as ``pika.URLParameters`` takes it, query options included
  (``?heartbeat=30&socket_timeout=5``). One that does not parse raises
  ``ValueError`` at start.
* ``prefetch_count``: the most deliveries RabbitMQ sends this producer before
  some are acked (``basic_qos``), an int from 1 to 65535. This is the
  back-pressure: the producer never holds more unacked deliveries than this.
  Default: what the pipeline passes as the internal option
  ``"_default_prefetch"`` (the processors' ``concurrency * max_demand``), else 50.
* ``declare`` (``None``): ``None`` means the queue must exist (until it does,
  the producer logs and retries as for a broker that is down); a dict is passed
  to pika's ``queue_declare`` on every connection: keys ``durable``,
  ``exclusive``, ``auto_delete``, ``passive`` (bools) and ``arguments`` (a
  dict, e.g. ``{"x-dead-letter-exchange": ""}``). Declaring is idempotent as
  long as the arguments match the queue's. An ``auto_delete`` queue is
  deleted by RabbitMQ when its last consumer cancels, a drain included.
* ``on_success`` (``"ack"``) and ``on_failure`` (``"reject_and_requeue_once"``):
  how a finished message is settled, one of ``"ack"``, ``"reject"`` (dropped,
  or dead-lettered if the queue has a dead-letter exchange),
  ``"reject_and_requeue"`` (always back to the queue: a message that always
  fails loops), and ``"reject_and_requeue_once"`` (back to the queue unless it
  was redelivered already, then rejected: a poison message is requeued at
  most once). One message can choose otherwise with
  ``message.configure_ack(on_failure="reject")`` (or ``on_success=``). Note
  that RabbitMQ marks every message it delivers again as redelivered,
  whatever the cause (a requeue, a lost connection, a drain that handed it
  back), so after one of those a failure is not requeued by ``"..._once"``.

Threads: a pika ``BlockingConnection`` may be used only by the thread that
made it, so each producer owns one connection and one thread, and nothing
else touches them. The thread connects, declares, sets ``basic_qos``, starts
``basic_consume`` and then runs ``process_data_events`` in a loop; every
delivery becomes a :class:`~otpy.pipeline.Message`, and what one round
delivered goes to the producer process in one message. The producer process
never blocks on RabbitMQ: it keeps the deliveries in its own buffer (at most
``prefetch_count`` of them) and emits them as its consumers ask. Acks come
from the stages that finish messages (processors, batch processors, on otpy
pool threads): they queue the settlements and wake the connection's thread
with ``connection.add_callback_threadsafe``, pika's one thread-safe method;
that thread sends ``basic_ack`` / ``basic_reject``, one per delivery tag (never
``multiple=True``, which would settle tags that other stages still hold).

Reconnection: a broker that is down at start, a connection the broker closes
(``rabbitmqctl close_all_connections``), a lost socket, a missing queue or a
consumer the broker cancels never crash the producer. The thread logs the
first failure of an outage on the ``otpy.pipeline`` logger (with the URL, its
password hidden), retries with growing delays (0.1 s up to 5 s, jittered),
logs the recovery and consumes again. Deliveries of the lost connection that
were not acked are redelivered by RabbitMQ (``redelivered=True``); their tags
are void: the producer drops the ones it had not handed out yet, and an ack
that arrives for one later is dropped and counted (``stale_acks`` in
:meth:`RabbitMQProducer.stats`, logged at debug level), never raised.

Observing it: ``RabbitMQProducer.stats(producer)`` returns ``connected``,
``prefetch_count``, ``connections`` (opened so far), ``failures`` (failed attempts and lost
connections), ``stale_acks`` and ``buffered`` (deliveries waiting for demand).

Drain: ``prepare_for_draining`` cancels the consumer (``basic_cancel``: no new
deliveries) and rejects with requeue the deliveries that were not handed to a
stage yet, so RabbitMQ gives them to another consumer at once; what was handed
out is finished and acked by the stages before the connection closes. When the
producer stops (however it stops: an exit hook stops the thread even when the
producer is killed), its thread settles the acks already queued, closes the
connection (RabbitMQ requeues whatever is still unacked) and ends.

What is hand-written and why: pika is the client. The threading discipline
around it (one owned thread per connection, ``add_callback_threadsafe`` for
everything from other threads), back-pressure from the stages' demand, the
ack policy, generations that void stale delivery tags, and reconnection are
ours, as they are in dramatiq's and Broadway's RabbitMQ brokers: pika offers
no consumer that fits an actor runtime with demand-driven stages.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar, Final, Literal

import attrs

try:
    import pika  # type: ignore[import-untyped,unused-ignore]
    import pika.exceptions  # type: ignore[import-untyped,unused-ignore]
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "otpy.pipeline.RabbitMQProducer needs the 'rabbitmq' extra: pip install 'otpy[rabbitmq]'"
    ) from _exc

from .. import _core as core
from .._gen_server import GenServer
from ..retry import RetryPolicy
from ..stage import Producer
from ._message import Message

__all__ = ["RabbitMQProducer", "validate_options"]

_log = logging.getLogger("otpy.pipeline")

AckMode = Literal["ack", "reject", "reject_and_requeue", "reject_and_requeue_once"]
_ACK_MODES: Final = ("ack", "reject", "reject_and_requeue", "reject_and_requeue_once")

_OPTIONS: Final = frozenset(
    {"queue", "url", "prefetch_count", "declare", "on_success", "on_failure"}
)
_INTERNAL_OPTIONS: Final = frozenset({"_default_prefetch", "_index", "_pipeline"})
"""Options a pipeline may pass: the prefetch it computed from its processors, the
producer's index and the pipeline's name (the last two in thread names and log lines)."""

_DECLARE_FLAGS: Final = ("durable", "exclusive", "auto_delete", "passive")

_DEFAULT_URL: Final = "amqp://guest:guest@localhost:5672/%2F"
_STANDALONE_PREFETCH: Final = 50
_MAX_PREFETCH: Final = 65535  # basic.qos prefetch-count is an AMQP short

_POLL: Final = 1.0
"""Seconds one ``process_data_events`` may wait; acks, drains and stops wake it sooner."""

_STABLE: Final = 10.0
"""Seconds a connection must have been up for the reconnection backoff to start over."""

_JOIN: Final = 5.0
"""Seconds ``terminate`` waits for the connection's thread to close the connection."""

_MAX_ERROR_TEXT: Final = 1000

_RECONNECT: Final = RetryPolicy(
    on=(pika.exceptions.AMQPError, OSError),
    attempts=2**62,
    timeout=None,
    wait_initial=0.1,
    wait_max=5.0,
    wait_jitter=0.25,
)
"""The waits between failed attempts to reach the queue (the thread never gives up)."""

_RETRYABLE: Final = (pika.exceptions.AMQPError, OSError)

_link_ids = itertools.count(1)  # next() on itertools.count is atomic


# -- options --------------------------------------------------------------------------------


@attrs.frozen
class _Config:
    queue: str
    url: str
    prefetch_count: int
    declare: dict[str, Any] | None
    on_success: AckMode
    on_failure: AckMode
    index: int | None
    pipeline: Any


def _prefetch(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"RabbitMQProducer option {key!r} must be an int from 1 to {_MAX_PREFETCH}; got {value!r}"
        )
    if not 1 <= value <= _MAX_PREFETCH:
        raise ValueError(
            f"RabbitMQProducer option {key!r} must be an int from 1 to {_MAX_PREFETCH} "
            f"(0, unlimited, would disable back-pressure); got {value!r}"
        )
    return value


def _ack_mode(value: object, key: str) -> AckMode:
    if value not in _ACK_MODES:
        raise ValueError(
            f"RabbitMQProducer option {key!r} must be one of "
            f"{', '.join(map(repr, _ACK_MODES))}; got {value!r}"
        )
    return value


def _declare(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(
            "RabbitMQProducer option 'declare' must be None (the queue must exist) or a dict "
            f"of queue_declare arguments, e.g. {{'durable': True}}; got {value!r}"
        )
    allowed = (*_DECLARE_FLAGS, "arguments")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ValueError(
            f"RabbitMQProducer option 'declare' has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(allowed)}"
        )
    for flag in _DECLARE_FLAGS:
        if flag in value and not isinstance(value[flag], bool):
            raise TypeError(
                f"RabbitMQProducer option 'declare': {flag!r} must be a bool; got {value[flag]!r}"
            )
    arguments = value.get("arguments")
    if arguments is not None and not (
        isinstance(arguments, dict) and all(isinstance(k, str) for k in arguments)
    ):
        raise TypeError(
            "RabbitMQProducer option 'declare': 'arguments' must be a dict with str keys "
            f"(or None); got {arguments!r}"
        )
    return dict(value)


def _parameters(url: str) -> Any:
    """pika's connection parameters for ``url``; ValueError naming the URL if it does not parse."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("amqp", "amqps"):
        raise ValueError(
            "RabbitMQProducer option 'url' must be an amqp:// or amqps:// URL, e.g. "
            f"{_DEFAULT_URL!r}; got {_safe_url(url)!r}"
        )
    try:
        return pika.URLParameters(url)
    except Exception as exc:  # pika raises ValueError, IndexError, ... for a bad URL
        raise ValueError(
            f"RabbitMQProducer option 'url' is not a usable AMQP URL ({_describe(exc)}); "
            f"got {_safe_url(url)!r}"
        ) from None


def _config(options: object) -> _Config:
    if not isinstance(options, dict):
        raise TypeError(
            f"RabbitMQProducer takes a dict of options, e.g. {{'queue': 'orders'}}; got {options!r}"
        )
    unknown = sorted(str(k) for k in options if k not in _OPTIONS and k not in _INTERNAL_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown RabbitMQProducer option(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(_OPTIONS))}"
        )
    if "queue" not in options:
        raise ValueError(f"RabbitMQProducer needs the option 'queue'; got {options!r}")
    queue = options["queue"]
    if not isinstance(queue, str):
        raise TypeError(
            f"RabbitMQProducer option 'queue' must be a str (the queue's name); got {queue!r}"
        )
    declare = _declare(options.get("declare"))
    if queue == "" and declare is None:
        raise ValueError(
            "RabbitMQProducer option 'queue' is '' (a server-named queue), which needs the "
            "option 'declare' (e.g. {'exclusive': True}) to create it"
        )
    url = options.get("url", _DEFAULT_URL)
    if not isinstance(url, str):
        raise TypeError(f"RabbitMQProducer option 'url' must be a str (an AMQP URL); got {url!r}")
    _parameters(url)
    if options.get("prefetch_count") is not None:
        prefetch = _prefetch(options["prefetch_count"], "prefetch_count")
    elif options.get("_default_prefetch") is not None:
        prefetch = _prefetch(options["_default_prefetch"], "_default_prefetch")
    else:
        prefetch = _STANDALONE_PREFETCH
    index = options.get("_index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise ValueError(f"RabbitMQProducer option '_index' must be an int >= 0; got {index!r}")
    return _Config(
        queue=queue,
        url=url,
        prefetch_count=prefetch,
        declare=declare,
        on_success=_ack_mode(options.get("on_success", "ack"), "on_success"),
        on_failure=_ack_mode(options.get("on_failure", "reject_and_requeue_once"), "on_failure"),
        index=index,
        pipeline=options.get("_pipeline"),
    )


def validate_options(options: object) -> dict[str, Any]:
    """Check a :class:`RabbitMQProducer`'s options without starting it or reaching RabbitMQ.

    A pipeline calls it when it is started, so a mistake is raised by its
    ``start_link`` rather than by a producer's restart.

    Example::

        validate_options({"queue": "orders"})["on_failure"]    # 'reject_and_requeue_once'

    Returns:
        The options with every default filled in (``prefetch_count`` resolved
        from ``"_default_prefetch"`` when the pipeline passed it).

    Raises:
        TypeError: ``options`` is not a dict, or an option has the wrong type.
        ValueError: an unknown option, a missing ``queue``, a value out of
            range, or a URL that does not parse.
    """
    config = _config(options)
    return {
        "queue": config.queue,
        "url": config.url,
        "prefetch_count": config.prefetch_count,
        "declare": config.declare,
        "on_success": config.on_success,
        "on_failure": config.on_failure,
    }


def _safe_url(url: str) -> str:
    """``url`` with its password hidden, for log lines and errors."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # a port that is not a number: hide everything before the host
        _, sep, tail = url.rpartition("@")
        return f"{url.split('://', 1)[0]}://***@{tail}" if sep else url
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _describe(reason: Any) -> str:
    text = (
        f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    )
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."


# -- deliveries and their settlement ----------------------------------------------------------


@attrs.frozen
class _Delivery:
    """A message's ``ack_data``: its delivery tag and how to settle it."""

    tag: int
    redelivered: bool
    on_success: AckMode | None = None  # None: the producer's
    on_failure: AckMode | None = None


_Op = Literal["ack", "reject", "requeue"]
"""What the connection's thread sends for one tag: basic_ack, basic_reject without or with requeue."""


def _op(mode: AckMode, redelivered: bool) -> _Op:
    if mode == "ack":
        return "ack"
    if mode == "reject":
        return "reject"
    if mode == "reject_and_requeue":
        return "requeue"
    return "reject" if redelivered else "requeue"  # reject_and_requeue_once


class _Deliveries:
    """Connection thread -> producer: the messages one round delivered."""

    __slots__ = ("generation", "link", "messages")

    def __init__(self, link: _Link, generation: int, messages: list[Message]) -> None:
        self.link = link
        self.generation = generation
        self.messages = messages


class _Lost:
    """Connection thread -> producer: connection ``generation`` is gone; its tags are void."""

    __slots__ = ("generation", "link")

    def __init__(self, link: _Link, generation: int) -> None:
        self.link = link
        self.generation = generation


class _Crashed:
    """Connection thread -> producer: the thread failed (a bug); the producer crashes with it."""

    __slots__ = ("exc", "link")

    def __init__(self, link: _Link, exc: Exception) -> None:
        self.link = link
        self.exc = exc


class _BrokerCancelled(Exception):
    """The broker cancelled our consumer (the queue was deleted, a node went down)."""


class _Link:
    """One producer's connection, channel and thread; also its messages' acknowledger.

    ``ack_ref`` is ``(link id, channel number, generation)``: the generation
    counts the connections this link opened, so a delivery tag of a closed
    connection is never sent on a newer one (tags are per channel, and a new
    channel starts at 1 again).
    """

    def __init__(self, producer: core.Pid, config: _Config) -> None:
        self.producer = producer
        self.config = config
        self.id = next(_link_ids)
        self.url = _safe_url(config.url)
        self.parameters = _parameters(config.url)
        self.on_success: AckMode = config.on_success
        self.on_failure: AckMode = config.on_failure
        # _cond's lock guards the fields below, which other threads (stages acking, the
        # producer) share with the connection's thread:
        #   _pending: settlements (generation, [(tag, op)]) waiting for the thread;
        #   _live: the generation whose channel is open now (None while disconnected):
        #          a settlement for another generation is stale at once;
        #   _connection: the open BlockingConnection, only to wake its thread;
        #   _stopping, _cancel: requests for the thread (stop; cancel the consumer);
        #   the counters for stats().
        # Invariant: every settlement handed to _submit is either sent by the thread or
        # counted in _stale, exactly once.
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[tuple[int, list[tuple[int, _Op]]]] = []
        self._live: int | None = None
        self._connection: Any = None
        self._stopping = False
        self._cancel = False
        self._stale = 0
        self._connections = 0
        self._failures = 0
        # Owned by the connection's thread; no lock:
        self._channel: Any = None
        self._generation = 0
        self._ack_ref: tuple[int, int, int] = (self.id, 0, 0)
        self._consumer_tag: str | None = None
        self._round: list[Message] = []  # deliveries of the current process_data_events
        self._broker_cancelled = False
        self._outage: Iterator[float] | None = None  # backoff waits while failing
        self._problem: str | None = None  # the failure logged for the current outage
        name = f"otpy-rabbitmq[{config.queue}]"
        if config.index is not None:
            name = f"otpy-rabbitmq[{config.queue}#{config.index}]"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __repr__(self) -> str:
        return f"<otpy.pipeline.RabbitMQProducer acknowledger queue={self.config.queue!r} id={self.id}>"

    # -- the acknowledger (any thread) --

    def ack(self, ack_ref: Any, successful: list[Message], failed: list[Message]) -> None:
        """Settle finished messages per their ``on_success`` / ``on_failure``."""
        ops: list[tuple[int, _Op]] = []
        for message in successful:
            delivery: _Delivery = message.acknowledger[2]
            ops.append(
                (delivery.tag, _op(delivery.on_success or self.on_success, delivery.redelivered))
            )
        for message in failed:
            delivery = message.acknowledger[2]
            ops.append(
                (delivery.tag, _op(delivery.on_failure or self.on_failure, delivery.redelivered))
            )
        self._submit(ack_ref[2], ops)

    def configure(self, ack_ref: Any, ack_data: Any, options: dict[str, Any]) -> Any:
        """``message.configure_ack(on_success=..., on_failure=...)`` for one message."""
        unknown = sorted(str(k) for k in options if k not in ("on_success", "on_failure"))
        if unknown:
            raise ValueError(
                "RabbitMQProducer messages take configure_ack(on_success=..., on_failure=...) "
                f"only; got {', '.join(map(repr, unknown))}"
            )
        changes = {key: _ack_mode(value, key) for key, value in options.items()}
        return attrs.evolve(ack_data, **changes)

    def requeue(self, messages: list[Message]) -> None:
        """Hand deliveries that no stage got back to RabbitMQ (basic_reject with requeue)."""
        by_generation: dict[int, list[tuple[int, _Op]]] = {}
        for message in messages:
            generation = message.acknowledger[1][2]
            by_generation.setdefault(generation, []).append(
                (message.acknowledger[2].tag, "requeue")
            )
        for generation, ops in by_generation.items():
            self._submit(generation, ops)

    def _submit(self, generation: int, ops: list[tuple[int, _Op]]) -> None:
        if not ops:
            return
        with self._cond:
            live = self._live == generation
            if live:
                self._pending.append((generation, ops))
                connection = self._connection
            else:
                self._stale += len(ops)
                total = self._stale
        if not live:
            _log.debug(
                "RabbitMQProducer dropped %d settlement(s) for connection %d of queue %r, which is "
                "closed (RabbitMQ redelivers those messages); %d stale in all",
                len(ops),
                generation,
                self.config.queue,
                total,
            )
            return
        self._wake(connection)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "connected": self._live is not None,
                "prefetch_count": self.config.prefetch_count,
                "connections": self._connections,
                "failures": self._failures,
                "stale_acks": self._stale,
            }

    # -- requests from the producer (or its exit hook) --

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Stop consuming (basic_cancel) and do not reconnect; acks still go out."""
        with self._cond:
            self._cancel = True
            connection = self._connection
            self._cond.notify()
        self._wake(connection)

    def stop(self, *_: Any) -> None:
        """Settle what is queued, close the connection and end the thread (also the exit hook)."""
        with self._cond:
            self._stopping = True
            connection = self._connection
            self._cond.notify()
        self._wake(connection)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _wake(self, connection: Any) -> None:
        """Make the thread's process_data_events return and settle what is queued."""
        if connection is None:
            return  # not connected: the thread settles (or counts) it when it gets there
        try:
            connection.add_callback_threadsafe(self._settle)
        except (pika.exceptions.ConnectionWrongStateError, OSError):
            pass  # closing: the thread counts what is queued as stale when it notices

    # -- the thread --

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug: the producer crashes with it, and is restarted
            _log.exception(
                "RabbitMQProducer connection thread %r failed; this is a bug in otpy", self
            )
            core.send_quiet(self.producer, _Crashed(self, exc))
        finally:
            self._gone()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._cancel and not self._stopping:  # draining: never connect again
                    self._cond.wait()
                if self._stopping:
                    return
            try:
                connection = self._open()
            except _RETRYABLE as exc:
                self._failed(exc, "connect to")
                continue
            opened = time.monotonic()
            try:
                self._serve(connection)
                return
            except (*_RETRYABLE, _BrokerCancelled) as exc:
                self._lost(connection)
                if time.monotonic() - opened >= _STABLE:
                    self._outage = None  # it had been up a while: the backoff starts over
                self._failed(exc, "consume from")

    def _open(self) -> Any:
        """Connect, declare, set the prefetch and start consuming; returns the connection."""
        config = self.config
        connection = pika.BlockingConnection(self.parameters)
        try:
            channel = connection.channel()
            queue = config.queue
            if config.declare is not None:
                queue = channel.queue_declare(queue, **config.declare).method.queue
            channel.basic_qos(prefetch_count=config.prefetch_count)
            self._broker_cancelled = False
            channel.add_on_cancel_callback(self._on_broker_cancel)
            self._generation += 1
            self._ack_ref = (self.id, channel.channel_number, self._generation)
            self._consumer_tag = channel.basic_consume(queue, self._on_delivery)
        except BaseException:
            _close_quietly(connection)
            raise
        self._channel = channel
        with self._cond:
            self._live = self._generation
            self._connection = connection
            self._connections += 1
        return connection

    def _serve(self, connection: Any) -> None:
        """Consume until asked to stop (then close and return) or the connection fails (raise)."""
        self._recovered()
        cancelled = False
        while True:
            with self._cond:
                stopping = self._stopping
                cancel = self._cancel and not cancelled
            if stopping:
                self._settle()
                with self._cond:
                    self._live = None
                    self._connection = None
                _close_quietly(connection)  # RabbitMQ requeues what is still unacked
                return
            if cancel:
                cancelled = True
                if self._consumer_tag is not None and not self._broker_cancelled:
                    self._channel.basic_cancel(self._consumer_tag)  # pika requeues late deliveries
                self._consumer_tag = None
            connection.process_data_events(time_limit=_POLL)
            self._forward()
            self._settle()
            if self._broker_cancelled and not cancelled:
                raise _BrokerCancelled(
                    f"RabbitMQ cancelled the consumer of queue {self.config.queue!r}"
                )

    def _on_delivery(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        headers = properties.headers
        metadata = {
            "delivery_tag": method.delivery_tag,
            "redelivered": bool(method.redelivered),
            "exchange": method.exchange,
            "routing_key": method.routing_key,
            "headers": dict(headers) if headers else {},
            "content_type": properties.content_type,
            "message_id": properties.message_id,
            "correlation_id": properties.correlation_id,
            "reply_to": properties.reply_to,
            "priority": properties.priority,
            "timestamp": properties.timestamp,
        }
        delivery = _Delivery(method.delivery_tag, bool(method.redelivered))
        self._round.append(Message(body, metadata, (self, self._ack_ref, delivery)))

    def _on_broker_cancel(self, frame: Any) -> None:
        self._broker_cancelled = True

    def _forward(self) -> None:
        if self._round:
            messages, self._round = self._round, []
            core.send_quiet(self.producer, _Deliveries(self, self._generation, messages))

    def _settle(self) -> None:
        """Send the queued settlements of the open channel (runs in the connection's thread)."""
        with self._cond:
            batch, self._pending = self._pending, []
        channel = self._channel
        for i, (generation, ops) in enumerate(batch):
            if generation != self._generation or channel is None or not channel.is_open:
                self._count_stale(batch[i:])
                return
            for j, (tag, op) in enumerate(ops):
                try:
                    if op == "ack":
                        channel.basic_ack(tag)
                    else:
                        channel.basic_reject(tag, requeue=op == "requeue")
                except BaseException:
                    self._count_stale([(generation, ops[j:]), *batch[i + 1 :]])
                    raise

    def _count_stale(self, batch: list[tuple[int, list[tuple[int, _Op]]]]) -> None:
        n = sum(len(ops) for _, ops in batch)
        if n:
            with self._cond:
                self._stale += n
                total = self._stale
            _log.debug(
                "RabbitMQProducer dropped %d settlement(s) of a closed channel of queue %r "
                "(RabbitMQ redelivers those messages); %d stale in all",
                n,
                self.config.queue,
                total,
            )

    def _lost(self, connection: Any) -> None:
        """The connection failed: void its tags, tell the producer, close what is left."""
        with self._cond:
            self._live = None
            self._connection = None
            batch, self._pending = self._pending, []
        self._count_stale(batch)
        self._round = []  # their tags are void; RabbitMQ redelivers them
        self._channel = None
        self._consumer_tag = None
        core.send_quiet(self.producer, _Lost(self, self._generation))
        _close_quietly(connection)

    def _gone(self) -> None:
        """The thread ends: whatever is still queued will never be sent."""
        with self._cond:
            self._live = None
            self._connection = None
            batch, self._pending = self._pending, []
        self._count_stale(batch)

    def _failed(self, exc: BaseException, what: str) -> None:
        """Log the first failure of an outage, then wait the next backoff delay (or a stop)."""
        problem = _describe(exc)
        with self._cond:
            self._failures += 1
        if self._outage is None:
            self._outage = _RECONNECT.delays()
        delay = next(self._outage)
        if self._problem is None:
            self._problem = problem
            _log.warning(
                "RabbitMQProducer could not %s queue %r at %s: %s; retrying with backoff",
                what,
                self.config.queue,
                self.url,
                problem,
            )
        else:
            _log.debug("RabbitMQProducer still failing at %s: %s", self.url, problem)
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or self._cancel, timeout=delay)

    def _recovered(self) -> None:
        """Connected again: log it; the next failure is logged again (the backoff goes on
        growing until a connection stays up for ``_STABLE`` seconds, so a connection that
        keeps failing right after it opens is not retried ten times a second)."""
        if self._problem is not None:
            self._problem = None
            _log.info("RabbitMQProducer consumes queue %r at %s again", self.config.queue, self.url)


def _close_quietly(connection: Any) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception as exc:  # closing what already failed: nothing more to do with it
        _log.debug("RabbitMQProducer: closing a failed connection raised %s", _describe(exc))


# -- the producer ---------------------------------------------------------------------------


class _Stats:
    """The request of :meth:`RabbitMQProducer.stats`."""


_STATS = _Stats()


class RabbitMQProducer(Producer):
    """A pipeline producer consuming a RabbitMQ queue (``otpy[rabbitmq]``, pika).

    Example::

        producer={"module": (pl.RabbitMQProducer, {"queue": "orders", "declare": {"durable": True}})}

    See the module documentation (``otpy.pipeline._rabbitmq``) for every
    option, which thread does what, how messages are settled, reconnection
    and the drain.
    """

    __module__ = "otpy.pipeline"

    pipeline_options: ClassVar[frozenset[str]] = _INTERNAL_OPTIONS
    """The internal options a pipeline adds to this producer's options (see ``_options.py``)."""

    validate_options = staticmethod(validate_options)
    """Called by ``Pipeline.start_link`` with the producer's options, before anything starts."""

    # Owned by the producer process; no lock:
    _link: _Link
    _buffer: deque[Message]  # delivered, not yet emitted: at most prefetch_count per connection
    _demand: int  # asked for by the consumers and not met yet
    _draining: bool

    def init(self, options: dict[str, Any]) -> None:
        config = _config(options)
        self._buffer = deque()
        self._demand = 0
        self._draining = False
        self._link = _Link(core.self(), config)
        core.on_exit(core.self(), self._link.stop)  # also when killed: terminate would not run
        self._link.start()

    @staticmethod
    def stats(producer: object, timeout: float | None = 5.0) -> dict[str, Any]:
        """What a running producer reports: ``connected`` (bool), ``prefetch_count``
        (as resolved from the options), ``connections`` (opened
        so far), ``failures`` (failed attempts and lost connections), ``stale_acks``
        (settlements dropped because their connection had closed) and ``buffered``
        (deliveries waiting for demand).

        Raises:
            otpy.NoProcError: ``producer`` is not alive.
            otpy.Timeout: it did not answer within ``timeout``.
        """
        return GenServer.call(producer, _STATS, timeout)  # type: ignore[no-any-return]

    def handle_demand(self, demand: int) -> list[Message] | None:
        self._demand += demand
        return self._take()

    def _take(self) -> list[Message] | None:
        n = min(self._demand, len(self._buffer))
        if n == 0:
            return None
        self._demand -= n
        buffer = self._buffer
        return [buffer.popleft() for _ in range(n)]

    def handle_info(self, message: Any) -> Any:
        kind = type(message)
        if kind is _Deliveries and message.link is self._link:
            if self._draining:
                self._link.requeue(message.messages)
                return None
            self._buffer.extend(message.messages)
            return self._take()
        if kind is _Lost and message.link is self._link:
            if self._buffer:
                generation = message.generation
                self._buffer = deque(m for m in self._buffer if m.acknowledger[1][2] != generation)
            return None
        if kind is _Crashed and message.link is self._link:
            raise message.exc
        return super().handle_info(message)

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request is _STATS:
            return {**self._link.stats(), "buffered": len(self._buffer)}
        return super().handle_call(request, caller)

    def prepare_for_draining(self) -> list[Message]:
        """Cancel the consumer and requeue the deliveries no stage got; returns ``[]``.

        The stages finish and ack what they hold; those acks still go out on
        the open channel until the producer stops.
        """
        self._draining = True
        self._link.cancel()
        if self._buffer:
            held = list(self._buffer)
            self._buffer.clear()
            self._link.requeue(held)
            _log.info(
                "RabbitMQProducer draining queue %r: handed %d delivery(ies) no stage got back "
                "to RabbitMQ",
                self._link.config.queue,
                len(held),
            )
        return []

    def terminate(self, reason: Any) -> None:
        link = self._link
        link.stop()
        if not link.join(_JOIN):
            _log.warning(
                "RabbitMQProducer: the connection thread of queue %r did not end within %.1fs; "
                "it ends when its current network call returns",
                link.config.queue,
                _JOIN,
            )
