"""W9 on otpy: a word count with ``otpy.flow.Flow``.

``Flow.from_enumerable(lines, stages=stages).flat_map(str.split)
.partition(stages=stages).reduce(dict, count)``, read into a dict: the lines
are split in one layer of ``stages`` stages and counted in another, each
word always in the same stage. Only the public API is used.
"""

from __future__ import annotations

from collections.abc import Sequence

from otpy.flow import Flow


def _count(word: str, counts: dict[str, int]) -> dict[str, int]:
    counts[word] = counts.get(word, 0) + 1
    return counts


def word_count(lines: Sequence[str], stages: int) -> dict[str, int]:
    """W9 on otpy: split in ``stages`` stages, count in ``stages`` partitions by word."""
    flow = (
        Flow.from_enumerable(lines, stages=stages)
        .flat_map(str.split)
        .partition(stages=stages)
        .reduce(dict, _count)
    )
    return dict(flow)
