"""``RedisStreamProducer``: a pipeline producer that reads a Redis stream through a consumer group.

Example::

    import otpy.pipeline as pl

    class Orders(pl.Pipeline):
        def handle_message(self, processor, message, context):
            order = message.data                      # {"id": "17", "total": "9.90"}: str fields
            if not order.get("id"):
                return message.failed("no id")        # acked as failed: see on_failure
            return message

    Orders.start_link(
        name="orders",
        producer={"module": (pl.RedisStreamProducer, {
            "stream": "orders", "group": "billing",
            "url": "redis://localhost:6379/0",
            "on_failure": "dead_letter",              # failed entries go to "orders:dead"
        })},
        processors={"default": {"concurrency": 8}},
    )

Each message's ``data`` is the entry's field dict (``str`` keys and values);
``metadata`` is ``{"id": entry_id, "stream": stream, "deliveries": n}``, where
``deliveries`` counts how often the group handed the entry out (1 for a first
read; a claim counts as a delivery).

Options (a dict, the producer's one ``init`` argument):

* ``stream`` (required): the stream's key.
* ``group`` (required): the consumer group. It is created at start with
  ``XGROUP CREATE stream group group_start_id MKSTREAM`` if it does not exist
  (an existing group is used as it is).
* ``consumer``: this producer's consumer name in the group. Default: unique
  per host, OS process and producer: ``"<host>-<os pid>-<index>-<n>"``, where
  ``index`` is the producer's index in its pipeline (the pipeline passes it
  as the internal option ``"_index"``; without it the part is left out) and
  ``n`` counts the producers this OS process started, so a restarted
  producer is a new consumer (its predecessor's pending entries are claimed
  after ``claim_idle``). A default-named consumer with nothing pending is
  removed from the group when its producer stops; a named one is kept.
* ``url`` (``"redis://localhost:6379/0"``): any URL ``redis.Redis.from_url``
  takes (``rediss://`` for TLS, query options such as ``?ssl_cert_reqs=none``).
  A URL that does not parse raises ``ValueError`` at start.
* ``group_start_id`` (``"0"``): where a *new* group starts: ``"0"`` reads what
  the stream already holds, ``"$"`` only what is added later.
* ``block`` (1.0 s): how long one ``XREADGROUP`` waits for new entries; it is
  also how soon the producer notices a stop while the stream is empty.
* ``claim_idle`` (60.0 s): entries pending in the group for longer than this
  (a consumer died, a stage holding them was killed, a failed entry left for
  retry) are claimed with ``XAUTOCLAIM`` and handled again. The producer
  looks for them at start and every ``claim_idle / 2``. It must be longer
  than any entry may take to get through the pipeline (handling, batching,
  retries), or a slow entry is handled twice.
* ``max_deliveries`` (5): an entry is handed out at most this many times; a
  claim that would hand it out once more moves it to the dead-letter stream
  instead, so a poison entry cannot loop forever.
* ``on_failure`` (``"retry"``): what happens to a failed message's entry:
  ``"retry"`` leaves it pending, to be claimed again after ``claim_idle``
  (until ``max_deliveries``); ``"ack"`` acknowledges it (it is dropped);
  ``"dead_letter"`` adds it to ``dead_letter_stream`` and acknowledges it.
  One message can choose otherwise with
  ``message.configure_ack(on_failure="ack")``.
* ``dead_letter_stream`` (``"<stream>:dead"``): a dead-lettered entry keeps its
  fields (as read, whatever the pipeline did to ``data``) and gains
  ``otpy_error`` (why: the failure's reason, or the delivery limit),
  ``otpy_stream``, ``otpy_group``, ``otpy_id`` (where it came from) and
  ``otpy_deliveries`` (how often it was handed out).

Back-pressure: ``XREADGROUP COUNT`` and ``XAUTOCLAIM COUNT`` are sized by the
demand the stages signalled and that no entry met yet. In a pipeline the
producer also reads ahead by the pipeline's ``_default_prefetch``
(processors' concurrency times ``max_demand``), so the processors need not wait
for a round trip to Redis; those entries wait in the producer until demand
takes them. So what was read and not handed on never exceeds the unmet
demand plus that much again (API.md: "a producer buffer of at most the same
size again"); started on its own, outside a pipeline, the producer reads
exactly what is demanded. While entries it read ahead still wait for demand,
it tops the read-ahead up only once half of it was taken, so a busy pipeline
reads in rounds of tens of entries, not in the few each ask frees.

Threads: the producer process never blocks on Redis. A reader thread owned by
the producer does the blocking ``XREADGROUP ... BLOCK``, the claims and the
dead-lettering of poison entries, and sends what it read to the producer as
messages; it stops when the producer stops, however that happens (an exit
hook on the producer tells it). Acks are made in the stages that finish the
messages (processors, batch processors) and sent by an ack thread of the
producer: one ``XACK`` carries every id acked since the previous one went
out, so acks cost the stages no round trip and coalesce under load.
Dead-lettering is sent at once by the acking stage: ``XADD`` to the
dead-letter stream, then ``XACK``, in one Lua script call (atomic, one round
trip; unlike ``MULTI``, an ``XADD`` that fails, e.g. out of memory, stops the
``XACK``, so the entry stays pending instead of being lost). redis-py
clients are thread-safe (a connection pool): all of these share one.

Failures: a broker that is down at start or goes away later never crashes the
producer: the reader retries with growing delays (0.1 s up to 5 s, jittered),
logging the first failure of an outage with the URL (password hidden) on the
``otpy.pipeline`` logger, then the recovery. A deleted stream or group is
made again. An ack that fails (connection lost) is logged once per outage and
never raises into the stage: the entries stay pending and are claimed again
after ``claim_idle``. Requires Redis 6.2 or later (``XAUTOCLAIM``).

Drain: ``prepare_for_draining`` stops the reader and returns every entry read
and not yet emitted (the pipeline emits them); from then on acks are sent by
the acking stage before ``ack`` returns. So when a pipeline's drain ends,
every entry read was handled and its ack is in Redis: none is left pending.
When the producer stops it sends the acks it still queues.

What is hand-written: redis-py is the client; the consumer-group policy on top
(demand-sized reads, claims, delivery limits, dead-lettering, grouped acks,
reconnection) is ours, because no package on PyPI implements it on an actor
runtime with back-pressure.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Final, Literal

import attrs

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.connection import parse_url
    from redis.retry import Retry
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "otpy.pipeline.RedisStreamProducer needs the 'redis' extra: pip install 'otpy[redis]'"
    ) from _exc

from .. import _core as core
from .._exceptions import Timeout
from ..retry import RetryPolicy
from ..stage import Producer
from ._message import Message

__all__ = ["RedisStreamProducer", "validate_options"]

_log = logging.getLogger("otpy.pipeline")

OnFailure = Literal["retry", "ack", "dead_letter"]
_ON_FAILURE: Final = ("retry", "ack", "dead_letter")

_OPTIONS: Final = frozenset(
    {
        "stream",
        "group",
        "consumer",
        "url",
        "group_start_id",
        "block",
        "claim_idle",
        "max_deliveries",
        "on_failure",
        "dead_letter_stream",
    }
)
_INTERNAL_OPTIONS: Final = frozenset({"_index", "_pipeline", "_concurrency", "_default_prefetch"})
"""Options a pipeline may pass: the producer's index (in the default consumer name), the
pipeline's name, how many producers it has, and ``_default_prefetch`` (its processors'
concurrency x max_demand): how many entries the producer may read ahead of demand."""

_IO_MARGIN: Final = 5.0
"""Seconds a Redis reply may take beyond a read's BLOCK before the socket times out."""

_CONNECT_TIMEOUT: Final = 5.0
_MAX_READ: Final = 1000
"""The most entries one XREADGROUP / XAUTOCLAIM asks for; more demand takes more calls."""

_ACK_GATHER: Final = 0.002
"""Seconds the ack flusher waits for more acks to send together (unless it has _ACK_ENOUGH)."""
_ACK_ENOUGH: Final = 500

_MAX_ACK: Final = 10_000
"""The most ids one XACK carries."""

_MAX_ERROR_TEXT: Final = 1000

_RECONNECT: Final = RetryPolicy(
    on=(redis.ConnectionError, redis.TimeoutError, OSError),
    attempts=2**62,
    timeout=None,
    wait_initial=0.1,
    wait_max=5.0,
    wait_jitter=0.25,
)
"""The waits of the reader between failed attempts to reach Redis (it never gives up)."""

_DEAD_LETTER: Final = """
local group, dead, i = ARGV[1], tonumber(ARGV[2]), 3
for _ = 1, dead do
  local n = tonumber(ARGV[i]) * 2
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
while i <= #ARGV do
  local last = math.min(i + 999, #ARGV)
  redis.call('XACK', KEYS[1], group, unpack(ARGV, i, last))
  i = last + 1
end
return dead
"""
"""Dead-letter entries, then XACK them and the successful ones: KEYS = (stream, dead-letter
stream), ARGV = (group, how many dead, then per dead entry its field count and fields, then
the ids to ack). A Lua script rather than MULTI: in a transaction an XADD that fails (out of
memory, wrong type) would not stop the XACK, and the entry would be lost; in a script the
error ends it before the XACK, and the entries stay pending."""

_consumer_numbers = itertools.count(1)  # next() on itertools.count is atomic


# -- options --------------------------------------------------------------------------------


@attrs.frozen
class _Config:
    stream: str
    group: str
    consumer: str | None
    url: str
    group_start_id: str
    block: float
    claim_idle: float
    max_deliveries: int
    on_failure: OnFailure
    dead_letter_stream: str
    index: int | None
    pipeline: Any
    prefetch: int


def _text(options: dict[str, Any], key: str, default: str | None, *, meaning: str) -> str | None:
    value = options.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(
            f"RedisStreamProducer option {key!r} must be a str ({meaning}); got {value!r}"
        )
    if not value:
        raise ValueError(f"RedisStreamProducer option {key!r} must be a non-empty str ({meaning})")
    return value


def _seconds(options: dict[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"RedisStreamProducer option {key!r} must be a number of seconds > 0; got {value!r}"
        )
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(
            f"RedisStreamProducer option {key!r} must be a finite number of seconds > 0; "
            f"got {value!r}"
        )
    return float(value)


def _check_url(url: str) -> None:
    try:
        parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        path = urllib.parse.urlparse(url).path.lstrip("/")
        pool = redis.ConnectionPool.from_url(url)
        pool.make_connection()  # query options a connection does not take; connects nothing
        pool.disconnect()
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"RedisStreamProducer option 'url' is not a Redis URL: {exc}; got {url!r}"
        ) from None
    if url.startswith(("redis://", "rediss://")) and path and "db" not in parsed:
        raise ValueError(
            "RedisStreamProducer option 'url': the path must be a database number "
            f"(redis://host:port/0); got {url!r}"
        )


def _count(options: dict[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"RedisStreamProducer option {key!r} must be an int >= {minimum}; got {value!r}"
        )
    if value < minimum:
        raise ValueError(
            f"RedisStreamProducer option {key!r} must be an int >= {minimum}; got {value!r}"
        )
    return value


def _config(options: object) -> _Config:
    if not isinstance(options, dict):
        raise TypeError(
            "RedisStreamProducer takes a dict of options, e.g. "
            f"{{'stream': 'orders', 'group': 'billing'}}; got {options!r}"
        )
    unknown = sorted(str(k) for k in options if k not in _OPTIONS and k not in _INTERNAL_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown RedisStreamProducer option(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(_OPTIONS))}"
        )
    for key in ("stream", "group"):
        if key not in options:
            raise ValueError(f"RedisStreamProducer needs the option {key!r}; got {options!r}")
    stream = _text(options, "stream", "", meaning="the stream's key")
    group = _text(options, "group", "", meaning="the consumer group")
    consumer = _text(
        options, "consumer", None, meaning="the consumer name, or None for a unique one"
    )
    url = _text(options, "url", "redis://localhost:6379/0", meaning="a Redis URL")
    start_id = _text(options, "group_start_id", "0", meaning='"0", "$" or an entry id')
    _check_url(url or "")
    max_deliveries = _count(options, "max_deliveries", 5, 1)
    on_failure = options.get("on_failure", "retry")
    if on_failure not in _ON_FAILURE:
        raise ValueError(
            "RedisStreamProducer option 'on_failure' must be 'retry', 'ack' or 'dead_letter'; "
            f"got {on_failure!r}"
        )
    dead = _text(options, "dead_letter_stream", None, meaning="the dead-letter stream's key")
    if dead == stream:
        raise ValueError(
            f"RedisStreamProducer option 'dead_letter_stream' must differ from 'stream'; got {dead!r}"
        )
    return _Config(
        stream=str(stream),
        group=str(group),
        consumer=consumer,
        url=str(url),
        group_start_id=str(start_id),
        block=_seconds(options, "block", 1.0),
        claim_idle=_seconds(options, "claim_idle", 60.0),
        max_deliveries=max_deliveries or 1,
        on_failure=on_failure,
        dead_letter_stream=dead if dead is not None else f"{stream}:dead",
        index=_count(options, "_index", None, 0),
        pipeline=options.get("_pipeline"),
        prefetch=_count(options, "_default_prefetch", 0, 0) or 0,
    )


def validate_options(options: object) -> dict[str, Any]:
    """Check a :class:`RedisStreamProducer`'s options without starting it or reaching Redis.

    A pipeline calls it when it is started, so a mistake is raised by its
    ``start_link`` rather than by a producer's restart.

    Example::

        validate_options({"stream": "orders", "group": "billing"})["block"]   # 1.0

    Returns:
        The options with every default filled in (``consumer`` stays ``None``
        when it is to be generated).

    Raises:
        TypeError: ``options`` is not a dict, or an option has the wrong type.
        ValueError: an unknown option, a missing ``stream`` or ``group``, a
            value out of range, or a URL that does not parse.
    """
    config = _config(options)
    return {
        "stream": config.stream,
        "group": config.group,
        "consumer": config.consumer,
        "url": config.url,
        "group_start_id": config.group_start_id,
        "block": config.block,
        "claim_idle": config.claim_idle,
        "max_deliveries": config.max_deliveries,
        "on_failure": config.on_failure,
        "dead_letter_stream": config.dead_letter_stream,
    }


def _safe_url(url: str) -> str:
    """``url`` with its password hidden, for log lines."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _describe(reason: Any) -> str:
    text = (
        f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    )
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."


# -- acknowledging --------------------------------------------------------------------------


class _Delivery:
    """A message's ``ack_data``: which entry it is and how to settle a failure.

    A plain slotted class, not attrs: the reader makes one per entry. Never
    changed once made (``with_on_failure`` makes a new one).
    """

    __slots__ = ("deliveries", "fields", "id", "on_failure")

    def __init__(
        self,
        id: str,
        fields: dict[str, str],  # the entry as read, for the dead-letter stream
        deliveries: int,
        on_failure: OnFailure | None = None,  # None: the producer's
    ) -> None:
        self.id = id
        self.fields = fields
        self.deliveries = deliveries
        self.on_failure = on_failure

    def __repr__(self) -> str:
        return (
            f"_Delivery(id={self.id!r}, fields={self.fields!r}, deliveries={self.deliveries!r}, "
            f"on_failure={self.on_failure!r})"
        )

    def with_on_failure(self, on_failure: OnFailure) -> _Delivery:
        return _Delivery(self.id, self.fields, self.deliveries, on_failure)


class _Acknowledger:
    """Acks the entries of one producer, for every stage that finishes its messages.

    Successful ids (and failed ones to ack) are queued and sent by a flusher
    thread, one ``XACK`` with everything queued while the previous one was on
    its way: the stages never wait for Redis, and acks coalesce under load.
    Dead-letters are sent at once, with their ``XACK``, in one script call.
    """

    def __init__(self, client: redis.Redis, config: _Config, consumer: str) -> None:
        self.client = client
        self.stream = config.stream
        self.group = config.group
        self.consumer = consumer
        self.dead_letter_stream = config.dead_letter_stream
        self.on_failure: OnFailure = config.on_failure
        self.url = _safe_url(config.url)
        self.label = (
            "RedisStreamProducer"
            if config.pipeline is None
            else f"RedisStreamProducer of pipeline {config.pipeline!r}"
        )
        self._dead_letter = client.register_script(_DEAD_LETTER)
        # _cond's lock guards _queue (ids to XACK, not sent yet), _sending (the flusher has
        # ids on their way), _closed (the producer is gone: acks are sent by the acking
        # stage itself, and connections closed after each use), _synchronous (a drain began:
        # acks are sent by the acking stage itself) and _failing (the last command failed:
        # an outage is logged once).
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[str] = []
        self._sending = False
        self._closed = False
        self._synchronous = False
        self._failing = False
        self._flusher = threading.Thread(
            target=self._flush_loop, name=f"otpy-redis-acks[{self.stream}/{consumer}]", daemon=True
        )
        self._flusher.start()

    def __repr__(self) -> str:
        return (
            f"<otpy.pipeline.RedisStreamProducer acknowledger stream={self.stream!r} "
            f"group={self.group!r} consumer={self.consumer!r}>"
        )

    def ack(self, ack_ref: Any, successful: list[Message], failed: list[Message]) -> None:
        """Settle finished messages: successful ones and failed ones per their ``on_failure``."""
        ids = [m.acknowledger[2].id for m in successful]
        dead: list[tuple[_Delivery, str]] = []
        for message in failed:
            delivery: _Delivery = message.acknowledger[2]
            mode = delivery.on_failure or self.on_failure
            if mode == "ack":
                ids.append(delivery.id)
            elif mode == "dead_letter":
                reason = message.status[1] if type(message.status) is tuple else message.status
                dead.append((delivery, _describe(reason)))
            # "retry": left pending, claimed again after claim_idle
        if dead:
            self.settle(ids, dead, "ack")
        elif ids:
            with self._cond:
                if not (self._closed or self._synchronous):
                    self._queue.extend(ids)
                    if len(self._queue) == len(ids) or len(self._queue) >= _ACK_ENOUGH:
                        self._cond.notify_all()  # the flusher waits for a first id, or for enough
                    return
            self.flush(_CONNECT_TIMEOUT + _IO_MARGIN)  # what was queued before goes first
            self.settle(ids, (), "ack")

    def synchronous(self) -> None:
        """From now on each ack is sent before ``ack`` returns (for a drain: when the last
        stage has acked, everything it acked is in Redis)."""
        with self._cond:
            self._synchronous = True

    def _flush_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # closed, and everything was sent
                # Let a few more acks join this XACK: under load they come every few
                # microseconds, and one round trip for many ids is what makes acks cheap.
                deadline = time.monotonic() + _ACK_GATHER
                while len(self._queue) < _ACK_ENOUGH and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                ids, self._queue = self._queue, []
                self._sending = True
            try:
                self.settle(ids, (), "ack")
            finally:
                with self._cond:
                    self._sending = False
                    self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until the queued acks were sent (or failed); False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """The producer is gone: send what is queued, end the flusher, close the connections.

        Stages may still ack messages of a producer that stopped: such an ack is
        sent by the stage itself on a connection that is closed after use, so no
        socket outlives its use.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._flusher.join(_CONNECT_TIMEOUT + _IO_MARGIN)

    def disconnect(self) -> None:
        """Close the idle connections (after :meth:`close`, each ack closes its own)."""
        self.client.connection_pool.disconnect(inuse_connections=False)

    def configure(self, ack_ref: Any, ack_data: Any, options: dict[str, Any]) -> Any:
        """``message.configure_ack(on_failure=...)``: this message's own failure handling."""
        unknown = sorted(str(k) for k in options if k != "on_failure")
        if unknown:
            raise ValueError(
                f"RedisStreamProducer messages take configure_ack(on_failure=...) only; "
                f"got {', '.join(map(repr, unknown))}"
            )
        if "on_failure" not in options:
            return ack_data
        mode = options["on_failure"]
        if mode not in _ON_FAILURE:
            raise ValueError(
                f"configure_ack(on_failure=...) takes 'retry', 'ack' or 'dead_letter'; got {mode!r}"
            )
        return ack_data.with_on_failure(mode)

    def dead_fields(self, delivery: _Delivery, why: str) -> dict[str, str]:
        fields = dict(delivery.fields)
        fields.update(
            otpy_error=why,
            otpy_stream=self.stream,
            otpy_group=self.group,
            otpy_id=delivery.id,
            otpy_deliveries=str(delivery.deliveries),
        )
        return fields

    def settle(self, ids: Sequence[str], dead: Sequence[tuple[_Delivery, str]], what: str) -> bool:
        """XACK ``ids`` and dead-letter ``dead`` (then XACK them too), in one round trip.

        Never raises: a failure is logged (once per outage) and the entries stay pending.
        """
        try:
            if dead:
                args: list[str] = [self.group, str(len(dead))]
                for delivery, why in dead:
                    fields = self.dead_fields(delivery, why)
                    args.append(str(len(fields)))
                    for item in fields.items():
                        args.extend(item)
                args.extend(ids)
                args.extend(delivery.id for delivery, _ in dead)
                self._dead_letter(
                    keys=[self.stream, self.dead_letter_stream], args=args, client=self.client
                )
            else:
                for start in range(0, len(ids), _MAX_ACK):
                    self.client.xack(self.stream, self.group, *ids[start : start + _MAX_ACK])
        except Exception as exc:
            with self._cond:
                first, self._failing = not self._failing, True
            level = logging.WARNING if first else logging.DEBUG
            _log.log(
                level,
                "%s could not %s %d entr%s of stream %r (group %r) at %s: %s; "
                "they stay pending and are claimed again after claim_idle",
                self.label,
                what,
                len(ids) + len(dead),
                "y" if len(ids) + len(dead) == 1 else "ies",
                self.stream,
                self.group,
                self.url,
                _describe(exc),
                exc_info=not isinstance(exc, redis.RedisError),
            )
            return False
        finally:
            with self._cond:
                closed = self._closed
            if closed:
                self.client.connection_pool.disconnect(inuse_connections=False)
        with self._cond:
            self._failing = False
        return True


# -- the reader thread --------------------------------------------------------------------


class _Read:
    """Reader -> producer: messages to emit."""

    __slots__ = ("messages", "reader")

    def __init__(self, reader: _Reader, messages: list[Message]) -> None:
        self.reader = reader
        self.messages = messages


class _Drained:
    """Reader -> producer: after a drain request, nothing more will be read."""

    __slots__ = ("reader",)

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader


class _ReaderFailed:
    """Reader -> producer: the reader thread ended with an unexpected exception."""

    __slots__ = ("exc", "reader")

    def __init__(self, reader: _Reader, exc: Exception) -> None:
        self.reader = reader
        self.exc = exc


class _Reader:
    """Reads entries for the demand its producer signals, on a thread of its own.

    The producer adds demand with :meth:`want`; the thread reads at most that
    many entries per round (claims first when one is due), subtracts what it
    read, and sends the messages to the producer. It never blocks the producer.
    """

    def __init__(
        self, producer: core.Pid, config: _Config, acknowledger: _Acknowledger, generated: bool
    ) -> None:
        self.producer = producer
        self.config = config
        self.acknowledger = acknowledger
        self.client = acknowledger.client
        self.consumer = acknowledger.consumer
        self.generated = generated  # the consumer name is ours: remove it from the group at the end
        self.url = acknowledger.url
        self.ack_ref = (config.stream, config.group, acknowledger.consumer)
        self.block_ms = max(1, round(config.block * 1000))
        self.claim_idle_ms = max(1, round(config.claim_idle * 1000))
        self.claim_every = config.claim_idle / 2
        # _cond's lock guards _wanted, _draining and _stopped. _wanted is how many entries
        # may still be read: the read-ahead allowance (config.prefetch) plus all demand
        # signalled, minus all entries read. The thread reads at most _wanted entries per
        # round and subtracts what it read before sending it, so what was read and not
        # handed on never exceeds the unmet demand plus the allowance.
        self._cond = threading.Condition(threading.Lock())
        self._wanted = config.prefetch
        # A round waits until _wanted reaches _low_water: half the read-ahead. Since
        # _wanted = prefetch + unmet demand - entries held, stages that wait for entries
        # (unmet demand above what is held) always pass it; otherwise only the
        # read-ahead is being topped up, and reading it in halves instead of in the few
        # entries each ask frees saves round trips (each costs as much as parsing tens
        # of entries). Without read-ahead (prefetch 0) every demand is read at once.
        self._low_water = max(1, config.prefetch // 2)
        self._draining = False
        self._stopped = False
        # Owned by the reader thread; no lock:
        self._cursor = "0-0"  # where the next XAUTOCLAIM scan starts
        self._outage: Iterator[float] | None = None  # backoff waits while Redis fails
        self._problem: str | None = None  # the failure logged for the current outage
        self._thread = threading.Thread(
            target=self._run,
            name=f"otpy-redis-reader[{config.stream}/{self.consumer}]",
            daemon=True,
        )

    def __repr__(self) -> str:
        return (
            f"<otpy.pipeline RedisStreamProducer reader {self.config.stream!r}/{self.consumer!r}>"
        )

    # -- called by the producer (or its exit hook) --

    def start(self) -> None:
        self._thread.start()

    def want(self, n: int) -> None:
        with self._cond:
            self._wanted += n
            self._cond.notify()

    def drain(self) -> None:
        with self._cond:
            self._draining = True
            self._cond.notify()

    def stop(self, *_: Any) -> None:
        """Stop the thread after its current Redis call (also the producer's exit hook)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()

    # -- the thread --

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # not a Redis error: the producer crashes with it (restarted)
            core.send_quiet(self.producer, _ReaderFailed(self, exc))
        finally:
            self.acknowledger.close()  # the queued acks go out first: then nothing may be pending
            self._forget_consumer()
            self.acknowledger.disconnect()

    def _loop(self) -> None:
        group_ready = False
        next_claim = time.monotonic()
        told_drained = False
        while True:
            n = 0
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if self._draining:
                        if not told_drained:
                            break
                    elif self._wanted >= self._low_water:
                        n = min(self._wanted, _MAX_READ)
                        break
                    self._cond.wait()
            if n == 0:  # a drain began: say that nothing more comes, then wait for the stop
                told_drained = True
                core.send_quiet(self.producer, _Drained(self))
                continue
            try:
                if not group_ready:
                    self._create_group()
                    group_ready = True
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + self.claim_every  # a claim that fails waits its turn
                    claimed = self._claim(n)
                    if claimed:
                        self._recovered()
                        continue
                self._read(n)
                self._recovered()
            except redis.ResponseError as exc:
                if str(exc).startswith("NOGROUP"):
                    group_ready = False  # the stream or the group was deleted: make them again
                self._failed(exc, "read from")
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._failed(exc, "reach")

    def _create_group(self) -> None:
        config = self.config
        try:
            self.client.xgroup_create(
                config.stream, config.group, id=config.group_start_id, mkstream=True
            )
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    def _message(self, entry_id: str, fields: dict[str, str], deliveries: int) -> Message:
        return Message(
            dict(fields),
            {"id": entry_id, "stream": self.config.stream, "deliveries": deliveries},
            (self.acknowledger, self.ack_ref, _Delivery(entry_id, fields, deliveries)),
        )

    def _deliver(self, messages: list[Message]) -> None:
        if not messages:
            return
        with self._cond:
            self._wanted -= len(messages)
        core.send_quiet(self.producer, _Read(self, messages))

    def _read(self, n: int) -> None:
        reply: Any = self.client.xreadgroup(
            self.config.group,
            self.consumer,
            {self.config.stream: ">"},
            count=n,
            block=self.block_ms,
        )
        messages = [
            self._message(entry_id, fields, 1)
            for _, entries in reply or ()
            for entry_id, fields in entries
            if fields is not None
        ]
        self._deliver(messages)

    def _claim(self, n: int) -> int:
        """Claim up to ``n`` entries idle longer than ``claim_idle``: emit them, or dead-letter
        those handed out ``max_deliveries`` times already. Returns how many were emitted."""
        config = self.config
        emitted = 0
        while emitted < n:
            reply: Any = self.client.xautoclaim(
                config.stream,
                config.group,
                self.consumer,
                self.claim_idle_ms,
                start_id=self._cursor,
                count=min(n - emitted, _MAX_READ),
            )
            cursor, entries = reply[0], reply[1]
            self._cursor = cursor
            entries = [(entry_id, fields) for entry_id, fields in entries if fields is not None]
            if entries:
                counts = self._delivery_counts([entry_id for entry_id, _ in entries])
                messages: list[Message] = []
                poison: list[tuple[_Delivery, str]] = []
                for entry_id, fields in entries:
                    deliveries = counts.get(entry_id)
                    if deliveries is None:
                        continue  # acked meanwhile (its first holder finished after all)
                    if deliveries > config.max_deliveries:
                        why = (
                            f"delivered {deliveries - 1} times without being acked "
                            f"(max_deliveries={config.max_deliveries})"
                        )
                        poison.append((_Delivery(entry_id, fields, deliveries - 1), why))
                    else:
                        messages.append(self._message(entry_id, fields, deliveries))
                if poison:
                    self.acknowledger.settle([], poison, "dead-letter")
                self._deliver(messages)
                emitted += len(messages)
            if cursor == "0-0":
                break
        return emitted

    def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        """How often each of ``ids`` was handed out (XPENDING), one round trip for all."""
        pipe = self.client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(self.config.stream, self.config.group, entry_id, entry_id, 1)
        counts: dict[str, int] = {}
        for found in pipe.execute():
            for pending in found:
                counts[pending["message_id"]] = int(pending["times_delivered"])
        return counts

    # -- failures --

    def _failed(self, exc: Exception, what: str) -> None:
        problem = f"{type(exc).__name__}: {exc}"
        if self._outage is None:
            self._outage = _RECONNECT.delays()
        delay = next(self._outage)
        if self._problem != problem:
            self._problem = problem
            _log.warning(
                "%s could not %s stream %r (group %r) at %s: %s; retrying with backoff",
                self.acknowledger.label,
                what,
                self.config.stream,
                self.config.group,
                self.url,
                problem,
            )
        else:
            _log.debug("%s still failing at %s: %s", self.acknowledger.label, self.url, problem)
        deadline = time.monotonic() + delay
        with self._cond:
            while not (self._stopped or self._draining):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)

    def _recovered(self) -> None:
        if self._outage is not None:
            self._outage = None
            self._problem = None
            _log.info(
                "%s reads stream %r (group %r) at %s again",
                self.acknowledger.label,
                self.config.stream,
                self.config.group,
                self.url,
            )

    def _forget_consumer(self) -> None:
        """Remove a generated consumer name from the group if nothing is pending under it."""
        if not self.generated or self._outage is not None:
            return
        config = self.config
        try:
            if not self.client.xpending_range(
                config.stream, config.group, "-", "+", 1, consumername=self.consumer
            ):
                self.client.xgroup_delconsumer(config.stream, config.group, self.consumer)
        except Exception as exc:  # best effort: an idle consumer name left in the group is harmless
            _log.debug("RedisStreamProducer could not remove consumer %r: %s", self.consumer, exc)


# -- the producer ---------------------------------------------------------------------------


class RedisStreamProducer(Producer):
    """A pipeline producer reading a Redis stream through a consumer group (``otpy[redis]``).

    Example::

        producer={"module": (pl.RedisStreamProducer, {"stream": "orders", "group": "billing",
                                                       "on_failure": "dead_letter"})}

    Messages: ``data`` is the entry's fields (a dict of str), ``metadata`` is
    ``{"id", "stream", "deliveries"}``. Options: ``stream``, ``group``
    (required), ``consumer``, ``url`` (``"redis://localhost:6379/0"``),
    ``group_start_id`` (``"0"``), ``block`` (1.0 s), ``claim_idle`` (60.0 s),
    ``max_deliveries`` (5), ``on_failure`` (``"retry"`` | ``"ack"`` |
    ``"dead_letter"``), ``dead_letter_stream`` (``"<stream>:dead"``). See the
    module documentation (``otpy.pipeline._redis``) for what each does, what
    is acked when, claims, dead-lettering, threads and reconnection.

    It can also run outside a pipeline, started with its options dict
    (``RedisStreamProducer.start_link({"stream": ..., "group": ...})``) and
    subscribed to by any consumer stage that acks with ``pl.ack_messages``.

    Raises:
        otpy.StartError: from ``start_link``, with the ``ValueError`` /
            ``TypeError`` of a bad option as its reason (a pipeline raises
            those from its own ``start_link``, see :func:`validate_options`).
    """

    __module__ = "otpy.pipeline"

    pipeline_options: ClassVar[frozenset[str]] = frozenset(
        {"_index", "_pipeline", "_default_prefetch"}
    )
    """The internal options a pipeline adds to this producer's options."""

    validate_options = staticmethod(validate_options)

    # Owned by the producer's process:
    _reader: _Reader
    _held: deque[Message]  # read ahead of demand; never more than config.prefetch
    _unmet: int  # demand handle_demand was given that no message met yet
    # Invariant: _held is empty or _unmet is 0 (demand takes held messages first).

    def init(self, options: dict[str, Any]) -> None:
        config = _config(options)
        generated = config.consumer is None
        consumer = config.consumer or _default_consumer(config.index)
        client = redis.Redis.from_url(
            config.url,
            decode_responses=True,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=config.block + _IO_MARGIN,
            retry=Retry(NoBackoff(), 1),  # a quick retry for a stale pooled connection
        )
        self._held = deque()
        self._unmet = 0
        acknowledger = _Acknowledger(client, config, consumer)
        self._reader = _Reader(core.self(), config, acknowledger, generated)
        core.on_exit(core.self(), self._reader.stop)  # also when killed: terminate would not run
        self._reader.start()

    def handle_demand(self, demand: int) -> list[Message] | None:
        self._reader.want(demand)
        held = self._held
        if not held:
            self._unmet += demand
            return None
        n = min(demand, len(held))
        self._unmet += demand - n
        return [held.popleft() for _ in range(n)]

    def handle_info(self, message: Any) -> Any:
        if type(message) is _Read:
            if message.reader is not self._reader:
                return None  # from the reader of an earlier incarnation: not ours to emit
            messages = message.messages
            if self._unmet >= len(messages):
                self._unmet -= len(messages)
                return messages
            n, self._unmet = self._unmet, 0
            self._held.extend(messages[n:])
            return messages[:n]
        if type(message) is _Drained:
            return None
        if type(message) is _ReaderFailed:
            if message.reader is self._reader:
                raise message.exc  # the producer cannot read any more: crash, to be restarted
            return None
        return super().handle_info(message)

    def prepare_for_draining(self) -> list[Message]:
        """Stop reading; return every entry read and not emitted yet, to be emitted (and acked).

        Waits (an otpy wait) for the reader's current Redis call, at most
        ``block`` plus a few seconds. The caller emits what it returns; those
        messages may exceed the demand (the read-ahead), so the drain must let
        them reach the processors before it ends the subscriptions.
        """
        reader = self._reader
        reader.drain()
        reader.acknowledger.synchronous()  # the drain's last ack is in Redis when it returns
        collected = list(self._held)
        self._held.clear()
        limit = reader.config.block + _IO_MARGIN + 1.0
        deadline = time.monotonic() + limit

        def ours(m: Any) -> bool:
            return type(m) in (_Read, _Drained) and m.reader is reader

        while True:
            try:
                message = core.receive(timeout=max(0.0, deadline - time.monotonic()), match=ours)
            except Timeout:
                _log.warning(
                    "RedisStreamProducer %r: the reader did not stop within %.1fs of the drain; "
                    "what it reads later stays pending until claimed",
                    reader,
                    limit,
                )
                break
            if type(message) is _Drained:
                break
            collected.extend(message.messages)
        self._unmet = max(0, self._unmet - len(collected))
        reader.acknowledger.flush(_CONNECT_TIMEOUT + _IO_MARGIN)  # acks queued before the drain
        return collected

    def terminate(self, reason: Any) -> None:
        self._reader.stop()
        # What the stages acked before the producer stopped reaches Redis before it is gone.
        self._reader.acknowledger.flush(_CONNECT_TIMEOUT + _IO_MARGIN)


def _default_consumer(index: int | None) -> str:
    number = next(_consumer_numbers)
    where = f"{socket.gethostname()}-{os.getpid()}"
    return f"{where}-{index}-{number}" if index is not None else f"{where}-{number}"
