"""Which down GEMM pays in the fp8 layer, now that the Gluon down is persistent and warp-specialized.

    PYTHONPATH=. python3 benchmarks/fp8_down_choice.py [--cases A,B] [--tokens 1024,4096,16384]

For each case and token count (balanced routing as in ``bench_fused_moe``) the fp8 block-scale
layer runs with its default tactic and with every down tile of the tactic space behind the sorted-x
Gluon gate/up of each block_m (Triton's TMA downs and the Gluon ones), plus the bf16 layer's
default as the yardstick. All candidates are timed by CUDA-graph replay (7 rounds each) in
``--passes`` interleaved passes (so clock drift lands on all of them); the table gives each one's
median of the passes' medians, its ratio to the fp8 default, the fp8/bf16 speed-up, and whether its
output equals the default's bit for bit (the Gluon and Triton downs compute the same sums in the same order).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import replace

import torch

from benchmarks.bench_fused_moe import CASES, VARIANTS, balanced_topk
from kernels import MoEProblem, Tactic, default_tactic, fused_moe, fused_moe_fp8, quantize_fp8_block, tactics
from kernels.fused_moe import problem_of
from pytest_moetune.timing import CudaGraphTimer


def candidates(problem: MoEProblem) -> list[Tactic]:
    """The fp8 default first, then each sorted-x gate/up tactic whose down is a TMA tile (Triton's or
    Gluon's) of the space, in the space's order; ``problem`` is an fp8 problem."""
    dflt = default_tactic(problem, gluon=True)
    rest = [t for t in tactics(problem, gluon=True) if t.gate_up.sorted_x and t.down.tma and t != dflt]
    return [dflt, *rest]


def one_point(name: str, tokens: int, passes: int) -> list[dict[str, object]]:
    """Time every candidate of one case at one token count; print and return its rows."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    case = CASES[name]
    h, i, num_local = case.hidden, case.intermediate, case.local_experts
    w1f = torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h)
    w2f = torch.randn(num_local, h, i, device=dev) / math.sqrt(i)
    w1, w2 = w1f.to(torch.bfloat16), w2f.to(torch.bfloat16)
    w1q, w1s = quantize_fp8_block(w1f)
    w2q, w2s = quantize_fp8_block(w2f)
    del w1f, w2f
    xs = [torch.randn(tokens, h, device=dev).to(torch.bfloat16) for _ in range(VARIANTS)]
    routes = [balanced_topk(tokens, case, v * tokens * case.top_k, dev) for v in range(VARIANTS)]
    problem = problem_of(xs[0], w1, routes[0][0])
    t16 = default_tactic(problem)
    cands = candidates(replace(problem, dtype="float8_e4m3fn"))

    def fp8_calls(t: Tactic) -> list[Callable[[], torch.Tensor]]:
        return [(lambda v=v: fused_moe_fp8(xs[v], w1q, w1s, w2q, w2s, *routes[v],
                                           local_expert_offset=case.offset, tactic=t))
                for v in range(VARIANTS)]  # fmt: skip

    bf16_calls = [(lambda v=v: fused_moe(xs[v], w1, w2, *routes[v], local_expert_offset=case.offset,
                                         tactic=t16))
                  for v in range(VARIANTS)]  # fmt: skip
    reference = fp8_calls(cands[0])[0]().clone()
    same = {t: bool(torch.equal(fp8_calls(t)[0](), reference)) for t in cands}
    timer = CudaGraphTimer(rounds=7, target_round_us=20_000.0, warmup_us=50_000.0)
    labels = ["bf16 default", *(t.name for t in cands)]
    calls = [bf16_calls, *(fp8_calls(t) for t in cands)]
    medians: list[list[float]] = [[] for _ in calls]
    for _ in range(passes):
        for k, launches in enumerate(calls):
            medians[k].append(timer.measure(launches).median_us)
    us = [statistics.median(m) for m in medians]
    rows = []
    print(
        f"\n{name} T={tokens} (rows per expert {problem.rows_per_expert:.0f}); bf16 default "
        f"{t16.name}: {us[0]:.1f} us"
    )
    for k, t in enumerate(cands, start=1):
        row = {
            "case": name,
            "tokens": tokens,
            "tactic": labels[k],
            "us": us[k],
            "passes_us": medians[k],
            "vs_default": us[k] / us[1],
            "fp8_vs_bf16": us[0] / us[k],
            "bits_equal_default": same[t],
            "bf16_us": us[0],
        }
        rows.append(row)
        tag = " (default)" if k == 1 else ""
        print(
            f"  {labels[k]:48s} {us[k]:9.1f} us  {us[k] / us[1]:.3f}x default  fp8/bf16 "
            f"{us[0] / us[k]:.2f}x  bits {'=' if same[t] else '!='} default{tag}"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="qwen3-30b-a3b-ep1,qwen3-235b-a22b-dep2")
    ap.add_argument("--tokens", default="1024,4096,16384")
    ap.add_argument("--passes", type=int, default=3, help="interleaved passes over all candidates")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__)
    rows = []
    for name in args.cases.split(","):
        for tokens in (int(t) for t in args.tokens.split(",")):
            rows += one_point(name, tokens, args.passes)
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
