"""``python -m otpy observe demo``: the supervision demo, with the observer serving it live.

Run it::

    python -m otpy observe demo                          # prints "observer: http://127.0.0.1:PORT/"
    python -m otpy observe demo --events 30 --pause 1    # a longer run (the demo's options)
    python -m otpy observe --port 8123 --linger 60 demo  # a fixed port; serve 60 s after the end

The first line it prints is ``observer: <url>``; open it while chaos kills
processes and the supervisors restart them. The demo runs in a runtime of its
own (``python -m otpy demo supervision``, unchanged); the observer shows
whichever runtime is open at the moment (the demo's while it runs), and after
the demo, for ``--linger`` seconds (default 3, Ctrl-C stops sooner), the
demo's runtime as it ended: shut down.
"""

from __future__ import annotations

import argparse
import sys
import time

import otpy

from ._server import Server

__all__ = ["main"]


class _Follow:
    """The runtime to show: the innermost open one, or the last one the demo had.

    Called by the server's sampler thread only (a plain thread outside any
    process, where ``Runtime.current()`` is the innermost open runtime), which
    owns ``last``.
    """

    def __init__(self, outer: otpy.Runtime) -> None:
        self.outer = outer
        self.last: otpy.Runtime | None = None

    def __call__(self) -> otpy.Runtime:
        current = otpy.Runtime.current()
        if current is not self.outer:
            self.last = current
        return self.last or current


def main(argv: list[str]) -> int:
    """Run ``python -m otpy observe ...``; the demo's exit status (130 after Ctrl-C)."""
    parser = argparse.ArgumentParser(
        prog="python -m otpy observe",
        description=(
            "Run the supervision demo with the observer serving it. Options the observer "
            "does not know go to the demo (see: python -m otpy demo supervision --help)."
        ),
    )
    parser.add_argument("what", choices=["demo"], help="what to run: the supervision demo")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--token", default=None, help="a bearer token the API asks for")
    parser.add_argument(
        "--allow-destructive", action="store_true", help="let the page kill processes"
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=3.0,
        help="seconds to keep serving after the demo ends (default 3)",
    )
    args, demo_args = parser.parse_known_args(argv)
    if not args.linger >= 0:
        parser.error(f"--linger must be >= 0; got {args.linger}")

    from ..demos import supervision

    with otpy.Runtime() as outer:
        try:
            server = Server(
                _Follow(outer),
                host=args.host,
                port=args.port,
                token=args.token,
                allow_destructive=args.allow_destructive,
                refresh=1.0,
            )
        except OSError as exc:
            print(f"python -m otpy observe: {exc}", file=sys.stderr)
            return 2
        with server:
            shown = server.url if args.token is None else f"{server.url}#token={args.token}"
            print(f"observer: {shown}", flush=True)
            try:
                status = supervision.main(demo_args)
            except KeyboardInterrupt:
                return 130
            if args.linger:
                print(
                    f"observer: the demo ended; serving {server.url} for {args.linger:g} "
                    "more seconds (Ctrl-C stops)",
                    flush=True,
                )
                try:
                    time.sleep(args.linger)
                except KeyboardInterrupt:
                    pass
    return status
