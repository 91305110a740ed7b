"""The bf16 down GEMM: Triton's ``_down_kernel`` at the default tile against the Gluon down
(``kernels.gluon_down`` without block scales) at several tiles, on the same inputs, in one process.

    PYTHONPATH=. python3 benchmarks/ab_bf16_down.py [--cases A,B] [--tokens 4096,16384]
        [--tiles 256x3,128x5] [--passes 3] [--json FILE]        # on a Hopper GPU

For each case (``benchmarks.bench_fused_moe.CASES``, balanced routing) and token count: h (the
alignment's ``(max_padded, I)`` rows, bf16, O(1) values) and w2 random, the alignment at block_m 128;
"triton" is the bf16 default's down tile without Gluon (``kernels.default_tactic``), writing y with
one row per slot; each Gluon tile (``--tiles``: block_n x stages, block_k 64, 8 warps) writes y in
the alignment's row order. The rows of real slots are compared: bit-identical fraction and the
largest difference relative to the row-block's largest magnitude (both kernels sum fp32 products of
the same bf16 operands; wgmma's accumulation order within a K step may differ, so a few elements
can round differently). Times: CUDA-graph replays (:class:`pytest_moetune.timing.CudaGraphTimer`,
7 rounds), all variants alternating in ``--passes`` passes; the median over passes, the
Gluon/Triton ratio and TFLOP/s (``2 R I H``).
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
from kernels import MoEProblem, default_tactic
from kernels.align import moe_align
from kernels.fused_moe import _launch_down
from kernels.gluon_down import launch_gluon_down
from kernels.tactics import GemmTile, gluon_misfit
from pytest_moetune.timing import CudaGraphTimer

BLOCK_M = 128


def parse_tiles(spec: str) -> list[GemmTile]:
    """``"256x3,128x5"`` -> Gluon down tiles (block_n, block_k 64, group 8, 8 warps, stages)."""
    tiles = []
    for item in spec.split(","):
        try:
            block_n, stages = (int(v) for v in item.split("x"))
        except ValueError:
            raise SystemExit(f"--tiles item {item!r} is not BLOCK_NxSTAGES, e.g. 256x3") from None
        tiles.append(GemmTile(block_n, 64, 8, 8, stages, tma=True, gluon=True))
    return tiles


def compare(case: Case, tokens: int, tiles: list[GemmTile], passes: int) -> dict[str, Any]:
    """Values and interleaved times of Triton's down and each Gluon tile at one point."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    h, i, num_local, k = case.hidden, case.intermediate, case.local_experts, case.top_k
    ids, weights = balanced_topk(tokens, case, 0, dev)
    al = moe_align(ids, BLOCK_M, num_local, case.offset)
    hb = torch.randn(al.max_padded, i, device=dev).to(torch.bfloat16)
    w2 = (torch.randn(num_local, h, i, device=dev) / math.sqrt(i)).to(torch.bfloat16)
    problem = MoEProblem(tokens, h, i, num_local, k, "bfloat16")
    ref = default_tactic(problem)
    if ref.block_m != BLOCK_M:
        raise SystemExit(f"{case.name} T={tokens}: the bf16 default runs block_m {ref.block_m}, "
                         f"not {BLOCK_M}")  # fmt: skip
    y_ref = torch.zeros((tokens * k, h), dtype=torch.bfloat16, device=dev)
    launches: dict[str, Callable[[], object]] = {
        "triton": lambda: _launch_down(hb, w2, y_ref, weights, al, ref.down, "tf32"),
    }
    ys: dict[str, torch.Tensor] = {}
    skipped: dict[str, str] = {}
    for tile in tiles:
        name = f"gluon-{tile.name}"
        why = gluon_misfit("down", BLOCK_M, tile, h, i, "bfloat16")
        if why:
            skipped[name] = why
            continue
        ys[name] = torch.zeros((al.max_padded, h), dtype=torch.bfloat16, device=dev)
        launches[name] = lambda name=name, tile=tile: launch_gluon_down(hb, None, w2, None, ys[name], weights,
                                                                         al, tile)  # fmt: skip
    for launch in launches.values():
        launch()
    torch.cuda.synchronize()
    slots = al.sorted_ids[: int(al.num_padded.item())].long()
    rows = torch.nonzero(slots < al.num_slots).squeeze(1)  # padded rows of real slots
    want = y_ref[slots[rows]].float()
    scale = want.abs().amax().item()
    agreement = {}
    for name, y in ys.items():
        got = y[rows].float()
        agreement[name] = {
            "bit_identical_fraction": round((got == want).float().mean().item(), 6),
            "max_abs_diff_over_max": (got - want).abs().amax().item() / scale,
            "nan": bool(torch.isnan(got).any().item()),
        }
    timer = CudaGraphTimer(rounds=7, warmup_us=20_000)
    medians: dict[str, list[float]] = {name: [] for name in launches}
    for _ in range(passes):
        for name, launch in launches.items():
            medians[name].append(timer.measure([launch]).median_us)
    flops = 2.0 * tokens * k * i * h
    row: dict[str, Any] = {"case": case.name, "tokens": tokens, "triton_tile": ref.down.name,
                           "agreement": agreement, "skipped": skipped}  # fmt: skip
    for name, values in medians.items():
        us = statistics.median(values)
        row[name] = {"us": round(us, 1), "tflops": round(flops / us / 1e6, 1),
                     "passes_us": [round(v, 1) for v in values]}  # fmt: skip
        if name != "triton":
            row[name]["over_triton"] = round(us / statistics.median(medians["triton"]), 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=ISSUE_CASES)
    ap.add_argument("--tokens", default="4096,16384")
    ap.add_argument("--tiles", default="256x3,128x5,128x4", help="Gluon tiles as BLOCK_NxSTAGES")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tiles = parse_tiles(args.tiles)
    each_point(args.cases, args.tokens, lambda case, t: [compare(case, t, tiles, args.passes)], args.json)

if __name__ == "__main__":
    main()
