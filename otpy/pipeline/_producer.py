"""How a pipeline runs the user's producer, and ``DummyProducer``.

The user's producer is an ``otpy.stage.Producer`` subclass. The pipeline
starts it as a subclass of its own, made once per producer class: the
user's class with :class:`PipelineProducer` in front of it in the method
resolution order. That front class passes everything through to the user's
callbacks, and adds what Broadway's ``ProducerStage`` adds around a
producer module:

* **Demand.** ``handle_demand(n)`` reaches the user's ``handle_demand``
  only while the pipeline lets it: not during a drain, and, with rate
  limiting, not while the allowance is used up or emitted messages wait for
  it. Held demand is passed on, summed, when that changes.
* **Emitted messages** go through the producer's router
  (:class:`~otpy.pipeline._router.ProducerRouter`): counted, rate limited,
  routed to the processors by demand or by ``partition_by``.
* **Drain.** On the pipeline's drain the producer stops passing demand,
  calls the user's ``prepare_for_draining()`` if it has one (what it returns
  is emitted), and, once every message it emitted has gone to a processor,
  cancels its subscriptions: that cancellation travels behind the messages,
  so each processor sees it after the last of them.
* **Test messages** from ``Pipeline.test_message``/``test_batch`` arrive as
  a call and are emitted as if produced (not rate limited, as in Broadway).

What a producer must do to work in a pipeline: emit ``pl.Message`` values
(with its acknowledger) from any callback, no more than it was asked for in
``handle_demand`` (plus at most a bounded prefetch, for a push-style broker),
and nothing new after ``prepare_for_draining`` returned. It must not
subscribe to anything, nor define ``init`` with more than the options
argument. It never sees the pipeline's own messages (they are handled in
front of its callbacks), and it may block in ``prepare_for_draining`` (an
otpy wait) until what it read is in hand. Two optional class attributes let
it take part in ``start_link``'s checks and learn about its pipeline:
``validate_options`` and ``pipeline_options`` (see ``otpy.pipeline._options``).
It runs registered as ``"<pipeline>.Producer_<index>"``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .. import _core as core
from .. import stage
from .._core import Pid, Ref
from ._message import Message
from ._rate_limit import Refill
from ._router import ProducerRouter
from ._shared import Shared

__all__ = ["Drain", "DummyProducer", "PipelineProducer", "Push", "pipeline_producer_class"]

_log = logging.getLogger("otpy.pipeline")


class Drain:
    """Sent by the pipeline to each producer when its drain starts."""

    __slots__ = ()


class _TryFinish:
    __slots__ = ()


_TRY_FINISH = _TryFinish()


class Push:
    """The call request of ``test_message``/``test_batch``."""

    __slots__ = ("messages",)

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages


class PipelineProducer(stage.Producer):
    """What the pipeline puts in front of the user's producer class (see the module documentation)."""

    # Owned by the producer process; no lock.
    _pl_shared: Shared
    _pl_router: ProducerRouter
    _pl_pending: int  # demand asked for and not passed on to the user's handle_demand yet
    _pl_draining: bool
    _pl_done: bool  # the drain cancelled the subscriptions
    _pl_consumers: set[Ref]

    def init(self, options: Any, _pl: tuple[Shared, ProducerRouter] | None = None) -> Any:
        if _pl is None:
            raise TypeError(
                f"{type(self).__qualname__} is the pipeline's wrapper of a producer; "
                "start the producer class itself outside a pipeline"
            )
        shared, router = _pl
        self._pl_shared = shared
        self._pl_router = router
        router.watch = None
        self._pl_pending = 0
        self._pl_draining = False
        self._pl_done = False
        self._pl_consumers = set()
        result = super().init(options)
        if shared.draining.is_set():  # restarted during a drain: drain at once
            core.send(core.self(), Drain())
        return result

    # -- demand ---------------------------------------------------------------------

    def handle_demand(self, demand: int) -> Any:
        self._pl_pending += demand
        return self._pl_forward()

    def _pl_forward(self) -> Any:
        """Pass the held demand to the user's handle_demand, if the pipeline lets it now."""
        if self._pl_draining or not self._pl_pending or self._pl_router.holding():
            return None
        allowance = self._pl_shared.allowance
        if allowance is not None and allowance.available() <= 0:
            return None
        demand, self._pl_pending = self._pl_pending, 0
        return super().handle_demand(demand)

    # -- messages from the pipeline -----------------------------------------------------

    def handle_info(self, message: Any) -> Any:
        kind = type(message)
        if kind is Refill:
            self._pl_router.release()
            if self._pl_draining:
                self._pl_try_finish()
                return None
            return self._pl_forward()
        if kind is Drain:
            return self._pl_drain()
        if kind is _TryFinish:
            self._pl_try_finish()
            return None
        return super().handle_info(message)

    def handle_call(self, request: Any, caller: Any) -> Any:
        if type(request) is Push:
            if self._pl_done:
                return "draining"
            self._pl_router.push(request.messages)
            return "ok"
        return super().handle_call(request, caller)

    def handle_subscribe(self, kind: str, opts: dict[str, Any], from_: tuple[Pid, Ref]) -> str:
        if kind == "consumer":
            self._pl_consumers.add(from_[1])
            if self._pl_done:  # subscribed after the drain ended ours: end it too
                stage.cancel((core.self(), from_[1]), "shutdown")
        return super().handle_subscribe(kind, opts, from_)

    def handle_cancel(self, reason: Any, from_: tuple[Pid, Ref]) -> Any:
        self._pl_consumers.discard(from_[1])
        return super().handle_cancel(reason, from_)

    # -- the drain ----------------------------------------------------------------------

    def _pl_drain(self) -> Any:
        if self._pl_draining:
            return None
        self._pl_draining = True
        events = None
        prepare = getattr(self, "prepare_for_draining", None)
        if callable(prepare):
            try:
                events = prepare()
            except Exception:
                _log.exception(
                    "pipeline %r: %s.prepare_for_draining raised; draining without it",
                    self._pl_shared.name,
                    type(self).__qualname__,
                )
        # After what prepare_for_draining returned was emitted:
        core.send(core.self(), _TRY_FINISH)
        return events

    def _pl_try_finish(self) -> None:
        """End the subscriptions once every emitted message went to a processor."""
        if self._pl_done or not self._pl_draining:
            return
        router = self._pl_router
        if router.pending():
            me = core.self()
            router.watch = lambda: core.send(me, _TRY_FINISH)
            return
        self._pl_done = True
        me = core.self()
        for ref in list(self._pl_consumers):
            stage.cancel((me, ref), "shutdown")


# -- the classes the pipeline starts ------------------------------------------------------

# _classes_lock guards _classes: a user's producer class -> its pipeline subclass.
_classes_lock = threading.Lock()
_classes: dict[type[stage.Producer], type[PipelineProducer]] = {}


def pipeline_producer_class(cls: type[stage.Producer]) -> type[PipelineProducer]:
    """The user's producer class with :class:`PipelineProducer` in front (made once per class)."""
    with _classes_lock:
        made = _classes.get(cls)
        if made is None:
            made = type(
                cls.__name__,
                (PipelineProducer, cls),
                {"__module__": cls.__module__, "__qualname__": cls.__qualname__},
            )
            _classes[cls] = made
        return made


class DummyProducer(stage.Producer):
    """A producer that produces nothing: for pipelines fed by ``Pipeline.test_message``.

    Example::

        class Echo(pl.Pipeline):
            def handle_message(self, processor, message, context):
                return message

        Echo.start_link(name="echo", producer={"module": (pl.DummyProducer, {})},
                        processors={"default": {"concurrency": 1}})
        ref = pl.Pipeline.test_message("echo", "hi")
        otpy.receive(match=lambda m: isinstance(m, pl.Ack) and m.ref == ref)

    Its options dict is ignored.
    """

    __module__ = "otpy.pipeline"

    def init(self, options: Any = None) -> None:
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"DummyProducer takes an options dict; got {options!r}")

    def handle_demand(self, demand: int) -> None:
        return None
