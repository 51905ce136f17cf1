"""One JSON-ready picture of a runtime: its system figures, its processes and its supervision trees.

Example::

    data = otpy.observer.snapshot()
    data["system"]["processes"]                      # 14
    max(data["processes"], key=lambda r: r["message_queue_len"])["name"]
    [root["name"] for root in data["tree"]]          # ['root']

Where the figures come from: ``Runtime.processes()`` and ``otpy.process_info``
for every process (one lock per process, a moment's values), and one call to
each supervisor for its children (``which_children``; a ``Supervisor`` also
says its strategy and restart intensity). Those calls are the only messages a
snapshot sends. They share a budget of :data:`CALL_BUDGET` seconds, each at
most :data:`CALL_TIMEOUT`: a supervisor that does not answer in time (it is
busy restarting a slow child, say) is drawn with the processes whose parent it
is, without child ids.

Pids are strings without the angle brackets (``"1.42.0"``), as in the
observer's URLs.
"""

from __future__ import annotations

import math
import os
import platform
import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import attrs

import otpy

from .._supervisor import Introspect

__all__ = [
    "ROW_KEYS",
    "SORT_KEYS",
    "Snapshot",
    "detail",
    "parse_pid",
    "pid_text",
    "snapshot",
    "sort_rows",
    "take",
]

ROW_KEYS = (
    "pid",
    "name",
    "behaviour",
    "status",
    "message_queue_len",
    "reductions",
    "restarts",
    "current",
    "links",
    "monitors",
    "parent",
)
"""The keys of a process row, in display order."""

SORT_KEYS = tuple(key for key in ROW_KEYS if key not in ("links", "monitors"))
"""The row keys a process list can be sorted by (descending)."""

SUPERVISORS = frozenset(("Supervisor", "DynamicSupervisor", "ConsumerSupervisor"))
"""The ``process_info(pid).behaviour`` values of processes that answer ``which_children``."""

CALL_TIMEOUT = 1.0
"""Seconds one supervisor gets to answer a snapshot's ``which_children``."""

CALL_BUDGET = 2.0
"""Seconds all the supervisor calls of one snapshot get together."""

STACK_LIMIT = 60
"""At most this many frames (the innermost) of a process's stack."""

_PID = re.compile(r"<?(\d{1,18})\.(\d{1,18})\.0>?")


def pid_text(pid: otpy.Pid) -> str:
    """``<1.42.0>`` as the observer writes it: ``"1.42.0"``."""
    return f"{pid.runtime_id}.{pid.id}.0"


def parse_pid(text: str) -> tuple[int, int]:
    """``"1.42.0"`` (or ``"<1.42.0>"``) as ``(runtime_id, id)``.

    Raises:
        ValueError: ``text`` is not written like a pid.
    """
    found = _PID.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a pid; write a pid like 1.42.0")
    return int(found.group(1)), int(found.group(2))


def _pid_order(text: str | None) -> tuple[int, int]:
    return (-1, -1) if text is None else parse_pid(text)


@attrs.frozen(eq=False)
class Snapshot:
    """A snapshot and what the observer's server needs beside it.

    ``data`` is what :func:`snapshot` returns; ``runtime`` the runtime it
    shows; ``pids`` the pid objects by their text, to find a process again.
    """

    data: dict[str, Any]
    runtime: otpy.Runtime
    pids: dict[str, otpy.Pid]


def snapshot(runtime: otpy.Runtime | None = None) -> dict[str, Any]:
    """A JSON-ready picture of ``runtime`` (default ``otpy.Runtime.current()``).

    Returns:
        ``{"system": {...}, "processes": [row, ...], "tree": [root node, ...]}``:
        ``system`` has the runtime's id, its process count (and how many are
        running, runnable, waiting), the pool's threads, the Python
        process's threads, uptime and version; a process row has the keys of
        :data:`ROW_KEYS`, oldest process first; a tree node has ``id``,
        ``pid``, ``type``, ``strategy``, ``restarts``, ``children`` (and
        ``name``, ``behaviour``; a ``Supervisor`` also ``max_restarts`` and
        ``max_seconds``). The roots are the supervisors that no supervisor
        supervises.

    Raises:
        TypeError: ``runtime`` is not an ``otpy.Runtime``.
    """
    if runtime is None:
        runtime = otpy.Runtime.current()
    elif not isinstance(runtime, otpy.Runtime):
        raise TypeError(f"runtime must be an otpy.Runtime or None; got {runtime!r}")
    return take(runtime).data


def take(runtime: otpy.Runtime) -> Snapshot:
    """Take a snapshot of ``runtime`` (see :func:`snapshot`)."""
    start = time.monotonic()
    pids: dict[str, otpy.Pid] = {}
    infos: list[otpy.ProcessInfo] = []
    for pid in runtime.processes():
        info = otpy.process_info(pid)
        if info is not None:  # it died since processes() listed it
            infos.append(info)
            pids[pid_text(pid)] = pid
    tree = _Tree(infos, start + CALL_BUDGET).roots()
    data = {
        "system": _system(runtime, infos, time.monotonic() - start),
        "processes": [_row(info) for info in infos],
        "tree": tree,
    }
    return Snapshot(data, runtime, pids)


# -- rows ---------------------------------------------------------------------------------


def _text(pid: otpy.Pid | None) -> str | None:
    return None if pid is None else pid_text(pid)


def _row(info: otpy.ProcessInfo) -> dict[str, Any]:
    return {
        "pid": pid_text(info.pid),
        "name": info.name,
        "behaviour": info.behaviour,
        "status": info.status,
        "message_queue_len": info.message_queue_len,
        "reductions": info.reductions,
        "restarts": info.restarts,
        "current": info.current,
        "links": [pid_text(p) for p in info.links],
        "monitors": [pid_text(p) for p in info.monitors],
        "parent": _text(info.parent),
    }


def sort_rows(rows: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows sorted by ``key``, largest first; ties (and missing values, last) by pid.

    Raises:
        ValueError: ``key`` is not one of :data:`SORT_KEYS`.
    """
    if key not in SORT_KEYS:
        raise ValueError(f"cannot sort by {key!r}; sort by one of: {', '.join(SORT_KEYS)}")
    ordered = sorted(rows, key=lambda row: _pid_order(row["pid"]))
    if key in ("pid", "parent"):
        return sorted(ordered, key=lambda row: _pid_order(row[key]), reverse=True)
    present = [row for row in ordered if row[key] is not None]
    present.sort(key=lambda row: row[key], reverse=True)  # stable: ties stay in pid order
    return present + [row for row in ordered if row[key] is None]


def detail(info: otpy.ProcessInfo, names: Callable[[str], str | None]) -> dict[str, Any]:
    """One process's row with more: who monitors it, its flags, its thread and stack.

    ``names(pid_text)`` gives the registered name of a process it is
    connected to (if any); those go to ``"names"``.
    """
    row = _row(info)
    row["monitored_by"] = [pid_text(p) for p in info.monitored_by]
    row["trap_exits"] = info.trap_exits
    row["thread"] = info.thread
    row["mailbox_limit"] = info.mailbox_limit
    row["dropped"] = info.dropped
    row["stack"] = stack_of(info.thread)
    peers = [*row["links"], *row["monitors"], *row["monitored_by"]]
    if row["parent"] is not None:
        peers.append(row["parent"])
    row["names"] = {pid: name for pid in peers if (name := names(pid)) is not None}
    return row


def stack_of(thread_name: str | None) -> list[str] | None:
    """The stack of the thread called ``thread_name`` now, innermost frame last.

    ``None`` when no thread runs the process (it waits for a message), when
    several threads have that name, or where the interpreter cannot tell
    (``sys._current_frames`` is CPython's). One line per frame, with its code.
    """
    if thread_name is None:
        return None
    found = [t for t in threading.enumerate() if t.name == thread_name]
    current_frames = getattr(sys, "_current_frames", None)
    if len(found) != 1 or found[0].ident is None or current_frames is None:
        return None
    frame = current_frames().get(found[0].ident)
    if frame is None:
        return None
    try:
        return [line.rstrip("\n") for line in traceback.format_stack(frame, limit=STACK_LIMIT)]
    finally:
        del frame  # a frame keeps its locals alive


# -- the tree -----------------------------------------------------------------------------


@attrs.frozen
class _Children:
    """What a supervisor said about itself; ``strategy`` is None if it did not say."""

    infos: list[otpy.ChildInfo]
    strategy: str | None = None
    max_restarts: int | None = None
    max_seconds: float | None = None


class _Tree:
    """Builds the supervision trees of one snapshot's processes."""

    def __init__(self, infos: list[otpy.ProcessInfo], deadline: float) -> None:
        self.by_pid = {info.pid: info for info in infos}
        self.deadline = deadline
        self.started_by: dict[otpy.Pid, list[otpy.ProcessInfo]] = {}
        for info in infos:
            if info.parent is not None:
                self.started_by.setdefault(info.parent, []).append(info)
        self.asked: dict[otpy.Pid, _Children | None] = {
            info.pid: self._ask(info) for info in infos if info.behaviour in SUPERVISORS
        }

    def _ask(self, info: otpy.ProcessInfo) -> _Children | None:
        """The supervisor's children, or None if it did not answer within the budget."""
        left = min(CALL_TIMEOUT, self.deadline - time.monotonic())
        if left <= 0:
            return None
        try:
            if info.behaviour == "Supervisor":
                strategy, max_restarts, max_seconds, children = otpy.GenServer.call(
                    info.pid, Introspect(), timeout=left
                )
                return _Children(list(children), strategy, max_restarts, max_seconds)
            children = otpy.GenServer.call(info.pid, ("which_children",), timeout=left)
            return _Children(list(children), "one_for_one")  # their only strategy
        except Exception:  # busy, dead by now, or it is the caller itself: draw it without
            return None

    def _children_of(self, pid: otpy.Pid) -> list[tuple[Any, Any, str, int]]:
        """``(id, pid, type, restarts)`` of each child of supervisor ``pid``."""
        said = self.asked.get(pid)
        if said is not None:
            return [(c.id, c.pid, c.type, c.restarts) for c in said.infos]
        return [  # it did not answer: the processes it started stand for its children
            (None, info.pid, _type_of(info), info.restarts) for info in self.started_by.get(pid, [])
        ]

    def roots(self) -> list[dict[str, Any]]:
        supervised = {
            child_pid
            for pid in self.asked
            for _, child_pid, _, _ in self._children_of(pid)
            if isinstance(child_pid, otpy.Pid)
        }
        return [
            self._node(info.name, pid, "supervisor", info.restarts, set())
            for pid, info in self.by_pid.items()
            if pid in self.asked and pid not in supervised
        ]

    def _node(
        self, child_id: Any, pid: Any, kind: str, restarts: int, above: set[otpy.Pid]
    ) -> dict[str, Any]:
        info = self.by_pid.get(pid) if isinstance(pid, otpy.Pid) else None
        said = self.asked.get(pid) if isinstance(pid, otpy.Pid) else None
        node: dict[str, Any] = {
            "id": _json_id(child_id),
            "pid": pid_text(pid) if isinstance(pid, otpy.Pid) else pid,
            "type": kind,
            "strategy": None if said is None else said.strategy,
            "restarts": restarts,
            "name": None if info is None else info.name,
            "behaviour": None if info is None else info.behaviour,
        }
        if said is not None and said.max_restarts is not None:
            node["max_restarts"] = said.max_restarts
            node["max_seconds"] = said.max_seconds
        node["children"] = []
        if isinstance(pid, otpy.Pid) and pid in self.asked and pid not in above:
            above.add(pid)
            node["children"] = [
                self._node(cid, cpid, ctype, crestarts, above)
                for cid, cpid, ctype, crestarts in self._children_of(pid)
            ]
            above.discard(pid)
        return node


def _type_of(info: otpy.ProcessInfo) -> str:
    return "supervisor" if info.behaviour in SUPERVISORS else "worker"


def _json_id(value: Any) -> Any:
    """A child id as JSON: as it is if it is a JSON scalar, a class by its name, else its repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    name = getattr(value, "__qualname__", None)
    if isinstance(name, str):
        return name
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


# -- the system ---------------------------------------------------------------------------

_started: float | None = None


def process_uptime() -> float:
    """Seconds since the Python process started (on Linux; elsewhere since otpy.observer loaded)."""
    global _started
    if _started is None:  # a benign race: both threads compute the same instant
        _started = time.monotonic() - _linux_uptime()
    return time.monotonic() - _started


def _linux_uptime() -> float:
    try:
        with (
            open("/proc/self/stat", encoding="ascii") as stat,
            open("/proc/uptime", encoding="ascii") as boot,
        ):
            fields = stat.read().rsplit(")", 1)[1].split()
            since_boot = float(boot.read().split()[0])
        return max(0.0, since_boot - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _system(runtime: otpy.Runtime, infos: list[otpy.ProcessInfo], seconds: float) -> dict[str, Any]:
    statuses = Counter(info.status for info in infos)
    scheduler = getattr(runtime, "scheduler", None)
    stats = getattr(scheduler, "stats", None)
    gil = getattr(sys, "_is_gil_enabled", None)
    return {
        "runtime": runtime.id,
        "closed": runtime.closed,
        "processes": len(infos),
        "statuses": {s: statuses.get(s, 0) for s in ("running", "runnable", "waiting")},
        "message_queue_total": sum(info.message_queue_len for info in infos),
        "reductions_total": sum(info.reductions for info in infos),
        "max_threads": runtime.max_threads,
        "pool": dict(stats()) if callable(stats) else None,
        "threads": threading.active_count(),
        "uptime": round(process_uptime(), 3),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "gil": True if gil is None else bool(gil()),
        "os_pid": os.getpid(),
        "taken_at": time.time(),
        "snapshot_seconds": round(seconds, 6),
    }
