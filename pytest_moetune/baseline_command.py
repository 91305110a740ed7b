"""``moetune baseline ...``: update, prune, show and diff the committed baselines."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from pytest_moetune.argtypes import argparse_type
from pytest_moetune.baseline import BaselineError, read_baseline
from pytest_moetune.ceilings import FP8_DTYPE, Ceilings, Roofline, normalize_rounds, normalizes
from pytest_moetune.verdict import DEFAULT_THRESHOLD, compare_rounds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pytest_moetune.gate import threshold_value

    sub = parser.add_subparsers(dest="baseline_command", required=True)
    update = sub.add_parser(
        "update",
        help="run `pytest --moetune --moetune-update-baselines [PYTEST_ARGS]` (new and moved entries); "
        "every other argument goes to pytest",
    )
    update.add_argument("--all", action="store_true", help="rewrite every entry the run checks")
    update.set_defaults(passes_pytest_args=True)
    prune = sub.add_parser(
        "prune",
        help="update, and drop entries no case checks: runs the full profile (--moetune-profile=full); "
        "run the whole suite (no -k, no node ids, no --moetune-topology or --moetune-distribution)",
    )
    prune.set_defaults(passes_pytest_args=True)
    show = sub.add_parser("show", help="print the baselines as a table")
    show.add_argument(
        "--root", type=Path, default=Path("baselines"), help="baseline root (default baselines)"
    )
    show.add_argument("--tactics", action="store_true", help="also print each entry's tactic")
    show.add_argument("--device", metavar="SLUG", help="only this GPU's folder, e.g. nvidia-h100-80gb-hbm3")
    diff = sub.add_parser("diff", help="compare two baseline files case by case")
    diff.add_argument("a", type=Path)
    diff.add_argument("b", type=Path)
    diff.add_argument(
        "--threshold", type=argparse_type(threshold_value), default=DEFAULT_THRESHOLD, help="as the gate's"
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.baseline_command in ("update", "prune"):
        mode = "prune" if args.baseline_command == "prune" else ("all" if args.all else "changed")
        command = [sys.executable, "-m", "pytest", "--moetune", f"--moetune-update-baselines={mode}"]
        if mode == "prune":  # only the full profile runs every case (a later --moetune-profile wins)
            command.append("--moetune-profile=full")
        command += args.pytest_args
        print("+", " ".join(command), file=sys.stderr)
        return subprocess.run(command, check=False).returncode
    if args.baseline_command == "show":
        return _show(args.root, args.device, args.tactics)
    return _diff(args.a, args.b, args.threshold)


def _read(path: Path) -> dict[str, Any]:
    document = read_baseline(path)
    if document is None:
        raise BaselineError(f"baseline {str(path)!r} does not exist")
    return document


def _tactic(entry: dict[str, Any]) -> str:
    return json.dumps(entry["tactic"], sort_keys=True, separators=(",", ":"))


def _show(root: Path, device: str | None, tactics: bool) -> int:
    folders = sorted(p for p in root.glob("*") if p.is_dir() and (device is None or p.name == device))
    if not folders:
        where = f"{root}/{device}" if device else f"{root}/<gpu>"
        print(f"moetune: no baselines under {where}", file=sys.stderr)
        return 1
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            document = _read(path)
            fp = document["fingerprint"]
            print(
                f"{path}  ({fp.get('gpu_name', '?')}, "
                f"torch {fp.get('torch', '?')}, triton {fp.get('triton', '?')})"
            )
            width = max([len(c) for c in document["entries"]] + [4])
            print(f"  {'case':<{width}}  {'median us':>10}  {'spread':>7}  {'roofline':>8}  source")
            for case, entry in sorted(document["entries"].items()):
                roof = entry["fraction_of_ceilings"].get("roofline")
                roof_text = f"{100 * roof:.0f}%" if roof is not None else "-"
                print(
                    f"  {case:<{width}}  {entry['summary']['median_us']:>10.2f}  "
                    f"{100 * entry['summary']['spread']:>6.2f}%  {roof_text:>8}  "
                    f"{entry['source_hash'][:6]}" + (f"  {_tactic(entry)}" if tactics else "")
                )
    return 0


def _diff(a_path: Path, b_path: Path, threshold: float) -> int:
    a, b = _read(a_path)["entries"], _read(b_path)["entries"]
    common = sorted(set(a) & set(b))
    width = max([len(c) for c in common] + [4])
    print(f"A = {a_path}\nB = {b_path}\nratios are B/A of time (above 1: B is slower)")
    print(
        f"  {'case':<{width}}  {'A us':>9}  {'B us':>9}  {'ratio':>6}  {'norm':>6}  {'verdict':<12}  tactic"
    )
    for case in common:
        ea, eb = a[case], b[case]
        then, now = Ceilings.from_dict(ea["ceilings"]), Ceilings.from_dict(eb["ceilings"])
        regime = Roofline(int(ea["flops"]), int(ea["bytes"]), fp8=ea.get("dtype") == FP8_DTYPE).regime(then)
        normalized = normalize_rounds(eb["rounds_us"], now, then, regime)
        comparison = compare_rounds(ea["rounds_us"], normalized, threshold)
        raw = statistics.median(eb["rounds_us"]) / statistics.median(ea["rounds_us"])
        unnormalized = "" if normalizes(now, then, regime) else "  (norm = raw: other matmul warm-ups)"
        print(
            f"  {case:<{width}}  {statistics.median(ea['rounds_us']):>9.2f}  "
            f"{statistics.median(eb['rounds_us']):>9.2f}  {raw:>6.3f}  {comparison.ratio:>6.3f}  "
            f"{comparison.verdict:<12}  {'changed' if ea['tactic'] != eb['tactic'] else 'same'}{unnormalized}"
        )
    for label, only in (("only in A", sorted(set(a) - set(b))), ("only in B", sorted(set(b) - set(a)))):
        for case in only:
            print(f"  {case:<{width}}  {label}")
    return 0
