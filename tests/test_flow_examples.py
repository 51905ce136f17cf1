"""Smoke tests of the Flow examples: each script runs, exits 0 and matches a sequential count.

Each example runs in a fresh interpreter (``sys.executable``, from the repository root), as a
user would start it. Timing lines are only checked for their shape.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_examples import ROOT
from test_examples import run_python as run_example

import otpy.demos

pytestmark = pytest.mark.timeout(60)


def run_python(*args: str) -> str:
    """Run ``python *args`` from the repository root; its stdout (it must exit 0)."""
    return run_example(*args).stdout


def top_words(out: str) -> list[tuple[str, int]]:
    found = re.findall(r"^\s+\d+\. (\S+)\s+([\d,]+)$", out, re.MULTILINE)
    return [(word, int(n.replace(",", ""))) for word, n in found]


class TestWordCount:
    def test_flow_counts_equal_a_sequential_counter(self) -> None:
        out = run_python("examples/word_count.py", "--size", "1")
        lines = out.splitlines()
        assert lines[0] == "word count of generated text (seed 7): 1.0 MB, 14,028 lines"
        assert re.fullmatch(r"[\d,]+ words, [\d,]+ distinct", lines[1]), lines[1]
        top = top_words(out)
        assert len(top) == 10
        assert [n for _, n in top] == sorted((n for _, n in top), reverse=True)
        assert re.search(
            r"^timings: flow count \d+\.\d\ds, flow top \d+\.\d\ds, sequential Counter \d+\.\d\ds$",
            out,
            re.MULTILINE,
        )
        assert lines[-1] == "same result as a sequential Counter: True"

    def test_the_same_seed_gives_the_same_top_words_whatever_the_stages(self) -> None:
        first = run_python("examples/word_count.py", "--size", "0.5", "--seed", "3")
        second = run_python(
            "examples/word_count.py", "--size", "0.5", "--seed", "3", "--stages", "3"
        )
        assert top_words(first) == top_words(second)
        assert second.splitlines()[-1] == "same result as a sequential Counter: True"

    def test_counts_the_words_of_a_file(self, tmp_path: Path) -> None:
        text = tmp_path / "text.txt"
        text.write_text("the cat and the dog\nand the bird\n", encoding="utf-8")
        out = run_python("examples/word_count.py", "--file", str(text), "--top", "2")
        assert "8 words, 5 distinct" in out
        assert top_words(out) == [("the", 3), ("and", 2)]
        assert out.splitlines()[-1] == "same result as a sequential Counter: True"


class TestLogAggregation:
    def test_windowed_error_counts_equal_a_sequential_count(self) -> None:
        out = run_python("examples/log_aggregation.py", "--lines", "50000")
        lines = out.splitlines()
        assert lines[0] == (
            "log aggregation: 50,000 log lines (seed 3) from 2023-11-14T22:13:20.000Z to "
            "2023-11-14T22:17:30.099Z"
        )
        assert lines[1] == (
            "errors per service per 10s window of event time "
            "(Window.fixed(10, 'seconds', by=time)):"
        )
        assert lines[2].split() == [
            "window", "(UTC)", "auth", "billing", "catalog", "gateway", "payments", "search",
        ]  # fmt: skip
        assert re.fullmatch(r"  \d\d:\d\d:\d0( +\d+){6}", lines[3]), lines[3]
        assert re.search(
            r"^busiest: \w+ with \d+ errors in the window from \d\d:\d\d:\d0$", out, re.M
        )
        assert re.search(
            r"^rows that arrived before the source had read its last line: \d+", out, re.M
        )
        assert lines[-1] == "same result as a sequential count: True"

    def test_other_windows_and_stages_give_the_same_result_as_a_sequential_count(self) -> None:
        out = run_python(
            "examples/log_aggregation.py", "--lines", "30000", "--seed", "5", "--window", "30",
            "--stages", "3",
        )  # fmt: skip
        assert "errors per service per 30s window" in out
        assert out.splitlines()[-1] == "same result as a sequential count: True"


class TestRegistry:
    def test_both_demos_are_registered_with_their_scripts(self) -> None:
        for name in ("word_count", "log_aggregation"):
            module, description = otpy.demos.DEMOS[name]
            assert (ROOT / "otpy" / "demos" / f"{module}.py").is_file()
            assert (ROOT / "examples" / f"{name}.py").is_file()
            assert "otpy.flow" in description

    @pytest.mark.skipif(
        not (ROOT / "otpy" / "__main__.py").is_file(), reason="python -m otpy is not written yet"
    )
    def test_python_m_otpy_demo_runs_word_count(self) -> None:
        out = run_python("-m", "otpy", "demo", "word_count", "--size", "0.2")
        assert out.splitlines()[-1] == "same result as a sequential Counter: True"
