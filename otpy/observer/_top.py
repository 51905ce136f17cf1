"""``python -m otpy top``: the busiest processes and the supervision trees, in a terminal.

Run it::

    python -m otpy top --url http://127.0.0.1:8123/            # live, every second; Ctrl-C stops
    python -m otpy top --url http://127.0.0.1:8123/ --once     # one frame, for scripts
    python -m otpy top --url ... --token T --sort message_queue_len --limit 10

It reads the observer's JSON API (``otpy.observer.serve``); the token may also
come from the environment variable ``OTPY_OBSERVER_TOKEN``. Without
``--url`` it shows the runtime of the code that runs it, in-process:
``otpy.__main__.main(["top", "--once"])`` from a program prints one frame of
its current runtime (from a shell, that runtime would be a new, empty one).

It draws with ``rich`` when it is installed (``pip install otpy[observer]``)
and as plain text otherwise (or with ``--plain``). A frame::

    otpy top  runtime 1 | 14 processes (1 running, 13 waiting) | 1,204 in mailboxes | ...
    14 processes by reductions (largest first)

    PID       NAME      BEHAVIOUR   STATUS   MAILBOX  HANDLED  RESTARTS  CURRENT
    <1.4.0>   cache     GenServer   waiting        0     1204         0  GenServer app.Cache
    ...

    supervision tree
    root                Supervisor  one_for_one, 3 in 5.0s  restarts=0  <1.2.0>
    +-- cache           GenServer   restarts=0  <1.3.0>
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import IO, Any

import attrs

import otpy

from . import _snapshot

__all__ = ["Frame", "fetch", "local", "main", "render_plain"]

TREE_CHILDREN = 12
"""At most this many children of one node are drawn; the rest are counted."""

_COLUMNS = (
    ("PID", "pid", False),
    ("NAME", "name", False),
    ("BEHAVIOUR", "behaviour", False),
    ("STATUS", "status", False),
    ("MAILBOX", "message_queue_len", True),
    ("HANDLED", "reductions", True),
    ("RESTARTS", "restarts", True),
    ("CURRENT", "current", False),
)


class TopError(Exception):
    """The observer could not be read (unreachable, refused, or not an observer)."""


@attrs.frozen
class Frame:
    """What one frame shows: the system figures, the chosen rows, the trees."""

    system: dict[str, Any]
    rows: list[dict[str, Any]]
    tree: list[dict[str, Any]]
    sort: str


def local(runtime: otpy.Runtime | None, sort: str, limit: int) -> Frame:
    """A frame of ``runtime`` (default: the current one), in-process."""
    data = _snapshot.snapshot(runtime)
    rows = _snapshot.sort_rows(data["processes"], sort)[:limit]
    return Frame(data["system"], rows, data["tree"], sort)


def fetch(url: str, token: str | None, sort: str, limit: int, timeout: float = 5.0) -> Frame:
    """A frame from the observer at ``url``.

    Raises:
        TopError: it cannot be reached, or refuses (the message says why).
    """
    base = url if "://" in url else f"http://{url}"
    base = base if base.endswith("/") else base + "/"
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"

    def get(path: str) -> Any:
        request = urllib.request.Request(urllib.parse.urljoin(base, path), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            try:
                why = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                why = exc.reason
            hint = "; pass --token (or set OTPY_OBSERVER_TOKEN)" if exc.code == 401 else ""
            raise TopError(f"{base} answered {exc.code}: {why}{hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TopError(f"cannot reach the observer at {base}: {reason}") from None
        except ValueError:
            raise TopError(f"{base} did not answer JSON: is it an otpy observer?") from None

    query = urllib.parse.urlencode({"sort": sort, "limit": limit})
    return Frame(get("api/system"), get(f"api/processes?{query}"), get("api/tree"), sort)


# -- plain text --------------------------------------------------------------------------------


def _pid(pid: Any) -> str:
    return "-" if pid is None else "restarting" if pid == "restarting" else f"<{pid}>"


def _uptime(seconds: float) -> str:
    s = int(seconds)
    days, hours, minutes, rest = s // 86400, s % 86400 // 3600, s % 3600 // 60, s % 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _summary(system: dict[str, Any]) -> list[str]:
    statuses = system.get("statuses") or {}
    busy = ", ".join(f"{n} {s}" for s, n in statuses.items() if n)
    parts = [
        f"runtime {system['runtime']}" + (" (shut down)" if system.get("closed") else ""),
        f"{system['processes']:,} processes" + (f" ({busy})" if busy else ""),
        f"{system['message_queue_total']:,} in mailboxes",
    ]
    pool = system.get("pool")
    if pool:
        parts.append(f"pool {pool['threads']}/{system['max_threads']} threads")
    parts.append(f"{system['threads']} threads")
    parts.append(f"up {_uptime(system['uptime'])}")
    parts.append(f"{system['implementation']} {system['python']}")
    return parts


def _heading(frame: Frame) -> str:
    total = frame.system["processes"]
    shown = f"{len(frame.rows)} of {total:,}" if len(frame.rows) < total else f"{total:,}"
    return f"{shown} processes by {frame.sort} (largest first)"


def _cell(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if key == "pid":
        return _pid(value)
    if value is None:
        return ""
    return str(value)


def _node_text(node: dict[str, Any]) -> tuple[str, str]:
    """A tree node as (label, rest of the line)."""
    label = str(node["id"]) if node["id"] is not None else node["name"] or _pid(node["pid"])
    bits = []
    if node["name"] and node["name"] != label:
        bits.append(repr(node["name"]))
    bits.append(node["behaviour"] or node["type"])
    if node["type"] == "supervisor" and node["strategy"]:
        intensity = node.get("max_restarts")
        bits.append(
            node["strategy"]
            + ("" if intensity is None else f", {intensity} in {node['max_seconds']}s")
        )
    bits.append(f"restarts={node['restarts']}")
    if label != _pid(node["pid"]):
        bits.append(_pid(node["pid"]))
    return label, "  ".join(bits)


def _tree_lines(nodes: list[dict[str, Any]], prefix: str = "", top: bool = True) -> Iterator[str]:
    shown = nodes if top else nodes[:TREE_CHILDREN]
    more = len(nodes) - len(shown)
    for i, node in enumerate(shown):
        label, rest = _node_text(node)
        if top:
            head, below = label, ""
        else:
            last = i == len(shown) - 1 and not more
            head = prefix + ("`-- " if last else "+-- ") + label
            below = prefix + ("    " if last else "|   ")
        yield f"{head:<24} {rest}"
        yield from _tree_lines(node["children"], below, False)
    if more:
        yield f"{prefix}`-- ... {more} more"


def _wrap(head: str, parts: list[str], width: int) -> list[str]:
    """``head`` and ``parts`` joined by `` | ``, on as many lines of ``width`` as it takes."""
    lines = [head + parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " | " + part
        else:
            lines.append(" " * len(head) + part)
    return lines


def render_plain(frame: Frame, width: int = 120) -> str:
    """One frame as plain text, lines cut to ``width`` columns."""
    lines = [*_wrap("otpy top  ", _summary(frame.system), width), _heading(frame), ""]
    cells = [[_cell(row, key) for _, key, _ in _COLUMNS] for row in frame.rows]
    widths = [
        max([len(title)] + [len(r[i]) for r in cells]) for i, (title, _, _) in enumerate(_COLUMNS)
    ]

    def line(values: list[str]) -> str:
        out = []
        for (_, _, numeric), value, size in zip(_COLUMNS, values, widths, strict=True):
            out.append(value.rjust(size) if numeric else value.ljust(size))
        return "  ".join(out).rstrip()

    lines.append(line([title for title, _, _ in _COLUMNS]))
    lines.extend(line(r) for r in cells)
    lines.append("")
    if frame.tree:
        lines.append("supervision tree")
        lines.extend(_tree_lines(frame.tree))
    else:
        lines.append("no supervisors")
    return "\n".join(text if len(text) <= width else text[: width - 3] + "..." for text in lines)


# -- rich ---------------------------------------------------------------------------------------


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def render_rich(frame: Frame, width: int = 120) -> Any:
    """One frame as a ``rich`` renderable (``rich`` must be installed)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree

    lines = _wrap("otpy top  ", _summary(frame.system), width)
    head = Text("otpy top  ", style="bold")
    head.append("\n".join([lines[0][len("otpy top  ") :], *lines[1:]]), style="dim")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    cells = [[_cell(row, key) for _, key, _ in _COLUMNS] for row in frame.rows]
    for i, (title, key, numeric) in enumerate(_COLUMNS):
        widest = max([len(title)] + [len(r[i]) for r in cells])
        table.add_column(  # when the terminal is narrow, only CURRENT gives way
            title,
            justify="right" if numeric else "left",
            style="cyan" if key == "pid" else "bold" if key == frame.sort else None,
            overflow="ellipsis",
            no_wrap=True,
            min_width=min(widest, 12) if key == "current" else widest,
        )
    for row, values in zip(frame.rows, cells, strict=True):
        table.add_row(*values, style="red" if row["restarts"] else None)

    def grow(parent: Tree, nodes: list[dict[str, Any]], top: bool) -> None:
        shown = nodes if top else nodes[:TREE_CHILDREN]
        for node in shown:
            label, rest = _node_text(node)
            text = Text(label, style="bold" if node["type"] == "supervisor" else "")
            text.append("  " + rest, style="red" if node["restarts"] else "dim")
            grow(parent.add(text), node["children"], False)
        if len(shown) < len(nodes):
            parent.add(Text(f"... {len(nodes) - len(shown)} more", style="dim"))

    tree = Tree(Text("supervision tree" if frame.tree else "no supervisors", style="bold"))
    grow(tree, frame.tree, True)
    return Group(head, Text(_heading(frame), style="dim"), Text(), table, Text(), tree)


# -- the command ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m otpy top",
        description="The busiest processes and the supervision trees of an otpy runtime.",
    )
    parser.add_argument(
        "--url", help="an observer's address (otpy.observer.serve); omit for this process's runtime"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("OTPY_OBSERVER_TOKEN"),
        help="the observer's bearer token (default: $OTPY_OBSERVER_TOKEN)",
    )
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument(
        "--sort",
        default="reductions",
        choices=_snapshot.SORT_KEYS,
        help="the row key to sort by, largest first (default: reductions, messages handled)",
    )
    parser.add_argument("--limit", type=int, default=20, help="how many processes (default 20)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between frames (default 1)"
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain text, even if rich is installed"
    )
    return parser


def main(argv: list[str] | None = None, *, file: IO[str] | None = None) -> int:
    """Run ``python -m otpy top`` with ``argv``; the exit status (1 if the observer failed)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.limit < 0:
        parser.error(f"--limit must be >= 0; got {args.limit}")
    if not args.interval > 0:
        parser.error(f"--interval must be > 0; got {args.interval}")
    out = sys.stdout if file is None else file
    use_rich = not args.plain and _rich_available()
    width = shutil.get_terminal_size((120, 40)).columns

    def frame() -> Frame:
        if args.url is None:
            return local(None, args.sort, args.limit)
        return fetch(args.url, args.token, args.sort, args.limit)

    if args.once:
        try:
            shown = frame()
        except TopError as exc:
            print(f"python -m otpy top: {exc}", file=sys.stderr)
            return 1
        if use_rich:
            from rich.console import Console

            Console(file=out, width=width).print(render_rich(shown, width))
        else:
            print(render_plain(shown, width), file=out, flush=True)
        return 0
    try:
        if use_rich:
            _live_rich(frame, args.interval, out)
        else:
            _live_plain(frame, args.interval, width, out)
    except KeyboardInterrupt:
        pass
    return 0


def _live_plain(frame: Any, interval: float, width: int, out: IO[str]) -> None:
    while True:
        try:
            text = render_plain(frame(), width)
        except TopError as exc:
            text = f"python -m otpy top: {exc} (trying again)"
        out.write("\x1b[H\x1b[2J" + text + "\n")
        out.flush()
        time.sleep(interval)


def _live_rich(frame: Any, interval: float, out: IO[str]) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(file=out)

    def draw() -> Any:
        try:
            return render_rich(frame(), console.width)
        except TopError as exc:
            return Text(f"python -m otpy top: {exc} (trying again)", style="red")

    with Live(draw(), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(draw(), refresh=True)
