"""``--moetune-plot PATH.png``: throughput against tokens per rank, one panel per case family
(everything in the case id but the token count), baseline dashed and this run solid."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_moetune.harness import CheckResult


def _family_and_tokens(case: str) -> tuple[str, int]:
    family, _, tokens = case.rpartition("/T=")
    return family, int(tokens)


def write_plot(path: Path, results: Sequence[CheckResult]) -> Path:
    """Draw the plot with matplotlib's Agg backend; tokens/s = tokens / median per-launch time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families: dict[str, list[CheckResult]] = defaultdict(list)
    for result in results:
        families[_family_and_tokens(result.case)[0]].append(result)
    cols = min(3, len(families))
    rows = math.ceil(len(families) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (family, members) in zip(axes.flat, sorted(families.items()), strict=False):
        members.sort(key=lambda r: _family_and_tokens(r.case)[1])
        tokens = [_family_and_tokens(r.case)[1] for r in members]
        now = [t / (r.median_us * 1e-6) for t, r in zip(tokens, members, strict=True)]
        ax.plot(tokens, now, "o-", label="now")
        with_base = [(t, r) for t, r in zip(tokens, members, strict=True) if r.baseline_median_us]
        if with_base:
            ax.plot(
                [t for t, _ in with_base],
                [t / (r.baseline_median_us * 1e-6) for t, r in with_base],  # type: ignore[operator]
                "s--",
                label="baseline",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        # at least +-15% of headroom, so round-to-round noise does not fill the panel
        values = now + [t / (r.baseline_median_us * 1e-6) for t, r in with_base]  # type: ignore[operator]
        ax.set_ylim(min(values) / 1.15, max(values) * 1.15)
        ax.set_xlim(min(tokens) / 1.5, max(tokens) * 1.5)
        ax.set_title(family, fontsize=8)
        ax.set_xlabel("tokens per rank")
        ax.set_ylabel("tokens/s")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(families) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
