"""``python -m otpy demo|run|observe|top ...``: demos, a service's tree, the observer.

* ``python -m otpy demo [NAME] [ARGS...]``: list the demos, or run one by name;
* ``python -m otpy run package.module:children [--shutdown S] ...``: ``otpy.run``
  over the children that ``package.module.children`` lists (or returns, if it
  is a function), exiting with ``run``'s status;
* ``python -m otpy observe demo [ARGS...]``: the supervision demo with the
  observer serving it (``otpy.observer``); prints ``observer: <url>`` first;
* ``python -m otpy top --url URL [--token T] [--once]``: the busiest processes
  and the supervision trees of an observed runtime, in the terminal.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otpy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="list the demos, or run one by name")
    demo.add_argument("name", nargs="?", help="the demo to run; omit to list them")
    demo.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the demo")
    runner = sub.add_parser(
        "run", help="run a supervision tree until SIGTERM/SIGINT, then shut it down in order"
    )
    runner.add_argument("target", help="package.module:children (a list, or a function returning one)")
    runner.add_argument("--strategy", default="one_for_one")
    runner.add_argument("--max-restarts", type=int, default=3)
    runner.add_argument("--max-seconds", type=float, default=5.0)
    runner.add_argument("--shutdown", type=float, default=30.0, help="seconds (default 30)")
    runner.add_argument(
        "--signals", default="SIGTERM,SIGINT", help="comma-separated (default SIGTERM,SIGINT)"
    )
    runner.add_argument("--name", default=None, help="the root supervisor's name")
    # observe and top parse their own options (listed here for --help).
    sub.add_parser("observe", help="run the supervision demo with the observer serving it live")
    sub.add_parser("top", help="the busiest processes and the supervision trees, in the terminal")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "observe":
        from .observer import _observe

        return _observe.main(argv[1:])
    if argv and argv[0] == "top":
        from .observer import _top

        return _top.main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)

    from . import demos

    if args.name is None:
        print("demos (run one with: python -m otpy demo NAME):")
        for name, description in demos.list_demos():
            print(f"  {name:<14} {description}")
        return 0
    try:
        return demos.run(args.name, args.args)
    except KeyError:
        names = ", ".join(name for name, _ in demos.list_demos())
        print(f"unknown demo {args.name!r}; choose one of: {names}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import os

    from ._run import load_children, run

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does for the current directory
    try:
        children = load_children(args.target)
        return run(
            children,
            strategy=args.strategy,
            max_restarts=args.max_restarts,
            max_seconds=args.max_seconds,
            shutdown=args.shutdown,
            signals=tuple(s for s in args.signals.split(",") if s),
            name=args.name,
        )
    except (ValueError, TypeError) as exc:
        print(f"python -m otpy run: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
