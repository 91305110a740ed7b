"""The top-k combine alone: launch configurations of ``kernels.fused_moe._combine_kernel`` compared.

    PYTHONPATH=. python3 benchmarks/combine_bench.py [--cases A,B] [--tokens 4096,16384]
        [--configs 2x1024w4,4x512w4] [--passes 3] [--json FILE]          # on a CUDA GPU

For each case (``benchmarks.bench_fused_moe.CASES``, balanced routing) and token count: y random bf16
in the alignment's row order (``(max_padded, H)``, as the Gluon down writes it; block_m 128) and the
combine reading slot s's row at ``slot_rows[s]``, once per configuration ``BLOCK_TxBLOCK_NwWARPS``
(the first is ``launch_combine``'s own). Outputs are compared bit for bit with the first (every
configuration sums the same rows in the same order in fp32). Times: CUDA-graph replays
(:class:`pytest_moetune.timing.CudaGraphTimer`, 7 rounds), configurations alternating in
``--passes`` passes, the median over passes, and the bandwidth over the bytes that must move (the
local slots' rows of y read once, out written once).
"""

from __future__ import annotations

import argparse
import re
import statistics
from typing import Any

import torch
import triton

from benchmarks.bench_fused_moe import Case, balanced_topk
from benchmarks.points import ISSUE_CASES, each_point
from kernels.align import moe_align
from kernels.fused_moe import _combine_kernel, launch_combine
from kernels.pdl import pdl_args
from pytest_moetune.timing import CudaGraphTimer


def parse_configs(spec: str) -> list[tuple[int, int, int]]:
    """``"2x1024w4,4x512w8"`` -> ``[(block_t, block_n, num_warps), ...]``."""
    out = []
    for item in spec.split(","):
        match = re.fullmatch(r"(\d+)x(\d+)w(\d+)", item)
        if not match:
            raise SystemExit(f"--configs item {item!r} is not BLOCK_TxBLOCK_NwWARPS, e.g. 2x1024w4")
        out.append(tuple(int(v) for v in match.groups()))
    return out


def compare(case: Case, tokens: int, configs: list[tuple[int, int, int]], passes: int) -> dict[str, Any]:
    """Bits and interleaved times of ``launch_combine`` and each configuration at one point."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    h, num_local, k = case.hidden, case.local_experts, case.top_k
    ids, _ = balanced_topk(tokens, case, 0, dev)
    al = moe_align(ids, 128, num_local, case.offset)
    y = torch.randn(al.max_padded, h, device=dev).to(torch.bfloat16)
    outs = {"launch_combine": torch.empty(tokens, h, dtype=torch.bfloat16, device=dev)}
    launches = {"launch_combine": lambda: launch_combine(y, ids, outs["launch_combine"], case.offset,
                                                         num_local, slot_rows=al.slot_rows)}  # fmt: skip
    for block_t, block_n, warps in configs:
        name = f"{block_t}x{block_n}w{warps}"
        outs[name] = torch.empty(tokens, h, dtype=torch.bfloat16, device=dev)
        grid = (triton.cdiv(tokens, block_t), triton.cdiv(h, block_n))

        def launch(out: torch.Tensor = outs[name], grid: tuple[int, int] = grid, block_t: int = block_t,
                   block_n: int = block_n, warps: int = warps) -> None:  # fmt: skip
            _combine_kernel[grid](y, ids, al.slot_rows, out, tokens, h, case.offset, num_local, y.stride(0),
                                  out.stride(0), TOP_K=k, BLOCK_T=block_t, BLOCK_N=block_n, BY_ROWS=True,
                                  num_warps=warps, **pdl_args(dev))  # fmt: skip

        launches[name] = launch
    for launch in launches.values():
        launch()
    torch.cuda.synchronize()
    same = {name: torch.equal(out, outs["launch_combine"]) for name, out in outs.items()}
    timer = CudaGraphTimer(rounds=7, warmup_us=20_000)
    medians: dict[str, list[float]] = {name: [] for name in launches}
    for _ in range(passes):
        for name, launch in launches.items():
            medians[name].append(timer.measure([launch]).median_us)
    moved = (al.num_slots * h + tokens * h) * 2  # every slot is local under balanced DEP routing
    row: dict[str, Any] = {"case": case.name, "tokens": tokens, "bytes": moved, "bit_identical": same}
    base = statistics.median(medians["launch_combine"])
    for name, values in medians.items():
        us = statistics.median(values)
        row[name] = {"us": round(us, 1), "tb_per_s": round(moved / us / 1e6, 2), "over_launch_combine":
                     round(us / base, 3), "passes_us": [round(v, 1) for v in values]}  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=ISSUE_CASES)
    ap.add_argument("--tokens", default="4096,16384")
    ap.add_argument("--configs", default="1x1024w4,4x1024w8,8x512w8,16x256w4,4x512w4,1x2048w8")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    configs = parse_configs(args.configs)
    each_point(args.cases, args.tokens, lambda case, t: [compare(case, t, configs, args.passes)], args.json)

if __name__ == "__main__":
    main()
