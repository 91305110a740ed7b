"""Times the fp8 quantization of x into the alignment's row order (``sorted_x``) on the GPU, per
launch shape, against the plain per-token quantization and against the bytes it must move.

    PYTHONPATH=. python3 benchmarks/quant_sorted_bench.py [--json PATH]

Cases: deepseek-r1 DEP8 (H=7168, top_k=8) at 4096 and 16384 tokens, mixtral EP1 (top_k=2) at 16384,
balanced routing, bf16 x. Each launch shape ``(tokens per program, padded rows per zeroing program,
warps)`` is checked bit for bit against the first before it is timed
(``triton.testing.do_bench_cudagraph``), and so is the two-pass path (``two_pass=True``: quantize the
tokens, then gather the fp8 rows in order; the default from ``kernels.quant.TWO_PASS_TOP_K`` on). The
byte floor counts x read once and ``top_k`` fp8 rows (and scales) written per token.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import partial

import torch
import triton

LAUNCHES = [(16, 64, 4), (32, 64, 4), (64, 64, 8), (32, 256, 4), (8, 64, 4), (16, 256, 2)]
POINTS = [("deepseek-r1-dep8", 4096), ("deepseek-r1-dep8", 16384), ("mixtral-8x7b-ep1", 16384)]


def main() -> None:
    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from kernels.align import moe_align
    from kernels.quant import quantize_fp8_groups, quantize_fp8_groups_sorted

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dev = torch.device("cuda")
    rows = []
    for name, tokens in POINTS:
        case = CASES[name]
        x = torch.randn(tokens, case.hidden, device=dev).to(torch.bfloat16)
        ids, _ = balanced_topk(tokens, case, 0, dev)
        al = moe_align(ids, 128, case.local_experts, case.offset)
        k = case.top_k
        nbytes = 2 * tokens * case.hidden + k * tokens * (case.hidden + 4 * case.hidden // 128)
        plain = triton.testing.do_bench_cudagraph(lambda x=x: quantize_fp8_groups(x), rep=50) * 1e3
        print(f"{name} T={tokens}: plain quantization {plain:.1f} us; sorted floor {nbytes / 1e9:.2f} GB")
        ref_q, ref_s = quantize_fp8_groups_sorted(x, al, k, two_pass=False, launch=LAUNCHES[0])
        padded = int(al.num_padded.item())
        token_major = partial(quantize_fp8_groups_sorted, two_pass=False)
        variants = [(f"token-major {launch}", partial(token_major, launch=launch)) for launch in LAUNCHES]
        variants.append(("two-pass", partial(quantize_fp8_groups_sorted, two_pass=True)))
        for label, fn in variants:
            q, s = fn(x, al, k)
            same_q = torch.equal(q[:padded].view(torch.uint8), ref_q[:padded].view(torch.uint8))
            same = same_q and torch.equal(s[:padded], ref_s[:padded])

            def call(fn: Callable = fn, x: torch.Tensor = x, al: object = al, k: int = k) -> None:
                fn(x, al, k)

            us = triton.testing.do_bench_cudagraph(call, rep=50) * 1e3
            print(f"  {label}: {us:.1f} us, {nbytes / us / 1e6:.2f} TB/s, same bits: {same}")
            rows.append({"case": name, "tokens": tokens, "variant": label, "us": us, "same": same,
                         "plain_us": plain, "bytes": nbytes})  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
