"""The Pykka contender: one ``pykka.ThreadingActor`` per server, driven by ask/tell.

Pykka spends one OS thread per actor, so W4 stops below its largest size, and
it has no pool map, no stages, no flow, no pool of workers, no rate limiter,
no pipelines and no event loop side, so W7-W16 show n/a.

Pykka has no supervisors either; W6 emulates one the way a Pykka user would:
a supervisor actor starts the worker actor and starts a new one whenever the
worker's ``on_stop`` or ``on_failure`` hook (its last act) tells it that it
ended. Each worker puts its ref on the benchmark's queue in ``on_start``.
``"kill"`` is ``ActorRef.stop(block=False)``, Pykka's only way to end an actor
from outside (a message, handled in turn); ``"raise"`` is a ``tell`` whose
handler raises. The ``pykka`` logger, which reports every failure with its
traceback, is quiet (CRITICAL only) meanwhile.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from queue import Empty, SimpleQueue
from types import TracebackType
from typing import Any

import pykka

from ._contender import (
    DEFAULT_TIMEOUT,
    Crash,
    Logic,
    Supervised,
    WorkerCrashed,
    quiet_logger,
)

_CALL = "call"
_CAST = "cast"


class _Host(pykka.ThreadingActor):
    """Runs a ``Logic``: ``ask((_CALL, request))`` replies, ``tell((_CAST, message))`` does not."""

    def __init__(self, logic: Logic) -> None:
        super().__init__()
        self.logic = logic

    def on_receive(self, message: Any) -> Any:
        kind, payload = message
        if kind is _CALL:
            return self.logic.on_call(payload)
        self.logic.on_cast(payload)
        return None


ActorRef = pykka.ActorRef[Any]

_RESTARTS = "restarts"
"""What the benchmark asks W6's supervisor actor: how many restarts it made."""


class _Worker(pykka.ThreadingActor):
    """W6's worker: puts its ref on ``started`` when it starts, raises on any message,
    and tells ``supervisor`` when it ends, however it ends."""

    def __init__(self, supervisor: ActorRef, started: SimpleQueue[ActorRef]) -> None:
        super().__init__()
        self.supervisor = supervisor
        self.started = started

    def on_start(self) -> None:
        self.started.put(self.actor_ref)

    def on_receive(self, message: Any) -> Any:
        raise WorkerCrashed(message)

    def on_stop(self) -> None:
        self._report_end()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._report_end()

    def _report_end(self) -> None:
        try:
            self.supervisor.tell(self.actor_ref)
        except pykka.ActorDeadError:
            pass  # the supervisor is stopping, and stopping us


class _SupervisorActor(pykka.ThreadingActor):
    """W6's supervisor: starts a new ``_Worker`` whenever its current one tells it that it ended."""

    def __init__(self, started: SimpleQueue[ActorRef]) -> None:
        super().__init__()
        self.started = started
        self.restarts = 0
        self.worker: ActorRef | None = None

    def on_start(self) -> None:
        self.worker = _Worker.start(self.actor_ref, self.started)

    def on_receive(self, message: Any) -> Any:
        if message == _RESTARTS:
            return self.restarts
        if message is self.worker:
            self.restarts += 1
            self.worker = _Worker.start(self.actor_ref, self.started)
        return None

    def on_stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()


class _Supervised:
    """W6 on Pykka: a ``_SupervisorActor``, its workers' refs on a queue of ours."""

    def __init__(self) -> None:
        self.started: SimpleQueue[ActorRef] = SimpleQueue()
        self.supervisor = _SupervisorActor.start(self.started)

    def next_worker(self, timeout: float) -> ActorRef:
        """The next worker's ref, once its ``on_start`` ran."""
        try:
            return self.started.get(timeout=timeout)
        except Empty:
            raise TimeoutError(f"no worker actor started within {timeout}s") from None

    def crash(self, worker: ActorRef, how: Crash) -> None:
        """``"kill"``: ``worker.stop(block=False)``; ``"raise"``: a ``tell`` that makes it raise."""
        if how == "kill":
            worker.stop(block=False)
        else:
            worker.tell(how)

    def restarts(self) -> int:
        """Ask the supervisor actor."""
        count: int = self.supervisor.ask(_RESTARTS, block=True, timeout=DEFAULT_TIMEOUT)
        return count

    def stop(self) -> None:
        """Stop the supervisor actor, which stops its worker first."""
        self.supervisor.stop()


@contextmanager
def _supervise() -> Iterator[Supervised]:
    with quiet_logger("pykka"):
        supervised = _Supervised()
        yield supervised
        supervised.stop()


@contextmanager
def _stop_leftovers() -> Iterator[None]:
    """Stop any actor a failed measurement left running, so its thread does not linger."""
    try:
        yield
    finally:
        pykka.ActorRegistry.stop_all()


class PykkaContender:
    """The ``pykka`` column."""

    name = "pykka"
    version = importlib.metadata.version("pykka")
    source: str | None = None
    one_thread_each = True
    serves_threads = True
    pool_map = None
    supervise = staticmethod(_supervise)
    async_supervise = None
    pipeline = None
    word_count = None
    worker_pool = None
    bucket = None
    stream_consumer = None
    queue_consumer = None
    message_flow = None
    aio = None
    missing: Mapping[str, str] = {}

    def session(self) -> AbstractContextManager[object]:
        """A context that stops leftover actors on the way out."""
        return _stop_leftovers()

    def start(self, logic: Logic) -> pykka.ActorRef[Any]:
        """Start an actor (and its thread) running ``logic``."""
        return _Host.start(logic)

    def call(
        self, server: pykka.ActorRef[Any], request: Any, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        """``ask`` the actor and wait for its answer."""
        return server.ask((_CALL, request), timeout=timeout)

    def cast(self, server: pykka.ActorRef[Any], message: Any) -> None:
        """``tell`` the actor."""
        server.tell((_CAST, message))

    def stop(self, server: pykka.ActorRef[Any]) -> None:
        """Stop the actor and wait for it."""
        server.stop()


def make_contender() -> PykkaContender:
    """Return the ``pykka`` contender."""
    return PykkaContender()
