"""The bf16 gate/up GEMM alone: Triton's sorted tile against the persistent Gluon gate/ups (sorted
and gathering), on the same inputs, in one process.

    PYTHONPATH=. python3 benchmarks/ab_bf16_gate_up.py [--cases A,B] [--tokens 4096,16384]
        [--passes 3] [--json FILE]        # on a Hopper GPU

For each case (``benchmarks.bench_fused_moe.CASES``, balanced routing) and token count: x and w1
random bf16, the alignment at block_m 128, x's rows copied once into the alignment's order
(:func:`kernels.row_gather.gather_rows_sorted`). Variants (:data:`TILES`, all through
``kernels.fused_moe._launch_gate_up``): Triton's ``n128k64g8w8s4tS`` and the Gluon sorted tile read
the copy, the Gluon gathering tile reads x; "copy+triton" also makes the copy each time (what the
layer pays for a sorted tile). h's real rows must be bit-identical to Triton's. Times: CUDA-graph
replays (:class:`pytest_moetune.timing.CudaGraphTimer`, 7 rounds), the variants alternating in
``--passes`` passes; the median over passes, the ratio to Triton's and TFLOP/s (``2 R H 2I``).
Why: in the layer the Gluon gate/ups ran 1.01-1.06x the default's time at I >= 1536 (BENCHMARKS.md,
session 15), while Nsight Compute timed the Gluon sorted kernel faster than Triton's in one launch.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.bench_fused_moe import Case, balanced_topk
from benchmarks.points import ISSUE_CASES, each_point
from kernels.align import moe_align
from kernels.fused_moe import _launch_gate_up
from kernels.row_gather import gather_rows_sorted
from kernels.tactics import GemmTile
from pytest_moetune.timing import CudaGraphTimer

BLOCK_M = 128
TILES = {
    "triton": GemmTile(128, 64, 8, 8, 4, tma=True, sorted_x=True),
    "gluon-sorted": GemmTile(128, 64, 8, 8, 4, tma=True, gluon=True, sorted_x=True, persistent=True),
    "gluon-gather": GemmTile(128, 64, 8, 8, 4, tma=True, gluon=True, persistent=True),
}


def compare(case: Case, tokens: int, passes: int) -> dict[str, Any]:
    """Values and interleaved times of each gate/up at one point."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    h, i, num_local, k = case.hidden, case.intermediate, case.local_experts, case.top_k
    ids, _ = balanced_topk(tokens, case, 0, dev)
    al = moe_align(ids, BLOCK_M, num_local, case.offset)
    x = torch.randn(tokens, h, device=dev).to(torch.bfloat16)
    w1 = (torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h)).to(torch.bfloat16)
    x_sorted = gather_rows_sorted(x, al, k)[0]
    hs = {name: torch.zeros((al.max_padded, i), dtype=torch.bfloat16, device=dev) for name in TILES}

    def gate_up(name: str, rows: torch.Tensor) -> Callable[[], None]:
        return lambda: _launch_gate_up(rows, w1, hs[name], al, TILES[name], k, "tf32")

    launches: dict[str, Callable[[], object]] = {
        name: gate_up(name, x_sorted if tile.sorted_x else x) for name, tile in TILES.items()
    }
    launches["copy+triton"] = lambda: _launch_gate_up(gather_rows_sorted(x, al, k)[0], w1, hs["triton"], al,
                                                      TILES["triton"], k, "tf32")  # fmt: skip
    for launch in launches.values():
        launch()
    torch.cuda.synchronize()
    slots = al.sorted_ids[: int(al.num_padded.item())]
    rows = torch.nonzero(slots < al.num_slots).squeeze(1)
    want = hs["triton"][rows]
    identical = {name: bool(torch.equal(hs[name][rows], want)) for name in TILES if name != "triton"}
    timer = CudaGraphTimer(rounds=7, warmup_us=20_000)
    medians: dict[str, list[float]] = {name: [] for name in launches}
    for _ in range(passes):
        for name, launch in launches.items():
            medians[name].append(timer.measure([launch]).median_us)
    flops = 2.0 * tokens * k * h * 2 * i
    base = statistics.median(medians["triton"])
    row: dict[str, Any] = {"case": case.name, "tokens": tokens, "bit_identical_to_triton": identical}
    for name, values in medians.items():
        us = statistics.median(values)
        row[name] = {"us": round(us, 1), "tflops": round(flops / us / 1e6, 1),
                     "over_triton": round(us / base, 3),
                     "passes_us": [round(v, 1) for v in values]}  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=ISSUE_CASES)
    ap.add_argument("--tokens", default="4096,16384")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    each_point(args.cases, args.tokens, lambda case, t: [compare(case, t, args.passes)], args.json)


if __name__ == "__main__":
    main()
