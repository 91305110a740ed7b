"""Tuned kernel vs its peer and the roofline, per case, from gate reports written with
``--moetune-peer --moetune-report PATH`` (``benchmarks/gpu_full_profile.sh``): one Markdown table for
BENCHMARKS.md and, with ``--plot``, one figure (speedup over the peer and fraction of roofline per
case, a row of panels per model).

    python3 benchmarks/peer_table.py REPORT.json [REPORT.json ...] [--plot PATH.png]

A case in several reports is taken from the last one given.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any


def load(paths: list[Path]) -> list[dict[str, Any]]:
    """The reports' results by case; a case in several reports takes the last report's (a shard
    re-run after a full profile replaces its cases)."""
    by_case = {r["case"]: r for path in paths for r in json.loads(path.read_text())["results"]}
    results = list(by_case.values())
    missing = [r["case"] for r in results if r.get("peer_median_us") is None]
    if missing:
        raise SystemExit(f"no peer timing for {len(missing)} cases (run with --moetune-peer): {missing[:3]}")
    return sorted(results, key=lambda r: r["case"])


def short(case: str) -> str:
    """``fused_moe/deepseek-r1/bf16/dep8/balanced/T=64`` -> ``dep8 bf16 balanced T=64``."""
    _, _, dtype, topology, distribution, tokens = case.split("/")
    return f"{topology} {dtype.replace('_w8a8', '')} {distribution} {tokens}"


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| case | tuned us | peer us | roofline us | % of roofline | vs peer |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| `{r['case']}` | {r['median_us']:.1f} | {r['peer_median_us']:.1f} | {r['roofline_us']:.1f} | "
            f"{100 * r['fraction_of_roofline']:.0f}% | {r['speedup_vs_peer']:.2f}x |"
        )
    speedups = [r["speedup_vs_peer"] for r in results]
    fractions = sorted(r["fraction_of_roofline"] for r in results)
    below = [r["case"] for r in results if r["speedup_vs_peer"] < 1]
    lines += [
        "",
        f"{len(results)} cases; vs peer: geometric mean "
        f"{math.exp(sum(map(math.log, speedups)) / len(speedups)):.2f}x, min {min(speedups):.2f}x, "
        f"max {max(speedups):.2f}x, below 1.0x at {len(below)}"
        + (f" ({', '.join(f'`{c}`' for c in below)})" if below else "")
        + f"; of roofline: median {100 * fractions[len(fractions) // 2]:.0f}%, "
        f"min {100 * fractions[0]:.0f}%, max {100 * fractions[-1]:.0f}%",
    ]
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_model[r["case"].split("/")[1]].append(r)
    fig, axes = plt.subplots(len(by_model), 2, figsize=(16, 3.2 * len(by_model)), squeeze=False)
    for row, (model, rs) in enumerate(sorted(by_model.items())):
        labels = [short(r["case"]) for r in rs]
        x = range(len(rs))
        left, right = axes[row]
        left.bar(x, [r["speedup_vs_peer"] for r in rs], color="tab:blue")
        left.axhline(1.0, color="black", linewidth=0.8)
        left.set_ylabel("x torch._grouped_mm layer")
        right.bar(x, [100 * r["fraction_of_roofline"] for r in rs], color="tab:green")
        right.axhline(80, color="black", linewidth=0.8, linestyle="--")
        right.set_ylabel("% of roofline")
        for ax in (left, right):
            ax.set_title(model, fontsize=9)
            ax.set_xticks(list(x), labels, rotation=90, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH.png")
    args = parser.parse_args()
    results = load(args.reports)
    print(markdown(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
