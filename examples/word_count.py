"""Word count with otpy.flow, checked against a sequential ``collections.Counter``.

Counts the words of a few megabytes of generated text (or of ``--file``) with a flow: a source
process reads the lines on demand, a layer of stages splits them into words, ``partition()``
sends each word to the stage that owns it, and each of those stages counts its words. The demo
prints the top words (computed in the flow with ``take_sort``), the timings, and whether the
counts equal a plain ``Counter``'s.

Run it from the repository root (with otpy installed, e.g. ``pip install -e .``)::

    python examples/word_count.py
    python examples/word_count.py --size 5 --seed 3 --stages 4
    python examples/word_count.py --file some/book.txt

The code, with a longer explanation, is in ``otpy/demos/word_count.py``;
``python -m otpy demo word_count`` runs the same demo.
"""

import sys

from otpy.demos.word_count import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
