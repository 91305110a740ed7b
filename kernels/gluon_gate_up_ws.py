"""fp8 block-scale MoE gate/up for Hopper in Gluon, persistent and warp-specialized: the block_m 128
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
- Math partition (the launch's 8 warps, two wgmma warpgroups): per K block a wait on ``ready``,
  the wgmma issued asynchronously, ``wgmma.wait_group 1`` retiring the previous block, a per-thread
  arrive on that block's ``empty``, and its promotion ``acc += t * xs[row, kb] * w1s[e, n, kb]``
  (the gate block's scale on gate columns, the up block's on up columns) while the next block
  runs: the two temporaries and pinned promotions of :func:`kernels.gluon_common._gluon_mainloop`.
  Then silu(gate) * up, the row group's scale, the e4m3 codes by TMA stores that the next tile's
  epilogue waits for (not this one).

Status (branch ``ws-gate-up``, BENCHMARKS.md session 12, runs 22 and 23): bit-identical to the halves
kernel, 0.89-1.11x its time depending on the shape and ring depth, so not merged. Before merging,
``_ws_pass`` should share one K loop with ``kernels.gluon_down._down_math`` (it differs only in its
issue and scale functions) and the launcher's descriptor setup with ``launch_gluon_gate_up``.

Why: the non-persistent halves kernel issues its ring refills from the math warps (Triton puts CTA
barriers around them) and pays the ring's fill in every program; the down's warp-specialized
persistent form was 1.07-1.15x its non-persistent one on the H200 (BENCHMARKS.md, session 10).
"""

from __future__ import annotations

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from kernels.align import Alignment
from kernels.gluon_common import SCALE_GROUP, _gluon_pin, _mma_layout, _moe_tile
from kernels.gluon_down import LOADER_REGS, LOADER_WARPS, _down_release, _sm_count
from kernels.gluon_gate_up import _h_scale, _halves_h, _wide_scale
from kernels.tactics import GemmTile

HALF = gl.constexpr(64)
"""h columns per pass (and gate rows, and up rows, per ring slot)."""


@gluon.jit
def _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M: gl.constexpr):
    """``(pid_m, pid_n, expert)`` of ``tile`` in main's grouped order over ``num_m`` row blocks."""
    pid_m, pid_n = _moe_tile(tile, num_m, num_pid_n, GROUP_M)
    return pid_m, pid_n, gl.load(expert_ids_ptr + pid_m)

@gluon.jit
def _ws_loader(x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
               num_pid_n, num_k, GROUP_M: gl.constexpr, DUAL: gl.constexpr):  # fmt: skip
    """Loader partition: both passes' K blocks of every tile of this program, in order, into the
    ring (with ``DUAL``, one pass whose slots hold both halves' weight rows beside one x box). Slot
    ``f % S`` is refilled once all math threads have released it (``empty``; a fresh barrier passes
    parity 1, so the first ``S`` fills go straight through)."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_K: gl.constexpr = a_bufs.shape[2]
    f = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, e = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        off_m = pid_m * BLOCK_M
        if DUAL:
            n = pid_n * (2 * HALF)
            for kb in range(num_k):
                slot = f % NUM_STAGES
                mbarrier.wait(empty.index(slot), ((f // NUM_STAGES) & 1) ^ 1)
                bar = ready.index(slot)
                mbarrier.expect(bar, x_desc.block_type.nbytes + 2 * w_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(x_desc, [off_m, kb * BLOCK_K], bar, a_bufs.index(slot))
                tma.async_copy_global_to_shared(w_desc, [2 * e, n, kb * BLOCK_K], bar, b_bufs.index(2 * slot))
                tma.async_copy_global_to_shared(w_desc, [2 * e, n + HALF, kb * BLOCK_K], bar,
                                                b_bufs.index(2 * slot + 1))  # fmt: skip
                f += 1
        for p in gl.static_range(0 if DUAL else 2):
            n = pid_n * (2 * HALF) + p * HALF
            for kb in range(num_k):
                slot = f % NUM_STAGES
                mbarrier.wait(empty.index(slot), ((f // NUM_STAGES) & 1) ^ 1)
                bar = ready.index(slot)
                mbarrier.expect(bar, x_desc.block_type.nbytes + w_desc.block_type.nbytes)
                tma.async_copy_global_to_shared(x_desc, [off_m, kb * BLOCK_K], bar, a_bufs.index(slot))
                tma.async_copy_global_to_shared(w_desc, [2 * e, n, kb * BLOCK_K], bar, b_bufs.index(slot))
                f += 1

@gluon.jit
def _ws_issue(a_bufs, b_bufs, ready, f, spare, NUM_STAGES: gl.constexpr):
    """Wait for flat K block ``f``'s slot and issue its ``128 x 128`` wgmma (the slot's ``(2, 64,
    128)`` weight box read as 128 rows: 64 gate, then 64 up) asynchronously into ``spare``'s
    registers (``use_acc=False`` ignores their values)."""
    slot = f % NUM_STAGES
    mbarrier.wait(ready.index(slot), (f // NUM_STAGES) & 1)
    b = b_bufs.index(slot).reshape([2 * b_bufs.shape[2], b_bufs.shape[3]])
    return warpgroup_mma(a_bufs.index(slot), b.permute((1, 0)), spare, use_acc=False, is_async=True)

@gluon.jit
def _ws_pass(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, gs_ptr, us_ptr, stride_wsk, is_gate,
             mma_layout: gl.constexpr):  # fmt: skip
    """One pass's block-scaled K loop on flat blocks ``base .. base + num_k - 1`` of the ring: T0 the
    even K blocks, T1 the odd ones, unrolled by two so that no temporary changes role (see
    :mod:`kernels.gluon_common`). Returns the ``[128, 128]`` fp32 accumulator (64 gate columns,
    then the same 64 up columns) in ``mma_layout``."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    WIDE: gl.constexpr = 2 * b_bufs.shape[2]
    acc = gl.zeros([BLOCK_M, WIDE], gl.float32, mma_layout)
    spare1 = gl.zeros([BLOCK_M, WIDE], gl.float32, mma_layout)
    t0 = _ws_issue(a_bufs, b_bufs, ready, base, gl.zeros([BLOCK_M, WIDE], gl.float32, mma_layout), NUM_STAGES)
    scale0 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, 0, stride_wsk, is_gate)
    for j in range(0, (num_k - 1) // 2):
        kb = 2 * j + 1
        t1 = _ws_issue(a_bufs, b_bufs, ready, base + kb, spare1, NUM_STAGES)
        scale1 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk, is_gate)
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))  # block kb-1 complete
        _down_release(empty, base + kb - 1, NUM_STAGES)
        acc = _gluon_pin(acc + done0 * scale0)

        t0 = _ws_issue(a_bufs, b_bufs, ready, base + kb + 1, done0, NUM_STAGES)
        scale0 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb + 1, stride_wsk, is_gate)
        spare1 = warpgroup_mma_wait(num_outstanding=1, deps=(t1,))  # block kb complete
        _down_release(empty, base + kb, NUM_STAGES)
        acc = _gluon_pin(acc + spare1 * scale1)
    if num_k % 2 == 0:
        t1 = _ws_issue(a_bufs, b_bufs, ready, base + num_k - 1, spare1, NUM_STAGES)
        scale1 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, num_k - 1, stride_wsk, is_gate)
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
def _ws_dual_half(a_bufs, b_bufs, slot, p, t):
    """Issue the wgmma of half ``p`` of ring slot ``slot`` into ``t``'s registers and wait for it:
    the ``128 x 128`` product of the x box and the half's ``(2, 64, 128)`` weight box (64 gate rows,
    then the same 64 up rows)."""
    b = b_bufs.index(2 * slot + p).reshape([2 * b_bufs.shape[2], b_bufs.shape[3]])
    t = warpgroup_mma(a_bufs.index(slot), b.permute((1, 0)), t, use_acc=False, is_async=True)
    return warpgroup_mma_wait(num_outstanding=0, deps=(t,))

@gluon.jit
def _ws_dual_pass(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, gs_ptr, us_ptr, stride_wsk, is_gate,
                  mma_layout: gl.constexpr):  # fmt: skip
    """Both halves' block-scaled K loop at once on flat blocks ``base ..``: per K block each warpgroup
    issues half 0's wgmma, waits, promotes it into ``acc0``, then the same for half 1 into ``acc1``
    (one temporary: three live tiles, as the halves loop has), so the x box is read from L2 once for
    both halves. Overlap comes from the other warpgroup, whose wgmma runs while this one promotes.
    The sums are the halves loop's, in the same order: the same bits. Returns ``(acc0, acc1)``."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    WIDE: gl.constexpr = 2 * b_bufs.shape[2]
    acc0 = gl.zeros([BLOCK_M, WIDE], gl.float32, mma_layout)
    acc1 = gl.zeros([BLOCK_M, WIDE], gl.float32, mma_layout)
    t = gl.zeros([BLOCK_M, WIDE], gl.float32, mma_layout)
    scale = _wide_scale(sa_ptrs, gs_ptr, us_ptr, 0, stride_wsk, is_gate)
    for kb in range(num_k):
        f = base + kb
        slot = f % NUM_STAGES
        mbarrier.wait(ready.index(slot), (f // NUM_STAGES) & 1)
        t = _ws_dual_half(a_bufs, b_bufs, slot, 0, t)
        nxt = _wide_scale(sa_ptrs, gs_ptr, us_ptr, gl.minimum(kb + 1, num_k - 1), stride_wsk, is_gate)
        acc0 = _gluon_pin(acc0 + t * scale)  # promoted before the next issue reuses t's registers
        t = _ws_dual_half(a_bufs, b_bufs, slot, 1, t)
        _down_release(empty, f, NUM_STAGES)
        acc1 = _gluon_pin(acc1 + t * scale)
        scale = nxt
    return acc0, acc1

@gluon.jit
def _ws_quantize(h, h_scale, h_smem):
    """``h`` divided by its row scales (IEEE), clamped to +-448, as e4m3 into ``h_smem``."""
    hq = gl.minimum(gl.maximum(gl.div_rn(h, gl.expand_dims(h_scale, 1)), -448.0), 448.0)
    h_smem.store(hq.to(h_smem.dtype))

@gluon.jit
def _ws_math(a_bufs, b_bufs, ready, empty, stash, h_lo, h_hi, h_desc, xs_ptr, ws_ptr, hs_ptr, expert_ids_ptr,
             N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm, pid, step, total, num_m,
             num_pid_n, num_k, GROUP_M: gl.constexpr, DUAL: gl.constexpr):  # fmt: skip
    """Default partition (the math warps): per tile pass 0 (h columns ``off_n ..``), silu * up into
    the fp32 stash, pass 1 (``off_n + 64 ..``), then the group scale to ``hs`` and both halves' codes
    to ``hq`` by TMA."""
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    WIDE: gl.constexpr = 2 * b_bufs.shape[2]
    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, WIDE, gl.num_warps())
    is_gate = gl.expand_dims(gl.arange(0, WIDE, layout=gl.SliceLayout(0, mma_layout)) < HALF, 0)
    base = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, e = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * (2 * HALF)
        rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, mma_layout))
        sa_ptrs = xs_ptr + rows.to(gl.int64) * stride_xsm
        ws_e = ws_ptr + e.to(gl.int64) * stride_wse
        gs_ptr = ws_e + pid_n * stride_wsn  # the tile's 128 columns are one scale block: both passes'
        us_ptr = ws_e + ((N + off_n) // (2 * HALF)) * stride_wsn

        if DUAL:
            acc0, acc1 = _ws_dual_pass(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, gs_ptr, us_ptr,
                                       stride_wsk, is_gate, mma_layout)  # fmt: skip
            base += num_k
            h_lo_val = _halves_h(acc0)
            h_hi_val = _halves_h(acc1)
        else:
            acc = _ws_pass(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, gs_ptr, us_ptr, stride_wsk,
                           is_gate, mma_layout)  # fmt: skip
            stash.store(_halves_h(acc))  # each thread reads back only what it wrote: no barrier
            acc = _ws_pass(a_bufs, b_bufs, ready, empty, base + num_k, num_k, sa_ptrs, gs_ptr, us_ptr,
                           stride_wsk, is_gate, mma_layout)  # fmt: skip
            base += 2 * num_k
            h_hi_val = _halves_h(acc)
            h_lo_val = stash.load(h_hi_val.type.layout)
        h_layout: gl.constexpr = h_hi_val.type.layout
        h_scale = _h_scale(gl.maximum(gl.max(gl.abs(h_lo_val), axis=1), gl.max(gl.abs(h_hi_val), axis=1)))
        rows_h = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, h_layout))
        gl.store(hs_ptr + rows_h.to(gl.int64) * stride_hsm + pid_n, h_scale)
        tma.store_wait(pendings=0)  # the previous tile's codes have left h_lo / h_hi
        gl.thread_barrier()
        _ws_quantize(h_lo_val, h_scale, h_lo)
        _ws_quantize(h_hi_val, h_scale, h_hi)
        fence_async_shared()
        gl.thread_barrier()
        tma.async_copy_shared_to_global(h_desc, [off_m, off_n], h_lo)
        tma.async_copy_shared_to_global(h_desc, [off_m, off_n + HALF], h_hi)
    tma.store_wait(pendings=0)

@gluon.jit
def _gluon_gate_up_ws_kernel(
    x_desc, w_desc, h_desc,  # TMA: x in the alignment's order (max_padded, H), box (128, 128); w1 as
                             # (2L, I, H), box (2, 64, 128); hq (max_padded, I), box (128, 64)
    xs_ptr, ws_ptr, hs_ptr,  # fp32: xs (max_padded, H/128), w1s (L, 2I/128, H/128), hs (max_padded, I/128)
    expert_ids_ptr, num_padded_ptr,  # int32 (max_blocks,), (1,)
    N, K,  # N = I, K = H
    stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr, LOADER_WARPS: gl.constexpr, LOADER_REGS: gl.constexpr,
    DUAL: gl.constexpr,
):  # fmt: skip
    """Persistent: grid ``G`` <= the number of SMs. The launch's ``num_warps`` (8) are the math
    warps, ``LOADER_WARPS`` more load. H and I multiples of 128."""
    BLOCK_M: gl.constexpr = x_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = x_desc.block_type.shape[1]
    gl.static_assert(BLOCK_M == 128 and BLOCK_K == 128, "x box (128, 128): one scale group per K step")
    gl.static_assert(w_desc.block_type.shape[0] == 2 and w_desc.block_type.shape[1] == HALF,
                     "weight box (2, 64, 128): 64 gate rows, then the same 64 up rows")  # fmt: skip
    gl.static_assert(h_desc.block_type.shape[1] == HALF, "hq box (128, 64): one pass's columns")
    gl.static_assert(gl.num_warps() == 8, "8 math warps: two wgmma warpgroups")
    gl.static_assert(NUM_STAGES >= 2, "the ring needs a slot for the block in flight and one to fill")
    num_pid_n = gl.cdiv(N, 2 * HALF)
    num_m = gl.cdiv(gl.load(num_padded_ptr), BLOCK_M)
    total = num_m * num_pid_n
    num_k = gl.cdiv(K, BLOCK_K)
    pid = gl.program_id(0)
    step = gl.num_programs(0)
    a_bufs = gl.allocate_shared_memory(x_desc.dtype, [NUM_STAGES, BLOCK_M, BLOCK_K], x_desc.layout)
    SLOT_BOXES: gl.constexpr = 2 if DUAL else 1  # weight boxes per ring slot
    b_bufs = gl.allocate_shared_memory(w_desc.dtype, [SLOT_BOXES * NUM_STAGES, 2, HALF, BLOCK_K],
                                       w_desc.layout)  # fmt: skip
    stash = gl.allocate_shared_memory(gl.float32, [BLOCK_M, HALF // SLOT_BOXES],
                                      gl.SwizzledSharedLayout(1, 1, 1, order=[1, 0]))  # fmt: skip
    h_lo = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    h_hi = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(NUM_STAGES):
        mbarrier.init(ready.index(s), count=1)  # the loader's expect-tx arrival
        mbarrier.init(empty.index(s), count=32 * gl.num_warps())  # every math thread
    gl.warp_specialize([
        (_ws_math, (a_bufs, b_bufs, ready, empty, stash, h_lo, h_hi, h_desc, xs_ptr, ws_ptr, hs_ptr,
                    expert_ids_ptr, N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm, pid, step,
                    total, num_m, num_pid_n, num_k, GROUP_M, DUAL)),
        (_ws_loader, (x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
                      num_pid_n, num_k, GROUP_M, DUAL)),
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
    *,
    dual: bool = False,
) -> None:
    """Gate/up GEMM + silu * up + e4m3 group quantization of h, on at most one persistent program per
    SM (``tile.num_warps`` = 8 math warps and :data:`kernels.gluon_down.LOADER_WARPS` loader warps).

    xq: (al.max_padded, H) float8_e4m3fn contiguous, x's rows in the alignment's order
    (``kernels.quant.quantize_fp8_groups_sorted``); xs: (al.max_padded, H/128) float32; w1q: (L, 2I,
    H) float8_e4m3fn contiguous; w1s: (L, 2I/128, H/128) float32; hq: (al.max_padded, I)
    float8_e4m3fn contiguous; hs: (al.max_padded, I/128) float32. H and I multiples of 128,
    ``al.block_m`` 128, ``tile`` 128 x 128 with 8 warps (``kernels.tactics.gluon_misfit`` checks the
    sizes; :func:`kernels.gluon_gate_up.launch_gluon_gate_up` routes the sorted block_m 128 tiles here).
    """
    num_local, two_i, h = w1q.shape
    i = two_i // 2
    x_layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
    w_box, h_box = [2, HALF.value, SCALE_GROUP], [al.block_m, HALF.value]
    w_layout = gl.NVMMASharedLayout.get_default_for(w_box, gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for(h_box, gl.float8e4nv)
    x_desc = TensorDescriptor.from_tensor(xq, [al.block_m, SCALE_GROUP], x_layout)
    w_desc = TensorDescriptor.from_tensor(w1q.view(num_local * 2, i, h), w_box, w_layout)
    h_desc = TensorDescriptor.from_tensor(hq, h_box, h_layout)
    tiles = al.max_blocks * (i // SCALE_GROUP)
    programs = min(tiles, _sm_count(xq.device.index))
    _gluon_gate_up_ws_kernel[(programs,)](
        x_desc, w_desc, h_desc, xs, w1s, hs, al.expert_ids, al.num_padded,
        i, h, xs.stride(0), w1s.stride(0), w1s.stride(1), w1s.stride(2), hs.stride(0),
        NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, LOADER_WARPS=LOADER_WARPS, LOADER_REGS=LOADER_REGS,
        DUAL=dual, num_warps=tile.num_warps,
    )  # fmt: skip
