"""fp8 block-scale MoE down GEMM for Hopper in Gluon: the ``gluon`` tiles of ``down``.

Same inputs and output as ``kernels.fused_moe._down_kernel`` with ``BLOCK_SCALE`` and TMA::

    hq  (max_padded, I) float8_e4m3fn   hs  (max_padded, I/128) float32   per row, per 128-wide group
    w2q (L, H, I) float8_e4m3fn         w2s (L, H/128, I/128) float32     per 128x128 block
    topk_weights (T, k) float32 (indexed by flat slot), alignment as kernels.align.moe_align
    y   (T*k, H) bf16/fp16 (x's dtype): y[s] = w[s] * (h[r] @ W2[e]^T) for the real rows r, s = sorted_ids[r]

The routing weight is applied in fp32 before the one rounding to y's dtype, as main does; padding
rows are not stored. Schedule: h and w2 tiles by TMA into a NUM_STAGES ring, block k's wgmma issued
asynchronously, ``wgmma.wait_group 1`` retires block k-1's, which is promoted
(``acc += t * hs[rows, kb] * w2s[e, nb, kb]``) while block k runs (:func:`kernels.gluon_common.
_gluon_mainloop`). block_n 64 or 128 keeps one w2 scale per tile and K block; block_n 256 runs two
128-wide halves with their own accumulators and scales, issued as a pair (``wait_group 2``).
The epilogue scatters rows with pointer stores (TMA cannot scatter on Hopper). Needs I a multiple
of 128, H a multiple of block_n, block_m 64 or 128.

H100, deepseek-r1 DEP8, 4000 tokens (BENCHMARKS.md, run 36): bm128 bn128 / 8 warps / 4 stages
852 TFLOP/s, 1.53x main's fastest bm128 Triton down tile; bm64 bn128 / 4 warps / 3 stages
748 TFLOP/s, 1.08x main's fastest bm64 tile. Both agree with main's kernel bit for bit.
"""

from __future__ import annotations

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma_wait
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from kernels.align import Alignment
from kernels.gluon_common import (
    SCALE_GROUP,
    _gluon_mainloop,
    _mma_layout,
    _moe_mma,
    _moe_tile,
    _pin2,
    _promote,
    _ready_ring,
)
from kernels.tactics import GemmTile


@gluon.constexpr_function
def _store_layout_threads(block_n: int) -> list[int]:
    """``threads_per_warp`` of the epilogue's row-major store layout: 8 16-bit values (16 bytes) per
    thread along N, as many threads along N as the tile is wide (at most 32)."""
    along_n = min(32, block_n // 8)
    return [32 // along_n, along_n]

@gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
def _gluon_down_fp8_kernel(
    a_desc, b_desc,  # TMA: hq (max_padded, I) fp8, block (BM, 128); w2 as (L*H, I) fp8, block (BN, 128)
    y_ptr,  # bf16/fp16 (T*k, H) output, one row per flat slot
    hs_ptr, ws_ptr,  # fp32, unit stride in K: hs (max_padded, I/128); w2s (L, H/128, I/128)
    sorted_ids_ptr, expert_ids_ptr, num_padded_ptr, topk_weights_ptr,  # int32 x3, fp32 (T*k,)
    N, K, num_slots, max_blocks,  # N = H, K = I
    stride_ym, stride_hsm, stride_wse, stride_wsn,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
):  # fmt: skip
    """One (BLOCK_M rows, BLOCK_N columns of y) tile per program; grid ``max_blocks * cdiv(H, BLOCK_N)``
    in main's grouped order. BLOCK_M comes from ``a_desc``'s block, BLOCK_N from ``b_desc``'s.
    I must be a multiple of 128 (no masked K tail), H a multiple of BLOCK_N."""
    BLOCK_M: gl.constexpr = a_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = b_desc.block_type.shape[0]
    NUM_WARPS: gl.constexpr = gl.num_warps()
    gl.static_assert(BLOCK_K == 128, "one scale group per K step")
    gl.static_assert(128 % BLOCK_N == 0, "BLOCK_N must divide the 128-wide w2 scale block")
    gl.static_assert(NUM_STAGES >= 2, "the ring needs a slot for the block in flight and one to fill")

    pid_m, pid_n = _moe_tile(gl.program_id(0), max_blocks, gl.cdiv(N, BLOCK_N), GROUP_M)
    if pid_m * BLOCK_M >= gl.load(num_padded_ptr):
        return
    e = gl.load(expert_ids_ptr + pid_m)
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    row_b = e * N + off_n  # first w2 row of the tile in the (L*H, I) view; L*H < 2^31
    num_k = gl.cdiv(K, BLOCK_K)

    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, BLOCK_N, NUM_WARPS)
    row_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)

    # Scales: hs rows are the tile's padded rows (always < max_padded: the mask is all true but lets
    # the GEMM prototype's helper be reused); one w2 scale per K block for the whole tile.
    rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
    sa_ptrs = hs_ptr + rows.to(gl.int64) * stride_hsm
    row_ok = rows < max_blocks * BLOCK_M
    sb_ptr = ws_ptr + e.to(gl.int64) * stride_wse + (off_n // 128) * stride_wsn

    acc = _gluon_mainloop(a_desc, b_desc, off_m, row_b, num_k, sa_ptrs, row_ok, sb_ptr, 1, 1, mma_layout,
                          NUM_STAGES)  # fmt: skip

    _down_epilogue(acc, y_ptr, rows, off_m, off_n, sorted_ids_ptr, topk_weights_ptr, num_slots, N,
                   stride_ym)  # fmt: skip

@gluon.jit
def _down_epilogue(acc, y_ptr, rows, off_m, off_n, sorted_ids_ptr, topk_weights_ptr, num_slots, N,
                   stride_ym):  # fmt: skip
    """Main's epilogue for one (BLOCK_M, BLOCK_N) fp32 tile ``acc`` (wgmma layout) of columns
    ``off_n ..``: the routing weight in fp32, one rounding to y's dtype, then a row-major blocked layout
    (16-byte stores) and pointer stores at row ``sorted_ids[r]`` for real rows only."""
    BLOCK_M: gl.constexpr = acc.shape[0]
    BLOCK_N: gl.constexpr = acc.shape[1]
    slot = gl.load(sorted_ids_ptr + rows)
    w = gl.load(topk_weights_ptr + slot, mask=slot < num_slots, other=0.0)
    out = (acc * gl.expand_dims(w, 1)).to(y_ptr.dtype.element_ty)
    TPW: gl.constexpr = _store_layout_threads(BLOCK_N)
    store_layout: gl.constexpr = gl.BlockedLayout([1, 8], TPW, [gl.num_warps(), 1], [1, 0])
    out = gl.convert_layout(out, store_layout)
    s_rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, store_layout))
    s_slot = gl.load(sorted_ids_ptr + s_rows)
    cols = off_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, store_layout))
    y_ptrs = y_ptr + gl.expand_dims(s_slot.to(gl.int64) * stride_ym, 1) + gl.expand_dims(cols, 0)
    mask = gl.expand_dims(s_slot < num_slots, 1) & gl.expand_dims(cols < N, 0)
    gl.store(y_ptrs, out, mask=mask)

@gluon.jit
def _pair_load_block(a_desc, b_desc, a_bufs, b0_bufs, b1_bufs, ready, kb, off_m, row_b, pred,
                     NUM_STAGES: gl.constexpr):  # fmt: skip
    """TMA K block ``kb`` of A (BLOCK_M x 128) and both 128-row halves of the 256-wide w2 tile into
    ring slot ``kb % NUM_STAGES``; the slot's mbarrier completes when all three have landed."""
    BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
    HALF: gl.constexpr = b_desc.block_type.shape[0]
    slot = kb % NUM_STAGES
    bar = ready.index(slot)
    mbarrier.expect(bar, a_desc.block_type.nbytes + 2 * b_desc.block_type.nbytes, pred=pred)
    tma.async_copy_global_to_shared(a_desc, [off_m, kb * BLOCK_K], bar, a_bufs.index(slot), pred=pred)
    tma.async_copy_global_to_shared(b_desc, [row_b, kb * BLOCK_K], bar, b0_bufs.index(slot), pred=pred)
    tma.async_copy_global_to_shared(b_desc, [row_b + HALF, kb * BLOCK_K], bar, b1_bufs.index(slot),
                                    pred=pred)  # fmt: skip

@gluon.jit
def _pair_scales(sa_ptrs, row_ok, s0_ptr, s1_ptr, kb):
    """Combined scales of K block ``kb`` for the two halves: hs[rows, kb] * w2s[e, nb (+1), kb]."""
    sa = gl.load(sa_ptrs + kb, mask=row_ok, other=0.0)
    return sa * gl.load(s0_ptr + kb), sa * gl.load(s1_ptr + kb)

@gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
def _gluon_down_fp8_n256_kernel(
    a_desc, b_desc,  # TMA: hq (max_padded, I) fp8, block (BM, 128); w2 as (L*H, I) fp8, block (128, 128)
    y_ptr, hs_ptr, ws_ptr,
    sorted_ids_ptr, expert_ids_ptr, num_padded_ptr, topk_weights_ptr,
    N, K, num_slots, max_blocks,
    stride_ym, stride_hsm, stride_wse, stride_wsn,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
):  # fmt: skip
    """Same contract as ``_gluon_down_fp8_kernel`` with a 256-column tile (H % 256 == 0) done as two
    128-column halves, each with its own accumulator and scalar w2 scale: per K block the two
    wgmmas (one A tile, two w2 tiles) are issued together, ``wgmma.wait_group 2`` retires the
    previous block's pair, which is promoted while the new pair runs (the gate/up prototype's
    paired schedule). Six live fp32 tiles of BLOCK_M x 128; loop unrolled by two."""
    BLOCK_M: gl.constexpr = a_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
    HALF: gl.constexpr = b_desc.block_type.shape[0]
    gl.static_assert(BLOCK_K == 128 and HALF == 128, "128-wide halves and K steps")
    gl.static_assert(NUM_STAGES >= 2, "the ring needs a slot for the block in flight and one to fill")

    pid_m, pid_n = _moe_tile(gl.program_id(0), max_blocks, gl.cdiv(N, 2 * HALF), GROUP_M)
    if pid_m * BLOCK_M >= gl.load(num_padded_ptr):
        return
    e = gl.load(expert_ids_ptr + pid_m)
    off_m = pid_m * BLOCK_M
    off_n = pid_n * 2 * HALF
    row_b = e * N + off_n
    num_k = gl.cdiv(K, BLOCK_K)

    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, HALF, gl.num_warps())
    row_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)

    a_bufs = gl.allocate_shared_memory(a_desc.dtype, [NUM_STAGES, BLOCK_M, BLOCK_K], a_desc.layout)
    b0_bufs = gl.allocate_shared_memory(b_desc.dtype, [NUM_STAGES, HALF, BLOCK_K], b_desc.layout)
    b1_bufs = gl.allocate_shared_memory(b_desc.dtype, [NUM_STAGES, HALF, BLOCK_K], b_desc.layout)
    ready = _ready_ring(NUM_STAGES)
    for i in gl.static_range(NUM_STAGES):
        _pair_load_block(a_desc, b_desc, a_bufs, b0_bufs, b1_bufs, ready, i, off_m, row_b, i < num_k,
                         NUM_STAGES)  # fmt: skip

    rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
    sa_ptrs = hs_ptr + rows.to(gl.int64) * stride_hsm
    row_ok = rows < max_blocks * BLOCK_M
    s0_ptr = ws_ptr + e.to(gl.int64) * stride_wse + (off_n // 128) * stride_wsn
    s1_ptr = s0_ptr + stride_wsn

    acc0 = gl.zeros([BLOCK_M, HALF], gl.float32, mma_layout)
    acc1 = gl.zeros([BLOCK_M, HALF], gl.float32, mma_layout)
    sp0 = gl.zeros([BLOCK_M, HALF], gl.float32, mma_layout)  # odd blocks' pair registers, free
    sp1 = gl.zeros([BLOCK_M, HALF], gl.float32, mma_layout)
    p0 = gl.zeros([BLOCK_M, HALF], gl.float32, mma_layout)  # even blocks' pair registers
    q0 = gl.zeros([BLOCK_M, HALF], gl.float32, mma_layout)
    mbarrier.wait(ready.index(0), 0)
    p0 = _moe_mma(a_bufs, b0_bufs, 0, p0, NUM_STAGES)
    q0 = _moe_mma(a_bufs, b1_bufs, 0, q0, NUM_STAGES)
    c0, d0 = _pair_scales(sa_ptrs, row_ok, s0_ptr, s1_ptr, 0)
    for j in range(0, (num_k - 1) // 2):
        kb = 2 * j + 1
        mbarrier.wait(ready.index(kb % NUM_STAGES), (kb // NUM_STAGES) & 1)
        p1 = _moe_mma(a_bufs, b0_bufs, kb, sp0, NUM_STAGES)
        q1 = _moe_mma(a_bufs, b1_bufs, kb, sp1, NUM_STAGES)
        c1, d1 = _pair_scales(sa_ptrs, row_ok, s0_ptr, s1_ptr, kb)
        dp0, dq0 = warpgroup_mma_wait(num_outstanding=2, deps=(p0, q0))  # block kb-1 done
        nxt = kb + NUM_STAGES - 1
        _pair_load_block(a_desc, b_desc, a_bufs, b0_bufs, b1_bufs, ready, nxt, off_m, row_b, nxt < num_k,
                         NUM_STAGES)  # fmt: skip
        acc0, acc1 = _pin2(_promote(acc0, dp0, c0), _promote(acc1, dq0, d0))

        mbarrier.wait(ready.index((kb + 1) % NUM_STAGES), ((kb + 1) // NUM_STAGES) & 1)
        p0 = _moe_mma(a_bufs, b0_bufs, kb + 1, dp0, NUM_STAGES)
        q0 = _moe_mma(a_bufs, b1_bufs, kb + 1, dq0, NUM_STAGES)
        c0, d0 = _pair_scales(sa_ptrs, row_ok, s0_ptr, s1_ptr, kb + 1)
        sp0, sp1 = warpgroup_mma_wait(num_outstanding=2, deps=(p1, q1))  # block kb done
        _pair_load_block(a_desc, b_desc, a_bufs, b0_bufs, b1_bufs, ready, nxt + 1, off_m, row_b,
                         nxt + 1 < num_k, NUM_STAGES)  # fmt: skip
        acc0, acc1 = _pin2(_promote(acc0, sp0, c1), _promote(acc1, sp1, d1))
    if num_k % 2 == 0:
        kl = num_k - 1
        mbarrier.wait(ready.index(kl % NUM_STAGES), (kl // NUM_STAGES) & 1)
        p1 = _moe_mma(a_bufs, b0_bufs, kl, sp0, NUM_STAGES)
        q1 = _moe_mma(a_bufs, b1_bufs, kl, sp1, NUM_STAGES)
        c1, d1 = _pair_scales(sa_ptrs, row_ok, s0_ptr, s1_ptr, kl)
        dp0, dq0 = warpgroup_mma_wait(num_outstanding=2, deps=(p0, q0))
        acc0 = _promote(acc0, dp0, c0)
        acc1 = _promote(acc1, dq0, d0)
        dp1, dq1 = warpgroup_mma_wait(num_outstanding=0, deps=(p1, q1))
        acc0 = _promote(acc0, dp1, c1)
        acc1 = _promote(acc1, dq1, d1)
    else:
        dp0, dq0 = warpgroup_mma_wait(num_outstanding=0, deps=(p0, q0))
        acc0 = _promote(acc0, dp0, c0)
        acc1 = _promote(acc1, dq0, d0)

    for s in gl.static_range(NUM_STAGES):
        mbarrier.invalidate(ready.index(s))
    _down_epilogue(acc0, y_ptr, rows, off_m, off_n, sorted_ids_ptr, topk_weights_ptr, num_slots, N,
                   stride_ym)  # fmt: skip
    _down_epilogue(acc1, y_ptr, rows, off_m, off_n + HALF, sorted_ids_ptr, topk_weights_ptr, num_slots,
                   N, stride_ym)  # fmt: skip


def launch_gluon_down(
    hq: torch.Tensor,
    hs: torch.Tensor,
    w2q: torch.Tensor,
    w2s: torch.Tensor,
    y: torch.Tensor,
    topk_weights: torch.Tensor,
    al: Alignment,
    tile: GemmTile,
) -> None:
    """Down GEMM + routing weight + row scatter into ``y``.

    hq: (al.max_padded, I) float8_e4m3fn contiguous; hs: (al.max_padded, I/128) float32 contiguous;
    w2q: (L, H, I) float8_e4m3fn contiguous; w2s: (L, H/128, I/128) float32 contiguous;
    y: (T*k, H) bf16/fp16 contiguous (rows of real slots written, the others untouched);
    topk_weights: (T, k) float32 contiguous. I a multiple of 128, H of ``tile.block_n`` (64, 128 or
    256), ``al.block_m`` 64 or 128 (the caller, ``kernels.quant.fused_moe_fp8``, checks all of this
    with ``kernels.tactics.gluon_misfit``).
    """
    num_local, h, i = w2q.shape
    b_rows = min(tile.block_n, SCALE_GROUP)  # the 256-wide kernel loads two 128-row w2 tiles
    a_layout = gl.NVMMASharedLayout.get_default_for([al.block_m, SCALE_GROUP], gl.float8e4nv)
    b_layout = gl.NVMMASharedLayout.get_default_for([b_rows, SCALE_GROUP], gl.float8e4nv)
    a_desc = TensorDescriptor.from_tensor(hq, [al.block_m, SCALE_GROUP], a_layout)
    b_desc = TensorDescriptor.from_tensor(w2q.view(num_local * h, i), [b_rows, SCALE_GROUP], b_layout)
    kernel = _gluon_down_fp8_n256_kernel if tile.block_n == 256 else _gluon_down_fp8_kernel
    kernel[(al.max_blocks * (h // tile.block_n),)](
        a_desc, b_desc, y, hs, w2s,
        al.sorted_ids, al.expert_ids, al.num_padded, topk_weights,
        h, i, al.num_slots, al.max_blocks,
        y.stride(0), hs.stride(0), w2s.stride(0), w2s.stride(1),
        NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, num_warps=tile.num_warps,
    )  # fmt: skip
