"""A pool of pretend database connections under load, with ``otpy.pool.Pool``.

Three ``Conn`` GenServers (plus up to two overflow ones) pretend to be database connections:
they connect in ``init`` and answer queries after a few milliseconds, and a query on the
``legacy_blobs`` table crashes them. The demo shows, in four acts, a crashed connection
replaced, a client killed while it holds a connection in the middle of a transaction (the pool
kills that connection rather than hand it on), overflow connections started on demand and
closed again after ``overflow_ttl``, a checkout that times out and leaves nothing reserved,
and then eight clients running transactions at once. A watcher process prints
``Pool.status`` each time it changes, a tracker prints each connection's opening and closing,
and the summary adds it all up: at no time were more than ``size + max_overflow`` open.

Run it from the repository root (with otpy installed, e.g. ``pip install -e .``)::

    python examples/pool.py
    python examples/pool.py --seed 3 --clients 4 --transactions 3 --ttl 0.1

The code, with a longer explanation, is in ``otpy/demos/pool.py``;
``python -m otpy demo pool`` runs the same demo.
"""

import sys

from otpy.demos.pool import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
