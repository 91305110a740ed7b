"""MoE down GEMM for Hopper in Gluon, fp8 block-scale or 16-bit: the ``gluon`` tiles of ``down``.

fp8: the inputs of ``kernels.fused_moe._down_kernel`` with ``BLOCK_SCALE`` and TMA, and the same
values of y, in the alignment's row order instead of one row per slot::

    hq  (max_padded, I) float8_e4m3fn   hs  (max_padded, I/128) float32   per row, per 128-wide group
    w2q (L, H, I) float8_e4m3fn         w2s (L, H/128, I/128) float32     per 128x128 block
    topk_weights (T, k) float32 (indexed by flat slot), alignment as kernels.align.moe_align
    y   (max_padded, H) bf16/fp16 (x's dtype): y[r] = w[s] * (h[r] @ W2[e]^T), s = sorted_ids[r]

The routing weight is applied in fp32 before the one rounding to y's dtype, as main does; padding
rows get zeros (w = 0). The combine finds slot s's row at ``slot_rows[s]``
(``kernels.fused_moe.launch_combine``). Needs I a multiple of 128, H a multiple of block_n, block_m
64 or 128.

16-bit (bf16/fp16 h and w2, no scales): the same schedule and epilogue with block_k 64 (a 128-byte
swizzle row); the K loop accumulates in place (:func:`_ws_k_loop_plain`), one wgmma in flight. The
values of Triton's ``_down_kernel`` up to fp32 summation order.

Schedule: persistent and warp-specialized (``gl.warp_specialize``). ``G`` programs (at most one per
SM) walk the ``cdiv(num_padded, BLOCK_M) * H / BLOCK_N`` tiles in main's grouped order, program p
taking tiles p, p + G, ... Four loader warps issue the TMA ring: a flat K-block counter ``f`` over
the program's tiles, per block a wait on ``empty[f % S]``, an ``expect`` on ``ready[f % S]`` and the
h and w2 copies, so loading runs up to ``S`` blocks ahead of the wgmmas, across tile boundaries (the
next tile's first blocks land during this tile's epilogue). The math warps (the tile's warps) wait
on ``ready`` only: block k's wgmma is issued asynchronously, ``wgmma.wait_group 1`` retires block
k-1's, every math thread arrives on its slot's ``empty`` (a per-thread ``cp.async.mbarrier.arrive.
noinc``: Triton 3.6 lowers ``mbarrier.arrive`` to a thread-0 arrive behind CTA barriers), and block
k-1 is promoted (``acc += t * hs[rows, kb] * w2s[e, nb, kb]``) while block k runs, with the two
temporaries and pinned promotions of :func:`kernels.gluon_common._gluon_mainloop`. block_n 64 or 128
keeps one w2 scale per tile and K block; block_n 256 (at block_m 64 on 8 warps: one m64n128 wgmma per
warpgroup) takes the next scale row on its second 128 columns. The epilogue writes the tile into
shared memory and issues one TMA store, which runs on during the next tile's K loop (with y in slot
order the tile's rows were scattered by pointer stores after a layout change: TMA cannot scatter on
Hopper).

Why this schedule (BENCHMARKS.md, session 10): with the math warps issuing the refills, Triton's
lowering put 8 CTA barriers in every two K blocks of the loop (2 here) and each tile paid the ring's
fill; on the H200 the warp-specialized persistent kernel gives the old one's bits and is 1.07-1.15x
faster at deepseek-r1 DEP8 and qwen3-235b DEP2 (bm128 bn128), level at mixtral EP1 (run 7).
"""

from __future__ import annotations

import functools

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from kernels.align import Alignment
from kernels.gluon_common import (
    SCALE_GROUP,
    _gluon_block_scale,
    _gluon_pin,
    _mma_layout,
    _moe_tile,
)
from kernels.tactics import GemmTile

LOADER_WARPS = 4
"""Warps of the loader partition (a warpgroup: ``setmaxnreg`` works per warpgroup)."""
LOADER_REGS = 24
"""Registers per loader thread; the math warps get the rest (240 with 8 math warps)."""


@gluon.constexpr_function
def _slot_rows(shape: list[int]) -> int:
    """Weight rows of one ring slot of shape ``(stages, ..., 128)``: ``BLOCK_N`` for the down's
    ``(BLOCK_N, 128)`` slots, 128 for the gate/up's ``(2, 64, 128)`` ones."""
    rows = 1
    for d in shape[1:-1]:
        rows *= d
    return rows

@gluon.jit
def _down_tile(tile, num_m, num_pid_n, expert_ids_ptr, N, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
               GROUP_M: gl.constexpr):  # fmt: skip
    """``(off_m, off_n, expert, first w2 row in the (L*H, I) view)`` of ``tile`` in main's grouped
    order over ``num_m`` row blocks; L*H < 2^31."""
    pid_m, pid_n = _moe_tile(tile, num_m, num_pid_n, GROUP_M)
    e = gl.load(expert_ids_ptr + pid_m)
    off_n = pid_n * BLOCK_N
    return pid_m * BLOCK_M, off_n, e, e * N + off_n

@gluon.jit
def _ws_schedule(num_padded_ptr, N, K, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr):
    """A persistent warp-specialized GEMM's walk: ``(num_m, num_pid_n, total, num_k, pid, step)``,
    the row blocks in use (from ``num_padded``), the column tiles of N, all tiles, the K blocks of K,
    and this program's first tile and stride (it takes tiles ``pid, pid + step, ...``)."""
    num_m = gl.cdiv(gl.load(num_padded_ptr), BLOCK_M)
    num_pid_n = gl.cdiv(N, BLOCK_N)
    return num_m, num_pid_n, num_m * num_pid_n, gl.cdiv(K, BLOCK_K), gl.program_id(0), gl.num_programs(0)

@gluon.jit
def _ws_barriers(NUM_STAGES: gl.constexpr, READY_ARRIVALS: gl.constexpr = 1,
                 MATH_PARTITIONS: gl.constexpr = 1):  # fmt: skip
    """The warp-specialized ring's mbarriers, ``(NUM_STAGES, 1)`` int64 each: ``ready[s]`` completes
    on ``READY_ARRIVALS`` arrivals (the loader's expect-tx arrival; a gathering loader adds one per
    thread when its ``cp.async`` copies land) and its TMA copies' bytes, ``empty[s]`` on an arrival of
    every math thread (the launch's warps, times ``MATH_PARTITIONS`` where that many partitions of
    them read each slot)."""
    ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(NUM_STAGES):
        mbarrier.init(ready.index(s), count=READY_ARRIVALS)
        mbarrier.init(empty.index(s), count=MATH_PARTITIONS * 32 * gl.num_warps())
    return ready, empty

@gluon.jit
def _ws_fill(a_desc, a_coord, b_desc, b_coord, a_bufs, b_bufs, ready, empty, f):
    """The loader's step for flat K block ``f``: wait until every math thread has released slot
    ``f % S`` (``empty``; a fresh barrier passes parity 1, so the first ``S`` fills go straight
    through), then TMA ``a_desc``'s box at ``a_coord`` and ``b_desc``'s at ``b_coord`` into it,
    completing ``ready[f % S]``."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    slot = f % NUM_STAGES
    mbarrier.wait(empty.index(slot), ((f // NUM_STAGES) & 1) ^ 1)
    bar = ready.index(slot)
    mbarrier.expect(bar, a_desc.block_type.nbytes + b_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(a_desc, a_coord, bar, a_bufs.index(slot))
    tma.async_copy_global_to_shared(b_desc, b_coord, bar, b_bufs.index(slot))

@gluon.jit
def _down_loader(a_desc, b_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, N, pid, step, total, num_m,
                 num_pid_n, num_k, GROUP_M: gl.constexpr):  # fmt: skip
    """Loader partition: every K block of every tile of this program, in order, into the ring
    (:func:`_ws_fill`)."""
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_K: gl.constexpr = a_bufs.shape[2]
    BLOCK_N: gl.constexpr = b_bufs.shape[1]
    f = 0
    for tile in range(pid, total, step):
        off_m, _, _, b_row = _down_tile(tile, num_m, num_pid_n, expert_ids_ptr, N, BLOCK_M, BLOCK_N, GROUP_M)
        for kb in range(num_k):
            k0 = kb * BLOCK_K
            _ws_fill(a_desc, [off_m, k0], b_desc, [b_row, k0], a_bufs, b_bufs, ready, empty, f)
            f += 1

@gluon.jit
def _ws_issue(a_bufs, b_bufs, ready, f, spare, NUM_STAGES: gl.constexpr, USE_ACC: gl.constexpr,
              FENCE: gl.constexpr = False):  # fmt: skip
    """Wait for flat K block ``f``'s slot and issue its wgmma asynchronously into ``spare``'s registers:
    with ``USE_ACC`` added to them (the 16-bit loop's accumulator), else overwriting them (a block-scaled
    loop's temporary, already promoted). A 3-D weight slot (the
    gate/up's ``(2, 64, 128)`` box: 64 gate rows, then the same 64 up rows) is read as its 128 rows:
    the same bytes, since the 128-byte swizzle follows the address. TMA writes and wgmma reads are
    both async-proxy accesses, ordered by the slot's transaction count: no fence. ``FENCE``: the slot's
    A operand was written by ``cp.async`` (the generic proxy), so a proxy fence follows the wait."""
    slot = f % NUM_STAGES
    mbarrier.wait(ready.index(slot), (f // NUM_STAGES) & 1)
    if FENCE:
        fence_async_shared()
    b = b_bufs.index(slot)
    if len(b.shape) == 3:
        b = b.reshape([b.shape[0] * b.shape[1], b.shape[2]])
    return warpgroup_mma(a_bufs.index(slot), b.permute((1, 0)), spare, use_acc=USE_ACC, is_async=True)

@gluon.jit
def _down_release(empty, f, NUM_STAGES: gl.constexpr):
    """This thread's warpgroup has retired flat block ``f``'s wgmma: a per-thread arrive on its slot's
    ``empty`` barrier (``cp.async.mbarrier.arrive.noinc`` with no copies in flight fires at once)."""
    async_copy.mbarrier_arrive(empty.index(f % NUM_STAGES), increment_count=False)

@gluon.jit
def _ws_k_loop(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, sb_ptr, stride_sb_k, sb_hi_off,
               is_hi, SPLIT: gl.constexpr, mma_layout: gl.constexpr,
               FENCE: gl.constexpr = False):  # fmt: skip
    """The math warps' block-scaled K loop over flat ring blocks ``base .. base + num_k - 1``, shared by
    the warp-specialized down (per tile) and gate/up (``kernels.gluon_gate_up_ws``, per pass): block
    k's wgmma is issued asynchronously, ``wgmma.wait_group 1`` retires block k-1's, every math thread
    releases its slot (``empty``), and block k-1 is promoted with :func:`_gluon_block_scale`'s scale
    (``a_scale[rows, kb] * b_scale[kb]``, the ``sb_ptr + sb_hi_off`` one on the ``is_hi`` columns
    with ``SPLIT``) while block k runs. Two temporaries with fixed registers, T0 the even K blocks,
    T1 the odd ones, the loop unrolled by two (see :func:`kernels.gluon_common._gluon_mainloop`:
    role swaps at the back-edge serialize the wgmmas). Returns the fp32 accumulator in
    ``mma_layout``. ``FENCE`` as in :func:`_ws_issue`."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_N: gl.constexpr = _slot_rows(b_bufs.shape)
    acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    spare1 = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    t0 = _ws_issue(a_bufs, b_bufs, ready, base, gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout),
                   NUM_STAGES, False, FENCE)  # fmt: skip
    scale0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, 0, 1, stride_sb_k, sb_hi_off, is_hi, SPLIT)
    for j in range(0, (num_k - 1) // 2):
        kb = 2 * j + 1
        t1 = _ws_issue(a_bufs, b_bufs, ready, base + kb, spare1, NUM_STAGES, False, FENCE)
        scale1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb, 1, stride_sb_k, sb_hi_off, is_hi, SPLIT)
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))  # block kb-1 complete
        _down_release(empty, base + kb - 1, NUM_STAGES)
        acc = _gluon_pin(acc + done0 * scale0)

        t0 = _ws_issue(a_bufs, b_bufs, ready, base + kb + 1, done0, NUM_STAGES, False, FENCE)
        scale0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb + 1, 1, stride_sb_k, sb_hi_off, is_hi, SPLIT)
        spare1 = warpgroup_mma_wait(num_outstanding=1, deps=(t1,))  # block kb complete
        _down_release(empty, base + kb, NUM_STAGES)
        acc = _gluon_pin(acc + spare1 * scale1)
    if num_k % 2 == 0:
        t1 = _ws_issue(a_bufs, b_bufs, ready, base + num_k - 1, spare1, NUM_STAGES, False, FENCE)
        scale1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, num_k - 1, 1, stride_sb_k, sb_hi_off, is_hi,
                                    SPLIT)  # fmt: skip
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
def _ws_k_loop_plain(a_bufs, b_bufs, ready, empty, base, num_k, mma_layout: gl.constexpr,
                     FENCE: gl.constexpr = False):  # fmt: skip
    """The math warps' 16-bit K loop over flat ring blocks ``base .. base + num_k - 1``: no scales,
    so every wgmma accumulates in place (``use_acc``) and one stays in flight: block k is issued,
    ``wgmma.wait_group 1`` retires block k-1's and every math thread releases its slot (``empty``).
    Returns the fp32 accumulator in ``mma_layout``. ``FENCE`` as in :func:`_ws_issue`."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_N: gl.constexpr = _slot_rows(b_bufs.shape)
    acc = _ws_issue(a_bufs, b_bufs, ready, base, gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout),
                    NUM_STAGES, False, FENCE)  # fmt: skip
    acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc,))  # block 0 stays in flight
    for kb in range(1, num_k):
        acc = _ws_issue(a_bufs, b_bufs, ready, base + kb, acc, NUM_STAGES, True, FENCE)
        acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc,))  # block kb-1 complete
        _down_release(empty, base + kb - 1, NUM_STAGES)
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    _down_release(empty, base + num_k - 1, NUM_STAGES)
    return acc

@gluon.jit
def _down_math(a_bufs, b_bufs, ready, empty, y_desc, y_smem, hs_ptr, ws_ptr, sorted_ids_ptr, expert_ids_ptr,
               topk_weights_ptr, N, num_slots, max_blocks, stride_hsm, stride_wse, stride_wsn, pid, step,
               total, num_m, num_pid_n, num_k, GROUP_M: gl.constexpr, BLOCK_SCALE: gl.constexpr):  # fmt: skip
    """Default partition (the math warps): per tile the K loop on the loader's ring (flat blocks
    ``base ..``; :func:`_ws_k_loop` with ``BLOCK_SCALE``, else :func:`_ws_k_loop_plain`), then the
    epilogue (:func:`_down_epilogue`)."""
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_N: gl.constexpr = b_bufs.shape[1]
    SPLIT: gl.constexpr = BLOCK_N > 128  # the w2 scale block is 128 rows (SCALE_GROUP)
    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, BLOCK_N, gl.num_warps(), 32 if BLOCK_SCALE else 16)
    row_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)
    is_hi = gl.expand_dims(gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma_layout)) >= 128, 0)
    base = 0
    for tile in range(pid, total, step):
        off_m, off_n, e, _ = _down_tile(tile, num_m, num_pid_n, expert_ids_ptr, N, BLOCK_M, BLOCK_N, GROUP_M)
        rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
        # The epilogue's routing weights, loaded now: two dependent global loads (slot, then its
        # weight; 0 on padding rows) would otherwise stall the math warps after the K loop.
        slot = gl.load(sorted_ids_ptr + rows)
        w = gl.load(topk_weights_ptr + slot, mask=slot < num_slots, other=0.0)
        if BLOCK_SCALE:
            # Scales: hs rows are the tile's padded rows (always < max_padded: the mask is all true);
            # one w2 scale per K block (two for BLOCK_N 256: its second 128 columns take the next row).
            sa_ptrs = hs_ptr + rows.to(gl.int64) * stride_hsm
            row_ok = rows < max_blocks * BLOCK_M
            sb_ptr = ws_ptr + e.to(gl.int64) * stride_wse + (off_n // 128) * stride_wsn
            acc = _ws_k_loop(a_bufs, b_bufs, ready, empty, base, num_k, sa_ptrs, row_ok, sb_ptr, 1,
                             stride_wsn, is_hi, SPLIT, mma_layout)  # fmt: skip
        else:
            acc = _ws_k_loop_plain(a_bufs, b_bufs, ready, empty, base, num_k, mma_layout)
        _down_epilogue(acc, w, y_desc, y_smem, off_m, off_n)
        base += num_k
    tma.store_wait(pendings=0)  # the last tile's rows have left y_smem

@gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
def _gluon_down_kernel(
    a_desc, b_desc,  # TMA: h (max_padded, I), block (BM, BK); w2 as (L*H, I), block (BN, BK); one dtype
    y_desc,  # TMA: y (max_padded, H) bf16/fp16 output in the alignment's row order, block (BM, BN)
    hs_ptr, ws_ptr,  # BLOCK_SCALE: fp32, unit stride in K: hs (max_padded, I/128); w2s (L, H/128, I/128)
    sorted_ids_ptr, expert_ids_ptr, num_padded_ptr, topk_weights_ptr,  # int32 x3, fp32 (T*k,)
    N, K, num_slots, max_blocks,  # N = H, K = I
    stride_hsm, stride_wse, stride_wsn,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
    LOADER_WARPS: gl.constexpr, LOADER_REGS: gl.constexpr, BLOCK_SCALE: gl.constexpr,
):  # fmt: skip
    """Persistent: grid ``G`` <= the number of SMs (at most the tile bound ``max_blocks * H /
    BLOCK_N``). BLOCK_M comes from ``a_desc``'s block, BLOCK_N from ``b_desc``'s, BLOCK_K from
    ``a_desc``'s (128 with ``BLOCK_SCALE``, fp8; 64 for 16-bit h and w2: one 128-byte swizzle row);
    the launch's ``num_warps`` are the math warps, ``LOADER_WARPS`` more load. I must be a multiple
    of BLOCK_K (no masked K tail), H a multiple of BLOCK_N."""
    BLOCK_M: gl.constexpr = a_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = b_desc.block_type.shape[0]
    if BLOCK_SCALE:
        gl.static_assert(BLOCK_K == 128, "one scale group per K step")
        gl.static_assert(128 % BLOCK_N == 0 or BLOCK_N == 256, "BLOCK_N 64, 128, or 256 (two scale blocks)")
    gl.static_assert(NUM_STAGES >= 2, "the ring needs a slot for the block in flight and one to fill")
    num_m, num_pid_n, total, num_k, pid, step = _ws_schedule(num_padded_ptr, N, K, BLOCK_M, BLOCK_N, BLOCK_K)
    a_bufs = gl.allocate_shared_memory(a_desc.dtype, [NUM_STAGES, BLOCK_M, BLOCK_K], a_desc.layout)
    b_bufs = gl.allocate_shared_memory(b_desc.dtype, [NUM_STAGES, BLOCK_N, BLOCK_K], b_desc.layout)
    y_smem = gl.allocate_shared_memory(y_desc.dtype, y_desc.block_type.shape, y_desc.layout)
    ready, empty = _ws_barriers(NUM_STAGES)
    gl.warp_specialize([
        (_down_math, (a_bufs, b_bufs, ready, empty, y_desc, y_smem, hs_ptr, ws_ptr, sorted_ids_ptr,
                      expert_ids_ptr, topk_weights_ptr, N, num_slots, max_blocks, stride_hsm, stride_wse,
                      stride_wsn, pid, step, total, num_m, num_pid_n, num_k, GROUP_M, BLOCK_SCALE)),
        (_down_loader, (a_desc, b_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, N, pid, step, total,
                        num_m, num_pid_n, num_k, GROUP_M)),
    ], [LOADER_WARPS], [LOADER_REGS])  # fmt: skip

@gluon.jit
def _down_epilogue(acc, w, y_desc, y_smem, off_m, off_n):
    """Main's epilogue for one (BLOCK_M, BLOCK_N) fp32 tile ``acc`` (wgmma layout): the routing weight
    ``w`` (per row, fp32) applied, one rounding to y's dtype, then the tile by one TMA store into y's
    rows ``off_m ..`` (the alignment's row order; padding rows get zeros, w = 0). The store runs on
    while the next tile's K loop does: ``y_smem`` is refilled only after the previous store has read
    it."""
    out = (acc * gl.expand_dims(w, 1)).to(y_smem.dtype)
    tma.store_wait(pendings=0)
    gl.thread_barrier()  # every math thread: the previous tile's store has left y_smem
    y_smem.store(out)
    fence_async_shared()
    gl.thread_barrier()  # all of the tile is in y_smem before one thread issues its store
    tma.async_copy_shared_to_global(y_desc, [off_m, off_n], y_smem)


@functools.cache
def _sm_count(device_index: int) -> int:
    """Streaming multiprocessors of a CUDA device (read once per device, not on every launch)."""
    return torch.cuda.get_device_properties(device_index).multi_processor_count


_GL_DTYPES = {torch.float8_e4m3fn: gl.float8e4nv, torch.bfloat16: gl.bfloat16, torch.float16: gl.float16}


def launch_gluon_down(
    h: torch.Tensor,
    hs: torch.Tensor | None,
    w2: torch.Tensor,
    w2s: torch.Tensor | None,
    y: torch.Tensor,
    topk_weights: torch.Tensor,
    al: Alignment,
    tile: GemmTile,
) -> None:
    """Down GEMM + routing weight into ``y`` in the alignment's row order, on at most one persistent
    program per SM (``tile.num_warps`` math warps and :data:`LOADER_WARPS` loader warps each).

    fp8 block scale (``hs`` and ``w2s`` given): h: (al.max_padded, I) float8_e4m3fn contiguous; hs:
    (al.max_padded, I/128) float32 contiguous; w2: (L, H, I) float8_e4m3fn contiguous; w2s: (L, H/128,
    I/128) float32 contiguous; I a multiple of 128, H of ``tile.block_n`` (64, 128 or 256).
    16-bit (``hs`` and ``w2s`` None): h (al.max_padded, I) and w2 (L, H, I) bf16 or fp16 contiguous,
    y's dtype; I a multiple of ``tile.block_k`` (64), H of ``tile.block_n``.
    y: (al.max_padded, H) bf16/fp16 contiguous: row r is padded row r's (the slot
    ``al.sorted_ids[r]``'s) weighted output, zeros on padding rows, rows from ``num_padded`` on
    untouched (the combine reads slot s's row at ``al.slot_rows[s]``);
    topk_weights: (T, k) float32 contiguous. ``al.block_m`` 64 or 128. The callers
    (``kernels.quant.fused_moe_fp8``, ``kernels.fused_moe.fused_moe``) check all of this with
    ``kernels.tactics.gluon_misfit``.
    """
    block_scale = hs is not None
    if block_scale != (w2s is not None):
        raise ValueError("launch_gluon_down: hs and w2s come together (fp8) or not at all (16-bit)")
    num_local, n, kdim = w2.shape
    in_dtype = _GL_DTYPES[h.dtype]
    block_k = SCALE_GROUP if block_scale else tile.block_k
    a_layout = gl.NVMMASharedLayout.get_default_for([al.block_m, block_k], in_dtype)
    b_layout = gl.NVMMASharedLayout.get_default_for([tile.block_n, block_k], in_dtype)
    a_desc = TensorDescriptor.from_tensor(h, [al.block_m, block_k], a_layout)
    b_desc = TensorDescriptor.from_tensor(w2.view(num_local * n, kdim), [tile.block_n, block_k], b_layout)
    y_layout = gl.NVMMASharedLayout.get_default_for([al.block_m, tile.block_n], _GL_DTYPES[y.dtype])
    y_desc = TensorDescriptor.from_tensor(y, [al.block_m, tile.block_n], y_layout)
    tiles = al.max_blocks * (n // tile.block_n)
    programs = min(tiles, _sm_count(h.device.index))
    scales = (hs, w2s) if block_scale else (h, h)  # 16-bit: never read
    _gluon_down_kernel[(programs,)](
        a_desc, b_desc, y_desc, scales[0], scales[1],
        al.sorted_ids, al.expert_ids, al.num_padded, topk_weights,
        n, kdim, al.num_slots, al.max_blocks,
        hs.stride(0) if block_scale else 0, w2s.stride(0) if block_scale else 0,
        w2s.stride(1) if block_scale else 0,
        NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, LOADER_WARPS=LOADER_WARPS, LOADER_REGS=LOADER_REGS,
        BLOCK_SCALE=block_scale, num_warps=tile.num_warps,
    )  # fmt: skip
