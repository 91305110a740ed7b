"""MoE fp8 gate/up for Hopper in Gluon that reads x once per tile: the ``dual`` persistent tile.

Same inputs, outputs, tile walk and bits as :func:`kernels.gluon_gate_up_ws._gluon_gate_up_ws_kernel`
(x already in the alignment's order, block_m 128, 128 h columns per tile, one e4m3 group)::

    xq  (max_padded, H) float8_e4m3fn   xs  (max_padded, H/128) float32   x in the alignment's order
    w1q (L, 2I, H) float8_e4m3fn        w1s (L, 2I/128, H/128) float32    rows [0, I) gate, [I, 2I) up
    hq  (max_padded, I) float8_e4m3fn   hs  (max_padded, I/128) float32   (outputs)

What differs from the two-pass kernel, whose second pass over K reads x's tile again (4-9% of its time
on the H200, BENCHMARKS.md run 106) and whose two math warpgroups run in lockstep, one CTA barrier per
K block (``benchmarks/ws_barrier_probe.py``):

- one pass over K per tile: a ring slot holds the x box ``(128, 128)`` and both halves' weight boxes
  ``(2, 64, 128)`` (h columns ``n .. n + 63`` and ``n + 64 .. n + 127``, each 64 gate rows then the
  same 64 up rows), 48 KB; 4 stages;
- the two math warpgroups are two ``warp_specialize`` partitions of 4 warps, warpgroup ``g`` taking
  x rows ``64 g .. 64 g + 63``, so their barriers are their own (128-thread named barriers) and one
  can promote while the other's wgmma runs. Per K block each issues the half-0 wgmma, waits for it
  and promotes it into ``acc0``, then the same for half 1 into ``acc1`` (one temporary: ``acc0``,
  ``acc1`` and it are 3 x 64 registers per thread), then releases the slot. Partition 1 starts once
  partition 0 has promoted its first wgmma, so they take turns on the tensor cores from the start;
- each partition's epilogue is its own 64 rows (:func:`kernels.gluon_gate_up_ws._ws_store_h`: two
  TMA stores of ``(64, 64)`` codes that its next tile waits for).

Each K block's promotion is the two-pass kernel's (``xs[row, kb]`` times the gate or up block's
scale, in K order), hence the same bits.

Where it runs: the fp8 Gluon gate/up tile with ``dual`` (``kernels.tactics.GemmTile``: persistent,
``sorted_x``, block_m 128), the default's from :data:`kernels.tactics._DUAL_GATE_UP_MIN_I`. On the
H200 (BENCHMARKS.md, runs 111-112, 114 and 119 on four cards, alone against the two-pass kernel):
0.95-0.99x its time at mixtral (I = 14336), 0.95-1.00x at qwen3-235b, but 1.00-1.06x at deepseek-r1
and 0.97-1.05x at qwen3-30b, where each partition's wait before its promotion is not covered by the
other's wgmma. The mixtral fp8 layer with it took 0.990x the time (geomean of 12 cases, run 114).
"""

from __future__ import annotations

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait

from kernels.align import Alignment
from kernels.gluon_common import SCALE_GROUP, _gluon_block_scale, _mma_layout
from kernels.gluon_down import LOADER_REGS, LOADER_WARPS, _sm_count, _ws_barriers, _ws_schedule
from kernels.gluon_gate_up import _halves_h, gate_up_descriptors
from kernels.gluon_gate_up_ws import HALF, TILE_N, _ws_store_h, _ws_tile
from kernels.tactics import GemmTile

MATH_REGS = 232
"""Registers per thread of each math partition: offline for sm_90a, 0 spills
(``tests/test_gate_up_probe_compiles.py``)."""
PARTITION_ROWS = gl.constexpr(64)
"""x rows (and h rows) of each math partition: one m64 wgmma warpgroup."""


@gluon.jit
def _dual_loader(x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
                 num_pid_n, num_k, GROUP_M: gl.constexpr):  # fmt: skip
    """Loader partition: every K block of every tile of this program into the ring, the x box and
    both halves' weight boxes on the slot's ``ready``, once both math partitions released the slot
    (``empty``; a fresh barrier passes parity 1, so the first ``S`` fills go straight through)."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_K: gl.constexpr = a_bufs.shape[2]
    nbytes: gl.constexpr = x_desc.block_type.nbytes + 2 * w_desc.block_type.nbytes
    f = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, e = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        off_m = pid_m * BLOCK_M
        n = pid_n * TILE_N
        for kb in range(num_k):
            k0 = kb * BLOCK_K
            slot = f % NUM_STAGES
            mbarrier.wait(empty.index(slot), ((f // NUM_STAGES) & 1) ^ 1)
            bar = ready.index(slot)
            mbarrier.expect(bar, nbytes)
            tma.async_copy_global_to_shared(x_desc, [off_m, k0], bar, a_bufs.index(slot))
            tma.async_copy_global_to_shared(w_desc, [2 * e, n, k0], bar, b_bufs.index(2 * slot))
            tma.async_copy_global_to_shared(w_desc, [2 * e, n + HALF, k0], bar, b_bufs.index(2 * slot + 1))
            f += 1


@gluon.jit
def _dual_issue(a, b_bufs, index, t):
    """One half's wgmma of a K block, waited for at once: ``a`` the partition's ``(64, 128)`` x rows,
    weight box ``index`` read as its 128 rows (64 gate, 64 up; the 128-byte swizzle follows the
    address), the result overwriting the fp32 temporary ``t`` ``(64, 128)``."""
    b = b_bufs.index(index)
    b = b.reshape([b.shape[0] * b.shape[1], b.shape[2]])
    t = warpgroup_mma(a, b.permute((1, 0)), t, use_acc=False, is_async=True)
    return warpgroup_mma_wait(num_outstanding=0, deps=(t,))


@gluon.jit
def _dual_math(a_bufs, b_bufs, ready, empty, start, h_lo, h_hi, h_desc, xs_ptr, ws_ptr, hs_ptr,
               expert_ids_ptr, N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm, pid, step,
               total, num_m, num_pid_n, num_k, GROUP_M: gl.constexpr, ROW0: gl.constexpr):  # fmt: skip
    """One math partition (4 warps): x rows ``ROW0 .. ROW0 + 63`` of every tile of this program, both
    halves in one pass over K, then its rows' epilogue. Partition 1 (``ROW0`` 64) starts once every
    thread of partition 0 has arrived on ``start`` after its first promotion; a program without tiles
    skips that wait, as partition 0 then never arrives."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    WIDE: gl.constexpr = 2 * HALF
    mma_layout: gl.constexpr = _mma_layout(PARTITION_ROWS, WIDE, gl.num_warps())
    is_up = gl.expand_dims(gl.arange(0, WIDE, layout=gl.SliceLayout(0, mma_layout)) >= HALF, 0)
    if ROW0 != 0:  # noqa: SIM102 (a constexpr test, then a runtime one)
        if pid < total:
            mbarrier.wait(start, 0)
    f = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, e = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        off_m = pid_m * BLOCK_M + ROW0
        off_n = pid_n * TILE_N
        rows = off_m + gl.arange(0, PARTITION_ROWS, layout=gl.SliceLayout(1, mma_layout))
        sa_ptrs = xs_ptr + rows.to(gl.int64) * stride_xsm
        row_ok = rows < num_m * BLOCK_M  # all true: the tile's rows are below max_padded
        # The tile's 128 h columns are one weight scale block row: the gate's at gs_ptr, the up's
        # (rows I + off_n ..) up_off further, taken on the up columns (is_up).
        gs_ptr = ws_ptr + e.to(gl.int64) * stride_wse + pid_n * stride_wsn
        up_off = ((N + off_n) // TILE_N - pid_n) * stride_wsn
        acc0 = gl.zeros([PARTITION_ROWS, WIDE], gl.float32, mma_layout)
        acc1 = gl.zeros([PARTITION_ROWS, WIDE], gl.float32, mma_layout)
        t = gl.zeros([PARTITION_ROWS, WIDE], gl.float32, mma_layout)
        for kb in range(num_k):
            slot = f % NUM_STAGES
            mbarrier.wait(ready.index(slot), (f // NUM_STAGES) & 1)
            a = a_bufs.index(slot).slice(ROW0, PARTITION_ROWS)
            scale = _gluon_block_scale(sa_ptrs, row_ok, gs_ptr, kb, 1, stride_wsk, up_off, is_up, True)
            t = _dual_issue(a, b_bufs, 2 * slot, t)
            # Pinned (as kernels.gluon_common._gluon_pin does): LLVM would sink the promotion below the
            # next issue and give that wgmma a second temporary, 4 x 64 registers: ptxas spills.
            acc0 = warpgroup_mma_wait(num_outstanding=0, deps=(acc0 + t * scale,))
            if ROW0 == 0:  # noqa: SIM102 (a constexpr test, then a runtime one)
                if f == 0:
                    async_copy.mbarrier_arrive(start, increment_count=False)
            t = _dual_issue(a, b_bufs, 2 * slot + 1, t)
            async_copy.mbarrier_arrive(empty.index(slot), increment_count=False)
            acc1 = warpgroup_mma_wait(num_outstanding=0, deps=(acc1 + t * scale,))
            f += 1
        _ws_store_h(_halves_h(acc0), _halves_h(acc1), off_m, pid_n, hs_ptr, stride_hsm, h_lo, h_hi, h_desc)
    tma.store_wait(pendings=0)


@gluon.jit
def _gluon_gate_up_dual_kernel(
    x_desc, w_desc, h_desc,  # TMA: x (max_padded, H), box (128, 128); w1 as (2L, I, H), box (2, 64, 128);
                             # hq (max_padded, I), box (64, 64)
    xs_ptr, ws_ptr, hs_ptr,  # fp32: xs (max_padded, H/128), w1s (L, 2I/128, H/128), hs (max_padded, I/128)
    expert_ids_ptr, num_padded_ptr,  # int32 (max_blocks,), (1,)
    N, K,  # N = I, K = H
    stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr, LOADER_WARPS: gl.constexpr, LOADER_REGS: gl.constexpr,
    MATH_REGS: gl.constexpr,
):  # fmt: skip
    """Persistent: grid ``G`` <= the number of SMs; the launch's 4 warps are math partition 0, 4 more
    are math partition 1, ``LOADER_WARPS`` more load. H and I multiples of 128."""
    BLOCK_M: gl.constexpr = x_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = x_desc.block_type.shape[1]
    gl.static_assert(BLOCK_M == 2 * PARTITION_ROWS and BLOCK_K == 128, "x box (128, 128)")
    gl.static_assert(w_desc.block_type.shape[1] == HALF and h_desc.block_type.shape[0] == PARTITION_ROWS,
                     "weight box (2, 64, 128), h box (64, 64)")  # fmt: skip
    gl.static_assert(gl.num_warps() == 4, "4 warps per math partition")
    gl.static_assert(NUM_STAGES >= 2, "the ring needs a slot for the block in flight and one to fill")
    a_bufs = gl.allocate_shared_memory(x_desc.dtype, [NUM_STAGES, BLOCK_M, BLOCK_K], x_desc.layout)
    b_bufs = gl.allocate_shared_memory(w_desc.dtype, [2 * NUM_STAGES, 2, HALF, BLOCK_K], w_desc.layout)
    ready, empty = _ws_barriers(NUM_STAGES, 1, 2)  # each slot read by both math partitions
    start = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    mbarrier.init(start, count=32 * gl.num_warps())  # every thread of partition 0
    lo0 = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    hi0 = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    lo1 = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    hi1 = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    num_m, num_pid_n, total, num_k, pid, step = _ws_schedule(num_padded_ptr, N, K, BLOCK_M, TILE_N, BLOCK_K)
    gl.warp_specialize([
        (_dual_math, (a_bufs, b_bufs, ready, empty, start, lo0, hi0, h_desc, xs_ptr, ws_ptr, hs_ptr,
                      expert_ids_ptr, N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm, pid,
                      step, total, num_m, num_pid_n, num_k, GROUP_M, 0)),
        (_dual_math, (a_bufs, b_bufs, ready, empty, start, lo1, hi1, h_desc, xs_ptr, ws_ptr, hs_ptr,
                      expert_ids_ptr, N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm, pid,
                      step, total, num_m, num_pid_n, num_k, GROUP_M, PARTITION_ROWS)),
        (_dual_loader, (x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
                        num_pid_n, num_k, GROUP_M)),
    ], [4, LOADER_WARPS], [MATH_REGS, LOADER_REGS])  # fmt: skip


def launch_gluon_gate_up_dual(xq: torch.Tensor, xs: torch.Tensor, w1q: torch.Tensor, w1s: torch.Tensor,
                              hq: torch.Tensor, hs: torch.Tensor, al: Alignment,
                              tile: GemmTile) -> None:  # fmt: skip
    """The dual gate/up on x in the alignment's order, on at most one persistent program per SM (two
    math partitions of ``tile.num_warps / 2`` = 4 warps, :data:`kernels.gluon_down.LOADER_WARPS`
    loader warps). xq (al.max_padded, H) float8_e4m3fn contiguous
    (``kernels.quant.quantize_fp8_groups_sorted``), xs (al.max_padded, H/128) float32; w1q (L, 2I, H)
    float8_e4m3fn contiguous; w1s (L, 2I/128, H/128) float32; hq (al.max_padded, I) float8_e4m3fn
    contiguous; hs (al.max_padded, I/128) float32. H and I multiples of 128, ``al.block_m`` 128,
    ``tile`` a ``dual`` tile (``kernels.tactics.gluon_misfit`` checks the rest)."""
    if not tile.dual or not tile.sorted_x or al.block_m != 128:
        raise ValueError(f"the dual gate/up runs a dual sorted_x tile at block_m 128, got {tile.name} at "
                         f"block_m={al.block_m}")  # fmt: skip
    i, h = w1q.shape[1] // 2, w1q.shape[2]
    x_desc, w_desc, h_desc = gate_up_descriptors(xq, w1q, hq, 128, HALF.value, HALF.value, True,
                                                 h_rows=PARTITION_ROWS.value)  # fmt: skip
    programs = min(al.max_blocks * (i // SCALE_GROUP), _sm_count(xq.device.index))
    _gluon_gate_up_dual_kernel[(programs,)](
        x_desc, w_desc, h_desc, xs, w1s, hs, al.expert_ids, al.num_padded, i, h,
        xs.stride(0), w1s.stride(0), w1s.stride(1), w1s.stride(2), hs.stride(0),
        NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, LOADER_WARPS=LOADER_WARPS, LOADER_REGS=LOADER_REGS,
        MATH_REGS=MATH_REGS, num_warps=tile.num_warps // 2,
    )  # fmt: skip
