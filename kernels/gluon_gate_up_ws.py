"""MoE gate/up for Hopper in Gluon, persistent and warp-specialized: for fp8 block scale the block_m 128
``halves`` schedule of :mod:`kernels.gluon_gate_up` on x already in the alignment's row order
(the ``sorted_x`` Gluon tiles), run the way :mod:`kernels.gluon_down` runs the down.

Same inputs and outputs as ``kernels.gluon_gate_up._gluon_gate_up_fp8_kernel`` with ``SORTED`` and
``SCHEME="halves"``, so the same bits::

    xq  (max_padded, H) float8_e4m3fn   xs  (max_padded, H/128) float32   x in the alignment's order
    w1q (L, 2I, H) float8_e4m3fn        w1s (L, 2I/128, H/128) float32    rows [0, I) gate, [I, 2I) up
    hq  (max_padded, I) float8_e4m3fn   hs  (max_padded, I/128) float32   (outputs)

Schedule: ``G`` programs (at most one per SM) walk the ``cdiv(num_padded, 128) * I / 128`` tiles
(128 rows x 128 h columns, one e4m3 group) in main's grouped order, program p taking tiles p, p + G,
... Each tile is two passes over K, one per 64 h columns (a ring slot holds the 128 x rows and 64
gate rows then the same 64 up rows, one ``m64n128`` wgmma per warpgroup); pass 0's h waits in
shared memory as fp32 until pass 1's is done, since the group's scale needs both.

- Loader partition (4 warps, 24 registers): every K block of every pass of every tile of the
  program, in order, into the TMA ring: wait on ``empty[f % S]``, ``expect`` on ``ready[f % S]``,
  the x box ``(128, 128)`` and the weight box ``(2, 64, 128)`` (w1 viewed as ``(2L, I, H)``). So
  loading runs up to ``S`` blocks ahead of the wgmmas, across passes and tiles (the next tile's
  first blocks land during this tile's epilogue).
- Math partition (the launch's 8 warps, two wgmma warpgroups): per pass the warp-specialized K loop
  the down runs too (:func:`kernels.gluon_down._ws_k_loop`: one wgmma in flight while the previous
  K block is promoted with ``xs[row, kb]`` times the gate block's scale on gate columns and the up
  block's on up columns, each slot released by a per-thread arrive on its ``empty``). Then
  silu(gate) * up, the row group's scale, the e4m3 codes by TMA stores that the next tile's
  epilogue waits for (not this one).

Where it runs: a Gluon gate/up tile with ``sorted_x`` and ``persistent`` at block_m 128
(``kernels.tactics.GemmTile``; the fp8 default's). On the H200 (BENCHMARKS.md, sessions 12 and 13:
runs 22, 23, 29 and 30) it gives the non-persistent kernel's bits at every point and 0.85-1.06x its
time: faster at qwen3-30b and deepseek-r1 T=4096, level to 3% faster at qwen3-235b and deepseek-r1
T=16384, 0.97-1.06x at mixtral's I = 14336, where session 22's runs 106-107 had it 0.96-0.97x alone
and the layer 0.98x (geomean over 12 cases).

Why: the non-persistent halves kernel issues its ring refills from the math warps (Triton puts CTA
barriers around them) and pays the ring's fill in every program; the down's warp-specialized
persistent form was 1.07-1.15x its non-persistent one on the H200 (BENCHMARKS.md, session 10).

16-bit form (``_gluon_gate_up_ws_16bit_kernel``, bf16/fp16 x and w1, no scales): the same loader and
schedule with one pass per 128-column tile, a ring slot holding the x box ``(128, 64)`` and the
weight box ``(2, 128, 64)`` (128 gate rows, then the same 128 up rows: one ``m64n256k16`` wgmma per
warpgroup and K step), the K loop accumulating in place
(:func:`kernels.gluon_down._ws_k_loop_plain`), and ``silu(gate) * up`` rounded once to h's dtype and
stored by TMA. x comes either copied into the alignment's order, by TMA (``sorted_x``), or straight
from the layer's x: the gathering loader (:func:`_ws_gather_loader`) looks up each padded row's token
and copies its 128-byte pieces with ``cp.async``, and the math warps fence the generic-proxy writes
before their wgmmas. Both are the bf16/fp16 space's ``persistent`` gate/up tiles at block_m 128 (3
or 4 stages); the 16-bit default's gate/up where it reads x's copy is the gathering one with 4 stages
up to I = 1024 and the sorted one with 3 stages above. On the H200 (BENCHMARKS.md, session 15, runs
45-47) all give the bits of Triton's sorted gate/up; the layer with the gathering one took 0.917x /
0.968x the then default's time at qwen3-30b (I = 768) T = 4096 / 16384 and 1.01-1.06x at I >= 1536,
where the copy weighs less. Alone (run 56) the sorted one is the faster GEMM than Triton's at every
point (0.91-0.99x its time); in the layer (session 16, run 60, the card at its 700 W power cap) it
took 0.96-0.98x Triton's layer time sustained and 0.97-1.00x in interleaved 20 ms rounds.
"""

from __future__ import annotations

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from kernels.align import Alignment
from kernels.gluon_common import SCALE_GROUP, _mma_layout, _moe_tile
from kernels.gluon_down import (
    _GL_DTYPES,
    LOADER_REGS,
    LOADER_WARPS,
    _sm_count,
    _ws_barriers,
    _ws_fill,
    _ws_k_loop,
    _ws_k_loop_plain,
    _ws_schedule,
)
from kernels.gluon_gate_up import _e4m3_quotient, _h_scale, _halves_h, gate_up_descriptors
from kernels.tactics import GemmTile

HALF = gl.constexpr(64)
"""h columns per pass of the fp8 kernel (and gate rows, and up rows, per ring slot)."""
TILE_N = gl.constexpr(128)
"""h columns per tile (the fp8 kernel's e4m3 group; the 16-bit kernel's one pass)."""


@gluon.jit
def _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M: gl.constexpr):
    """``(pid_m, pid_n, expert)`` of ``tile`` in main's grouped order over ``num_m`` row blocks."""
    pid_m, pid_n = _moe_tile(tile, num_m, num_pid_n, GROUP_M)
    return pid_m, pid_n, gl.load(expert_ids_ptr + pid_m)

@gluon.jit
def _ws_loader(x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
               num_pid_n, num_k, GROUP_M: gl.constexpr):  # fmt: skip
    """Loader partition: every pass's K blocks of every tile of this program, in order, into the
    ring (``kernels.gluon_down._ws_fill``): the x box and the pass's ``(2, ROWS, BLOCK_K)`` weight
    box, ROWS gate rows then the same up rows; a tile's 128 h columns take ``128 / ROWS`` passes (two
    for the fp8 halves, one for the 16-bit tile)."""
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
                _ws_fill(x_desc, [off_m, k0], w_desc, [2 * e, n, k0], a_bufs, b_bufs, ready, empty, f)
                f += 1

GATHER_REGS = 64
"""Registers per thread of the 16-bit kernel's gathering loader (:func:`_ws_gather_loader`): its 128
threads hold the tile's 8 row addresses each across the K loop; the math warps drop to 216 for it
(the PTX's ``setmaxnreg``; the kernel needs 168)."""
GATHER_REGS_FP8 = 48
"""The same for the fp8 kernel, whose math warps (two accumulators and the promotion) spill at 216:
offline sm_90a compiles at 5 stages spill 36 / 4 / 0 / 0 / 12 bytes with 32 / 40 / 48 / 56 / 64
loader registers."""


@gluon.jit
def _ws_gather_loader(x_ptr, stride_xm, w_desc, a_bufs, b_bufs, ready, empty, sorted_ids_ptr, expert_ids_ptr,
                      num_slots, pid, step, total, num_m, num_pid_n, num_k, TOP_K: gl.constexpr,
                      GROUP_M: gl.constexpr):  # fmt: skip
    """Loader partition of the gathering kernels (16-bit, and fp8's halves): per tile, the padded
    rows' tokens (``sorted_ids[r] // TOP_K``; padding rows, ``>= num_slots``, read nothing and land
    as zeros); per pass (:func:`_ws_loader`'s) and K block, after the slot's ``empty`` wait, the
    weight box by TMA (the expect-tx arrival) and x's ``(128, BLOCK_K)`` block of 128-byte rows by
    ``cp.async``, 16 bytes per copy, 8 per thread, each thread arriving on ``ready`` when its copies
    have landed (``cp.async.mbarrier.arrive.noinc``)."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_K: gl.constexpr = a_bufs.shape[2]
    ROWS: gl.constexpr = b_bufs.shape[2]
    VEC: gl.constexpr = 128 // a_bufs.dtype.primitive_bitwidth  # 16 bytes of a row
    layout: gl.constexpr = gl.BlockedLayout([1, VEC], [32 * VEC // BLOCK_K, BLOCK_K // VEC],
                                            [gl.num_warps(), 1], [1, 0])  # fmt: skip
    rows = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, layout))
    cols = gl.expand_dims(gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, layout)), 0)
    f = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, e = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        slots = gl.load(sorted_ids_ptr + pid_m * BLOCK_M + rows)
        real = gl.expand_dims(slots < num_slots, 1)
        tokens = gl.where(slots < num_slots, slots // TOP_K, 0)
        row_ptrs = x_ptr + gl.expand_dims(tokens.to(gl.int64) * stride_xm, 1) + cols
        for p in gl.static_range(TILE_N // ROWS):
            n = pid_n * TILE_N + p * ROWS
            for kb in range(num_k):
                slot = f % NUM_STAGES
                mbarrier.wait(empty.index(slot), ((f // NUM_STAGES) & 1) ^ 1)
                bar = ready.index(slot)
                mbarrier.expect(bar, w_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(w_desc, [2 * e, n, kb * BLOCK_K], bar, b_bufs.index(slot))
                async_copy.async_copy_global_to_shared(a_bufs.index(slot), row_ptrs + kb * BLOCK_K, mask=real)
                async_copy.mbarrier_arrive(bar, increment_count=False)
                f += 1

@gluon.jit
def _ws_quantize(h, h_scale, h_smem):
    """``h`` divided by its row scales (:func:`kernels.gluon_gate_up._e4m3_quotient`), as e4m3 into
    ``h_smem``."""
    h_smem.store(_e4m3_quotient(h, h_scale).to(h_smem.dtype))

@gluon.jit
def _ws_math(a_bufs, b_bufs, ready, empty, stash, h_lo, h_hi, h_desc, xs_ptr, ws_ptr, hs_ptr, expert_ids_ptr,
             sorted_ids_ptr, num_slots, N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm, pid,
             step, total, num_m, num_pid_n, num_k, GROUP_M: gl.constexpr, TOP_K: gl.constexpr,
             GATHER: gl.constexpr):  # fmt: skip
    """Default partition (the math warps): per tile pass 0 (h columns ``off_n ..``), silu * up into
    the fp32 stash, pass 1 (``off_n + 64 ..``), then the group scale to ``hs`` and both halves' codes
    to ``hq`` by TMA. ``GATHER``: x's ring slots were gathered from the tokens' rows by ``cp.async``
    (:func:`_ws_gather_loader`), so the x scales are read at the token's row (``sorted_ids[r] //
    TOP_K``; padding rows at row 0, their x codes zeros) and the K loop fences the slots."""
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    WIDE: gl.constexpr = 2 * b_bufs.shape[2]
    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, WIDE, gl.num_warps())
    is_up = gl.expand_dims(gl.arange(0, WIDE, layout=gl.SliceLayout(0, mma_layout)) >= HALF, 0)
    base = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, e = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * (2 * HALF)
        rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, mma_layout))
        x_rows = rows
        if GATHER:
            slots = gl.load(sorted_ids_ptr + rows)
            x_rows = gl.where(slots < num_slots, slots // TOP_K, 0)
        sa_ptrs = xs_ptr + x_rows.to(gl.int64) * stride_xsm
        ws_e = ws_ptr + e.to(gl.int64) * stride_wse
        row_ok = rows < num_m * BLOCK_M  # all true: the tile's rows are below max_padded
        # The tile's 128 h columns are one weight scale block row for both passes: the gate's at
        # gs_ptr, the up's (rows I + off_n ..) up_off further, taken on the up columns (is_up).
        gs_ptr = ws_e + pid_n * stride_wsn
        up_off = ((N + off_n) // (2 * HALF) - pid_n) * stride_wsn

        # Pass p: h columns off_n + 64p .., flat ring blocks base + p num_k ..
        acc = _ws_k_loop(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, gs_ptr, stride_wsk,
                         up_off, is_up, True, mma_layout, GATHER)  # fmt: skip
        stash.store(_halves_h(acc))  # each thread reads back only what it wrote: no barrier
        base += num_k
        acc = _ws_k_loop(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, gs_ptr, stride_wsk,
                         up_off, is_up, True, mma_layout, GATHER)  # fmt: skip
        base += num_k
        h_hi_val = _halves_h(acc)
        _ws_store_h(stash.load(h_hi_val.type.layout), h_hi_val, off_m, pid_n, hs_ptr, stride_hsm, h_lo, h_hi,
                    h_desc)  # fmt: skip
    tma.store_wait(pendings=0)

@gluon.jit
def _ws_store_h(h_lo_val, h_hi_val, off_m, pid_n, hs_ptr, stride_hsm, h_lo, h_hi, h_desc):
    """The fp8 gate/up's epilogue for rows ``off_m ..`` of column tile ``pid_n`` (h columns ``128
    pid_n ..``): the two halves' ``silu(gate) * up`` (``(ROWS, 64)`` fp32 each, one layout) give each
    row's group scale, stored to ``hs[row, pid_n]``, and their e4m3 codes, staged in ``h_lo`` / ``h_hi`` and
    stored by TMA. The stores run on; the next call waits for them before it refills the staging."""
    h_layout: gl.constexpr = h_lo_val.type.layout
    ROWS: gl.constexpr = h_lo_val.shape[0]
    h_scale = _h_scale(gl.maximum(gl.max(gl.abs(h_lo_val), axis=1), gl.max(gl.abs(h_hi_val), axis=1)))
    rows_h = off_m + gl.arange(0, ROWS, layout=gl.SliceLayout(1, h_layout))
    gl.store(hs_ptr + rows_h.to(gl.int64) * stride_hsm + pid_n, h_scale)
    tma.store_wait(pendings=0)  # the previous tile's codes have left h_lo / h_hi
    gl.thread_barrier()
    _ws_quantize(h_lo_val, h_scale, h_lo)
    _ws_quantize(h_hi_val, h_scale, h_hi)
    fence_async_shared()
    gl.thread_barrier()
    off_n = pid_n * TILE_N
    tma.async_copy_shared_to_global(h_desc, [off_m, off_n], h_lo)
    tma.async_copy_shared_to_global(h_desc, [off_m, off_n + HALF], h_hi)

@gluon.jit
def _ws_gate_up_ring(a_bufs, w_desc, h_desc, num_padded_ptr, N, K, READY_ARRIVALS: gl.constexpr):
    """What every persistent gate/up kernel here does after allocating x's ring ``a_bufs``
    ``(NUM_STAGES, 128, BLOCK_K)`` (128-byte rows): the checks on its boxes, its walk
    (:func:`kernels.gluon_down._ws_schedule` over 128-column tiles) and the rest of its ring, the
    weight slots ``(NUM_STAGES, 2, ROWS, BLOCK_K)`` and the barriers. h's box is ``(128, ROWS)``
    (ROWS = 64 for the fp8 halves, 128 for the 16-bit tile). Returns ``(num_m, num_pid_n, total,
    num_k, pid, step, b_bufs, ready, empty)``."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_K: gl.constexpr = a_bufs.shape[2]
    ROWS: gl.constexpr = w_desc.block_type.shape[1]
    gl.static_assert(BLOCK_M == 128 and BLOCK_K * a_bufs.dtype.primitive_bitwidth == 1024,
                     "x block (128, BLOCK_K) of 128-byte rows (fp8: one scale group per K step)")  # fmt: skip
    gl.static_assert(w_desc.block_type.shape[0] == 2 and w_desc.block_type.shape[2] == BLOCK_K
                     and TILE_N % ROWS == 0,
                     "weight box (2, ROWS, BLOCK_K): ROWS gate rows, then the same ROWS up rows")  # fmt: skip
    gl.static_assert(h_desc.block_type.shape[0] == BLOCK_M and h_desc.block_type.shape[1] == ROWS,
                     "h box (128, ROWS): one pass's columns")  # fmt: skip
    gl.static_assert(gl.num_warps() == 8, "8 math warps: two wgmma warpgroups")
    gl.static_assert(NUM_STAGES >= 2, "the ring needs a slot for the block in flight and one to fill")
    num_m, num_pid_n, total, num_k, pid, step = _ws_schedule(num_padded_ptr, N, K, BLOCK_M, TILE_N, BLOCK_K)
    b_bufs = gl.allocate_shared_memory(w_desc.dtype, [NUM_STAGES, 2, ROWS, BLOCK_K], w_desc.layout)
    ready, empty = _ws_barriers(NUM_STAGES, READY_ARRIVALS)
    return num_m, num_pid_n, total, num_k, pid, step, b_bufs, ready, empty

@gluon.jit
def _ws_h_staging(h_desc):
    """The fp8 kernels' epilogue buffers: pass 0's h as fp32 ``(128, 64)`` and the two hq halves."""
    stash = gl.allocate_shared_memory(gl.float32, [h_desc.block_type.shape[0], HALF],
                                      gl.SwizzledSharedLayout(1, 1, 1, order=[1, 0]))  # fmt: skip
    h_lo = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    h_hi = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    return stash, h_lo, h_hi

@gluon.jit
def _gluon_gate_up_ws_kernel(
    x_desc, w_desc, h_desc,  # TMA: x in the alignment's order (max_padded, H), box (128, 128); w1 as
                             # (2L, I, H), box (2, 64, 128); hq (max_padded, I), box (128, 64)
    xs_ptr, ws_ptr, hs_ptr,  # fp32: xs (max_padded, H/128), w1s (L, 2I/128, H/128), hs (max_padded, I/128)
    expert_ids_ptr, num_padded_ptr,  # int32 (max_blocks,), (1,)
    N, K,  # N = I, K = H
    stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr, LOADER_WARPS: gl.constexpr, LOADER_REGS: gl.constexpr,
):  # fmt: skip
    """Persistent: grid ``G`` <= the number of SMs. The launch's ``num_warps`` (8) are the math
    warps, ``LOADER_WARPS`` more load. H and I multiples of 128."""
    a_bufs = gl.allocate_shared_memory(x_desc.dtype, [NUM_STAGES, x_desc.block_type.shape[0],
                                                      x_desc.block_type.shape[1]], x_desc.layout)  # fmt: skip
    num_m, num_pid_n, total, num_k, pid, step, b_bufs, ready, empty = _ws_gate_up_ring(
        a_bufs, w_desc, h_desc, num_padded_ptr, N, K, 1)
    stash, h_lo, h_hi = _ws_h_staging(h_desc)
    gl.warp_specialize([
        (_ws_math, (a_bufs, b_bufs, ready, empty, stash, h_lo, h_hi, h_desc, xs_ptr, ws_ptr, hs_ptr,
                    expert_ids_ptr, None, None, N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm,
                    pid, step, total, num_m, num_pid_n, num_k, GROUP_M, None, False)),
        (_ws_loader, (x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
                      num_pid_n, num_k, GROUP_M)),
    ], [LOADER_WARPS], [LOADER_REGS])  # fmt: skip


@gluon.jit
def _gluon_gate_up_ws_gather_kernel(
    x_ptr, w_desc, h_desc,  # xq (T, H) e4m3, row stride stride_xm; TMA: w1 as (2L, I, H), box (2, 64, 128);
                            # hq (max_padded, I), box (128, 64)
    xs_ptr, ws_ptr, hs_ptr,  # fp32: xs (T, H/128), w1s (L, 2I/128, H/128), hs (max_padded, I/128)
    sorted_ids_ptr, expert_ids_ptr, num_padded_ptr,  # int32 (max_padded,), (max_blocks,), (1,)
    N, K, stride_xm, num_slots,  # N = I, K = H, num_slots = T * TOP_K
    stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm,
    X_LAYOUT: gl.constexpr, TOP_K: gl.constexpr, NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
    LOADER_WARPS: gl.constexpr, LOADER_REGS: gl.constexpr,
):  # fmt: skip
    """:func:`_gluon_gate_up_ws_kernel` reading x's quantized rows and scales where they are, through
    the alignment: the loader gathers the codes (:func:`_ws_gather_loader`), the math warps read each
    row's scales at its token. No copy of x in the alignment's order."""
    a_bufs = gl.allocate_shared_memory(x_ptr.dtype.element_ty, [NUM_STAGES, 128, w_desc.block_type.shape[2]],
                                       X_LAYOUT)  # fmt: skip
    num_m, num_pid_n, total, num_k, pid, step, b_bufs, ready, empty = _ws_gate_up_ring(
        a_bufs, w_desc, h_desc, num_padded_ptr, N, K, 1 + 32 * LOADER_WARPS)
    stash, h_lo, h_hi = _ws_h_staging(h_desc)
    gl.warp_specialize([
        (_ws_math, (a_bufs, b_bufs, ready, empty, stash, h_lo, h_hi, h_desc, xs_ptr, ws_ptr, hs_ptr,
                    expert_ids_ptr, sorted_ids_ptr, num_slots, N, stride_xsm, stride_wse, stride_wsn,
                    stride_wsk, stride_hsm, pid, step, total, num_m, num_pid_n, num_k, GROUP_M, TOP_K, True)),
        (_ws_gather_loader, (x_ptr, stride_xm, w_desc, a_bufs, b_bufs, ready, empty, sorted_ids_ptr,
                             expert_ids_ptr, num_slots, pid, step, total, num_m, num_pid_n, num_k, TOP_K,
                             GROUP_M)),
    ], [LOADER_WARPS], [LOADER_REGS])  # fmt: skip


def launch_gluon_gate_up_ws(
    xq: torch.Tensor,
    xs: torch.Tensor,
    w1q: torch.Tensor,
    w1s: torch.Tensor,
    hq: torch.Tensor,
    hs: torch.Tensor,
    al: Alignment,
    tile: GemmTile,
    top_k: int,
) -> None:
    """Gate/up GEMM + silu * up + e4m3 group quantization of h, on at most one persistent program per
    SM (``tile.num_warps`` = 8 math warps and :data:`kernels.gluon_down.LOADER_WARPS` loader warps).

    With ``tile.sorted_x``: xq (al.max_padded, H) float8_e4m3fn contiguous, x's rows in the
    alignment's order (``kernels.quant.quantize_fp8_groups_sorted``), xs (al.max_padded, H/128)
    float32. Without: xq (T, H) and xs (T, H/128) of ``kernels.quant.quantize_fp8_groups`` (unit
    stride in H), gathered through ``al.sorted_ids`` (``top_k`` slots per token). w1q: (L, 2I, H)
    float8_e4m3fn contiguous; w1s: (L, 2I/128, H/128) float32; hq: (al.max_padded, I) float8_e4m3fn
    contiguous; hs: (al.max_padded, I/128) float32. H and I multiples of 128, ``al.block_m`` 128,
    ``tile`` 128 x 128 with 8 warps (``kernels.tactics.gluon_misfit`` checks the sizes;
    :func:`kernels.gluon_gate_up.launch_gluon_gate_up` routes ``tile.persistent`` tiles here). A
    ``tile.dual`` (sorted x only) runs :mod:`kernels.gluon_gate_up_dual`, with the same bits.
    """
    if tile.dual:
        from kernels.gluon_gate_up_dual import launch_gluon_gate_up_dual  # it imports this module's helpers

        launch_gluon_gate_up_dual(xq, xs, w1q, w1s, hq, hs, al, tile)
        return
    h, i = w1q.shape[2], w1q.shape[1] // 2
    x_src, w_desc, h_desc = gate_up_descriptors(xq, w1q, hq, al.block_m, HALF.value, HALF.value,
                                                tile.sorted_x)  # fmt: skip
    tiles = al.max_blocks * (i // SCALE_GROUP)
    programs = min(tiles, _sm_count(xq.device.index))
    strides = (xs.stride(0), w1s.stride(0), w1s.stride(1), w1s.stride(2), hs.stride(0))
    common = dict(NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, LOADER_WARPS=LOADER_WARPS,
                  num_warps=tile.num_warps)  # fmt: skip
    if tile.sorted_x:
        _gluon_gate_up_ws_kernel[(programs,)](
            x_src, w_desc, h_desc, xs, w1s, hs, al.expert_ids, al.num_padded, i, h, *strides,
            LOADER_REGS=LOADER_REGS, **common,
        )  # fmt: skip
        return
    if xq.stride(1) != 1:
        raise ValueError(f"the gathering Gluon gate/up copies 16-byte pieces of x's rows: xq's column stride "
                         f"must be 1, got {xq.stride(1)}")  # fmt: skip
    x_layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
    _gluon_gate_up_ws_gather_kernel[(programs,)](
        xq, w_desc, h_desc, xs, w1s, hs, al.sorted_ids, al.expert_ids, al.num_padded,
        i, h, xq.stride(0), al.num_slots, *strides,
        X_LAYOUT=x_layout, TOP_K=top_k, LOADER_REGS=GATHER_REGS_FP8, **common,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# 16-bit (bf16/fp16) persistent gate/up
# --------------------------------------------------------------------------------------------------
@gluon.jit
def _ws_math_16bit(a_bufs, b_bufs, ready, empty, h_smem, h_desc, expert_ids_ptr, pid, step, total, num_m,
                   num_pid_n, num_k, GROUP_M: gl.constexpr, FENCE: gl.constexpr):  # fmt: skip
    """Default partition of the 16-bit kernel: per tile one K loop (:func:`kernels.gluon_down.
    _ws_k_loop_plain`) into a ``[128, 256]`` accumulator (128 gate columns, then the same 128 up
    columns), ``silu(gate) * up`` in the accumulator's threads, rounded once to h's dtype and stored
    by TMA; the store runs on during the next tile's K loop. ``FENCE``: x's ring slots were written by
    ``cp.async`` (:func:`_ws_gather_loader`)."""
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    WIDE: gl.constexpr = 2 * b_bufs.shape[2]
    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, WIDE, gl.num_warps(), 16)
    base = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, _ = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        acc = _ws_k_loop_plain(a_bufs, b_bufs, ready, empty, base, num_k, mma_layout, FENCE)
        base += num_k
        h = _halves_h(acc).to(h_smem.dtype)
        tma.store_wait(pendings=0)  # the previous tile's h has left h_smem
        gl.thread_barrier()
        h_smem.store(h)
        fence_async_shared()
        gl.thread_barrier()  # all of the tile is in h_smem before one thread issues its store
        tma.async_copy_shared_to_global(h_desc, [pid_m * BLOCK_M, pid_n * TILE_N], h_smem)
    tma.store_wait(pendings=0)

@gluon.jit
def _gluon_gate_up_ws_16bit_kernel(
    x_desc, w_desc, h_desc,  # TMA: x in the alignment's order (max_padded, H), box (128, 64); w1 as
                             # (2L, I, H), box (2, 128, 64); h (max_padded, I), box (128, 128); one dtype
    expert_ids_ptr, num_padded_ptr,  # int32 (max_blocks,), (1,)
    N, K,  # N = I, K = H
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr, LOADER_WARPS: gl.constexpr, LOADER_REGS: gl.constexpr,
):  # fmt: skip
    """Persistent 16-bit gate/up: grid ``G`` <= the number of SMs; the launch's 8 warps do the
    math, ``LOADER_WARPS`` more load (:func:`_ws_loader`, one pass per tile). I a multiple of 128,
    H of 64."""
    a_bufs = gl.allocate_shared_memory(x_desc.dtype, [NUM_STAGES, x_desc.block_type.shape[0],
                                                      x_desc.block_type.shape[1]], x_desc.layout)  # fmt: skip
    num_m, num_pid_n, total, num_k, pid, step, b_bufs, ready, empty = _ws_gate_up_ring(
        a_bufs, w_desc, h_desc, num_padded_ptr, N, K, 1)
    h_smem = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    gl.warp_specialize([
        (_ws_math_16bit, (a_bufs, b_bufs, ready, empty, h_smem, h_desc, expert_ids_ptr, pid, step, total,
                          num_m, num_pid_n, num_k, GROUP_M, False)),
        (_ws_loader, (x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
                      num_pid_n, num_k, GROUP_M)),
    ], [LOADER_WARPS], [LOADER_REGS])  # fmt: skip


@gluon.jit
def _gluon_gate_up_ws_16bit_gather_kernel(
    x_ptr, w_desc, h_desc,  # x (T, H) row stride stride_xm; TMA: w1 as (2L, I, H), box (2, 128, 64);
                            # h (max_padded, I), box (128, 128); one 16-bit dtype
    sorted_ids_ptr, expert_ids_ptr, num_padded_ptr,  # int32 (max_padded,), (max_blocks,), (1,)
    N, K, stride_xm, num_slots,  # N = I, K = H, num_slots = T * TOP_K
    X_LAYOUT: gl.constexpr, TOP_K: gl.constexpr, NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
    LOADER_WARPS: gl.constexpr, LOADER_REGS: gl.constexpr,
):  # fmt: skip
    """:func:`_gluon_gate_up_ws_16bit_kernel` reading x's rows where they are, through the alignment
    (:func:`_ws_gather_loader`), into ring slots of ``X_LAYOUT`` (the 128-byte swizzle wgmma reads)."""
    a_bufs = gl.allocate_shared_memory(x_ptr.dtype.element_ty, [NUM_STAGES, 128, w_desc.block_type.shape[2]],
                                       X_LAYOUT)  # fmt: skip
    num_m, num_pid_n, total, num_k, pid, step, b_bufs, ready, empty = _ws_gate_up_ring(
        a_bufs, w_desc, h_desc, num_padded_ptr, N, K, 1 + 32 * LOADER_WARPS)
    h_smem = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    gl.warp_specialize([
        (_ws_math_16bit, (a_bufs, b_bufs, ready, empty, h_smem, h_desc, expert_ids_ptr, pid, step, total,
                          num_m, num_pid_n, num_k, GROUP_M, True)),
        (_ws_gather_loader, (x_ptr, stride_xm, w_desc, a_bufs, b_bufs, ready, empty, sorted_ids_ptr,
                             expert_ids_ptr, num_slots, pid, step, total, num_m, num_pid_n, num_k, TOP_K,
                             GROUP_M)),
    ], [LOADER_WARPS], [LOADER_REGS])  # fmt: skip


def launch_gluon_gate_up_ws_16bit(x: torch.Tensor, w1: torch.Tensor, h: torch.Tensor, al: Alignment,
                                  tile: GemmTile, top_k: int) -> None:  # fmt: skip
    """16-bit gate/up GEMM + ``silu(gate) * up`` into ``h``, on at most one persistent program per SM
    (``tile.num_warps`` = 8 math warps and :data:`kernels.gluon_down.LOADER_WARPS` loader warps).

    x: with ``tile.sorted_x``, (al.max_padded, H) bf16/fp16 contiguous, x's rows in the alignment's
    order (:func:`kernels.row_gather.gather_rows_sorted`), read by TMA; without, the layer's (T, H)
    x (unit column stride), its rows gathered through ``al.sorted_ids`` (``top_k`` slots per token)
    by the loader warps. w1: (L, 2I, H) x's dtype contiguous, rows ``[0, I)`` gate, ``[I, 2I)`` up;
    h: (al.max_padded, I) x's dtype contiguous, row r padded row r's ``silu(x[r] @ W1g^T) * (x[r] @
    W1u^T)`` (rows past ``num_padded`` untouched). I a multiple of 128, H of 64, ``al.block_m`` 128,
    ``tile`` 128 x 64 with 8 warps (the caller, ``kernels.fused_moe.fused_moe``, checks this with
    ``kernels.tactics.gluon_misfit``)."""
    num_local, two_i, hidden = w1.shape
    i = two_i // 2
    dtype = _GL_DTYPES[x.dtype]
    cols = TILE_N.value
    x_box, w_box, h_box = [al.block_m, tile.block_k], [2, cols, tile.block_k], [al.block_m, cols]
    x_layout = gl.NVMMASharedLayout.get_default_for(x_box, dtype)
    w_desc = TensorDescriptor.from_tensor(w1.view(num_local * 2, i, hidden), w_box,
                                          gl.NVMMASharedLayout.get_default_for(w_box, dtype))  # fmt: skip
    h_desc = TensorDescriptor.from_tensor(h, h_box, gl.NVMMASharedLayout.get_default_for(h_box, dtype))
    programs = min(al.max_blocks * (i // cols), _sm_count(x.device.index))
    common = dict(NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, LOADER_WARPS=LOADER_WARPS,
                  num_warps=tile.num_warps)  # fmt: skip
    if tile.sorted_x:
        x_desc = TensorDescriptor.from_tensor(x, x_box, x_layout)
        _gluon_gate_up_ws_16bit_kernel[(programs,)](
            x_desc, w_desc, h_desc, al.expert_ids, al.num_padded, i, hidden, LOADER_REGS=LOADER_REGS, **common
        )  # fmt: skip
        return
    if x.stride(1) != 1:
        raise ValueError(f"the gathering Gluon gate/up copies 16-byte pieces of x's rows: x's column stride "
                         f"must be 1, got {x.stride(1)}")  # fmt: skip
    _gluon_gate_up_ws_16bit_gather_kernel[(programs,)](
        x, w_desc, h_desc, al.sorted_ids, al.expert_ids, al.num_padded, i, hidden, x.stride(0), al.num_slots,
        X_LAYOUT=x_layout, TOP_K=top_k, LOADER_REGS=GATHER_REGS, **common,
    )  # fmt: skip
