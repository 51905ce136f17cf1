"""Check 20 fake URLs, five at a time, with ``otpy.Task.async_stream``.

Shows bounded concurrency (``max_concurrency=5``), a timeout per item with
``on_timeout="kill_task"`` (a hanging URL yields ``("exit", "timeout")`` and the stream goes on),
failures reported as values (``("ok", ("down", ...))``), and the wall time of the stream next to
the time the same checks would take one after another. The fake network is a seeded
``time.sleep``: the same ``--seed`` gives the same results.

Run it from the repository root (with otpy installed, e.g. ``pip install -e .``)::

    python examples/url_checker.py
    python examples/url_checker.py --seed 3

The code, with a longer explanation, is in ``otpy/demos/url_checker.py``;
``python -m otpy demo url_checker`` runs the same demo.
"""

import sys

from otpy.demos.url_checker import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
