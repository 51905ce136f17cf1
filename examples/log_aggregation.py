"""Errors per service per 10-second window of event time, with otpy.flow windows.

Generates a log (six services, timestamps, levels, an incident), then counts the errors per
service in fixed windows of event time with a flow: the stages parse and filter the lines,
``partition(key=service, window=Window.fixed(10, "seconds", by=time))`` sends each error to
the stage of its service, which counts it in its window and emits each window once every
stage feeding it has moved past it. The demo prints the first windows, the busiest one, the
timings, and whether the table equals a plain sequential count.

Run it from the repository root (with otpy installed, e.g. ``pip install -e .``)::

    python examples/log_aggregation.py
    python examples/log_aggregation.py --lines 500000 --seed 5 --window 30

The code, with a longer explanation, is in ``otpy/demos/log_aggregation.py``;
``python -m otpy demo log_aggregation`` runs the same demo.
"""

import sys

from otpy.demos.log_aggregation import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
