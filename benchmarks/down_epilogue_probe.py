"""What the persistent Gluon down's epilogue costs: the down as committed against the same kernel whose
epilogue never runs, both in one process.

    PYTHONPATH=. python3 benchmarks/down_epilogue_probe.py [--cases A,B] [--tokens 4096,16384]
        [--dtypes bf16,fp8] [--passes 3] [--json FILE]                  # device: the timing table
    PYTHONPATH=. python3 benchmarks/down_epilogue_probe.py --kernel VARIANT [--cases A] [--tokens T]
        [--dtypes D]      # device: two plain launches at the first point, for ncu (gpu_profile.sh)

``kernels.gluon_down``'s down (the default's block_m 128 tile per dtype: bf16 128 x 256 with 3
stages where H is a multiple of 256, fp8 128 x 128 with 4 or 5) is loaded a second time as its own
module with ``_down_epilogue`` swapped for one that runs only on a row offset below 0, that is never:
the accumulator stays live (every wgmma runs), the routing weight, the rounding, the shared-memory
staging and the TMA store do not. The time it saves is what the epilogue costs: its instructions,
which a schedule that hides them (two math warpgroups in ping-pong on two tiles, one's epilogue under
the other's K loop) could win back, and y's writes, which none can. Where the down is DRAM-bound the
writes are most of it (qwen3-30b, BENCHMARKS.md run 121). The probe's y is wrong; only its time counts.

Inputs as the layer makes them: balanced routing (``benchmarks.bench_fused_moe.balanced_topk``), the
alignment at block_m 128, h standard normal (fp8: quantized per 128-wide group), w2 block-quantized for
fp8. Times: CUDA-graph replays (:class:`pytest_moetune.timing.CudaGraphTimer`, 7 rounds), the two
variants in turn in ``--passes`` passes (order alternating); per variant the median over passes of each
pass's median, the ratio to ``committed`` and TFLOP/s (``2 R H I``, R the routed rows).
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch
from triton.experimental import gluon

import kernels.gluon_down as gluon_down
from benchmarks.bench_fused_moe import CASES, Case, balanced_topk
from benchmarks.fp8_gate_up_probe import _module_copy
from benchmarks.points import each_point
from kernels import MoEProblem, default_tactic
from kernels.align import moe_align
from kernels.gluon_down import _down_epilogue
from kernels.quant import quantize_fp8_block, quantize_fp8_groups
from pytest_moetune.timing import CudaGraphTimer

VARIANTS = ("committed", "no-epilogue")
DTYPES = {"bf16": "bfloat16", "fp8": "float8_e4m3fn"}


@gluon.jit
def _epilogue_never(acc, w, y_desc, y_smem, off_m, off_n):
    """``kernels.gluon_down._down_epilogue`` on a row offset below 0 only, that is never."""
    if off_m < 0:
        _down_epilogue(acc, w, y_desc, y_smem, off_m, off_n)


def make_launches(case: Case, tokens: int, dtype: str, probe: Any) -> dict[str, Callable[[], object]]:
    """The point's inputs and one launch per variant, each into its own y."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    h, i, num_local, k = case.hidden, case.intermediate, case.local_experts, case.top_k
    ids, weights = balanced_topk(tokens, case, 0, dev)
    al = moe_align(ids, 128, num_local, case.offset)
    hidden_act = torch.randn(al.max_padded, i, device=dev)
    w2 = torch.randn(num_local, h, i, device=dev) / math.sqrt(i)
    tile = default_tactic(MoEProblem(tokens, h, i, num_local, k, DTYPES[dtype]), gluon=True).down
    if dtype == "fp8":
        hq, hs = quantize_fp8_groups(hidden_act)
        w2q, w2s = quantize_fp8_block(w2)
        operands = (hq, hs, w2q, w2s)
    else:
        operands = (hidden_act.bfloat16(), None, w2.bfloat16(), None)
    launches = {}
    for name, module in (("committed", gluon_down), ("no-epilogue", probe)):
        y = torch.empty(al.max_padded, h, dtype=torch.bfloat16, device=dev)
        launches[name] = lambda module=module, y=y: module.launch_gluon_down(*operands, y, weights, al, tile)
    return launches


def measure(case: Case, tokens: int, dtypes: list[str], probe: Any, passes: int) -> list[dict[str, Any]]:
    """Both variants' times at one point for each dtype, interleaved over ``passes`` passes."""
    rows = []
    for dtype in dtypes:
        launches = make_launches(case, tokens, dtype, probe)
        for run in launches.values():  # compile and warm up outside the timed passes
            run()
        torch.cuda.synchronize()
        timer = CudaGraphTimer(rounds=7, target_round_us=20_000.0, warmup_us=50_000.0)
        per_pass: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for p in range(passes):
            for name in VARIANTS[p % 2 :] + VARIANTS[: p % 2]:
                per_pass[name].append(timer.measure([launches[name]]).median_us)
        flop = 2 * tokens * case.top_k * case.hidden * case.intermediate
        base = statistics.median(per_pass["committed"])
        for name in VARIANTS:
            us = statistics.median(per_pass[name])
            rows.append({"case": case.name, "tokens": tokens, "dtype": dtype, "variant": name,
                         "us": round(us, 1), "vs_committed": round(us / base, 3),
                         "tflops": round(flop / us / 1e6, 1),
                         "passes_us": [round(v, 1) for v in per_pass[name]]})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--tokens", default="4096,16384")
    ap.add_argument("--dtypes", default="bf16,fp8")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--kernel", choices=VARIANTS, help="launch this variant twice at the first point (ncu)")
    args = ap.parse_args()
    dtypes = args.dtypes.split(",")
    if args.passes < 1 or not set(dtypes) <= set(DTYPES):
        ap.error(f"--passes must be >= 1 and --dtypes from {sorted(DTYPES)}, got {args.passes}, {dtypes}")
    probe = _module_copy(gluon_down, "no_epilogue")
    probe._down_epilogue = _epilogue_never
    if args.kernel:
        case, tokens = CASES[args.cases.split(",")[0]], int(args.tokens.split(",")[0])
        run = make_launches(case, tokens, dtypes[0], probe)[args.kernel]
        for _ in range(2):
            run()
        torch.cuda.synchronize()
        print(f"{args.kernel} {case.name} T={tokens} {dtypes[0]}: launched twice")
        return
    rows = each_point(args.cases, args.tokens, lambda c, t: measure(c, t, dtypes, probe, args.passes),
                      args.json)  # fmt: skip
    print("\n| case | T | dtype | committed | no epilogue |\n|---|---|---|---|---|")
    for key in dict.fromkeys((r["case"], r["tokens"], r["dtype"]) for r in rows):
        cells = [r for r in rows if (r["case"], r["tokens"], r["dtype"]) == key]
        times = " | ".join(f"{r['us']} µs, {r['tflops']} TF/s ({r['vs_committed']}x)" for r in cells)
        print(f"| {' | '.join(map(str, key))} | {times} |")


if __name__ == "__main__":
    main()
