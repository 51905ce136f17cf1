"""``python -m otpy demo [NAME] [ARGS...]``: list the demos, or run one by name."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otpy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="list the demos, or run one by name")
    demo.add_argument("name", nargs="?", help="the demo to run; omit to list them")
    demo.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the demo")
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    raise SystemExit(main())
