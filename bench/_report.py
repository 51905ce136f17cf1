"""The results table, as aligned text or as Markdown, with ratios and target verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._contender import NAMES
from ._runner import Results
from ._workloads import Case, Target

HEADER = (
    "workload",
    "unit (↓ lower is better, ↑ higher is better)",
    *NAMES,
    "otpy/pykka",
    "otpy/threads",
    "target",
    "result",
)


def format_number(value: float) -> str:
    """Three significant digits, no exponent: ``0.312``, ``66.2``, ``1,234``, ``190k``, ``1.23M``."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g}k"
    if magnitude >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


@dataclass(frozen=True)
class Verdict:
    """A target's measured figure and whether it meets the bound."""

    value: float
    passed: bool

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} ({format_number(self.value)})"


def evaluate(target: Target, results: Results) -> Verdict | None:
    """Judge ``target`` on the medians, or return ``None`` if a figure is missing."""
    subject = results.median(target.subject)
    if subject is None:
        return None
    if target.reference is None:
        return Verdict(subject, target.passes(subject))
    reference = results.median(target.reference)
    if not reference:
        return None
    ratio = subject / reference
    return Verdict(ratio, target.passes(ratio))


def _cell_text(case: Case, name: str, results: Results, unavailable: Mapping[str, str]) -> str:
    if name in unavailable:
        return "n/a"
    cell = (case.key, name)
    median = results.median(cell)
    if median is None:
        return results.notes.get(cell, "-")
    text = format_number(median)
    spread = results.spread(cell) if case.show_spread else None
    if spread is not None:
        text += f" ({format_number(spread[0])}-{format_number(spread[1])})"
    return text


def _ratio_text(case: Case, other: str, results: Results) -> str:
    otpy = results.median((case.key, "otpy"))
    reference = results.median((case.key, other))
    if otpy is None or not reference:
        return "-"
    return format_number(otpy / reference)


def rows(
    cases: Sequence[Case],
    targets: Sequence[Target],
    results: Results,
    unavailable: Mapping[str, str],
) -> list[tuple[str, ...]]:
    """The table's body: one row per case, cells as text."""
    body = []
    for case in cases:
        own = [t for t in targets if t.row == case.key]
        verdicts = [evaluate(t, results) for t in own]
        body.append(
            (
                f"{case.workload} {case.title}",
                f"{case.unit.label} {'↑' if case.unit.higher_is_better else '↓'}",
                *(_cell_text(case, name, results, unavailable) for name in NAMES),
                _ratio_text(case, "pykka", results),
                _ratio_text(case, "threads", results),
                "; ".join(t.text for t in own),
                "; ".join("n/a" if v is None else str(v) for v in verdicts),
            )
        )
    return body


def render_text(body: Sequence[tuple[str, ...]]) -> str:
    """An aligned plain-text table."""
    table = [HEADER, *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_markdown(body: Sequence[tuple[str, ...]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(HEADER), line(["---"] * len(HEADER)), *map(line, body)])


def summary(targets: Sequence[Target], results: Results) -> str:
    """``targets: 5 PASS, 1 FAIL, 1 n/a``."""
    verdicts = [evaluate(t, results) for t in targets]
    passed = sum(1 for v in verdicts if v is not None and v.passed)
    failed = sum(1 for v in verdicts if v is not None and not v.passed)
    missing = len(verdicts) - passed - failed
    return f"targets: {passed} PASS, {failed} FAIL, {missing} n/a"
