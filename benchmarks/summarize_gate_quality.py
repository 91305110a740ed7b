"""Tabulate gate-quality runs (``benchmarks/gpu_gate_quality.sh``): verdicts per run kind, false
regressions with unchanged code, slowdowns caught, and the measured noise per case.

    python3 benchmarks/summarize_gate_quality.py DIR    # DIR holds unchanged-N.json, slow0.05-N.json, ...
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path


def main(directory: Path) -> None:
    kinds: dict[str, list[list[dict]]] = defaultdict(list)
    for path in sorted(directory.glob("*.json")):
        kind, sep, _ = path.stem.rpartition("-")
        if sep and kind in ("unchanged", "slow0.05", "slow0.10"):
            kinds[kind].append(json.loads(path.read_text())["results"])
    print("| runs | kind | cases per run | verdicts (all runs) | runs with a regression | all regressed |")
    print("|---|---|---|---|---|---|")
    for kind, runs in sorted(kinds.items()):
        verdicts = Counter(r["verdict"] for run in runs for r in run)
        any_regressed = sum(any(r["verdict"] == "regressed" for r in run) for run in runs)
        all_regressed = sum(all(r["verdict"] == "regressed" for r in run) for run in runs)
        tally = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
        print(f"| {len(runs)} | {kind} | {len(runs[0])} | {tally} | {any_regressed} | {all_regressed} |")
    print("\n| case | kind | median ratio | min..max ratio | mean noise | max noise | caught |")
    print("|---|---|---|---|---|---|---|")
    for kind, runs in sorted(kinds.items()):
        per_case: dict[str, list[dict]] = defaultdict(list)
        for run in runs:
            for r in run:
                per_case[r["case"]].append(r)
        for case, rs in sorted(per_case.items()):
            ratios = [r["ratio"] for r in rs if r["ratio"] is not None]
            noise = [r["noise"] for r in rs if r["noise"] is not None]
            caught = sum(r["verdict"] == "regressed" for r in rs)
            if not ratios:
                continue
            print(
                f"| `{case}` | {kind} | {statistics.median(ratios):.3f} | "
                f"{min(ratios):.3f}..{max(ratios):.3f} | "
                f"{100 * statistics.mean(noise):.2f}% | {100 * max(noise):.2f}% | {caught}/{len(rs)} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
