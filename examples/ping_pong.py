"""Ping-pong between two raw processes.

Shows ``otpy.spawn_monitor``, ``otpy.send`` and ``otpy.receive`` between two plain functions
running as processes, selective receive (``receive(match=...)`` leaves other messages queued),
and monitors: the main thread gets an ``otpy.Down`` for each player when it ends.

Run it from the repository root (with otpy installed, e.g. ``pip install -e .``)::

    python examples/ping_pong.py
    python examples/ping_pong.py --rounds 10

The code, with a longer explanation, is in ``otpy/demos/ping_pong.py``;
``python -m otpy demo ping_pong`` runs the same demo.
"""

import sys

from otpy.demos.ping_pong import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
