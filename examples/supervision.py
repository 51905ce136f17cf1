"""A live supervision tree under chaos: kills, restarts, and a failure that climbs the tree.

Builds a root supervisor with a Registry, a DynamicSupervisor of sessions named through the
Registry (``otpy.via``), a PartitionSupervisor of counters, a TaskSupervisor and a ``billing``
subtree. A chaos task kills random children and prints the tree (ids, pids, restart counts) after
each kill; the finale crashes ``billing``'s ledger until ``billing`` exceeds its restart
intensity and the root restarts the whole subtree. The same ``--seed`` gives the same run.

Run it from the repository root (with otpy installed, e.g. ``pip install -e .``)::

    python examples/supervision.py                 # about ten seconds
    python examples/supervision.py --seed 7
    python examples/supervision.py --events 4 --pause 0.2

The code, with a longer explanation of the output, is in ``otpy/demos/supervision.py``;
``python -m otpy demo supervision`` runs the same demo.
"""

import sys

from otpy.demos.supervision import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
