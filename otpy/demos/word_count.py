"""Word count with Flow: the same counts as a sequential ``collections.Counter``.

Run it::

    python -m otpy demo word_count            # or: python examples/word_count.py
    python -m otpy demo word_count --size 5 --seed 3 --stages 4
    python -m otpy demo word_count --file some/book.txt

What it shows:

* **A flow is built like an iterator pipeline and runs on processes.**
  ``Flow.from_enumerable(lines)`` starts a source process that reads the lines
  on demand; ``flat_map(str.split)`` runs in a layer of stages (one per CPU by
  default); ``partition()`` starts a second layer and routes every word, by a
  stable hash, to the stage of its partition; ``reduce(dict, count)`` makes
  each of those stages count its own words. When the input ends, each stage
  emits its dict's ``(word, count)`` pairs, and iterating the flow collects
  them: ``dict(flow)``.
* **Partitioning makes a per-stage reduce correct.** The same word always
  meets the same stage, so no word is counted in two places and the
  per-stage dicts never overlap: their union is exactly the sequential count.
* **take_sort** computes the top words across partitions in the flow itself:
  each stage sorts its counts, keeps ten, and one stage merges them.
* **Honest timings.** CPython's GIL lets one thread run Python code at a time,
  so the flow (more processes, messages between them) is slower than a
  ``Counter`` on one thread; the point is the model. The demo prints both.

The text is generated from ``--seed`` (words of a made-up language with
Zipf-like frequencies), or read from ``--file``. The demo exits with status
1 if the flow's counts differ from the sequential ones.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from collections import Counter
from collections.abc import Sequence

import otpy
from otpy.flow import Flow

SYLLABLES = (
    "ka ri to me sa lu vo ne di pa go ha ze mi ro ta el an is un or ek "
    "shi bra tor vel quin dor lem".split()
)


def make_text(size_mb: float, seed: int, vocabulary: int = 5000) -> list[str]:
    """About ``size_mb`` megabytes of lines of made-up words, the same for the same ``seed``."""
    rng = random.Random(seed)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < vocabulary:
        word = "".join(rng.choices(SYLLABLES, k=rng.randint(1, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    cum_weights = list(itertools.accumulate(1.0 / rank for rank in range(1, vocabulary + 1)))
    lines: list[str] = []
    size = 0
    target = int(size_mb * 1_000_000)
    while size < target:
        chunk = rng.choices(words, cum_weights=cum_weights, k=10_000)
        start = 0
        while start < len(chunk) and size < target:
            length = rng.randint(6, 14)
            line = " ".join(chunk[start : start + length])
            start += length
            lines.append(line)
            size += len(line) + 1
    return lines


def count(word: str, acc: dict[str, int]) -> dict[str, int]:
    """The reducer: Flow's argument order, ``reducer(event, acc) -> acc``."""
    acc[word] = acc.get(word, 0) + 1
    return acc


def by_count(item: tuple[str, int]) -> tuple[int, str]:
    """Sort key for the top words: most frequent first, then alphabetical."""
    return (-item[1], item[0])


def flow_counts(lines: Sequence[str], stages: int | None) -> dict[str, int]:
    """Count the words of ``lines`` with a flow."""
    flow = (
        Flow.from_enumerable(lines, stages=stages)
        .flat_map(str.split)
        .partition(stages=stages)
        .reduce(dict, count)
    )
    return dict(flow)


def flow_top(lines: Sequence[str], stages: int | None, n: int) -> list[tuple[str, int]]:
    """The ``n`` most frequent words, computed in the flow with take_sort."""
    flow = (
        Flow.from_enumerable(lines, stages=stages)
        .flat_map(str.split)
        .partition(stages=stages)
        .reduce(dict, count)
        .take_sort(n, key=by_count)
    )
    [top] = list(flow)  # one list per window; the global window is the only one
    return top


def main(argv: list[str]) -> int:
    """Count words with Flow and with a Counter, print the top words and compare."""
    parser = argparse.ArgumentParser(
        prog="python -m otpy demo word_count",
        description="Count words with otpy.flow and check against collections.Counter.",
    )
    parser.add_argument("--file", help="count the words of this text file instead")
    parser.add_argument(
        "--size", type=float, default=3.0, help="megabytes of generated text (default: 3)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the text (default: 7)")
    parser.add_argument(
        "--stages", type=int, default=None, help="stages per layer (default: CPU count)"
    )
    parser.add_argument("--top", type=int, default=10, help="how many top words (default: 10)")
    args = parser.parse_args(argv)

    if args.file:
        with open(args.file, encoding="utf-8") as f:
            lines = f.read().splitlines()
        origin = f"{args.file}"
    else:
        lines = make_text(args.size, args.seed)
        origin = f"generated text (seed {args.seed})"
    megabytes = sum(len(line) + 1 for line in lines) / 1_000_000
    print(f"word count of {origin}: {megabytes:.1f} MB, {len(lines):,} lines")

    start = time.perf_counter()
    sequential = Counter(word for line in lines for word in line.split())
    sequential_time = time.perf_counter() - start
    print(f"{sum(sequential.values()):,} words, {len(sequential):,} distinct")

    with otpy.Runtime():
        start = time.perf_counter()
        counts = flow_counts(lines, args.stages)
        flow_time = time.perf_counter() - start
        start = time.perf_counter()
        top = flow_top(lines, args.stages, args.top)
        top_time = time.perf_counter() - start

    print(f"top {args.top} words (take_sort in the flow):")
    for rank, (word, n) in enumerate(top, start=1):
        print(f"  {rank:2d}. {word:<16} {n:>9,}")
    expected_top = sorted(sequential.items(), key=by_count)[: args.top]
    same = counts == sequential and top == expected_top
    print(
        f"timings: flow count {flow_time:.2f}s, flow top {top_time:.2f}s, "
        f"sequential Counter {sequential_time:.2f}s"
    )
    print(f"same result as a sequential Counter: {same}")
    return 0 if same else 1
