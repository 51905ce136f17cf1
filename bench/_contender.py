"""What a contender supplies to the workloads, and how the contenders are loaded.

A contender hosts server *logic* (an object with ``on_call`` and ``on_cast``)
in its own kind of process: an otpy GenServer, a plain thread, a Pykka actor.
The workloads in ``bench._workloads`` are written once against this protocol.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

DEFAULT_TIMEOUT = 5.0
"""The call timeout every contender uses unless a workload passes another (OTP's 5 s)."""

NAMES = ("otpy", "threads", "pykka")
"""Every contender, in the column order of the report."""

_INSTALL_HINTS = {
    "otpy": "run from the repository root, or pip install -e .",
    "pykka": "pip install -e '.[bench]'",
    "threads": "the standard library should always import",
}


class Logic(Protocol):
    """The behaviour of one server; the same code runs in every contender."""

    def on_call(self, request: Any) -> Any:
        """Handle a synchronous request and return the reply."""
        ...

    def on_cast(self, message: Any) -> None:
        """Handle an asynchronous message."""
        ...


PoolMap = Callable[[Callable[[int], int], Iterable[int]], list[int]]
"""Apply a function to every item on a pool of workers; results in input order."""


class Contender(Protocol):
    """One column of the report: a way to run servers concurrently.

    Servers are opaque handles: whatever ``start`` returns is what ``call``,
    ``cast`` and ``stop`` take.
    """

    name: str
    """The column name: ``"otpy"``, ``"threads"`` or ``"pykka"``."""

    version: str
    """Shown in the report's header."""

    one_thread_each: bool
    """True when every server costs an OS thread (W4 then stops below the largest size)."""

    pool_map: PoolMap | None
    """W7's contender, or ``None`` when the library has no equivalent."""

    def session(self) -> AbstractContextManager[object]:
        """Return the context every measurement runs in (otpy: its own ``Runtime``)."""
        ...

    def start(self, logic: Logic) -> Any:
        """Start a server running ``logic`` and return its handle once it serves."""
        ...

    def call(self, server: Any, request: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Send ``request`` and wait for the reply; raise a ``TimeoutError`` after ``timeout``."""
        ...

    def cast(self, server: Any, message: Any) -> None:
        """Send ``message`` without waiting."""
        ...

    def stop(self, server: Any) -> None:
        """Stop the server and wait until it has stopped."""
        ...


class Unavailable(Exception):
    """A contender's library cannot be imported; the report shows its column as n/a."""

    def __init__(self, name: str, cause: BaseException) -> None:
        self.name = name
        self.cause = cause
        super().__init__(
            f"{name} is not available ({type(cause).__name__}: {cause}); "
            f"its columns show n/a. To include it: {_INSTALL_HINTS[name]}"
        )


def load(name: str) -> Contender:
    """Import the contender called ``name`` (one of ``NAMES``).

    Raises:
        Unavailable: its library does not import.
        ValueError: ``name`` is not a contender.
    """
    if name not in NAMES:
        raise ValueError(f"unknown contender {name!r}; choose one of {', '.join(NAMES)}")
    try:
        module = importlib.import_module(f"bench._{name}")
    except Exception as exc:  # a half-written library may fail with anything on import
        raise Unavailable(name, exc) from exc
    contender: Contender = module.make_contender()
    return contender
