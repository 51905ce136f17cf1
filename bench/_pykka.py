"""The Pykka contender: one ``pykka.ThreadingActor`` per server, driven by ask/tell.

Pykka spends one OS thread per actor, so W4 stops below its largest size, and
it has no pool map, so W7 shows n/a.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pykka

from ._contender import DEFAULT_TIMEOUT, Logic

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
    one_thread_each = True
    pool_map = None

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
