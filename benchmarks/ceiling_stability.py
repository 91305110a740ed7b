#!/usr/bin/env python3
"""How steady the gate's matmul ceilings are: the burst warm-up against the sustained one.

    PYTHONPATH=. python3 benchmarks/ceiling_stability.py [--reps 4] [--idle-s 5] [--load-s 3] \\
        [--json OUT.json]

``pytest_moetune.ceilings.measure_ceilings`` times the dense bf16 and fp8 matmul rates after a
warm-up of back-to-back matmuls: 50 ms before session 20 (``BURST_WARMUP_S``), ``MATMUL_WARMUP_S``
since. Each repetition measures the ceilings both ways in the two states a gate session can start
from: after the GPU idled ``--idle-s`` seconds (a fresh session, or the host compiling), and right
after ``--load-s`` seconds of dense bf16 matmuls (the session before it ran big layers at the power
cap). The order of the two warm-ups alternates between repetitions. Prints every measurement and,
per warm-up, the spread of the bf16 and fp8 rates over all of them; ``--json`` gets every number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pytest_moetune.ceilings import BURST_WARMUP_S, MATMUL_WARMUP_S, measure_ceilings

WARM_UPS = {"burst": BURST_WARMUP_S, "sustained": MATMUL_WARMUP_S}


def heavy_load(seconds: float) -> None:
    """Dense bf16 matmuls back to back for about ``seconds``."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()


def one(state: str, warm_up: str, args: argparse.Namespace) -> dict[str, Any]:
    """Bring the GPU into ``state`` (``idle`` or ``loaded``), then measure the ceilings."""
    if state == "idle":
        torch.cuda.synchronize()
        time.sleep(args.idle_s)
    else:
        heavy_load(args.load_s)
    c = measure_ceilings(matmul_warmup_s=WARM_UPS[warm_up])
    return {
        "state": state,
        "warm_up": warm_up,
        "bf16_tflops": c.matmul_flops_per_s / 1e12,
        "fp8_tflops": None if c.fp8_matmul_flops_per_s is None else c.fp8_matmul_flops_per_s / 1e12,
        "copy_tbs": c.copy_bytes_per_s / 1e12,
    }


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.1f}, min {min(values):.1f}, max {max(values):.1f} "
            f"({(max(values) / min(values) - 1) * 100:.1f}% apart)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--idle-s", type=float, default=5.0)
    ap.add_argument("--load-s", type=float, default=3.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("ceiling_stability: needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = []
    for rep in range(args.reps):
        order = list(WARM_UPS) if rep % 2 == 0 else list(reversed(WARM_UPS))
        for state in ("idle", "loaded"):
            for warm_up in order:
                row = one(state, warm_up, args)
                rows.append(row)
                fp8 = "-" if row["fp8_tflops"] is None else f"{row['fp8_tflops']:.1f}"
                print(f"rep {rep} {state:<6} {warm_up:<9} bf16 {row['bf16_tflops']:6.1f} TFLOP/s  "
                      f"fp8 {fp8:>6} TFLOP/s  copy {row['copy_tbs']:.2f} TB/s", flush=True)  # fmt: skip
                if args.json is not None:
                    args.json.write_text(json.dumps(rows, indent=1))
    for warm_up in WARM_UPS:
        mine = [r for r in rows if r["warm_up"] == warm_up]
        print(f"{warm_up}: bf16 {spread([r['bf16_tflops'] for r in mine])}")
        fp8 = [r["fp8_tflops"] for r in mine if r["fp8_tflops"] is not None]
        if fp8:
            print(f"{warm_up}: fp8 {spread(fp8)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
