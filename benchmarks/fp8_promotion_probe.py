"""What the block-scale promotion costs the fp8 layer at the power cap: the fp8 default layer as
committed against the same layer with its warp-specialized K loops' promotion taken out (a probe:
wrong results, real timing).

    PYTHONPATH=. python3 benchmarks/fp8_promotion_probe.py [--cases A,B] [--tokens 4096] [--json F]
    env -u TRITON_INTERPRET PYTHONPATH=. python3 benchmarks/fp8_promotion_probe.py --offline   # no GPU

The probe swaps ``_ws_k_loop`` (the math warps' block-scaled K loop of the warp-specialized Gluon down
and the persistent Gluon gate/up) for :func:`_ws_k_loop_unscaled`: the same ring, waits and slot
releases, but every wgmma accumulates in place, as the 16-bit K loop does, and no scale is loaded,
multiplied or added. The layer's other kernels, the quantization of x and h included, stay as they
are. So the time the probe saves is what the per-K-block promotion (two scale loads, a multiply and
an FMA per accumulator element, the second temporary's registers) costs in the layer.

Why (BENCHMARKS.md, session 16, run 63): at T = 4096 on the H200 both layers run at the 700 W cap;
there the bf16 layers sustain 88-102% of the dense bf16 matmul's rate and the fp8 layers only 67-77%
of the dense fp8 one's, so fp8 misses 1.5x bf16. The promotion is one suspect, the bytes moved from
L2 into shared memory per FLOP the other.

Each variant compiles in its own child process (Triton keys its compile cache on a kernel's
dependencies as first resolved), in the order committed, probe, committed, probe, so a drift of the
card's temperature shows as a difference between the two runs of one variant. On the GPU each child
times the fp8 default at each point by :func:`benchmarks.layer_power_ab.time_variants` (interleaved
rounds and settled sustained blocks, with the SM clock and power). ``--offline`` compiles the
persistent fp8 gate/up both ways for sm_90a and prints registers and the K loop's instructions per K
block.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
from typing import Any

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma_wait

import kernels.gluon_down as gluon_down
import kernels.gluon_gate_up_ws as gluon_gate_up_ws
from kernels.gluon_common import _gluon_block_scale, _gluon_pin
from kernels.gluon_down import _down_release, _slot_rows, _ws_issue

VARIANTS = ("committed", "unscaled", "prefetch", "noload")


@gluon.jit
def _ws_k_loop_unscaled(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, sb_ptr, stride_sb_k,
                        sb_hi_off, is_hi, SPLIT: gl.constexpr, mma_layout: gl.constexpr,
                        FENCE: gl.constexpr = False):  # fmt: skip
    """:func:`kernels.gluon_down._ws_k_loop`'s signature over :func:`kernels.gluon_down._ws_k_loop_plain`
    (the scale arguments unused): a probe, not a correct kernel."""
    return gluon_down._ws_k_loop_plain(a_bufs, b_bufs, ready, empty, base, num_k, mma_layout, FENCE)


@gluon.jit
def _ws_k_loop_ahead(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, sb_ptr, stride_sb_k,
                     sb_hi_off, is_hi, SPLIT: gl.constexpr, mma_layout: gl.constexpr, FENCE: gl.constexpr,
                     LOAD: gl.constexpr):  # fmt: skip
    """:func:`kernels.gluon_down._ws_k_loop` with each K block's scale in registers two wgmmas before
    its promotion instead of one: on entry to a pass of the loop both scales of the pair it promotes
    are loaded, and the next pair's are loaded behind this pair's issues (the index clamped to the
    last K block, whose scale a tail may load twice). ``LOAD`` False keeps block 0's scale for every
    K block instead (no loads in the loop: a probe, not a correct kernel)."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_N: gl.constexpr = _slot_rows(b_bufs.shape)
    last = num_k - 1
    acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    spare1 = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    t0 = _ws_issue(a_bufs, b_bufs, ready, base, gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout),
                   NUM_STAGES, False, FENCE)  # fmt: skip
    scale0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, 0, 1, stride_sb_k, sb_hi_off, is_hi, SPLIT)
    scale1 = scale0
    if LOAD:
        kb1 = gl.minimum(last, 1)
        scale1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb1, 1, stride_sb_k, sb_hi_off, is_hi, SPLIT)
    for j in range(0, (num_k - 1) // 2):
        kb = 2 * j + 1
        t1 = _ws_issue(a_bufs, b_bufs, ready, base + kb, spare1, NUM_STAGES, False, FENCE)
        next0 = scale0
        if LOAD:
            kb1 = kb + 1
            next0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb1, 1, stride_sb_k, sb_hi_off, is_hi, SPLIT)
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))  # block kb-1 complete
        _down_release(empty, base + kb - 1, NUM_STAGES)
        acc = _gluon_pin(acc + done0 * scale0)

        t0 = _ws_issue(a_bufs, b_bufs, ready, base + kb + 1, done0, NUM_STAGES, False, FENCE)
        next1 = scale1
        if LOAD:
            kb2 = gl.minimum(kb + 2, last)
            next1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb2, 1, stride_sb_k, sb_hi_off, is_hi, SPLIT)
        spare1 = warpgroup_mma_wait(num_outstanding=1, deps=(t1,))  # block kb complete
        _down_release(empty, base + kb, NUM_STAGES)
        acc = _gluon_pin(acc + spare1 * scale1)
        scale0 = next0
        scale1 = next1
    if num_k % 2 == 0:
        t1 = _ws_issue(a_bufs, b_bufs, ready, base + num_k - 1, spare1, NUM_STAGES, False, FENCE)
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))
        _down_release(empty, base + num_k - 2, NUM_STAGES)
        acc = acc + done0 * scale0
        done1 = warpgroup_mma_wait(num_outstanding=0, deps=(t1,))
        _down_release(empty, base + num_k - 1, NUM_STAGES)
        acc = acc + done1 * scale1
    else:
        done0 = warpgroup_mma_wait(num_outstanding=0, deps=(t0,))
        _down_release(empty, base + num_k - 1, NUM_STAGES)
        acc = acc + done0 * scale0
    return acc


@gluon.jit
def _ws_k_loop_prefetch(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, sb_ptr, stride_sb_k,
                        sb_hi_off, is_hi, SPLIT: gl.constexpr, mma_layout: gl.constexpr,
                        FENCE: gl.constexpr = False):  # fmt: skip
    """The ``prefetch`` candidate (correct): :func:`_ws_k_loop_ahead` loading every K block's scale."""
    return _ws_k_loop_ahead(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, sb_ptr, stride_sb_k,
                            sb_hi_off, is_hi, SPLIT, mma_layout, FENCE, True)  # fmt: skip


@gluon.jit
def _ws_k_loop_noload(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, sb_ptr, stride_sb_k,
                      sb_hi_off, is_hi, SPLIT: gl.constexpr, mma_layout: gl.constexpr,
                      FENCE: gl.constexpr = False):  # fmt: skip
    """The ``noload`` probe (not a correct kernel): :func:`_ws_k_loop_ahead` with block 0's scale for
    every K block, loaded once per tile: the promotion's FMAs and temporaries without the per-block
    scale loads and their latency."""
    return _ws_k_loop_ahead(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, sb_ptr, stride_sb_k,
                            sb_hi_off, is_hi, SPLIT, mma_layout, FENCE, False)  # fmt: skip


_K_LOOPS = {"unscaled": _ws_k_loop_unscaled, "prefetch": _ws_k_loop_prefetch, "noload": _ws_k_loop_noload}


def use(variant: str) -> None:
    """Swap ``variant``'s K loop into both modules that call it (before anything compiles)."""
    if variant in _K_LOOPS:
        gluon_down._ws_k_loop = _K_LOOPS[variant]
        gluon_gate_up_ws._ws_k_loop = _K_LOOPS[variant]


def offline_report(variant: str) -> dict[str, Any]:
    """Registers and K-loop SASS of the persistent fp8 gate/up (5 stages) compiled with ``variant``;
    ``instructions_per_k_block`` divides the loop by the K blocks it holds (the committed loop is
    unrolled by two K blocks, eight k32 wgmmas per warp; the plain one holds one, four)."""
    from benchmarks.gluon_fp8_gemm import _report
    from benchmarks.gluon_gate_up_ws import compile_ws

    use(variant)
    k_blocks = 1 if variant == "unscaled" else 2
    report = _report(
        "gluon-gate-up-ws", (128, 128, 8, 5), lambda: compile_ws(5), mma_per_iteration=4 * k_blocks
    )
    row = {"variant": variant, "registers": report.registers, "spills": report.spill_stores,
           "loop_instructions": report.loop_instructions, "loop_barriers": report.loop_barriers,
           "error": report.error}  # fmt: skip
    if report.loop_instructions is not None:
        row["instructions_per_k_block"] = report.loop_instructions / k_blocks
    return row


def gpu_report(
    variant: str, cases: list[str], tokens: list[int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The fp8 default layer's times at each point with ``variant``'s K loop."""
    import torch

    from benchmarks.bench_fused_moe import CASES, Timed
    from benchmarks.layer_power_ab import Sampler, layer_calls, layer_inputs, time_variants
    from kernels import default_tactic, fused_moe_fp8, quantize_fp8_block
    from kernels.fused_moe import problem_of
    from kernels.gluon_support import gluon_unready

    use(variant)
    gluon = gluon_unready() is None
    sampler = Sampler()
    rows = []
    try:
        for name in cases:
            case = CASES[name]
            for t in tokens:
                w1, w2, xs, routes = layer_inputs(case, t)
                problem = problem_of(xs[0], w1, routes[0][0])
                tactic = default_tactic(dataclasses.replace(problem, dtype="float8_e4m3fn"), gluon=gluon)
                weights = (*quantize_fp8_block(w1), *quantize_fp8_block(w2))
                calls = layer_calls(fused_moe_fp8, weights, xs, routes, case, tactic)
                print(f"\n{variant}: {name} T={t} {tactic.name}")
                (row,) = time_variants(
                    {variant: Timed(calls, args.target_ms * 1000.0)}, args, sampler, {}
                ).values()
                out = calls[0]()  # the layer's bits, to compare across variants
                sha = hashlib.sha256(out.contiguous().view(torch.uint8).cpu().numpy().tobytes()).hexdigest()
                rows.append({"variant": variant, "case": name, "tokens": t, "tactic": tactic.name,
                             "out_sha256": sha} | row)  # fmt: skip
                del calls, weights, w1, w2, xs
                torch.cuda.empty_cache()
    finally:
        sampler.close()
    return rows


def child(variant: str, argv: list[str]) -> list[dict[str, Any]]:
    """Run this script for one ``variant`` in a fresh process; its last stdout line is its JSON."""
    out = subprocess.run(
        [sys.executable, __file__, "--variant", variant, *argv], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(
            f"{variant} child failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )
    print(out.stdout.rsplit("\n", 2)[0])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--offline", action="store_true", help="compile both variants for sm_90a, no GPU")
    ap.add_argument("--cases", default="deepseek-r1-dep8,qwen3-235b-a22b-dep2,qwen3-30b-a3b-ep1")
    ap.add_argument("--tokens", default="4096")
    ap.add_argument("--variants", default="committed,unscaled", help=f"of {','.join(VARIANTS)}")
    ap.add_argument("--passes", type=int, default=2, help="runs of each variant, alternating")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--sustain-s", type=float, default=2.0)
    ap.add_argument("--settle-s", type=float, default=1.0)
    ap.add_argument("--target-ms", type=float, default=20.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # a child's one variant
    args, _ = ap.parse_known_args()
    if args.variant:
        if args.offline:
            result: Any = [offline_report(args.variant)]
        else:
            result = gpu_report(
                args.variant, args.cases.split(","), [int(t) for t in args.tokens.split(",")], args
            )
        print(json.dumps(result))
        return
    argv = [a for a in sys.argv[1:] if not a.startswith("--json")]
    variants = args.variants.split(",")
    if bad := [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"--variants: unknown {bad}; known: {', '.join(VARIANTS)}")
    order = variants if args.offline else variants * args.passes
    rows = [row for variant in order for row in child(variant, argv)]
    if args.offline:
        for row in rows:
            print(json.dumps(row))
    else:
        print("\n| variant | case | T | interleaved µs | sustained µs | SM MHz | W |")
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            sp = row["sustained_power"]
            print(f"| {row['variant']} | {row['case']} | {row['tokens']} | {row['interleaved_us']:.1f} | "
                  f"{row['sustained_us']:.1f} | {sp['sm_mhz']:.0f} | {sp['watts']:.0f} |")  # fmt: skip
        print("\nbits (sha256 of the first call's output) against the committed loop's:")
        for key in sorted({(row["case"], row["tokens"]) for row in rows}):
            shas = {row["variant"]: row["out_sha256"] for row in rows if (row["case"], row["tokens"]) == key}
            ref = shas.get("committed")
            same = [f"{v} {'same' if s == ref else 'differ'}" for v, s in shas.items() if v != "committed"]
            print(f"  {key[0]} T={key[1]}: " + ", ".join(same))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
