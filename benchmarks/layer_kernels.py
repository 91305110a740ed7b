"""Per-kernel GPU time inside the real layer, read by the PyTorch profiler (no prefix arithmetic).

    PYTHONPATH=. python3 benchmarks/layer_kernels.py [--cases A,B] [--tokens 4096,16384] [--json PATH]

For each case and token count (balanced routing as in ``bench_fused_moe``), the bf16 layer and the
fp8 block-scale layer run their default tactics: a few warm-up calls, then ``--iters`` calls under
``torch.profiler`` (CUDA activity only). Prints each kernel's mean device time per layer call, the
sum, and the wall time per call from CUDA events around the same loop, so a stage that runs slower
inside the layer than alone shows up against its standalone figure (``y_order_bench.py``,
``ab_bf16_gate_up.py``). The defaults are the layers' own (with Gluon tiles where the GPU runs them);
``--gate-up-twins`` also runs the bf16 default with each Gluon gate/up of its block_m, to see which
kernel of the layer moves when only the gate/up changes (session 15: the Gluon gate/up was faster
alone but not in the layer).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

import torch
from torch.profiler import ProfilerActivity, profile

CASES_DEFAULT = ("deepseek-r1-dep8", "qwen3-235b-a22b-dep2", "mixtral-8x7b-ep1", "qwen3-30b-a3b-ep1")


def kernel_times(fn: Callable[[], None], iters: int) -> tuple[dict[str, float], float]:
    """Mean device us per call of each kernel ``fn`` launches, and the event-timed us per call."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
    return per_kernel_us(prof, iters), start.elapsed_time(end) * 1e3 / iters


def per_kernel_us(prof: profile, calls: int, width: int = 60) -> dict[str, float]:
    """Device us per call of each CUDA kernel ``prof`` recorded over ``calls`` calls (names cut to
    ``width`` characters, those that then agree summed)."""
    per_kernel: dict[str, float] = defaultdict(float)
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            per_kernel[ev.name[:width]] += ev.device_time / calls
    return dict(per_kernel)


def one_case(name: str, token_counts: list[int], iters: int,
             gate_up_twins: bool = False) -> list[dict[str, object]]:  # fmt: skip
    """Profile both layers' default tactics of one case at each token count (and with
    ``gate_up_twins`` the bf16 default with each Gluon gate/up); print and return."""
    from benchmarks.bench_fused_moe import CASES, balanced_topk, gluon_gate_up_twins
    from kernels import (
        Tactic,
        default_tactic,
        fused_moe,
        fused_moe_fp8,
        gluon_unready,
        quantize_fp8_block,
    )
    from kernels.fused_moe import problem_of

    gluon = gluon_unready() is None
    dev = torch.device("cuda")
    case = CASES[name]
    h, i, num_local = case.hidden, case.intermediate, case.local_experts
    w1 = (torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h)).to(torch.bfloat16)
    w2 = (torch.randn(num_local, h, i, device=dev) / math.sqrt(i)).to(torch.bfloat16)
    w1q, w1s = quantize_fp8_block(w1)
    w2q, w2s = quantize_fp8_block(w2)
    rows = []
    for tokens in token_counts:
        x = torch.randn(tokens, h, device=dev).to(torch.bfloat16)
        ids, wts = balanced_topk(tokens, case, 0, dev)
        problem = problem_of(x, w1, ids)
        t16 = default_tactic(problem, gluon=gluon)
        t8 = default_tactic(replace(problem, dtype="float8_e4m3fn"), gluon=gluon)
        bf16_tactics = [t16]
        if gate_up_twins:
            bf16_tactics += gluon_gate_up_twins(problem, t16, gluon)

        def bf16(t: Tactic, x: torch.Tensor = x, ids: torch.Tensor = ids, wts: torch.Tensor = wts) -> None:
            fused_moe(x, w1, w2, ids, wts, local_expert_offset=case.offset, tactic=t)

        def fp8(
            x: torch.Tensor = x, ids: torch.Tensor = ids, wts: torch.Tensor = wts, t: Tactic = t8
        ) -> None:
            fused_moe_fp8(x, w1q, w1s, w2q, w2s, ids, wts, local_expert_offset=case.offset, tactic=t)

        runs = [(f"bf16 {t.name}", lambda t=t: bf16(t)) for t in bf16_tactics] + [(f"fp8 {t8.name}", fp8)]
        for label, fn in runs:
            kernels, wall = kernel_times(fn, iters)
            print(
                f"{name} T={tokens} {label}: {wall:.1f} us per call (events), "
                f"kernels sum {sum(kernels.values()):.1f} us"
            )
            for kname, us in sorted(kernels.items(), key=lambda kv: -kv[1]):
                print(f"    {us:9.1f} us  {kname}")
            rows.append({"case": name, "tokens": tokens, "layer": label, "wall_us": wall, "kernels": kernels})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES_DEFAULT))
    ap.add_argument("--tokens", default="4096,16384")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--gate-up-twins", action="store_true",
                    help="also the bf16 default with each Gluon gate/up at its block_m")  # fmt: skip
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    token_counts = [int(t) for t in args.tokens.split(",")]
    rows = [row for name in args.cases.split(",")
            for row in one_case(name, token_counts, args.iters, args.gate_up_twins)]  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
