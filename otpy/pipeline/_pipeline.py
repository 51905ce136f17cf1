"""``Pipeline``: Broadway's at-least-once, back-pressured, supervised pipelines for otpy.

Example::

    import json
    import otpy.pipeline as pl

    class Orders(pl.Pipeline):
        def handle_message(self, processor, message, context):
            return message.update_data(json.loads).put_batcher("db")

        def handle_batch(self, batcher, messages, batch_info, context):
            context.upsert_all([m.data for m in messages])
            return messages

    Orders.start_link(
        name="orders",
        producer={"module": (pl.RedisStreamProducer, {"stream": "orders", "group": "billing"})},
        processors={"default": {"concurrency": 8}},
        batchers={"db": {"batch_size": 100, "batch_timeout": 1.0}},
        context=db)
    ...
    pl.Pipeline.stop("orders")          # drains: everything read is handled and acked

What is hand-written and why: nothing on PyPI runs Broadway's model on an
actor runtime: stages that pull from a broker only as fast as processors ask
(back-pressure end to end), every message acknowledged exactly once after a
stage finished it (or never, when the stage that held it was killed, so
that the broker redelivers it), supervised stages that come back on their
own, and a drain that finishes what was read before a shutdown. Celery and
dramatiq run tasks, not acknowledged batches under back-pressure; Faust and
Bytewax are stream processors with their own runtimes. So the pipeline is
built here, on ``otpy.stage`` (one demand protocol for stages, Flow and
pipelines) and otpy's supervisors, following Broadway's design: see
``_topology`` (the tree), ``_producer`` (what runs around the user's
producer), ``_stages`` (processors, batchers, batch processors), ``_router``
(dispatch, rate limiting) and ``_options`` (every option and its default).

Callbacks (methods of your subclass; each stage has an instance of its own,
made with ``cls()``, so keep shared state in ``context``):

* ``handle_message(processor, message, context) -> message`` (required):
  runs in a processor (``otpy.self()`` is that processor; ``processor`` is
  the processors key, ``"default"``). Return the message, changed
  (``update_data``, ``put_batcher``...) or failed (``message.failed(r)``).
  An exception fails only that message, with the exception as its reason;
  with ``"retry": policy`` the call is retried first (waiting in that
  processor with ``otpy.sleep``; the others go on).
* ``handle_batch(batcher, messages, batch_info, context) -> messages``
  (required with batchers): runs in a batch processor. Return the messages
  (each possibly failed); an exception fails the whole batch.
* ``handle_failed(messages, context) -> messages`` (optional): runs where
  failed messages are acked, just before; what it returns is acked (if it
  raises, the error is logged and the originals are acked).
* ``prepare_messages(messages, context) -> messages`` (optional): runs in a
  processor on each batch of messages it received, before
  ``handle_message``; an exception fails all of them.

Acknowledgement: every message a processor or batch processor finishes is
acked exactly once, successful or failed, in one ``ack`` call per
``(acknowledger, ack_ref)`` group of what that stage finished together.
Processors ack what has no batcher to go to (all messages without batchers)
and what failed; batch processors ack their batches. A message held by a
stage that is killed is never acked: the broker redelivers it.

The drain: ``Pipeline.stop``, a ``"shutdown"`` exit from the pipeline's
supervisor (or from ``Runtime.shutdown``, ``otpy.run``) drain first. The
producers stop (``prepare_for_draining``), what was emitted is handled, the
open batches leave with trigger ``"flush"``, their acks go out; then the
stages stop. The drain waits at most ``shutdown`` seconds; what is not acked
by then stays with the broker. ``("otpy", "pipeline", "drain", "start")``
and ``("otpy", "pipeline", "drain", "stop")`` (measurements ``duration`` and
``unacked``: messages the producers emitted that were never acked, in the
drain or before it, e.g. held by a killed stage) frame it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal

from .. import _core as core
from .. import telemetry
from .._child_spec import ChildSpec, spec_with
from .._core import Down, Exit, Pid, Ref
from .._exceptions import NoProcError, StartError, Timeout
from .._gen_server import GenServer, Stop
from ._message import Ack, Message
from ._options import Config, check_rate_limiting, validate
from ._producer import Drain, Push
from ._rate_limit import Retune
from ._shared import Shared
from ._stages import Done, WillTerminate
from ._topology import start_tree

__all__ = ["Pipeline"]

_log = logging.getLogger("otpy.pipeline")

DRAIN_START = ("otpy", "pipeline", "drain", "start")
DRAIN_STOP = ("otpy", "pipeline", "drain", "stop")

_STOP_GRACE = 5.0
"""Seconds the stages' tree may take to stop after the drain, before it is killed."""


class _Topology(GenServer):
    """The pipeline's own process, registered as its name: owns the tree and runs the drain."""

    inline_calls = False

    # Owned by the process; no lock.
    _shared: Shared
    _sup: Pid | None

    def init(self, config: Config) -> None:
        core.trap_exits(True)
        self._sup = None
        self._shared = Shared(config, core.self())
        core.set_data(self._shared)  # what the client functions read, without a call
        try:
            self._sup = start_tree(self._shared)
        except StartError as exc:
            raise Stop(exc.reason) from None

    def handle_info(self, message: Any) -> None:
        if type(message) is Exit and message.pid == self._sup:
            self._sup = None
            raise Stop(message.reason)
        if type(message) in (Done, Exit):
            return  # a stage done after the drain stopped waiting; an old link
        super().handle_info(message)

    def terminate(self, reason: Any) -> None:
        sup = self._sup
        if sup is None or not core.is_alive(sup):
            return
        self._drain()
        ref = core.monitor(sup)
        core.exit(sup, "shutdown")
        try:
            core.receive(timeout=_STOP_GRACE, match=lambda m: type(m) is Down and m.ref == ref)
        except Timeout:
            _log.error(
                "pipeline %r: its stages did not stop within %ss of the drain; killing them",
                self._shared.name,
                _STOP_GRACE,
            )
            core.exit(sup, "kill")
            core.receive(match=lambda m: type(m) is Down and m.ref == ref)

    def _drain(self) -> None:
        shared = self._shared
        started = time.monotonic()
        telemetry.execute(
            DRAIN_START,
            {"monotonic_time": started, "system_time": time.time()},
            {"pipeline": shared.name},
        )
        shared.draining.set()
        waiting: dict[Pid, Ref] = {}
        for name in shared.last_stages:
            pid = core.whereis(name)
            if pid is not None:
                waiting[pid] = core.monitor(pid)
        for name in shared.producer_names:
            pid = core.whereis(name)
            if pid is not None:
                core.send(pid, Drain())
        for name in shared.member_stages:
            pid = core.whereis(name)
            if pid is not None:
                core.send(pid, WillTerminate())
        refs = {ref: pid for pid, ref in waiting.items()}
        limit = shared.config.shutdown
        deadline = None if limit is None else started + limit

        def ours(m: Any) -> bool:
            kind = type(m)
            return (kind is Done and m.pid in waiting) or (kind is Down and m.ref in refs)

        while waiting:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                message = core.receive(timeout=timeout, match=ours)
            except Timeout:
                _log.warning(
                    "pipeline %r: the drain did not finish within shutdown=%ss; "
                    "%d stage(s) still busy, stopping them",
                    shared.name,
                    limit,
                    len(waiting),
                )
                break
            pid = message.pid
            ref = waiting.pop(pid)
            refs.pop(ref, None)
            if type(message) is Done:
                core.demonitor(ref, flush=True)
        for ref in refs:
            core.demonitor(ref, flush=True)
        now = time.monotonic()
        telemetry.execute(
            DRAIN_STOP,
            {"duration": now - started, "monotonic_time": now, "unacked": shared.unacked()},
            {"pipeline": shared.name},
        )


# -- test messages -----------------------------------------------------------------------


class _Tracker:
    """The ack_ref of the messages of one test_message/test_batch call."""

    # _lock guards _successful, _failed, _left and _sent.
    def __init__(self, caller: Pid, ref: Ref, count: int) -> None:
        self._lock = threading.Lock()
        self.caller = caller
        self.ref = ref
        self._successful: list[Message] = []
        self._failed: list[Message] = []
        self._left = count
        self._sent = False

    def __repr__(self) -> str:
        return f"<test messages {self.ref!r} of {self.caller!r}>"

    def add(self, successful: list[Message], failed: list[Message]) -> None:
        with self._lock:
            self._successful.extend(successful)
            self._failed.extend(failed)
            self._left -= len(successful) + len(failed)
            send = self._left <= 0 and not self._sent
            if send:
                self._sent = True
                ack = Ack(self.ref, list(self._successful), list(self._failed))
        if send:
            core.send(self.caller, ack)


class _CallerAcknowledger:
    """Broadway's CallerAcknowledger, counted: one ``pl.Ack`` per test call, once all are acked."""

    def ack(self, ack_ref: _Tracker, successful: list[Message], failed: list[Message]) -> None:
        ack_ref.add(successful, failed)

    def configure(self, ack_ref: Any, ack_data: Any, options: dict[str, Any]) -> Any:
        return ack_data

    def __repr__(self) -> str:
        return "otpy.pipeline caller acknowledger"


_CALLER = _CallerAcknowledger()


def _shared_of(name: object, what: str) -> Shared:
    """The Shared of the pipeline running as ``name`` (no message round trip).

    Raises:
        otpy.NoProcError: no process runs under ``name``.
        TypeError: ``name`` is not a str, or its process is not a pipeline.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} takes a pipeline's name (a str); got {name!r}")
    shared = core.data_of(name)
    if type(shared) is Shared:
        return shared
    if core.whereis(name) is not None:
        raise TypeError(f"{what}: {name!r} is a process but not an otpy.pipeline.Pipeline")
    raise NoProcError(name, what)


def _inject(name: str, data: list[Any], batch_mode: str, metadata: object, what: str) -> Ref:
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None; got {metadata!r}")
    shared = _shared_of(name, what)
    ref = core.Ref()
    tracker = _Tracker(core.self(), ref, len(data))
    messages = [
        Message(
            item,
            metadata=dict(metadata or {}),
            acknowledger=(_CALLER, tracker, None),
            batch_mode=batch_mode,  # type: ignore[arg-type]
        )
        for item in data
    ]
    producer = shared.next_producer()
    answer = GenServer.call(producer, Push(messages))
    if answer != "ok":
        raise RuntimeError(f"pipeline {name!r} is draining: it takes no test messages now")
    return ref


# -- the public class ------------------------------------------------------------------------


class Pipeline:
    """A Broadway-style pipeline: subclass it, define the callbacks, ``start_link`` it.

    Example::

        class Orders(pl.Pipeline):
            def handle_message(self, processor, message, context):
                return message.update_data(json.loads)

        Orders.start_link(name="orders",
                          producer={"module": (pl.DummyProducer, {})},
                          processors={"default": {"concurrency": 4}})
        ref = pl.Pipeline.test_message("orders", b'{"id": 1}')
        ack = otpy.receive(match=lambda m: isinstance(m, pl.Ack) and m.ref == ref)
        ack.successful[0].data            # {'id': 1}
        pl.Pipeline.stop("orders")

    See the module documentation (``otpy.pipeline._pipeline``) for the
    callbacks and the guarantees, and ``otpy.pipeline._options`` for every
    option.
    """

    __module__ = "otpy.pipeline"

    # -- callbacks ----------------------------------------------------------------------

    def handle_message(self, processor: str, message: Message, context: Any) -> Message:
        """Handle one message in a processor; return it (changed, or failed)."""
        raise NotImplementedError(f"{type(self).__qualname__} must define handle_message")

    def handle_batch(
        self, batcher: str, messages: list[Message], batch_info: Any, context: Any
    ) -> list[Message]:
        """Handle one batch in a batch processor; return its messages."""
        raise NotImplementedError(f"{type(self).__qualname__} must define handle_batch")

    def handle_failed(self, messages: list[Message], context: Any) -> list[Message]:
        """Failed messages, before they are acked; return what to ack (default: them)."""
        return messages

    def prepare_messages(self, messages: list[Message], context: Any) -> list[Message]:
        """A processor's batch of messages, before handle_message (default: unchanged)."""
        return messages

    # -- starting -----------------------------------------------------------------------

    @classmethod
    def start_link(
        cls,
        *,
        name: str,
        producer: dict[str, Any],
        processors: dict[str, Any],
        batchers: dict[str, Any] | None = None,
        context: Any = None,
        partition_by: Any = None,
        shutdown: float | None = 30.0,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        resubscribe_interval: float = 0.1,
    ) -> Pid:
        """Start the pipeline, linked to the caller; returns once every stage started.

        Options (see ``otpy.pipeline._options`` for each key and default):
        ``name`` (a str; the pipeline's process registers under it),
        ``producer``, ``processors``, ``batchers``, ``context``,
        ``partition_by``, ``shutdown`` (seconds the drain may take),
        ``max_restarts``/``max_seconds`` (its supervisors' intensity),
        ``resubscribe_interval``.

        Example::

            pid = Orders.start_link(name="orders",
                                    producer={"module": (MyProducer, {"topic": "orders"})},
                                    processors={"default": {}})

        Raises:
            TypeError / ValueError: a bad option (nothing was started).
            otpy.StartError: a stage failed to start (e.g. the producer's
                ``init`` raised); ``.reason`` is its failure.
            otpy.AlreadyStartedError: ``name`` is taken.
        """
        config = validate(
            cls,
            {
                "name": name,
                "producer": producer,
                "processors": processors,
                "batchers": batchers,
                "context": context,
                "partition_by": partition_by,
                "shutdown": shutdown,
                "max_restarts": max_restarts,
                "max_seconds": max_seconds,
                "resubscribe_interval": resubscribe_interval,
            },
        )
        pid = _Topology.start_link(config, name=config.name)
        assert pid is not None
        return pid

    @classmethod
    def child_spec(cls, *, id: Any = None, restart: str | None = None, **options: Any) -> ChildSpec:
        """A child spec that starts this pipeline with ``start_link(**options)``.

        ``id`` defaults to the class, ``restart`` to ``"permanent"``; ``type``
        is ``"supervisor"`` and ``shutdown`` the pipeline's ``shutdown`` plus 5
        seconds (the drain, then stopping the stages), so a parent supervisor
        lets the drain run.

        Example::

            otpy.Supervisor.start_link([Orders.child_spec(name="orders", producer=..., processors=...)])

        Raises:
            TypeError / ValueError: a bad option.
        """
        config = validate(cls, options)
        limit = None if config.shutdown is None else config.shutdown + _STOP_GRACE
        spec = spec_with(cls if id is None else id, (cls.start_link, (), options), restart=restart)
        return spec.replace(type="supervisor", shutdown=limit)

    # -- the client API -------------------------------------------------------------------

    @staticmethod
    def stop(name: str, reason: Any = "normal", timeout: float | None = None) -> None:
        """Drain the pipeline, then stop it; returns when it is gone.

        Raises:
            otpy.NoProcError: no pipeline runs under ``name``.
            otpy.Timeout: it did not stop within ``timeout``.
        """
        GenServer.stop(name, reason, timeout)

    @staticmethod
    def update_rate_limiting(
        name: str, *, allowed_messages: int | None = None, interval: float | None = None
    ) -> None:
        """Retune a running pipeline's rate limit (what is not given stays).

        A new ``interval`` starts a new interval now; a new
        ``allowed_messages`` counts from now (what this interval used stays used).

        Example::

            pl.Pipeline.update_rate_limiting("orders", allowed_messages=500, interval=1.0)

        Raises:
            ValueError: the pipeline has no ``rate_limiting``, or a value is out of range.
            TypeError: a value of the wrong type.
            otpy.NoProcError: no pipeline runs under ``name``.
        """
        shared = _shared_of(name, "Pipeline.update_rate_limiting")
        if shared.allowance is None:
            raise ValueError(
                f"pipeline {name!r} was started without producer['rate_limiting']; "
                "there is nothing to update"
            )
        current_allowed, current_interval = shared.allowance.limits()
        check_rate_limiting(
            current_allowed if allowed_messages is None else allowed_messages,
            current_interval if interval is None else interval,
            "update_rate_limiting",
        )
        GenServer.call(
            shared.rate_limiter_name,
            Retune(allowed_messages, None if interval is None else float(interval)),
        )

    @staticmethod
    def get_rate_limiting(name: str) -> dict[str, Any] | None:
        """``{"allowed_messages": n, "interval": seconds}``, or None without rate limiting.

        Raises:
            otpy.NoProcError: no pipeline runs under ``name``.
        """
        shared = _shared_of(name, "Pipeline.get_rate_limiting")
        if shared.allowance is None:
            return None
        allowed, interval = shared.allowance.limits()
        return {"allowed_messages": allowed, "interval": interval}

    @staticmethod
    def producer_names(name: str) -> list[str]:
        """The registered names of the pipeline's producers.

        Raises:
            otpy.NoProcError: no pipeline runs under ``name``.
        """
        return list(_shared_of(name, "Pipeline.producer_names").producer_names)

    @staticmethod
    def test_message(name: str, data: Any, metadata: dict[str, Any] | None = None) -> Ref:
        """Send one message through the pipeline as if a producer emitted it (flush mode).

        The caller receives ``pl.Ack(ref, successful, failed)`` once it is
        acked. Works with any producer (``pl.DummyProducer`` emits nothing
        else); the message is not rate limited.

        Example::

            ref = pl.Pipeline.test_message("orders", {"id": 1})
            ack = otpy.receive(match=lambda m: isinstance(m, pl.Ack) and m.ref == ref)

        Raises:
            otpy.NoProcError: no pipeline runs under ``name`` (or its producer
                is restarting).
            RuntimeError: the pipeline is draining.
        """
        return _inject(name, [data], "flush", metadata, "Pipeline.test_message")

    @staticmethod
    def test_batch(
        name: str,
        data: Iterable[Any],
        batch_mode: Literal["bulk", "flush"] = "bulk",
        metadata: dict[str, Any] | None = None,
    ) -> Ref:
        """Send several messages through the pipeline (to one producer) as if it emitted them.

        The caller receives one ``pl.Ack(ref, successful, failed)`` once all
        of them are acked.

        Example::

            ref = pl.Pipeline.test_batch("orders", [{"id": 1}, {"id": 2}])

        Raises:
            TypeError: ``data`` is not a list of values (a str, say).
            ValueError: ``data`` is empty or ``batch_mode`` is not "bulk" or "flush".
            otpy.NoProcError, RuntimeError: as :meth:`test_message`.
        """
        if isinstance(data, (str, bytes, dict)) or not isinstance(data, Iterable):
            raise TypeError(f"test_batch takes a list of message data; got {data!r}")
        items = list(data)
        if not items:
            raise ValueError("test_batch needs at least one message's data; got none")
        if batch_mode not in ("bulk", "flush"):
            raise ValueError(f"batch_mode must be 'bulk' or 'flush'; got {batch_mode!r}")
        return _inject(name, items, batch_mode, metadata, "Pipeline.test_batch")
