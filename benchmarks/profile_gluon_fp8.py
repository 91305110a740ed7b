"""Launch one Gluon fp8 MoE GEMM a few times, for Nsight Compute (``ncu``) to profile on the H100.

    PYTHONPATH=. ncu --clock-control none -k regex:gluon --launch-skip 1 --launch-count 1 \\
        --section WarpStateStats ... python3 benchmarks/profile_gluon_fp8.py --kernel wide

deepseek-r1 DEP8 (L=32 local experts, H=7168, I=2048, top_k=8), balanced routing, ``--tokens`` per rank
(default 4000, as ``benchmarks/gluon_fp8_moe.py``). ``--kernel`` picks the GEMM and its schedule:

- ``wide``: gate/up at block_m 64 (``kernels.gluon_gate_up``'s wide schedule), 8 warps, 4 stages;
- ``halves``: gate/up at block_m 128, two passes of 64 h columns, 8 warps, ``--stages`` (default 3);
- ``wide-sorted``, ``halves-sorted``: the same with x quantized into the alignment's row order and
  read by TMA (``sorted_x``; ``halves-sorted`` at 4 stages, the default tactic's);
- ``down128``: the down at block_m 128, a 128 x 128 tile, 8 warps, 4 stages;
- ``down64``: the down at block_m 64, one 64 x 256 tile, 8 warps, 4 stages.

Each is launched ``--launches`` times (default 2: the first compiles and warms up), then the script
synchronizes and prints the last launch's time from CUDA events (under ncu that time is the
profiler's, not the kernel's).
"""

from __future__ import annotations

import argparse

import torch

GATE_UP = {"wide": (64, 4), "halves": (128, 3), "wide-sorted": (64, 4), "halves-sorted": (128, 4)}
DOWN = {"down128": (128, 128), "down64": (64, 256)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", choices=[*GATE_UP, *DOWN], required=True)
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--stages", type=int, default=None, help="ring depth (default per kernel)")
    parser.add_argument("--launches", type=int, default=2)
    args = parser.parse_args()
    if args.tokens < 1 or args.launches < 1:
        parser.error(f"--tokens and --launches must be >= 1, got {args.tokens} and {args.launches}")

    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from benchmarks.gluon_fp8_down import gluon_down_fp8
    from benchmarks.gluon_fp8_moe import expert_weights_fp8, gluon_gate_up_fp8
    from kernels.align import moe_align
    from kernels.quant import quantize_fp8_groups, quantize_fp8_groups_sorted

    case = CASES["deepseek-r1-dep8"]
    dev = torch.device("cuda")
    num_local, h, i = case.local_experts, case.hidden, case.intermediate
    gen = torch.Generator(device=dev).manual_seed(0)
    ids, weights = balanced_topk(args.tokens, case, 0, dev)
    if args.kernel in GATE_UP:
        block_m, stages = GATE_UP[args.kernel]
        x = torch.randn(args.tokens, h, device=dev, generator=gen, dtype=torch.bfloat16)
        w1q, w1s = expert_weights_fp8(num_local, 2 * i, h, gen)
        al = moe_align(ids, block_m, num_local, case.offset)
        sorted_x = args.kernel.endswith("-sorted")
        xq, xs = quantize_fp8_groups_sorted(x, al, case.top_k) if sorted_x else quantize_fp8_groups(x)

        def launch() -> None:
            gluon_gate_up_fp8(xq, xs, w1q, w1s, al, block_m, 8, args.stages or stages, top_k=case.top_k,
                              sorted_x=sorted_x)  # fmt: skip
    else:
        block_m, block_n = DOWN[args.kernel]
        al = moe_align(ids, block_m, num_local, case.offset)
        h_act = torch.randn(al.max_padded, i, device=dev, generator=gen, dtype=torch.bfloat16)
        hq, hs = quantize_fp8_groups(h_act)
        w2q, w2s = expert_weights_fp8(num_local, h, i, gen)
        topk_weights = weights.view(-1)

        def launch() -> None:
            gluon_down_fp8(hq, hs, w2q, w2s, topk_weights, al, block_n, 8, args.stages or 4)

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(args.launches):
        start.record()
        launch()
        end.record()
    torch.cuda.synchronize()
    print(f"{args.kernel} T={args.tokens}: last launch {start.elapsed_time(end) * 1e3:.1f} us")


if __name__ == "__main__":
    main()
