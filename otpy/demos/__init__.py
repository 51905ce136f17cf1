"""Runnable demos of otpy, one module each, behind ``python -m otpy demo``.

Run one::

    python -m otpy demo                  # list the demos and what each shows
    python -m otpy demo ping_pong        # run one
    python -m otpy demo url_checker --seed 3
    python -m otpy demo kv_store --help  # each demo documents its own options

Every demo is a module ``otpy.demos.<module>`` with a docstring that explains what it shows and a
``main(argv: list[str]) -> int`` that runs it inside its own ``otpy.Runtime()`` and returns the
exit status. The same demos are in ``examples/`` as plain scripts
(``python examples/kv_store.py``).

This package only registers the demos (:data:`DEMOS`); a demo module is imported when it runs, so
listing them stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

__all__ = ["DEMOS", "UnknownDemoError", "list_demos", "main", "run"]

DEMOS: dict[str, tuple[str, str]] = {
    "supervision": (
        "supervision",
        "a live supervision tree under chaos: restarts, and a failure that climbs the tree",
    ),
    "ping_pong": (
        "ping_pong",
        "two raw processes play ping-pong: spawn, send, selective receive, monitor and Down",
    ),
    "kv_store": (
        "kv_store",
        "a key-value store GenServer, registered by name and shared by concurrent clients",
    ),
    "url_checker": (
        "url_checker",
        "check 20 fake URLs five at a time with Task.async_stream, timing out the slow ones",
    ),
    "rate_limit": (
        "rate_limit",
        "fetch from a misbehaving local server through a token bucket, retrying selectively",
    ),
    "pool": (
        "pool",
        "a pool of pretend database connections under load: crashes, a killed caller, overflow",
    ),
    "pipeline": (
        "pipeline",
        "orders from a producer or a broker into SQLite: at-least-once, idempotent batch upserts",
    ),
    "word_count": (
        "word_count",
        "count the words of a few MB of text with otpy.flow, the same as a sequential Counter",
    ),
    "log_aggregation": (
        "log_aggregation",
        "errors per service per 10 s window of event time, with otpy.flow fixed windows",
    ),
}
"""The demos by name: ``name -> (module under otpy.demos, one-line description)``."""


class UnknownDemoError(KeyError, ValueError):
    """There is no demo by that name: both a failed lookup and a bad argument."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"there is no demo named {self.name!r}; choose one of: {', '.join(DEMOS)}"


class _Demo(Protocol):
    def main(self, argv: list[str]) -> int: ...


def list_demos() -> list[tuple[str, str]]:
    """The demos as ``(name, description)`` pairs, in the order they are best read."""
    return [(name, description) for name, (_, description) in DEMOS.items()]


def run(name: str, argv: Sequence[str] = ()) -> int:
    """Run the demo ``name`` with command-line arguments ``argv``.

    Args:
        name: a key of :data:`DEMOS`, such as ``"kv_store"``.
        argv: the demo's own arguments, without the demo's name (``["--seed", "3"]``).

    Returns:
        The demo's exit status (0 on success).

    Raises:
        UnknownDemoError: ``name`` is not a known demo; the message lists the known ones. It is
            a ``KeyError`` and a ``ValueError``, so either ``except`` catches it.
    """
    try:
        module_name, _ = DEMOS[name]
    except KeyError:
        raise UnknownDemoError(name) from None
    module = cast(_Demo, importlib.import_module(f"{__name__}.{module_name}"))
    return module.main(list(argv))


def _print_list() -> None:
    width = max(len(name) for name in DEMOS)
    print("otpy demos (run one with: python -m otpy demo NAME [ARGS...]):")
    for name, description in list_demos():
        print(f"  {name:<{width}}  {description}")


def main(argv: Sequence[str] = ()) -> int:
    """The ``python -m otpy demo [NAME] [ARGS...]`` command.

    Without a name, prints the demos and their descriptions. With one, runs that demo with the
    remaining arguments.

    Args:
        argv: the arguments after ``demo``.

    Returns:
        The exit status: the demo's own, 0 for the listing, 2 for an unknown name.
    """
    if not argv or argv[0] in ("-h", "--help"):
        _print_list()
        return 0
    name, *rest = argv
    if name not in DEMOS:
        print(f"there is no demo named {name!r}", file=sys.stderr)
        _print_list()
        return 2
    return run(name, rest)
