"""Launch one 16-bit gate/up GEMM a few times, for Nsight Compute (``ncu``) to profile on a Hopper GPU.

    PYTHONPATH=. ncu --clock-control none -k regex:gate_up --launch-skip 1 --launch-count 1 \\
        --section WarpStateStats ... python3 benchmarks/profile_bf16_gate_up.py --kernel gluon-gather

``--case`` from ``benchmarks.bench_fused_moe.CASES`` (default qwen3-235b-a22b-dep2), balanced routing,
``--tokens`` per rank (default 4096), bf16, block_m 128. ``--kernel`` picks the gate/up:

- ``triton-sorted``: Triton's ``n128k64g8w8s4tS`` on x copied into the alignment's order (the bf16
  default's gate/up above 128 rows per expert, I > 1024);
- ``gluon-sorted``: the persistent Gluon gate/up on the same copy (``n128k64g8w8s4tGSP``);
- ``gluon-gather``: the persistent Gluon gate/up gathering x's rows itself (``n128k64g8w8s4tGP``).

Each is launched ``--launches`` times (default 2: the first compiles and warms up), then the script
synchronizes and prints the last launch's time from CUDA events (under ncu that time is the
profiler's, not the kernel's).
"""

from __future__ import annotations

import argparse
import math

import torch

from benchmarks.ab_bf16_gate_up import TILES as AB_TILES

TILES = {"triton-sorted": AB_TILES["triton"], "gluon-sorted": AB_TILES["gluon-sorted"],
         "gluon-gather": AB_TILES["gluon-gather"]}  # fmt: skip
"""The variants of ``benchmarks/ab_bf16_gate_up.py``, under the names ``gpu_profile.sh`` is given."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernel", choices=sorted(TILES), required=True)
    parser.add_argument("--case", default="qwen3-235b-a22b-dep2")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--launches", type=int, default=2)
    args = parser.parse_args()
    if args.tokens < 1 or args.launches < 1:
        parser.error(f"--tokens and --launches must be >= 1, got {args.tokens} and {args.launches}")

    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from kernels.align import moe_align
    from kernels.fused_moe import _launch_gate_up
    from kernels.row_gather import gather_rows_sorted

    if args.case not in CASES:
        parser.error(f"--case {args.case!r} is not one of {sorted(CASES)}")
    case, tile, dev = CASES[args.case], TILES[args.kernel], torch.device("cuda")
    h, i = case.hidden, case.intermediate
    w1 = (torch.randn(case.local_experts, 2 * i, h, device=dev) / math.sqrt(h)).to(torch.bfloat16)
    x = torch.randn(args.tokens, h, device=dev).to(torch.bfloat16)
    ids, _ = balanced_topk(args.tokens, case, 0, dev)
    al = moe_align(ids, 128, case.local_experts, case.offset)
    x_rows = gather_rows_sorted(x, al, case.top_k)[0] if tile.sorted_x else x
    hbuf = torch.empty((al.max_padded, i), dtype=x.dtype, device=dev)

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(args.launches):
        start.record()
        _launch_gate_up(x_rows, w1, hbuf, al, tile, case.top_k, "tf32")
        end.record()
    torch.cuda.synchronize()
    print(f"{args.kernel} {args.case} T={args.tokens}: last launch {start.elapsed_time(end) * 1e3:.1f} us")


if __name__ == "__main__":
    main()
