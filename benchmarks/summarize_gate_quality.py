"""Tabulate gate-quality runs (``benchmarks/gpu_gate_quality.sh``): verdicts per run kind, false
regressions with unchanged code, slowdowns caught, and the measured noise per case.

    python3 benchmarks/summarize_gate_quality.py DIR [DIR ...] [--rejudge 0.05,0.04]

Each DIR holds ``unchanged-N.json``, ``slow0.05-N.json``, ``slow0.10-N.json`` (gate reports).
``--rejudge`` also applies the gate's rule (:func:`pytest_moetune.verdict.decide`) to the stored
ratio, noise and p-value of every case-run at each given threshold (slowdowns only: a stored p-value
is one-sided, towards the side the ratio fell on).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from pytest_moetune.verdict import INCONCLUSIVE, REGRESSED, decide

KINDS = ("unchanged", "slow0.05", "slow0.10")


def load(directories: list[Path]) -> dict[str, list[list[dict]]]:
    kinds: dict[str, list[list[dict]]] = defaultdict(list)
    for directory in directories:
        for path in sorted(directory.glob("*.json")):
            kind, sep, _ = path.stem.rpartition("-")
            if sep and kind in KINDS:
                kinds[kind].append(json.loads(path.read_text())["results"])
    if not kinds:
        names = ", ".join(str(d) for d in directories)
        raise SystemExit(f"no gate reports (unchanged-N.json, slow0.05-N.json, slow0.10-N.json) in {names}")
    return kinds


def rejudge(kinds: dict[str, list[list[dict]]], thresholds: list[float]) -> None:
    header = " | ".join(f"{kind} ({len(kinds[kind])} runs)" for kind in sorted(kinds))
    print(f"\n| threshold | {header} |")
    print("|---|" + "---|" * len(kinds))
    for threshold in thresholds:
        cells = []
        for _, runs in sorted(kinds.items()):
            verdicts = [[_verdict_at(r, threshold) for r in run] for run in runs]
            regressed = sum(v == REGRESSED for run in verdicts for v in run)
            inconclusive = sum(v == INCONCLUSIVE for run in verdicts for v in run)
            runs_caught = sum(REGRESSED in run for run in verdicts)
            total = sum(len(run) for run in verdicts)
            cells.append(
                f"{regressed}/{total} regressed ({runs_caught}/{len(runs)} runs), {inconclusive} inconclusive"
            )
        print(f"| {100 * threshold:g}% | " + " | ".join(cells) + " |")


def _verdict_at(result: dict, threshold: float) -> str:
    ratio, noise, p = result["ratio"], result["noise"], result["p_value"]
    if ratio is None or noise is None or p is None:
        return result["verdict"]
    p_slower, p_faster = (p, 1.0) if ratio >= 1 else (1.0, p)
    return decide(ratio, noise, p_slower, p_faster, threshold)


def main(directories: list[Path], thresholds: list[float]) -> None:
    kinds = load(directories)
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

    if thresholds:
        rejudge(kinds, thresholds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument(
        "--rejudge",
        type=lambda text: [float(t) for t in text.split(",")],
        default=[],
        metavar="T1,T2",
        help="re-judge every stored case-run at these thresholds (fractions)",
    )
    args = parser.parse_args()
    main(args.directories, args.rejudge)
