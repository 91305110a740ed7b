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
_gluon_mainloop`). block_n 64 or 128 keeps one w2 scale per tile and K block; block_n 256 (at block_m
64 on 8 warps: one m64n128 wgmma per warpgroup) takes the next scale row on its second 128 columns.
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
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from kernels.align import Alignment
from kernels.gluon_common import (
    SCALE_GROUP,
    _gluon_mainloop,
    _mma_layout,
    _moe_tile,
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
    gl.static_assert(128 % BLOCK_N == 0 or BLOCK_N == 256, "BLOCK_N 64, 128, or 256 (two scale blocks)")
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
    # the GEMM prototype's helper be reused); one w2 scale per K block for the tile (two for
    # BLOCK_N 256: its second 128 columns take the next scale row).
    rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
    sa_ptrs = hs_ptr + rows.to(gl.int64) * stride_hsm
    row_ok = rows < max_blocks * BLOCK_M
    sb_ptr = ws_ptr + e.to(gl.int64) * stride_wse + (off_n // 128) * stride_wsn

    acc = _gluon_mainloop(a_desc, b_desc, off_m, row_b, num_k, sa_ptrs, row_ok, sb_ptr, 1, 1, stride_wsn,
                          mma_layout, NUM_STAGES)  # fmt: skip

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
    b_rows = tile.block_n
    a_layout = gl.NVMMASharedLayout.get_default_for([al.block_m, SCALE_GROUP], gl.float8e4nv)
    b_layout = gl.NVMMASharedLayout.get_default_for([b_rows, SCALE_GROUP], gl.float8e4nv)
    a_desc = TensorDescriptor.from_tensor(hq, [al.block_m, SCALE_GROUP], a_layout)
    b_desc = TensorDescriptor.from_tensor(w2q.view(num_local * h, i), [b_rows, SCALE_GROUP], b_layout)
    _gluon_down_fp8_kernel[(al.max_blocks * (h // tile.block_n),)](
        a_desc, b_desc, y, hs, w2s,
        al.sorted_ids, al.expert_ids, al.num_padded, topk_weights,
        h, i, al.num_slots, al.max_blocks,
        y.stride(0), hs.stride(0), w2s.stride(0), w2s.stride(1),
        NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, num_warps=tile.num_warps,
    )  # fmt: skip
