#!/usr/bin/env python3
"""Which tiles the tuner picked, against the default's, over a baselines file (no GPU).

    PYTHONPATH=. python3 benchmarks/tuned_tiles.py [BASELINES] [--max-block-m 32] [--dtype bf16]

``BASELINES`` defaults to the H200's (``baselines/nvidia-h200/suites.perf.test_tuned_throughput.json``).

For every case of the full profile (``suites.perf.cases.full_cases``) that has an entry of ``--dtype``
with a tuned ``block_m <= --max-block-m``, the tuned gate/up and down tiles against
``kernels.default_tactic`` of the same problem (the runner's ``kernel_problem``, Gluon tiles
allowed, as on Hopper); then per GEMM how often the tuner took each tile and how often it took the
default's. Evidence for a default, not a measurement: a tile the tuner picks where the default
differs gained something on the card that measured the baselines, by an amount the file does not say.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from kernels.runner import kernel_problem
from kernels.tactics import GemmTile, Tactic, default_tactic
from suites.perf.cases import full_cases

DEFAULT_BASELINES = Path("baselines/nvidia-h200/suites.perf.test_tuned_throughput.json")


def tile(t: GemmTile) -> str:
    """``BLOCK_N x BLOCK_K, warps w, stages s`` of a GEMM tile."""
    return f"{t.block_n}x{t.block_k} w{t.num_warps} s{t.num_stages}"


def compare(entries: dict[str, dict], dtype: str, max_block_m: int) -> list[tuple[str, Tactic, Tactic]]:
    """``(case id, tuned, default)`` for the full profile's cases of ``dtype`` tuned at a small block_m."""
    rows = []
    for case in full_cases():
        entry = entries.get(case.id)
        if entry is None or entry["dtype"] != dtype:
            continue
        tuned = Tactic.from_dict(entry["tactic"])
        if tuned.block_m > max_block_m:
            continue
        problem = kernel_problem(case.problem().at(case.num_tokens))
        rows.append((case.id, tuned, default_tactic(problem, gluon=True)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baselines", nargs="?", type=Path, default=DEFAULT_BASELINES)
    ap.add_argument("--max-block-m", type=int, default=32)
    ap.add_argument("--dtype", default="bf16")
    args = ap.parse_args(argv)
    entries = json.loads(args.baselines.read_text())["entries"]
    dtypes = sorted({e["dtype"] for e in entries.values()})
    if args.dtype not in dtypes:
        ap.error(f"--dtype {args.dtype!r}: {args.baselines} has entries of {', '.join(dtypes)}")
    rows = compare(entries, args.dtype, args.max_block_m)
    print(f"{args.baselines}: {len(rows)} {args.dtype} cases tuned at block_m <= {args.max_block_m}")
    for gemm in ("gate_up", "down"):
        picked = Counter(tile(getattr(tuned, gemm)) for _, tuned, _ in rows)
        same = sum(getattr(tuned, gemm) == getattr(dflt, gemm) for _, tuned, dflt in rows)
        print(f"\n{gemm}: the tuner took the default's tile at {same} of {len(rows)}")
        for name, count in picked.most_common():
            print(f"  {count:4d}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
