"""Where the fp8 gate/up's time goes: the persistent Gluon gate/up with one part of its work left out.

    PYTHONPATH=. python3 benchmarks/fp8_gate_up_probe.py [--cases A,B] [--tokens 4096] [--passes 3]
        [--json FILE]                        # device: the timing table
    PYTHONPATH=. python3 benchmarks/fp8_gate_up_probe.py --kernel VARIANT [--cases A] [--tokens 4096]
                                             # device: two plain launches, for ncu (gpu_profile.sh)

The first six variants are ``kernels.gluon_gate_up_ws``'s sorted fp8 kernel (block_m 128, 128 x 128
tiles in two passes of 64 h columns, 5 ring stages: the fp8 default's gate/up at block_m 128), each
loaded as its own copy of the module with one helper swapped, so all variants compile and run in one
process and share its clocks. The probes among them are not correct programs (their h is wrong);
only their time counts:

- ``committed``: the kernel as it is;
- ``x-once``: pass 1 of each tile does not reload x's blocks (its ring slots keep stale x), so x
  crosses L2 once per tile instead of twice: 25% fewer bytes per FLOP. What the memory feed costs;
- ``no-scale-loads``: the promotion multiplies by 1 instead of ``xs[row, kb] * w1s[n, kb]`` (no
  scale loads in the K loop). What waiting on the scales costs;
- ``no-promotion``: every wgmma accumulates in place, as the 16-bit loop does (no temporaries, no
  FFMA per K block, no scale loads). What block scaling costs the tensor cores;
- ``no-epilogue``: the tile's epilogue (silu * up of pass 1, the group scale, the e4m3 codes and
  their TMA stores) runs only on a row offset below 0, that is never; pass 0's h still goes to the
  stash. What the epilogue costs where the tensor cores wait for it (its hq writes go too, a small
  share of the bytes: 25 MB of about 495 MB at qwen3-30b T = 4096);
- ``tanh-silu``: ``silu(g) = g (1 + tanh(g / 2)) / 2`` by ``tanh.approx`` (one MUFU op per
  element instead of an ``ex2`` and a reciprocal; not the committed bits, so ``max_rel_diff`` says
  how far). What the activation's MUFU ops cost. (Run 123 timed it on top of the per-row division
  that is now committed: 0.91x at qwen3-30b T >= 4096, 0.96-1.0x elsewhere.) Not a candidate as it
  stands: ``tanh.approx``'s absolute error (about 2^-11) swamps ``1 + tanh`` for a gate below about
  -8, so there silu loses all its relative accuracy;
- ``non-persistent``: ``kernels.gluon_gate_up``'s sorted halves kernel (a program per tile, 4
  stages; the fp8 default's gate/up above I = 2048 until session 22), correct, for reference;
- ``dual``: the space's ``dual`` tile (``kernels.gluon_gate_up_dual``: x read once per tile, each
  math warpgroup its own partition, partition 1 starting once partition 0 has promoted its first
  wgmma, 4 stages), correct: its hq and hs are compared with ``committed``'s (``same_bits``,
  ``max_rel_diff``). Runs 111-112 timed it as a candidate, with and without that staggered start;
- ``dual-no-epilogue``: ``dual`` with each partition's epilogue behind a never-taken branch, as in
  ``no-epilogue``. Whether the partitions' epilogues already hide under each other's wgmmas (each
  runs its own 64 rows, and one may run up to the ring's depth ahead of the other).

Inputs as the fp8 layer makes them (balanced routing, x quantized into the alignment's order, w1
block-quantized). Times: CUDA-graph replays (:class:`pytest_moetune.timing.CudaGraphTimer`, 7
rounds), the variants in turn in ``--passes`` passes (order rotated each pass); per variant the
median over passes of each pass's median, its ratio to ``committed`` and TFLOP/s (``2 R H 2I``).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma

import kernels.gluon_down as gluon_down
import kernels.gluon_gate_up_dual as gluon_gate_up_dual
import kernels.gluon_gate_up_ws as gluon_gate_up_ws
from benchmarks.bench_fused_moe import CASES, Case, balanced_topk
from benchmarks.points import each_point
from kernels import MoEProblem
from kernels.align import moe_align
from kernels.gluon_down import _ws_fill, _ws_k_loop_plain
from kernels.gluon_gate_up import launch_gluon_gate_up
from kernels.gluon_gate_up_ws import TILE_N, _ws_store_h, _ws_tile
from kernels.quant import quantize_fp8_block, quantize_fp8_groups_sorted
from kernels.tactics import _gluon_tiles
from pytest_moetune.timing import CudaGraphTimer

MODULE_VARIANTS = ("committed", "x-once", "no-scale-loads", "no-promotion", "no-epilogue", "tanh-silu")
"""The variants that are copies of ``kernels.gluon_gate_up_ws`` with one helper swapped."""
VARIANTS = (*MODULE_VARIANTS, "non-persistent", "dual", "dual-no-epilogue")


@gluon.jit
def _fill_weights_only(b_desc, b_coord, b_bufs, ready, empty, f):
    """``kernels.gluon_down._ws_fill`` without the x box: the slot's x stays what it was."""
    NUM_STAGES: gl.constexpr = b_bufs.shape[0]
    slot = f % NUM_STAGES
    mbarrier.wait(empty.index(slot), ((f // NUM_STAGES) & 1) ^ 1)
    bar = ready.index(slot)
    mbarrier.expect(bar, b_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(b_desc, b_coord, bar, b_bufs.index(slot))


@gluon.jit
def _loader_x_once(x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
                   num_pid_n, num_k, GROUP_M: gl.constexpr):  # fmt: skip
    """``kernels.gluon_gate_up_ws._ws_loader`` bringing x's blocks in pass 0 only."""
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_K: gl.constexpr = a_bufs.shape[2]
    ROWS: gl.constexpr = b_bufs.shape[2]
    f = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, e = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        off_m = pid_m * BLOCK_M
        for p in gl.static_range(TILE_N // ROWS):
            n = pid_n * TILE_N + p * ROWS
            for kb in range(num_k):
                k0 = kb * BLOCK_K
                if p == 0:
                    _ws_fill(x_desc, [off_m, k0], w_desc, [2 * e, n, k0], a_bufs, b_bufs, ready, empty, f)
                else:
                    _fill_weights_only(w_desc, [2 * e, n, k0], b_bufs, ready, empty, f)
                f += 1


@gluon.jit
def _unit_scale(sa_ptrs, row_ok, sb_ptr, kb, stride_sa_k, stride_sb_k, sb_hi_off, is_hi, SPLIT: gl.constexpr):
    """``kernels.gluon_common._gluon_block_scale``'s shape with no loads: 1 on every row."""
    return gl.expand_dims(gl.where(row_ok, 1.0, 0.0), 1)


@gluon.jit
def _k_loop_in_place(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, sb_ptr, stride_sb_k,
                     sb_hi_off, is_hi, SPLIT: gl.constexpr, mma_layout: gl.constexpr,
                     FENCE: gl.constexpr = False):  # fmt: skip
    """``kernels.gluon_down._ws_k_loop``'s signature on the 16-bit loop: no promotion."""
    return _ws_k_loop_plain(a_bufs, b_bufs, ready, empty, base, num_k, mma_layout, FENCE)


@gluon.jit
def _store_h_never(h_lo_val, h_hi_val, off_m, pid_n, hs_ptr, stride_hsm, h_lo, h_hi, h_desc):
    """``kernels.gluon_gate_up_ws._ws_store_h`` on a row offset below 0 only, that is never: the
    accumulators stay live (their wgmmas run), the epilogue's work does not."""
    if off_m < 0:
        _ws_store_h(h_lo_val, h_hi_val, off_m, pid_n, hs_ptr, stride_hsm, h_lo, h_hi, h_desc)


@gluon.jit
def _halves_h_tanh(acc):
    """``kernels.gluon_gate_up._halves_h`` with ``silu(g) = g (1 + tanh(g / 2)) / 2`` (one MUFU op per
    element instead of an exp and a reciprocal; not the committed bits)."""
    BLOCK_M: gl.constexpr = acc.shape[0]
    W: gl.constexpr = acc.shape[1] // 2
    gate, up = gl.split(gl.permute(gl.reshape(acc, [BLOCK_M, 2, W]), (0, 2, 1)))
    half = 0.5 * gate
    t = gl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [half], dtype=gl.float32,
                                  is_pure=True, pack=1)  # fmt: skip
    return gl.fma(half, t, half) * up


def _module_copy(module: ModuleType, tag: str) -> ModuleType:
    """A fresh copy of ``module`` (its own jit functions and compile caches) named ``_probe_<tag>``."""
    spec = importlib.util.spec_from_file_location(f"_probe_{tag}_{module.__name__.rsplit('.', 1)[-1]}",
                                                  module.__file__)  # fmt: skip
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = copy
    spec.loader.exec_module(copy)
    return copy


def variant_modules() -> dict[str, ModuleType]:
    """Each probe's copy of ``kernels.gluon_gate_up_ws`` with its helper swapped (before any compile:
    Triton resolves a kernel's helpers from its module's globals when it first compiles)."""
    mods = {name: _module_copy(gluon_gate_up_ws, name.replace("-", "_")) for name in MODULE_VARIANTS}
    mods["x-once"]._ws_loader = _loader_x_once
    unit_down = _module_copy(gluon_down, "unit_scale")
    unit_down._gluon_block_scale = _unit_scale
    mods["no-scale-loads"]._ws_k_loop = unit_down._ws_k_loop
    mods["no-promotion"]._ws_k_loop = _k_loop_in_place
    mods["no-epilogue"]._ws_store_h = _store_h_never
    mods["tanh-silu"]._halves_h = _halves_h_tanh
    return mods


def dual_no_epilogue_module() -> ModuleType:
    """``dual-no-epilogue``'s copy of ``kernels.gluon_gate_up_dual`` with ``_ws_store_h`` swapped for
    :func:`_store_h_never` (before any compile)."""
    module = _module_copy(gluon_gate_up_dual, "no_epilogue")
    module._ws_store_h = _store_h_never
    return module


Outputs = dict[str, tuple[torch.Tensor, torch.Tensor]]


def make_launches(
    case: Case, tokens: int, mods: dict[str, ModuleType]
) -> tuple[dict[str, Callable[[], object]], Outputs, int]:
    """Inputs of ``case`` at ``tokens`` rows per rank and one launch per variant, each into its own
    ``(hq, hs)``; the outputs by variant and the rows in use (``num_padded``)."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    h, i, num_local, k = case.hidden, case.intermediate, case.local_experts, case.top_k
    w1q, w1s = quantize_fp8_block(torch.randn(num_local, 2 * i, h, device=dev) / math.sqrt(h))
    ids, _ = balanced_topk(tokens, case, 0, dev)
    al = moe_align(ids, 128, num_local, case.offset)
    xq, xs = quantize_fp8_groups_sorted(torch.randn(tokens, h, device=dev).bfloat16(), al, k)
    problem = MoEProblem(tokens, h, i, num_local, k, "float8_e4m3fn")
    tiles = _gluon_tiles(problem, 128, "gate_up")
    persistent = next(t for t in tiles if t.sorted_x and t.persistent and not t.dual)
    dual = next(t for t in tiles if t.dual)
    plain = replace(next(t for t in tiles if t.sorted_x and not t.persistent), num_stages=4)

    outs: Outputs = {}

    def launch(name: str) -> Callable[[], object]:
        hq = torch.zeros((al.max_padded, i), dtype=torch.float8_e4m3fn, device=dev)
        hs = torch.zeros((al.max_padded, i // 128), device=dev)
        outs[name] = (hq, hs)
        if name == "non-persistent":
            return lambda: launch_gluon_gate_up(xq, xs, w1q, w1s, hq, hs, al, plain, k, sorted_x=True)
        if name == "dual":
            return lambda: launch_gluon_gate_up(xq, xs, w1q, w1s, hq, hs, al, dual, k, sorted_x=True)
        if name == "dual-no-epilogue":
            run_dual = mods[name].launch_gluon_gate_up_dual
            return lambda: run_dual(xq, xs, w1q, w1s, hq, hs, al, dual)
        run = mods[name].launch_gluon_gate_up_ws
        return lambda: run(xq, xs, w1q, w1s, hq, hs, al, persistent, k)

    return {name: launch(name) for name in VARIANTS}, outs, int(al.num_padded.item())


def compare(outs: Outputs, name: str, rows: int) -> dict[str, Any]:
    """``name``'s hq and hs against ``committed``'s on the rows in use: bit for bit (``same_bits``),
    and the largest difference of the dequantized h relative to committed's largest ``|h|``."""
    (hq_a, hs_a), (hq_b, hs_b) = outs["committed"], outs[name]
    same = torch.equal(hq_a[:rows].view(torch.uint8), hq_b[:rows].view(torch.uint8)) and torch.equal(
        hs_a[:rows], hs_b[:rows]
    )
    h_a = hq_a[:rows].float() * hs_a[:rows].repeat_interleave(128, dim=1)
    h_b = hq_b[:rows].float() * hs_b[:rows].repeat_interleave(128, dim=1)
    rel = ((h_a - h_b).abs().max() / h_a.abs().max().clamp_min(1e-30)).item()
    return {"same_bits": same, "max_rel_diff": rel}


def measure(case: Case, tokens: int, mods: dict[str, ModuleType], passes: int) -> list[dict[str, Any]]:
    """The variants' times at one point, interleaved over ``passes`` passes."""
    launches, outs, rows_in_use = make_launches(case, tokens, mods)
    for run in launches.values():  # compile and warm up outside the timed passes
        run()
    torch.cuda.synchronize()
    checks = {name: compare(outs, name, rows_in_use) for name in ("dual", "tanh-silu")}
    timer = CudaGraphTimer(rounds=7, target_round_us=20_000.0, warmup_us=50_000.0)
    per_pass: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for p in range(passes):
        order = VARIANTS[p % len(VARIANTS) :] + VARIANTS[: p % len(VARIANTS)]
        for name in order:
            per_pass[name].append(timer.measure([launches[name]]).median_us)
    flop = 2 * tokens * case.top_k * case.hidden * 2 * case.intermediate
    base = statistics.median(per_pass["committed"])
    rows = []
    for name in VARIANTS:
        us = statistics.median(per_pass[name])
        rows.append({"case": case.name, "tokens": tokens, "variant": name, "us": round(us, 1),
                     "vs_committed": round(us / base, 3), "tflops": round(flop / us / 1e6, 1),
                     "passes_us": [round(v, 1) for v in per_pass[name]]}
                    | checks.get(name, {}))  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--tokens", default="4096")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--kernel", choices=VARIANTS, help="launch this variant twice at the first point (ncu)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.passes < 1:
        ap.error(f"--passes must be >= 1, got {args.passes}")
    mods = variant_modules() | {"dual-no-epilogue": dual_no_epilogue_module()}
    if args.kernel:
        case, tokens = CASES[args.cases.split(",")[0]], int(args.tokens.split(",")[0])
        run = make_launches(case, tokens, mods)[0][args.kernel]
        for _ in range(2):
            run()
        torch.cuda.synchronize()
        print(f"{args.kernel} {case.name} T={tokens}: launched twice")
        return
    rows = each_point(args.cases, args.tokens, lambda c, t: measure(c, t, mods, args.passes), args.json)
    print(f"\n| case | T | {' | '.join(VARIANTS)} |\n|---|---|{'---|' * len(VARIANTS)}")
    for key in dict.fromkeys((r["case"], r["tokens"]) for r in rows):
        cells = [r for r in rows if (r["case"], r["tokens"]) == key]
        print(
            f"| {key[0]} | {key[1]} | "
            + " | ".join(
                f"{r['us']} µs, {r['tflops']} TF/s ({r['vs_committed']}x)"
                + (f", same bits {r['same_bits']}, {r['max_rel_diff']:.1e}" if "same_bits" in r else "")
                for r in cells
            )
            + " |"
        )


if __name__ == "__main__":
    main()
