"""The gate's reports: the terminal summary table, and JSON + Markdown files for CI job summaries."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_moetune.fileio import atomic_write_text

if TYPE_CHECKING:
    from pytest_moetune.harness import CheckResult

COLUMNS = (
    "case",
    "baseline us",
    "now us",
    "ratio",
    "raw",
    "verdict",
    "tactic changed",
    "roofline",
    "vs peer",
)


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of positive ``values`` (nan when empty)."""
    if not values:
        return math.nan
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _row(result: CheckResult) -> tuple[str, ...]:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    return (
        result.case,
        num(result.baseline_median_us, ".2f"),
        f"{result.median_us:.2f}",
        num(result.ratio, ".3f"),
        num(result.raw_ratio, ".3f"),
        result.verdict,
        "yes" if result.tactic_changed else ("-" if result.baseline_tactic is None else "no"),
        "-" if result.fraction_of_roofline is None else f"{100 * result.fraction_of_roofline:.0f}%",
        num(result.speedup_vs_peer, ".2f") + ("x" if result.speedup_vs_peer is not None else ""),
    )


def summary_lines(results: Sequence[CheckResult]) -> list[str]:
    """A fixed-width table of every case, then :func:`trailer_lines`."""
    rows = [COLUMNS, *(_row(r) for r in sorted(results, key=lambda r: r.case))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return lines + trailer_lines(results)


def trailer_lines(results: Sequence[CheckResult]) -> list[str]:
    """The lines under the table: the geometric-mean time ratio and verdict counts, then, where any
    case was judged against a baseline from another card, how many and which cards."""
    ratios = [r.ratio for r in results if r.ratio is not None]
    counts: dict[str, int] = {}
    for result in results:
        counts[result.verdict] = counts.get(result.verdict, 0) + 1
    tally = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
    mean = f"{geometric_mean(ratios):.3f}x time" if ratios else "n/a (no baselines)"
    lines = [f"geometric-mean ratio over {len(ratios)} compared cases: {mean}; {tally}"]
    cards = sorted({r.baseline_card for r in results if r.baseline_card})
    if cards:
        judged = sum(1 for r in results if r.baseline_card)
        lines.append(
            f"{judged} of {len(results)} cases were judged against baselines from another card "
            f"({', '.join(cards)}): cards of one model differ by a few percent (README)"
        )
    return lines


def markdown(results: Sequence[CheckResult]) -> str:
    rows = [_row(r) for r in sorted(results, key=lambda r: r.case)]
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join(
        "| " + " | ".join(f"`{c}`" if i == 0 else c for i, c in enumerate(row)) + " |\n" for row in rows
    )
    return "## moetune gate\n\n" + head + body + "\n" + "\n\n".join(trailer_lines(results)) + "\n"


def report_paths(path: Path) -> tuple[Path, Path]:
    """``PATH.json`` and ``PATH.md``; a given ``.json`` or ``.md`` suffix is replaced, any other dot
    in the name is kept (``run-0.05`` gives ``run-0.05.json``)."""
    stem = path.with_suffix("") if path.suffix in (".json", ".md") else path
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")


def write_reports(path: Path, results: Sequence[CheckResult]) -> tuple[Path, Path]:
    """Write :func:`report_paths` of ``path``: every result in full (JSON) and the table (Markdown)."""
    json_path, md_path = report_paths(path)
    ratios = [r.ratio for r in results if r.ratio is not None]
    payload = {
        "geometric_mean_ratio": geometric_mean(ratios) if ratios else None,
        "results": [r.to_dict() for r in sorted(results, key=lambda r: r.case)],
    }
    atomic_write_text(json_path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
    atomic_write_text(md_path, markdown(results))
    return json_path, md_path
