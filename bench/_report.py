"""The results table, as aligned text or as Markdown, with ratios and target verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._contender import BASE_NAME, NAMES
from ._runner import Results
from ._workloads import Case, Target


def ratio_columns(names: Sequence[str]) -> list[str]:
    """The contenders otpy is divided by, in column order: ``otpy@base`` first, then the others."""
    others = [name for name in reversed(names) if name not in ("otpy", BASE_NAME)]
    return [BASE_NAME, *others] if BASE_NAME in names else others


def header(names: Sequence[str] = NAMES) -> tuple[str, ...]:
    """The table's header for the contender columns ``names`` (``bench._contender.columns``)."""
    return (
        "workload",
        "unit (↓ lower is better, ↑ higher is better, →0 nearer 0 is better)",
        *names,
        *(f"otpy/{other}" for other in ratio_columns(names)),
        "target",
        "result",
    )


HEADER = header()
"""The header without ``--base``."""


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


def round_ratios(case: Case, other: str, results: Results) -> list[float] | None:
    """otpy ÷ ``other`` round by round, or None unless both have a sample in every round.

    Rounds interleave the contenders, so the two samples of a round ran close in time.
    """
    mine = results.samples.get((case.key, "otpy"), [])
    theirs = results.samples.get((case.key, other), [])
    if not mine or len(mine) != len(theirs) or not all(theirs):
        return None
    return [a / b for a, b in zip(mine, theirs, strict=True)]


def _ratio_text(case: Case, other: str, results: Results) -> str:
    otpy = results.median((case.key, "otpy"))
    reference = results.median((case.key, other))
    if otpy is None or not reference:
        return "-"
    text = format_number(otpy / reference)
    if other == BASE_NAME:
        ratios = round_ratios(case, other, results)
        if ratios is not None and len(ratios) > 1:
            text += f" ({format_number(min(ratios))}-{format_number(max(ratios))})"
    return text


def rows(
    cases: Sequence[Case],
    targets: Sequence[Target],
    results: Results,
    unavailable: Mapping[str, str],
    names: Sequence[str] = NAMES,
) -> list[tuple[str, ...]]:
    """The table's body: one row per case, cells as text, for the contender columns ``names``.

    With ``otpy@base`` among ``names``, its ratio cell also shows the min-max
    of the round-by-round ratios (``round_ratios``) when there are several rounds.
    """
    body = []
    for case in cases:
        own = [t for t in targets if t.row == case.key]
        verdicts = [evaluate(t, results) for t in own]
        body.append(
            (
                f"{case.workload} {case.title}",
                f"{case.unit.label} {case.unit.arrow}",
                *(_cell_text(case, name, results, unavailable) for name in names),
                *(_ratio_text(case, other, results) for other in ratio_columns(names)),
                "; ".join(t.text for t in own),
                "; ".join("n/a" if v is None else str(v) for v in verdicts),
            )
        )
    return body


def render_text(body: Sequence[tuple[str, ...]], head: Sequence[str] = HEADER) -> str:
    """An aligned plain-text table under the header ``head``."""
    table = [tuple(head), *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_markdown(body: Sequence[tuple[str, ...]], head: Sequence[str] = HEADER) -> str:
    """A GitHub-flavoured Markdown table under the header ``head``."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(head), line(["---"] * len(head)), *map(line, body)])


def summary(targets: Sequence[Target], results: Results) -> str:
    """``targets: 5 PASS, 1 FAIL, 1 n/a``."""
    verdicts = [evaluate(t, results) for t in targets]
    passed = sum(1 for v in verdicts if v is not None and v.passed)
    failed = sum(1 for v in verdicts if v is not None and not v.passed)
    missing = len(verdicts) - passed - failed
    return f"targets: {passed} PASS, {failed} FAIL, {missing} n/a"
