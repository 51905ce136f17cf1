"""``otpy.run``: a service's main: start the tree, wait for a signal, drain in order.

Example::

    import otpy

    def main():
        return otpy.run([Db.child_spec(), Orders.child_spec(name="orders", ...)],
                        shutdown=30.0, name="app")

    raise SystemExit(main())

or, without a script, ``python -m otpy run myapp.tree:children``.

What it does, in order:

1. checks its arguments (before anything starts) and installs handlers for
   ``signals`` (default SIGTERM and SIGINT);
2. starts a root supervisor over ``children`` in the default runtime;
3. blocks the calling thread until one of the signals arrives or the root
   supervisor exits by itself (it gave up after too many restarts, or
   crashed);
4. on a signal, stops the tree as a supervisor's parent would: the root gets
   a ``"shutdown"`` exit and stops its children in reverse start order, each
   within its own ``shutdown`` time (so pipelines drain), but all of it
   within ``shutdown`` seconds; what is still running then is killed;
5. restores the previous signal handlers and returns the exit status.

Exit status: ``0`` after a clean shutdown on a signal (or a root that
stopped normally), ``1`` if the root supervisor gave up or crashed, ``2`` if
the shutdown had to kill what was still running after ``shutdown`` seconds,
or a second signal arrived during the shutdown (which kills at once).

Every phase is logged on the ``otpy.run`` logger at INFO (WARNING for kills);
if the application configured no logging at all, ``run`` sets up a plain
stderr handler at INFO so that the phases show.

Why by hand: a service main for a supervision tree is a few dozen lines, but
they are the ones orchestrators judge a service by (SIGTERM → drain → exit 0
within the grace period), and the signal handler must not take locks: it
only records the signal, and the main thread polls for it every 50 ms
alongside the root's ``Down``.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from . import _core as core
from ._exceptions import Timeout
from ._supervisor import Supervisor

__all__ = ["load_children", "run"]

_log = logging.getLogger("otpy.run")

POLL = 0.05
"""How often the waiting main thread looks for a recorded signal."""


def _check_signals(signals: object) -> list[signal.Signals]:
    if isinstance(signals, (str, int)):
        signals = (signals,)
    if not isinstance(signals, (list, tuple)):
        raise TypeError(f"signals must be a tuple of signal names like ('SIGTERM',); got {signals!r}")
    found = []
    for sig in signals:
        if isinstance(sig, signal.Signals):
            found.append(sig)
            continue
        if isinstance(sig, str):
            name = sig.upper()
            if not name.startswith("SIG"):
                name = "SIG" + name
            member = getattr(signal.Signals, name, None)
            if member is not None:
                found.append(member)
                continue
        known = ", ".join(s.name for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
        raise ValueError(f"unknown signal {sig!r}: give names such as {known}")
    if signal.SIGKILL in found:
        raise ValueError("SIGKILL cannot be handled; choose signals such as SIGTERM or SIGINT")
    return found


def _check_shutdown(shutdown: object) -> float:
    if isinstance(shutdown, bool) or not isinstance(shutdown, (int, float)):
        raise TypeError(f"shutdown must be a number of seconds >= 0; got {shutdown!r}")
    if not shutdown >= 0:  # also NaN
        raise ValueError(f"shutdown must be a number of seconds >= 0; got {shutdown!r}")
    return float(shutdown)


class _Signals:
    """The signals seen so far; written by the handler, read by the main thread.

    The handler runs between two bytecodes of the main thread, possibly while
    it holds a lock, so it takes none: it only appends to a list (a single
    operation on a list only the handler writes).
    """

    def __init__(self) -> None:
        self.seen: list[signal.Signals] = []

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.seen.append(signal.Signals(signum))


def run(
    children: Sequence[Any],
    strategy: str = "one_for_one",
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    shutdown: float = 30.0,
    signals: Sequence[str | signal.Signals] = ("SIGTERM", "SIGINT"),
    name: str | None = None,
) -> int:
    """Run ``children`` under a root supervisor until a signal, then shut down in order.

    Args:
        children: child specs (or classes with ``child_spec``), as for
            ``otpy.Supervisor.start_link``.
        strategy, max_restarts, max_seconds: the root supervisor's.
        shutdown: seconds the whole shutdown may take before what still runs is killed.
        signals: the signals that start the shutdown (names or ``signal.Signals``).
        name: the root supervisor's registered name.

    Returns:
        The exit status: 0 clean, 1 the root gave up or crashed, 2 something was killed.

    Raises:
        ValueError, TypeError: a bad argument (before anything starts).
        RuntimeError: not called from the main thread (only it can handle signals).
        otpy.StartError: a child failed to start.
    """
    sigs = _check_signals(signals)
    limit = _check_shutdown(shutdown)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "otpy.run must be called from the main thread: only it can handle signals"
        )
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    seen = _Signals()
    previous = {sig: signal.signal(sig, seen.handler) for sig in sigs}
    try:
        return _run(children, strategy, max_restarts, max_seconds, limit, seen, name)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run(
    children: Sequence[Any],
    strategy: str,
    max_restarts: int,
    max_seconds: float,
    limit: float,
    seen: _Signals,
    name: str | None,
) -> int:
    label = repr(name) if name else "the root supervisor"
    # The caller is the root's parent: a trapping supervisor obeys a "shutdown" exit
    # from its parent only. Trapping, the caller outlives a root that crashes.
    trapped = core.trap_exits(True)
    try:
        root = Supervisor.start_link(
            list(children),
            strategy=strategy,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            name=name,
        )
        _log.info("started %s %r with %d children; waiting for a signal", label, root, len(children))
        return _serve(root, label, limit, seen)
    finally:
        core.trap_exits(trapped)


def _serve(root: core.Pid, label: str, limit: float, seen: _Signals) -> int:
    ref = core.monitor(root)
    is_down = _down_of(ref)
    while not seen.seen:
        down = _poll(is_down)
        if down is not None:
            if down.reason == core.NORMAL:
                _log.info("%s stopped normally", label)
                _flush_exit(root)
                return 0
            _log.error("%s exited with %r: the service is down", label, down.reason)
            _flush_exit(root)
            return 1
    first = seen.seen[0]
    _log.info("received %s: shutting down (at most %ss)", first.name, limit)
    started = time.monotonic()
    core.exit(root, core.SHUTDOWN)
    deadline = started + limit
    while True:
        down = _poll(is_down)
        if down is not None:
            took = time.monotonic() - started
            _log.info("stopped %s in %.2fs (%r)", label, took, down.reason)
            _flush_exit(root)
            return 0
        if len(seen.seen) > 1:
            _log.warning("received %s again: killing everything now", seen.seen[1].name)
            break
        if time.monotonic() >= deadline:
            _log.warning("the shutdown took longer than %ss: killing what still runs", limit)
            break
    _kill_all(root, is_down)
    return 2


def _down_of(ref: core.Ref) -> Callable[[Any], bool]:
    return lambda m: type(m) is core.Down and m.ref == ref


def _poll(is_down: Callable[[Any], bool]) -> Any:
    try:
        return core.receive(timeout=POLL, match=is_down)
    except Timeout:
        return None


def _flush_exit(root: core.Pid) -> None:
    """Take the root's Exit (the link) out of the caller's mailbox."""
    try:
        core.receive(timeout=1.0, match=lambda m: type(m) is core.Exit and m.pid == root)
    except Timeout:
        pass


def _kill_all(root: core.Pid, is_down: Callable[[Any], bool]) -> None:
    """Kill every process of the runtime but the caller's own, root first."""
    me = core.self()
    core.exit(root, core.KILL)
    victims = [pid for pid in core.processes() if pid != me]
    for pid in victims:
        core.exit(pid, core.KILL)
    _log.warning("killed %d process(es)", len(victims) + 1)
    _poll(is_down)
    _flush_exit(root)
    # Code of killed processes may still run (a handler in time.sleep): the default
    # runtime's own shutdown at exit would wait for it; the bound has passed already.
    core.Runtime.current().shutdown(timeout=0.0)


def load_children(target: str) -> list[Any]:
    """Resolve ``"package.module:children"`` to a list of child specs.

    ``children`` is a list (or tuple) or a function returning one.

    Raises:
        ValueError: ``target`` is not ``module:attribute``, the module does not
            import, it has no such attribute, or it is not a list of children.
    """
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(
            f"expected package.module:children (a list, or a function returning one); got {target!r}"
        )
    module_name, attr = target.split(":")
    if not module_name or not attr:
        raise ValueError(f"expected package.module:children; got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for {target!r}: {exc}") from exc
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (from {target!r})") from None
    if callable(value) and not isinstance(value, type):
        value = value()
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{target} must be a list of children or a function returning one; got {value!r}"
        )
    return list(value)
