"""fp8 block-scale MoE down GEMM for Hopper in Triton Gluon: h rows and w2 rows both through a TMA ring,
one wgmma kept in flight while the previous K block is promoted, routing weight and row scatter in the
epilogue.

    PYTHONPATH=. python benchmarks/gluon_fp8_down.py --offline   # CPU only: compile for sm_90a, report
    PYTHONPATH=. python benchmarks/gluon_fp8_down.py --gpu       # H100: vs main, timed (NOT RUN YET)

Same inputs and output as ``kernels.fused_moe._down_kernel`` with ``BLOCK_SCALE=True`` and TMA (main's
``_launch_down(..., scales=(hs, w2s))``), for one rank's L local experts::

    hq  (max_padded, I) float8_e4m3fn   hs  (max_padded, cdiv(I,128)) float32   per row, per 128-wide group
        (rows in padded sorted order, the gate/up kernel's output; contiguous, so A tiles come by TMA)
    w2q (L, H, I) float8_e4m3fn         w2s (L, cdiv(H,128), cdiv(I,128)) float32   per 128x128 block
    topk_weights (T*k,) float32 (the (T, k) routing weights, flat: index = slot)
    sorted_ids (max_padded,) int32, expert_ids (max_blocks,) int32, num_padded (1,) int32
        (kernels.align.moe_align; padding rows hold num_slots = T*k)
    y   (T*k, H) bfloat16 (output; x's dtype in main, bf16 here)

Row r of row block b (expert e = expert_ids[b]), slot s = sorted_ids[r], for real rows (s < num_slots):
    y[s, n] = bf16( topk_weights[s] * sum_kb (hq[r, kb] . w2q[e, n, kb]) * hs[r, kb] * w2s[e, n // 128, kb] )
with the routing weight multiplied in fp32 before the single rounding to bf16, as main does. Padding
rows (s == num_slots) are not stored; row blocks at or past ``num_padded`` exit at once.

Schedule (the ``benchmarks/gluon_fp8_gemm.py`` scheme with the MoE addressing): per K block (BLOCK_K =
128, one scale group) the A tile (rows ``off_m .. off_m+BLOCK_M`` of hq) and the B tile (rows
``e*H + off_n`` of w2 viewed as (L*H, I)) land by TMA in a NUM_STAGES ring with one mbarrier per slot.
Block k's wgmma is issued asynchronously into a temporary, ``wgmma.wait_group 1`` retires block k-1's,
its ring slot is refilled, and block k-1 is promoted (``acc += t * hs[rows, kb] * w2s[e, nb, kb]``)
while block k runs. The K loop is unrolled by two (temporaries never swap roles at the back-edge:
ptxas C7515) and each promotion goes through the no-op ``_gluon_pin`` wait (no sinking of the
promotion below the next issue: C7514). Live fp32 tiles: accumulator + 2 temporaries, i.e.
``3 * BLOCK_M * BLOCK_N / (32 * num_warps)`` registers per thread: 192 for 128x128 / 8 warps,
64x128 / 4 warps and 128x64 / 4 warps, 96 for the 8-warp 64-row tiles, 384 (spills, C7512) for
128x128 / 4 warps.

BLOCK_N is 64 or 128 in ``_gluon_down_fp8_kernel``: one w2 scale per tile and K block (a scalar).
BLOCK_N = 256 (main's Triton kernel uses it) spans two w2 scale blocks, so ``_gluon_down_fp8_n256_kernel``
does it as two 128-column halves with their own accumulators and scalar scales: per K block one A tile
and two 128-row w2 tiles land by TMA, both halves' wgmmas are issued together and ``wgmma.wait_group 2``
retires the previous block's pair (the gate/up prototype's paired schedule, same traps, same pins).
Six live BLOCK_M x 128 tiles: 192 registers per thread at 64 rows / 8 warps, 384 at 128 rows (spills).

Epilogue: ``acc * w[slot]`` in fp32, bf16, converted to a row-major blocked layout (16-byte stores per
thread) and stored with pointer stores at row ``slot`` under the mask ``slot < num_slots`` (TMA cannot
scatter rows on Hopper).

Offline result (triton 3.6.0 bundled ptxas, sm_90a; ``--offline``), Gluon kernel, registers / spills:
    128x128, 8 warps, 3/4 stages: 228/226 regs, no spills, no C75xx. THE DEFAULT.
    128x64 4 warps s3: 244; 128x64 8 warps s4: 128; 64x128 4 warps s3/s4: 228/226; 64x128 8 warps s4:
    128; 64x64 4 warps s4: 128 -- all without spills or C75xx.
    64x256 (paired halves), 8 warps, 3/4 stages: 236 regs, no spills, no C75xx, ``wait_group 2``.
    128x128, 4 warps: 255 regs, ~2.6 KB spills, ptxas C7512 (wgmmas serialized for lack of registers);
    128x256 (paired), 8 warps: the same (255 regs, ~2.6 KB spills, C7512).
    Loop PTX per K block: ``mbarrier.try_wait``, 4 x ``wgmma.mma_async`` k32 (m64n128 for 128-wide tiles
    on 4 warps or 128 rows on 8 warps; the paired 64x256 / 8 warps gets 2 x 4 x m64n64k32, its warps
    split N), commit, ``wgmma.wait_group 1`` (paired: 2) retiring block k-1, TMA refill, promotion FFMAs,
    ``wait_group 1`` (2) pin; ``wait_group 0`` only after the loop. Gluon puts ``bar.sync``s before the
    mbarrier wait and each TMA issue (3-4 per K block), so no warpgroup refills a slot another is still
    reading; their cost is unmeasured. Main's Triton ``_down_kernel`` (fp8, TMA) at its fp8 tiles:
    ``wait_group 0`` right after every dot; 128x256 / 8 warps spills ~0.5 KB.

STATUS: ``--offline`` has been run (CPU, compile only).
The GPU mode (``--gpu``: agreement with main's Triton ``_launch_down`` and timings) has NOT been run:
the kernel has never executed, nothing here is measured and its correctness is unverified.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch
import triton

from benchmarks.gluon_fp8_gemm import (
    HAS_GLUON,
    TARGET,
    CompileReport,
    _report,
    bench_ms,
    is_cuda_fault,
    print_offline,
)
from benchmarks.gluon_fp8_moe import expert_weights_fp8, fastest_main_tile

if HAS_GLUON:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma_wait
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from benchmarks.gluon_fp8_gemm import (
        _gluon_mainloop,
        _mma_layout,
        _ready_ring,
    )
    from benchmarks.gluon_fp8_moe import _moe_mma, _moe_tile, _pin2, _promote

GROUP = 128  # scale group width; BLOCK_K


# --------------------------------------------------------------------------------------------------
# Gluon kernel
# --------------------------------------------------------------------------------------------------
if HAS_GLUON:

    @gluon.constexpr_function
    def _store_layout_threads(block_n: int) -> list[int]:
        """``threads_per_warp`` of the epilogue's row-major store layout: 8 bf16 (16 bytes) per
        thread along N, as many threads along N as the tile is wide (at most 32)."""
        along_n = min(32, block_n // 8)
        return [32 // along_n, along_n]

    @gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
    def _gluon_down_fp8_kernel(
        a_desc, b_desc,  # TMA: hq (max_padded, I) fp8, block (BM, 128); w2 as (L*H, I) fp8, block (BN, 128)
        y_ptr,  # bf16 (T*k, H) output, one row per flat slot
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
        ``off_n ..``: the routing weight in fp32, one rounding to bf16, then a row-major blocked layout
        (16-byte stores) and pointer stores at row ``sorted_ids[r]`` for real rows only."""
        BLOCK_M: gl.constexpr = acc.shape[0]
        BLOCK_N: gl.constexpr = acc.shape[1]
        slot = gl.load(sorted_ids_ptr + rows)
        w = gl.load(topk_weights_ptr + slot, mask=slot < num_slots, other=0.0)
        out = (acc * gl.expand_dims(w, 1)).to(gl.bfloat16)
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


# --------------------------------------------------------------------------------------------------
# Host wrapper (GPU)
# --------------------------------------------------------------------------------------------------
def gluon_down_fp8(
    hq: torch.Tensor,
    hs: torch.Tensor,
    w2q: torch.Tensor,
    w2s: torch.Tensor,
    topk_weights: torch.Tensor,
    alignment: Any,
    block_n: int = 128,
    num_warps: int = 8,
    num_stages: int = 3,
    out: torch.Tensor | None = None,
    *,
    group_m: int = 8,
) -> torch.Tensor:
    """Down GEMM + routing weight + row scatter with the Gluon kernel (BLOCK_M = ``alignment.block_m``).

    hq: (max_padded, I) float8_e4m3fn, unit stride in I, 16-byte aligned rows, I % 128 == 0;
    hs: (max_padded, I/128) float32, unit stride in the group dim; w2q: (L, H, I) float8_e4m3fn
    contiguous, H % block_n == 0; w2s: (L, H/128, I/128) float32 contiguous; topk_weights: (T, k) or
    (T*k,) float32 contiguous; alignment: ``kernels.align.Alignment`` (block_m 64 or 128 for the tiles
    compiled offline). ``out``: optional (T*k, H) bfloat16 contiguous buffer. Returns y (T*k, H) bfloat16
    with the rows of real slots written (rows of slots without a local expert are left untouched).
    """
    if not HAS_GLUON:
        raise RuntimeError("this Triton build has no triton.experimental.gluon")
    max_padded, i = hq.shape
    num_local, h, i_w = w2q.shape
    num_slots = alignment.num_slots
    block_m = alignment.block_m
    assert hq.dtype == torch.float8_e4m3fn and w2q.dtype == torch.float8_e4m3fn, (hq.dtype, w2q.dtype)
    assert hs.dtype == torch.float32 and w2s.dtype == torch.float32, (hs.dtype, w2s.dtype)
    assert topk_weights.dtype == torch.float32, f"topk_weights must be float32, got {topk_weights.dtype}"
    assert i_w == i, f"hq is (max_padded, I={i}) but w2q is {tuple(w2q.shape)}"
    assert i % GROUP == 0, f"I={i} must be a multiple of 128 (no K tail in the Gluon kernel)"
    assert block_n in (64, 128, 256), f"block_n must be 64, 128 or 256 (paired halves), got {block_n}"
    assert h % block_n == 0, f"H={h} must be a multiple of block_n={block_n}"
    assert max_padded == alignment.max_padded, f"hq has {max_padded} rows, alignment {alignment.max_padded}"
    assert block_m in (64, 128), f"alignment.block_m must be 64 or 128, got {block_m}"
    assert hq.stride(1) == 1 and (hq.stride(0) * hq.element_size()) % 16 == 0, f"hq strides {hq.stride()}"
    assert hq.data_ptr() % 16 == 0, "hq must be 16-byte aligned for TMA"
    assert tuple(hs.shape) == (max_padded, i // GROUP) and hs.stride(1) == 1, (tuple(hs.shape), hs.stride())
    assert w2q.is_contiguous(), f"w2q must be contiguous, strides {w2q.stride()}"
    assert tuple(w2s.shape) == (num_local, triton.cdiv(h, GROUP), i // GROUP), tuple(w2s.shape)
    assert w2s.is_contiguous(), f"w2s must be contiguous, strides {w2s.stride()}"
    assert topk_weights.is_contiguous() and topk_weights.numel() == num_slots, (
        f"topk_weights must be contiguous with T*k={num_slots} elements, got {tuple(topk_weights.shape)}"
    )
    if out is None:
        out = torch.empty((num_slots, h), dtype=torch.bfloat16, device=hq.device)
    assert out.dtype == torch.bfloat16 and tuple(out.shape) == (num_slots, h) and out.is_contiguous(), (
        f"out must be a contiguous ({num_slots}, {h}) bfloat16 tensor, got {tuple(out.shape)} {out.dtype}"
    )
    a_layout = gl.NVMMASharedLayout.get_default_for([block_m, GROUP], gl.float8e4nv)
    b_rows = min(block_n, GROUP)  # the 256-wide kernel loads two 128-row w2 tiles per K block
    b_layout = gl.NVMMASharedLayout.get_default_for([b_rows, GROUP], gl.float8e4nv)
    a_desc = TensorDescriptor.from_tensor(hq, [block_m, GROUP], a_layout)
    b_desc = TensorDescriptor.from_tensor(w2q.view(num_local * h, i), [b_rows, GROUP], b_layout)
    grid = (alignment.max_blocks * (h // block_n),)
    kernel = _gluon_down_fp8_n256_kernel if block_n == 256 else _gluon_down_fp8_kernel
    kernel[grid](
        a_desc, b_desc, out, hs, w2s,
        alignment.sorted_ids, alignment.expert_ids, alignment.num_padded, topk_weights,
        h, i, num_slots, alignment.max_blocks,
        out.stride(0), hs.stride(0), w2s.stride(0), w2s.stride(1),
        NUM_STAGES=num_stages, GROUP_M=group_m, num_warps=num_warps,
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# Offline compile (no GPU)
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Variant:
    """One compile point of the Gluon down kernel."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int

    @property
    def tile(self) -> tuple[int, int, int, int]:
        return (self.block_m, self.block_n, self.num_warps, self.num_stages)


OFFLINE_VARIANTS = [
    Variant(128, 128, 8, 3),  # the wrapper's default: 192 fp32 tile registers per thread
    Variant(128, 128, 8, 4),
    Variant(128, 128, 4, 3),  # 384 tile registers: expected to spill
    Variant(128, 64, 4, 3),
    Variant(128, 64, 8, 4),
    Variant(64, 128, 4, 3),
    Variant(64, 128, 4, 4),
    Variant(64, 128, 8, 4),
    Variant(64, 64, 4, 4),
    Variant(64, 256, 8, 3),  # paired halves: 6 live 64x128 tiles = 192 registers per thread
    Variant(64, 256, 8, 4),
    Variant(128, 256, 8, 3),  # paired halves: 384 tile registers per thread, expected to spill
]

# (block_m, block_n, warps) with 384 fp32 tile registers per thread: spills, wgmmas serialized (C7512)
SPILLING = {(128, 128, 4), (128, 256, 8)}

# main's Triton _down_kernel (fp8, TMA) at its fp8 down tiles for block_m 64 and 128
# (kernels.tactics._DOWN_FP8: (block_n, block_k, warps, stages)).
TRITON_TILES = [(64, 128, 4, 3), (64, 256, 8, 3), (128, 128, 8, 4), (128, 256, 8, 3)]


def compile_gluon_down(variant: Variant) -> Any:
    """The Gluon down kernel compiled for sm_90a without a GPU, specialized like a launch on
    deepseek-like shapes (pointers, N, K and the y / hs row strides 16-divisible; w2s strides not)."""
    fn = _gluon_down_fp8_n256_kernel if variant.block_n == 256 else _gluon_down_fp8_kernel
    b_rows = min(variant.block_n, GROUP)
    a_layout = gl.NVMMASharedLayout.get_default_for([variant.block_m, GROUP], gl.float8e4nv)
    b_layout = gl.NVMMASharedLayout.get_default_for([b_rows, GROUP], gl.float8e4nv)
    signature = {
        "a_desc": f"tensordesc<fp8e4nv[{variant.block_m},{GROUP}],{a_layout!r}>",
        "b_desc": f"tensordesc<fp8e4nv[{b_rows},{GROUP}],{b_layout!r}>",
        "y_ptr": "*bf16", "hs_ptr": "*fp32", "ws_ptr": "*fp32",
        "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32",
        "topk_weights_ptr": "*fp32",
        "N": "i32", "K": "i32", "num_slots": "i32", "max_blocks": "i32",
        "stride_ym": "i32", "stride_hsm": "i32", "stride_wse": "i32", "stride_wsn": "i32",
        "NUM_STAGES": "constexpr", "GROUP_M": "constexpr",
    }  # fmt: skip
    constexprs = {"NUM_STAGES": variant.num_stages, "GROUP_M": 8}
    aligned = ("y_ptr", "hs_ptr", "ws_ptr", "sorted_ids_ptr", "expert_ids_ptr", "num_padded_ptr",
               "topk_weights_ptr", "N", "K", "stride_ym", "stride_hsm")  # fmt: skip
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    options = {"num_warps": variant.num_warps, "num_stages": variant.num_stages}
    return triton.compile(source, target=TARGET, options=options)


def compile_triton_down(block_m: int, block_n: int, num_warps: int, num_stages: int) -> Any:
    """Main's Triton ``_down_kernel`` (BLOCK_SCALE, TMA h and w2, BLOCK_K 128, bf16 y) compiled for
    sm_90a, for the register/wait comparison."""
    from triton.compiler import ASTSource

    from kernels.fused_moe import _down_kernel

    fn = _down_kernel
    constexprs = {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": GROUP, "GROUP_M": 8, "EVEN_K": True,
                  "DOT_PRECISION": "tf32", "USE_TMA": True, "BLOCK_SCALE": True}  # fmt: skip
    types = {"h_ptr": f"tensordesc<fp8e4nv[{block_m},{GROUP}]>",
             "w2_ptr": f"tensordesc<fp8e4nv[{block_n},{GROUP}]>",
             "y_ptr": "*bf16", "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32",
             "topk_weights_ptr": "*fp32", "hs_ptr": "*fp32", "w2s_ptr": "*fp32"}  # fmt: skip
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in fn.arg_names}
    aligned = ("y_ptr", "hs_ptr", "w2s_ptr", "N", "K", "stride_hm", "stride_ym")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})


def offline_reports(variants: list[Variant] | None = None, with_triton: bool = True) -> list[CompileReport]:
    """Compile every Gluon variant (kernel ``gluon-down``) and, with ``with_triton``, main's Triton
    ``_down_kernel`` at its fp8 tiles (kernel ``triton-main``)."""
    reports = []
    for v in variants if variants is not None else OFFLINE_VARIANTS:
        if HAS_GLUON:
            reports.append(_report("gluon-down", v.tile, lambda v=v: compile_gluon_down(v)))
        else:
            reports.append(CompileReport("gluon-down", *v.tile, ok=False, error="no gluon"))
    if with_triton:
        for bm, bn, warps, stages in TRITON_TILES:
            tile = (bm, bn, warps, stages)
            reports.append(_report("triton-main", tile, lambda t=tile: compile_triton_down(*t)))
    return reports


# --------------------------------------------------------------------------------------------------
# GPU mode (NOT RUN YET)
# --------------------------------------------------------------------------------------------------
def run_gpu(variants: list[Variant], num_tokens: int = 4096) -> None:
    """deepseek-r1 DEP8 (L=32 local experts, H=7168, I=2048, top_k=8), balanced routing, hq/hs from
    quantizing random bf16 h with ``quantize_fp8_groups``: for each block_m, main's Triton
    ``_launch_down`` at every ``_DOWN_FP8[block_m]`` tile (fastest one is the reference and the
    speed-up baseline), then each Gluon variant checked against it and timed.

    Expected agreement: both kernels add the same fp32 products per 128-deep K block in the same
    order; FMA contraction and the wgmma's internal accumulation may differ at ~1e-6 relative, so the
    bf16 output rounding (2^-9 relative per element, flipped for a few elements) dominates:
    relative Frobenius error ~1e-3 or less, bound 1e-2.
    """
    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from kernels.align import moe_align
    from kernels.fused_moe import _launch_down
    from kernels.quant import quantize_fp8_groups
    from kernels.tactics import _DOWN_FP8

    case = CASES["deepseek-r1-dep8"]
    dev = torch.device("cuda")
    num_local, k, h, i = case.local_experts, case.top_k, case.hidden, case.intermediate
    gen = torch.Generator(device=dev).manual_seed(0)
    w2q, w2s = expert_weights_fp8(num_local, h, i, gen)
    ids, weights = balanced_topk(num_tokens, case, 0, dev)
    topk_weights = weights.view(-1)
    rows = num_tokens * k  # every slot is local under DEP balanced routing
    flops = 2.0 * rows * i * h
    print(f"deepseek-r1-dep8 T={num_tokens}: L={num_local} H={h} I={i} top_k={k}, {rows} routed rows, "
          f"{flops / 1e12:.3f} TFLOP per call (2 * rows * I * H)")  # fmt: skip

    for block_m in dict.fromkeys(v.block_m for v in variants):  # the working point (first) first
        al = moe_align(ids, block_m, num_local, case.offset)
        hbf = torch.randn(al.max_padded, i, device=dev, generator=gen, dtype=torch.bfloat16)
        hq, hs = quantize_fp8_groups(hbf)
        del hbf
        y_ref = torch.zeros((rows, h), dtype=torch.bfloat16, device=dev)

        def ref_call(tile: Any, al: Any = al, y_ref: torch.Tensor = y_ref, hq: torch.Tensor = hq,
                     hs: torch.Tensor = hs) -> None:  # fmt: skip
            _launch_down(hq, w2q, y_ref, topk_weights, al, tile, "tf32", scales=(hs, w2s))

        ref_ms, ref_tile = fastest_main_tile(_DOWN_FP8[block_m], ref_call, flops, f"bm{block_m}")
        y_ref.zero_()
        _launch_down(hq, w2q, y_ref, topk_weights, al, ref_tile, "tf32", scales=(hs, w2s))
        torch.cuda.synchronize()
        ref32 = y_ref.float()
        for v in (v for v in variants if v.block_m == block_m):
            tag = f"gluon-down bm{v.block_m} bn{v.block_n} w{v.num_warps} s{v.num_stages}"
            y = torch.zeros_like(y_ref)

            def call(v: Variant = v, al: Any = al, y: torch.Tensor = y, hq: torch.Tensor = hq,
                     hs: torch.Tensor = hs) -> torch.Tensor:  # fmt: skip
                return gluon_down_fp8(hq, hs, w2q, w2s, topk_weights, al, v.block_n, v.num_warps,
                                      v.num_stages, out=y)  # fmt: skip

            try:
                call()
                torch.cuda.synchronize()
                rel = float((y.float() - ref32).norm() / ref32.norm())
                ms = bench_ms(call)
            except Exception as exc:  # report and go on, unless CUDA is gone
                print(f"  {tag}: FAILED {type(exc).__name__}: {str(exc)[:400]}")
                if is_cuda_fault(exc):
                    raise
                continue
            verdict = "ok" if rel < 1e-2 else "WRONG (bound 1e-2)"
            print(f"  {tag}: rel err {rel:.2e} {verdict}; {ms * 1e3:.1f} us {flops / ms / 1e9:.0f} TFLOP/s "
                  f"({ref_ms / ms:.2f}x triton-main {ref_tile.name})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="compile for sm_90a and report (CPU only)")
    mode.add_argument("--gpu", action="store_true", help="correctness and timing on an H100 (not run yet)")
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per rank for --gpu")
    args = parser.parse_args()
    if args.gpu or (not args.offline and torch.cuda.is_available()):
        run_gpu([v for v in OFFLINE_VARIANTS if v.tile[:3] not in SPILLING], args.tokens)
    else:
        print_offline(offline_reports())


if __name__ == "__main__":
    main()
