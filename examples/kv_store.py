"""A key-value store GenServer, registered by name and shared by concurrent clients.

Shows a GenServer that keeps its state on the instance, a client API of plain functions over
``call`` (put, get, delete, keys) and ``cast`` (a fire-and-forget put), clients running as tasks
at the same time, and a clean ``GenServer.stop`` after which ``terminate`` has run.

Run it from the repository root (with otpy installed, e.g. ``pip install -e .``)::

    python examples/kv_store.py
    python examples/kv_store.py --clients 5

The code, with a longer explanation, is in ``otpy/demos/kv_store.py``;
``python -m otpy demo kv_store`` runs the same demo.
"""

import sys

from otpy.demos.kv_store import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
