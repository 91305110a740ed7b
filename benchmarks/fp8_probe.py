"""Where the fp8 block-scale layer loses at large T (issue 3): each GEMM alone, over tile variants.

    PYTHONPATH=. python3 benchmarks/fp8_probe.py [--tokens 4096] [--json PATH]

For deepseek-r1 DEP8 and qwen3-235b-a22b DEP2 (balanced routing, the kernels benchmark's cases),
times the gate/up GEMM and the down GEMM of the fp8 layer alone, one graph each, for block_m 64 and
128 x warps 4/8/16 x stages 3/4 x TMA on/off (block_n and block_k pinned at 128 where the scale
groups require it), and the bf16 layer's GEMMs with its committed best tactic beside them. Prints
each variant's time and its rate against the dense fp8 and bf16 matmul rates measured in the same
run. Exploration only: nothing in ``kernels/`` changes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Callable
from functools import partial

import torch
import triton

from benchmarks.bench_fused_moe import CASES, Timed, balanced_topk, measure_ceilings
from kernels import Tactic, quantize_fp8_block
from kernels.align import moe_align
from kernels.fused_moe import _launch_down, _launch_gate_up
from kernels.quant import FP8, GROUP, quantize_fp8_groups
from kernels.tactics import GemmTile

BF16_BEST = "m128-gu_n128k64g8w8s4t-dn_n256k64g8w8s4t"  # BENCHMARKS.md, run B, large T


def bf16_best() -> Tactic:
    return Tactic(128, GemmTile(128, 64, 8, 8, 4, True), GemmTile(256, 64, 8, 8, 4, True))


def timed_us(call: Callable[[], object], rounds: int, target_us: float) -> float:
    timer = Timed([call], target_us)
    for _ in range(rounds):
        timer.round()
    return timer.median


def probe_case(name: str, tokens: int, rounds: int, target_us: float, rates: dict[str, float]) -> list[dict]:
    case = CASES[name]
    dev = torch.device("cuda")
    torch.manual_seed(0)
    h, i, num_local, k = case.hidden, case.intermediate, case.local_experts, case.top_k
    w1f = torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h)
    w2f = torch.randn(num_local, h, i, device=dev) / math.sqrt(i)
    w1q, w1s = quantize_fp8_block(w1f)
    w2q, w2s = quantize_fp8_block(w2f)
    w1, w2 = w1f.to(torch.bfloat16), w2f.to(torch.bfloat16)
    del w1f, w2f
    x = torch.randn(tokens, h, device=dev).to(torch.bfloat16)
    ids, wts = balanced_topk(tokens, case, 0, dev)
    xq, xs = quantize_fp8_groups(x)
    rows = tokens * k
    gate_up_flops, down_flops = 2 * rows * h * 2 * i, 2 * rows * i * h
    out: list[dict] = []

    def record(kind: str, gemm: str, label: str, us: float, flops: int) -> None:
        rate = flops / (us * 1e-6)
        row = {
            "case": name,
            "tokens": tokens,
            "dtype": kind,
            "gemm": gemm,
            "variant": label,
            "us": us,
            "tflops": rate / 1e12,
            "of_dense": rate / rates[kind],
        }
        out.append(row)
        print(
            f"{name} T={tokens} {kind} {gemm:7s} {label:24s} {us:9.1f} us {rate / 1e12:7.1f} TFLOP/s "
            f"{100 * row['of_dense']:5.1f}% of dense",
            flush=True,
        )

    # bf16: the committed best tactic's two GEMMs
    best = bf16_best()
    al = moe_align(ids, best.block_m, num_local, case.offset)
    hb = torch.empty((al.max_padded, i), dtype=torch.bfloat16, device=dev)
    y = torch.empty((rows, h), dtype=torch.bfloat16, device=dev)
    record(
        "bf16",
        "gate_up",
        BF16_BEST,
        timed_us(lambda: _launch_gate_up(x, w1, hb, al, best.gate_up, k, "tf32"), rounds, target_us),
        gate_up_flops,
    )
    record(
        "bf16",
        "down",
        BF16_BEST,
        timed_us(lambda: _launch_down(hb, w2, y, wts, al, best.down, "tf32"), rounds, target_us),
        down_flops,
    )

    for block_m in (64, 128):
        al = moe_align(ids, block_m, num_local, case.offset)
        hq = torch.empty((al.max_padded, i), dtype=FP8, device=dev)
        hs = torch.empty((al.max_padded, triton.cdiv(i, GROUP)), dtype=torch.float32, device=dev)
        _launch_gate_up(xq, w1q, hq, al, GemmTile(128, 128, 8, 8, 3, False), k, "tf32", scales=(xs, w1s, hs))
        for warps, stages, tma in itertools.product((4, 8, 16), (3, 4), (False, True)):
            tile = GemmTile(128, 128, 8, warps, stages, tma)
            label = f"m{block_m}-n128k128w{warps}s{stages}{'t' if tma else ''}"
            try:
                us = timed_us(
                    partial(_launch_gate_up, xq, w1q, hq, al, tile, k, "tf32", scales=(xs, w1s, hs)),
                    rounds,
                    target_us,
                )
            except Exception as err:  # out of shared memory, compile errors: report and go on
                print(f"{name} gate_up {label}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
                continue
            record("fp8", "gate_up", label, us, gate_up_flops)
        for block_n, warps, stages, tma in itertools.product((128, 256), (4, 8, 16), (3, 4), (False, True)):
            tile = GemmTile(block_n, 128, 8, warps, stages, tma)
            label = f"m{block_m}-n{block_n}k128w{warps}s{stages}{'t' if tma else ''}"
            try:
                us = timed_us(
                    partial(_launch_down, hq, w2q, y, wts, al, tile, "tf32", scales=(hs, w2s)),
                    rounds,
                    target_us,
                )
            except Exception as err:
                print(f"{name} down {label}: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
                continue
            record("fp8", "down", label, us, down_flops)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--cases", default="deepseek-r1-dep8,qwen3-235b-a22b-dep2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target-ms", type=float, default=5.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ceilings = measure_ceilings(5)
    rates = {"bf16": float(ceilings["matmul_flops_per_s"]), "fp8": float(ceilings["fp8_matmul_flops_per_s"])}
    print({key: f"{value / 1e12:.0f} TFLOP/s" for key, value in rates.items()})
    rows = []
    for name in args.cases.split(","):
        rows += probe_case(name, args.tokens, args.rounds, args.target_ms * 1000.0, rates)
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rates": rates, "rows": rows}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
