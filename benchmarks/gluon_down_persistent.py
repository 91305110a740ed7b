"""Persistent candidate of the Gluon fp8 down GEMM (``kernels/gluon_down.py``): one program per SM
walks its tiles, and the TMA ring runs on across tile boundaries, so the next tile's first K blocks
load while this tile finishes its K loop and its epilogue.

    PYTHONPATH=. python benchmarks/gluon_down_persistent.py --offline   # CPU: compile for sm_90a, report
    PYTHONPATH=. python benchmarks/gluon_down_persistent.py --gpu       # same bits as kernels' down, timed

Why (device run 3 of session 10, H200, ``benchmarks/layer_kernels.py``): at deepseek-r1 DEP8 the
down runs at ~925 TFLOP/s against the gate/up's ~1100. Its K is short (I = 2048: 16 K blocks per
tile against the gate/up's 56) and a 128x128 tile with 4 stages holds 128 KB of shared memory, one
program per SM: every tile pays the ring's fill latency and its epilogue with the tensor cores idle.

Inputs, output and per-tile arithmetic are those of ``kernels.gluon_down._gluon_down_fp8_kernel``
(same K loop order, same epilogue), so the output is bit-identical. Tiles: ``cdiv(num_padded,
BLOCK_M) * (H / BLOCK_N)`` in the grouped order, program p takes tiles p, p + G, ... (G programs).
The ring index is flat over the program's K blocks: block ``kb`` of its ``j``-th tile is ``j * num_k +
kb``, slot and phase follow from it, and the refill after a retired block loads ``S`` blocks further
on, into the next tile once past this one's last block. Needs ``I / 128 >= num_stages``.

The kernels' down is itself persistent and warp-specialized now (merged from branch ``ws-down`` in
session 11), so ``--gpu`` compares this candidate with that one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from kernels.align import Alignment
from kernels.gluon_common import (
    SCALE_GROUP,
    _gluon_block_scale,
    _gluon_pin,
    _mma_layout,
    _moe_tile,
    _ready_ring,
)
from kernels.gluon_down import _down_epilogue
from kernels.tactics import GemmTile


@gluon.jit
def _load_flat(a_desc, b_desc, a_bufs, b_bufs, ready, f, kb, off_m, b_row, pred, NUM_STAGES: gl.constexpr):
    """TMA K block ``kb`` of the A rows ``off_m ..`` and B rows ``b_row ..`` into ring slot
    ``f % NUM_STAGES`` (``f`` the flat block index), signalling that slot's mbarrier."""
    BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
    slot = f % NUM_STAGES
    bar = ready.index(slot)
    mbarrier.expect(bar, a_desc.block_type.nbytes + b_desc.block_type.nbytes, pred=pred)
    tma.async_copy_global_to_shared(a_desc, [off_m, kb * BLOCK_K], bar, a_bufs.index(slot), pred=pred)
    tma.async_copy_global_to_shared(b_desc, [b_row, kb * BLOCK_K], bar, b_bufs.index(slot), pred=pred)


@gluon.jit
def _refill(a_desc, b_desc, a_bufs, b_bufs, ready, base, n, num_k, off_m, b_row, next_m, next_b, has_next,
            NUM_STAGES: gl.constexpr):  # fmt: skip
    """Load this tile's block ``n`` (flat ``base + n``), or, past its last block, the next tile's block
    ``n - num_k`` (when there is a next tile)."""
    here = n < num_k
    kb = gl.where(here, n, n - num_k)
    m = gl.where(here, off_m, next_m)
    b = gl.where(here, b_row, next_b)
    _load_flat(a_desc, b_desc, a_bufs, b_bufs, ready, base + n, kb, m, b, here | has_next, NUM_STAGES)


@gluon.jit
def _issue_flat(a_bufs, b_bufs, ready, f, spare, NUM_STAGES: gl.constexpr):
    """Wait for flat block ``f``'s tiles and issue its wgmma asynchronously into ``spare``'s registers."""
    slot = f % NUM_STAGES
    mbarrier.wait(ready.index(slot), (f // NUM_STAGES) & 1)
    return warpgroup_mma(a_bufs.index(slot), b_bufs.index(slot).permute((1, 0)), spare,
                         use_acc=False, is_async=True)  # fmt: skip


@gluon.jit
def _tile_mainloop(a_desc, b_desc, a_bufs, b_bufs, ready, base, num_k, off_m, b_row, next_m, next_b,
                   has_next, sa_ptrs, row_ok, sb_ptr, sb_hi_off,
                   mma_layout: gl.constexpr, NUM_STAGES: gl.constexpr):  # fmt: skip
    """``kernels.gluon_common._gluon_mainloop`` over one tile whose blocks are already in the ring
    (flat ``base ..``), every refill through :func:`_refill`, the tail's too (it loads the next tile's
    last prefetched blocks). Same temporaries, waits and promotion order, so the same bits."""
    BLOCK_M: gl.constexpr = a_desc.block_type.shape[0]
    BLOCK_N: gl.constexpr = b_desc.block_type.shape[0]
    SPLIT: gl.constexpr = BLOCK_N > 128
    is_hi = gl.expand_dims(gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma_layout)) >= 128, 0)
    acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    spare1 = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    t0_init = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    t0 = _issue_flat(a_bufs, b_bufs, ready, base, t0_init, NUM_STAGES)
    scale0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, 0, 1, 1, sb_hi_off, is_hi, SPLIT)
    for j in range(0, (num_k - 1) // 2):
        kb = 2 * j + 1
        t1 = _issue_flat(a_bufs, b_bufs, ready, base + kb, spare1, NUM_STAGES)
        scale1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb, 1, 1, sb_hi_off, is_hi, SPLIT)
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))
        _refill(a_desc, b_desc, a_bufs, b_bufs, ready, base, kb - 1 + NUM_STAGES, num_k, off_m, b_row,
                next_m, next_b, has_next, NUM_STAGES)  # fmt: skip
        acc = _gluon_pin(acc + done0 * scale0)

        t0 = _issue_flat(a_bufs, b_bufs, ready, base + kb + 1, done0, NUM_STAGES)
        scale0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb + 1, 1, 1, sb_hi_off, is_hi, SPLIT)
        spare1 = warpgroup_mma_wait(num_outstanding=1, deps=(t1,))
        _refill(a_desc, b_desc, a_bufs, b_bufs, ready, base, kb + NUM_STAGES, num_k, off_m, b_row,
                next_m, next_b, has_next, NUM_STAGES)  # fmt: skip
        acc = _gluon_pin(acc + spare1 * scale1)
    if num_k % 2 == 0:
        t1 = _issue_flat(a_bufs, b_bufs, ready, base + num_k - 1, spare1, NUM_STAGES)
        scale1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, num_k - 1, 1, 1, sb_hi_off, is_hi,
                                    SPLIT)  # fmt: skip
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))
        _refill(a_desc, b_desc, a_bufs, b_bufs, ready, base, num_k - 2 + NUM_STAGES, num_k, off_m, b_row,
                next_m, next_b, has_next, NUM_STAGES)  # fmt: skip
        acc = acc + done0 * scale0
        done1 = warpgroup_mma_wait(num_outstanding=0, deps=(t1,))
        _refill(a_desc, b_desc, a_bufs, b_bufs, ready, base, num_k - 1 + NUM_STAGES, num_k, off_m, b_row,
                next_m, next_b, has_next, NUM_STAGES)  # fmt: skip
        acc = acc + done1 * scale1
    else:
        done0 = warpgroup_mma_wait(num_outstanding=0, deps=(t0,))
        _refill(a_desc, b_desc, a_bufs, b_bufs, ready, base, num_k - 1 + NUM_STAGES, num_k, off_m, b_row,
                next_m, next_b, has_next, NUM_STAGES)  # fmt: skip
        acc = acc + done0 * scale0
    return acc


@gluon.jit
def _tile_coords(tile, num_m, num_pid_n, expert_ids_ptr, N, valid, BLOCK_M: gl.constexpr,
                 BLOCK_N: gl.constexpr, GROUP_M: gl.constexpr):  # fmt: skip
    """``(off_m, off_n, expert, first w2 row in the (L*H, I) view)`` of ``tile`` (expert 0 when not
    ``valid``)."""
    pid_m, pid_n = _moe_tile(tile, num_m, num_pid_n, GROUP_M)
    e = gl.load(expert_ids_ptr + pid_m, mask=valid, other=0)
    off_n = pid_n * BLOCK_N
    return pid_m * BLOCK_M, off_n, e, e * N + off_n


@gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
def _gluon_down_persistent_kernel(
    a_desc, b_desc, y_ptr, hs_ptr, ws_ptr,
    sorted_ids_ptr, expert_ids_ptr, num_padded_ptr, topk_weights_ptr,
    N, K, num_slots, max_blocks,
    stride_ym, stride_hsm, stride_wse, stride_wsn,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
):  # fmt: skip
    """Arguments as ``kernels.gluon_down._gluon_down_fp8_kernel``; grid: G <= number of SMs programs."""
    BLOCK_M: gl.constexpr = a_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = b_desc.block_type.shape[0]
    gl.static_assert(BLOCK_K == 128, "one scale group per K step")
    gl.static_assert(BLOCK_N <= 256, "at most two w2 scale blocks per tile")
    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, BLOCK_N, gl.num_warps())
    row_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)
    num_pid_n = gl.cdiv(N, BLOCK_N)
    num_m = gl.cdiv(gl.load(num_padded_ptr), BLOCK_M)
    total = num_m * num_pid_n
    num_k = gl.cdiv(K, BLOCK_K)
    pid = gl.program_id(0)
    step = gl.num_programs(0)
    a_bufs = gl.allocate_shared_memory(a_desc.dtype, [NUM_STAGES, BLOCK_M, BLOCK_K], a_desc.layout)
    b_bufs = gl.allocate_shared_memory(b_desc.dtype, [NUM_STAGES, BLOCK_N, BLOCK_K], b_desc.layout)
    ready = _ready_ring(NUM_STAGES)

    # The first tile's ring fill; every later block is loaded by a refill, the next tile's first ones
    # by this tile's last refills.
    first_m, _, _, first_b = _tile_coords(pid, num_m, num_pid_n, expert_ids_ptr, N, pid < total,
                                             BLOCK_M, BLOCK_N, GROUP_M)  # fmt: skip
    for i in gl.static_range(NUM_STAGES):
        _load_flat(a_desc, b_desc, a_bufs, b_bufs, ready, i, i, first_m, first_b, pid < total, NUM_STAGES)

    base = 0
    for tile in range(pid, total, step):
        off_m, off_n, e, b_row = _tile_coords(tile, num_m, num_pid_n, expert_ids_ptr, N, True,
                                           BLOCK_M, BLOCK_N, GROUP_M)  # fmt: skip
        has_next = tile + step < total
        next_m, _, _, next_b = _tile_coords(tile + step, num_m, num_pid_n, expert_ids_ptr, N, has_next,
                                            BLOCK_M, BLOCK_N, GROUP_M)  # fmt: skip
        rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
        sa_ptrs = hs_ptr + rows.to(gl.int64) * stride_hsm
        row_ok = rows < max_blocks * BLOCK_M
        sb_ptr = ws_ptr + e.to(gl.int64) * stride_wse + (off_n // 128) * stride_wsn
        acc = _tile_mainloop(a_desc, b_desc, a_bufs, b_bufs, ready, base, num_k, off_m, b_row, next_m, next_b,
                             has_next, sa_ptrs, row_ok, sb_ptr, stride_wsn, mma_layout,
                             NUM_STAGES)  # fmt: skip
        _down_epilogue(acc, y_ptr, rows, off_m, off_n, sorted_ids_ptr, topk_weights_ptr, num_slots, N,
                       stride_ym)  # fmt: skip
        base += num_k

    for s in gl.static_range(NUM_STAGES):
        mbarrier.invalidate(ready.index(s))


def launch_gluon_down_persistent(hq: torch.Tensor, hs: torch.Tensor, w2q: torch.Tensor, w2s: torch.Tensor,
                                 y: torch.Tensor, topk_weights: torch.Tensor, al: Alignment,
                                 tile: GemmTile, programs: int | None = None) -> None:  # fmt: skip
    """As ``kernels.gluon_down.launch_gluon_down``, on ``programs`` persistent programs (default: the
    device's SM count, at most the tile bound). Needs ``I / 128 >= tile.num_stages``."""
    num_local, h, i = w2q.shape
    if i // SCALE_GROUP < tile.num_stages:
        raise ValueError(f"persistent down needs I/128 >= num_stages, got I={i}, {tile.num_stages} stages")
    a_layout = gl.NVMMASharedLayout.get_default_for([al.block_m, SCALE_GROUP], gl.float8e4nv)
    b_layout = gl.NVMMASharedLayout.get_default_for([tile.block_n, SCALE_GROUP], gl.float8e4nv)
    a_desc = TensorDescriptor.from_tensor(hq, [al.block_m, SCALE_GROUP], a_layout)
    b_desc = TensorDescriptor.from_tensor(w2q.view(num_local * h, i), [tile.block_n, SCALE_GROUP], b_layout)
    bound = al.max_blocks * (h // tile.block_n)
    sms = torch.cuda.get_device_properties(hq.device).multi_processor_count
    grid = (min(bound, programs or sms),)
    _gluon_down_persistent_kernel[grid](
        a_desc, b_desc, y, hs, w2s,
        al.sorted_ids, al.expert_ids, al.num_padded, topk_weights,
        h, i, al.num_slots, al.max_blocks,
        y.stride(0), hs.stride(0), w2s.stride(0), w2s.stride(1),
        NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, num_warps=tile.num_warps,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Offline compile report and GPU comparison
# --------------------------------------------------------------------------------------------------
VARIANTS = [(128, 128, 8, 4), (128, 128, 8, 3), (64, 256, 8, 4)]  # (block_m, block_n, warps, stages)
POINTS = [("deepseek-r1-dep8", 4096), ("deepseek-r1-dep8", 16384), ("qwen3-235b-a22b-dep2", 4096),
          ("mixtral-8x7b-ep1", 4096)]  # fmt: skip


def compile_kernel(fn: object, block_m: int, block_n: int, num_warps: int,
                   constexprs: dict[str, int]) -> object:  # fmt: skip
    """A down kernel with ``kernels.gluon_down``'s arguments (plus ``constexprs``) compiled for sm_90a
    without a GPU, specialized as a deepseek-like launch (pointers, N, K, row strides 16-divisible)."""
    import triton
    from triton.experimental.gluon._runtime import GluonASTSource

    from benchmarks.gluon_fp8_gemm import TARGET

    a_layout = gl.NVMMASharedLayout.get_default_for([block_m, SCALE_GROUP], gl.float8e4nv)
    b_layout = gl.NVMMASharedLayout.get_default_for([block_n, SCALE_GROUP], gl.float8e4nv)
    signature = {name: "i32" for name in fn.arg_names}
    signature.update({name: "constexpr" for name in constexprs})
    signature.update({
        "a_desc": f"tensordesc<fp8e4nv[{block_m},{SCALE_GROUP}],{a_layout!r}>",
        "b_desc": f"tensordesc<fp8e4nv[{block_n},{SCALE_GROUP}],{b_layout!r}>",
        "y_ptr": "*bf16", "hs_ptr": "*fp32", "ws_ptr": "*fp32", "sorted_ids_ptr": "*i32",
        "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32", "topk_weights_ptr": "*fp32",
    })  # fmt: skip
    aligned = ("y_ptr", "hs_ptr", "ws_ptr", "sorted_ids_ptr", "expert_ids_ptr", "num_padded_ptr",
               "topk_weights_ptr", "N", "K", "stride_ym", "stride_hsm")  # fmt: skip
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    options = {"num_warps": num_warps, "num_stages": constexprs["NUM_STAGES"]}
    return triton.compile(source, target=TARGET, options=options)


def run_offline() -> None:
    from benchmarks.gluon_fp8_gemm import _report, print_offline

    def build(bm: int, bn: int, warps: int, stages: int) -> object:
        constexprs = {"NUM_STAGES": stages, "GROUP_M": 8}
        return compile_kernel(_gluon_down_persistent_kernel, bm, bn, warps, constexprs)

    print_offline([_report("gluon-down-persistent", v, partial(build, *v)) for v in VARIANTS])


def compare(name: str, tokens: int, block_m: int, tile: GemmTile,
            candidates: dict[str, Callable[..., None]]) -> None:  # fmt: skip
    """One point: the kernels' non-persistent down (reference) and each candidate launcher (same
    arguments as ``launch_gluon_down``) on the same inputs, bits compared, all timed with
    ``do_bench_cudagraph`` in two interleaved rounds (best kept); prints one line."""
    import triton

    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from benchmarks.gluon_fp8_moe import expert_weights_fp8
    from kernels.align import moe_align
    from kernels.gluon_down import launch_gluon_down
    from kernels.quant import quantize_fp8_groups

    dev = torch.device("cuda")
    case = CASES[name]
    num_local, k, h, i = case.local_experts, case.top_k, case.hidden, case.intermediate
    gen = torch.Generator(device=dev).manual_seed(0)
    w2q, w2s = expert_weights_fp8(num_local, h, i, gen)
    ids, weights = balanced_topk(tokens, case, 0, dev)
    flops = 2.0 * tokens * k * i * h
    al = moe_align(ids, block_m, num_local, case.offset)
    h_act = torch.randn(al.max_padded, i, device=dev, generator=gen, dtype=torch.bfloat16)
    hq, hs = quantize_fp8_groups(h_act)
    launchers = {"kernels": launch_gluon_down, **candidates}
    outs = {key: torch.full((tokens * k, h), float("nan"), dtype=torch.bfloat16, device=dev)
            for key in launchers}  # fmt: skip
    calls = {key: partial(fn, hq, hs, w2q, w2s, outs[key], weights, al, tile)
             for key, fn in launchers.items()}  # fmt: skip
    for call in calls.values():
        call()
    ref = outs["kernels"].view(torch.int16)
    same = {key: torch.equal(outs[key].view(torch.int16), ref) for key in candidates}
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(2):
        for key, call in calls.items():
            times[key].append(triton.testing.do_bench_cudagraph(call, rep=50) * 1e3)
    best = {key: min(val) for key, val in times.items()}
    parts = [f"{key} {us:.1f} us {flops / us / 1e6:.0f} TFLOP/s ({best['kernels'] / us:.3f}x"
             + (f", same bits {same[key]})" if key in same else ")") for key, us in best.items()]  # fmt: skip
    label = f"{name} T={tokens} bm{block_m} bn{tile.block_n} w{tile.num_warps} s{tile.num_stages}"
    print(f"{label}: " + "; ".join(parts))


def run_gpu(variants: list[tuple[int, int, int, int]] = VARIANTS,
            candidates: dict[str, Callable[..., None]] | None = None) -> None:  # fmt: skip
    """:func:`compare` at every point of :data:`POINTS` and every ``(block_m, block_n, warps,
    stages)`` of ``variants``, for ``candidates`` (default: this file's persistent launcher)."""
    for name, tokens in POINTS:
        for bm, bn, warps, stages in variants:
            tile = GemmTile(bn, 128, 8, warps, stages, tma=True, gluon=True)
            compare(name, tokens, bm, tile, candidates or {"persistent": launch_gluon_down_persistent})


def main() -> None:
    from benchmarks.gluon_fp8_gemm import mode_parser, wants_gpu

    args = mode_parser(__doc__).parse_args()
    if wants_gpu(args):
        run_gpu()
    else:
        run_offline()


if __name__ == "__main__":
    main()
