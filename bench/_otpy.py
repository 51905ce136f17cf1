"""The otpy contender: a ``GenServer`` per server, ``Task.async_stream`` for W7.

Only the public API (API.md) is used. ``call``, ``cast`` are otpy's own
functions, not wrappers, so the hot loops time otpy and nothing of ours.
Servers are started unlinked (``start``), as Pykka actors are, and every
measurement runs in its own ``with otpy.Runtime():`` block.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import otpy

from ._contender import Logic


class _Host(otpy.GenServer):
    """Runs a ``Logic``: ``handle_call`` replies with ``on_call``, ``handle_cast`` runs ``on_cast``."""

    def init(self, logic: Logic) -> None:
        self.logic = logic

    def handle_call(self, request: Any, caller: Any) -> Any:
        return self.logic.on_call(request)

    def handle_cast(self, request: Any) -> None:
        self.logic.on_cast(request)


def _version() -> str:
    version = getattr(otpy, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version("otpy")
    except importlib.metadata.PackageNotFoundError:
        return "source tree"


class OtpyContender:
    """The ``otpy`` column."""

    name = "otpy"
    version = _version()
    one_thread_each = False
    call = staticmethod(otpy.GenServer.call)
    cast = staticmethod(otpy.GenServer.cast)

    def __init__(self) -> None:
        self.pool_map: Callable[[Callable[[int], int], Iterable[int]], list[int]] | None = (
            self._pool_map
        )

    def session(self) -> AbstractContextManager[object]:
        """A fresh ``otpy.Runtime()``; leaving it shuts every process down."""
        return otpy.Runtime()

    def start(self, logic: Logic) -> otpy.Pid:
        """Start an unlinked GenServer running ``logic``; returns after ``init``."""
        pid = _Host.start(logic)
        if pid is None:
            raise RuntimeError("GenServer.start returned None although init did not return IGNORE")
        return pid

    def stop(self, server: otpy.Pid) -> None:
        """``GenServer.stop``: returns once the server has terminated."""
        otpy.GenServer.stop(server)

    @staticmethod
    def _pool_map(fn: Callable[[int], int], items: Iterable[int]) -> list[int]:
        results = []
        for status, value in otpy.Task.async_stream(items, fn):
            if status != "ok":
                raise RuntimeError(
                    f"Task.async_stream yielded {(status, value)!r} for a trivial fn"
                )
            results.append(value)
        return results


def make_contender() -> OtpyContender:
    """Return the ``otpy`` contender."""
    return OtpyContender()
