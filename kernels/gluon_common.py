"""Gluon building blocks shared by the fp8 block-scale MoE GEMMs (Hopper, sm_90).

Why Gluon: the Triton kernels scale every K block's dot result before adding it, so Triton waits for
each block-scaled fp8 wgmma right after issuing it (``warp_group_dot_wait {pendings = 0}``) and the
tensor cores idle while the promotion FMAs run (BENCHMARKS.md, run 31). These helpers keep one wgmma
in flight while the previous K block is promoted into the fp32 accumulator.

Two ptxas traps shape the code (found with ``ptxas -v``: ``(C75xx) ... wgmma.mma_async instructions
are serialized``):

- temporaries that swap roles at a loop back-edge: the phi copies write registers of an in-flight
  wgmma (C7515), so K loops are unrolled by two, even blocks in one temporary, odd in the other;
- LLVM sinking a promotion below the next issue into the same registers (C7514), so each promotion
  goes through a no-op ``wgmma.wait_group`` that reads the accumulator (:func:`_gluon_pin`).

Import only where :data:`kernels.gluon_support.HAS_GLUON` holds.
"""

from __future__ import annotations

from typing import Any

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

SCALE_GROUP = 128
"""Width of one scale group: 128 columns of x and h, 128 x 128 weight blocks; also BLOCK_K."""


@gluon.constexpr_function
def _wgmma_warps(block_m: int, num_warps: int) -> list[int]:
    """``warps_per_cta`` of the wgmma layout: warps go along M (16 rows per warp, 4-warp groups)
    until M is covered, the rest along N."""
    along_m = 4
    while along_m * 2 <= num_warps and block_m >= 16 * along_m * 2:
        along_m *= 2
    return [along_m, num_warps // along_m]

@gluon.constexpr_function
def _wgmma_instr_n(block_n: int, warps_n: int) -> int:
    """Largest wgmma instruction N (multiple of 8, at most 256) that tiles this warp column."""
    per_warp = block_n // warps_n
    n = min(256, per_warp)
    while per_warp % n != 0 or n % 8 != 0:
        n -= 8
    return n

@gluon.constexpr_function
def _mma_layout(block_m: int, block_n: int, num_warps: int, instr_k: int = 32) -> Any:
    """The wgmma accumulator layout of a ``block_m x block_n`` tile on ``num_warps`` warps; one wgmma
    takes ``instr_k`` of K: 32 for fp8 operands, 16 for 16-bit ones (32 bytes either way)."""
    warps = _wgmma_warps(block_m, num_warps)
    instr_n = _wgmma_instr_n(block_n, warps[1])
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=warps, instr_shape=[16, instr_n, instr_k])

@gluon.jit
def _ready_ring(NUM_STAGES: gl.constexpr):
    """One initialized mbarrier per ring slot: ``(NUM_STAGES, 1)`` int64 in shared memory."""
    ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(NUM_STAGES):
        mbarrier.init(ready.index(s), count=1)
    return ready

@gluon.jit
def _gluon_load_block(a_desc, b_desc, a_bufs, b_bufs, ready, kb, off_m, off_n, pred,
                      NUM_STAGES: gl.constexpr):  # fmt: skip
    """TMA K block ``kb`` of A (BLOCK_M x 128) and B (BLOCK_N x 128) into ring slot
    ``kb % NUM_STAGES``; the slot's mbarrier completes when both tiles have landed."""
    BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
    slot = kb % NUM_STAGES
    bar = ready.index(slot)
    mbarrier.expect(bar, a_desc.block_type.nbytes + b_desc.block_type.nbytes, pred=pred)
    tma.async_copy_global_to_shared(a_desc, [off_m, kb * BLOCK_K], bar, a_bufs.index(slot), pred=pred)
    tma.async_copy_global_to_shared(b_desc, [off_n, kb * BLOCK_K], bar, b_bufs.index(slot), pred=pred)

@gluon.jit
def _gluon_issue_mma(a_bufs, b_bufs, ready, kb, spare, NUM_STAGES: gl.constexpr):
    """Wait for K block ``kb``'s tiles and issue its wgmma asynchronously into the registers of
    ``spare`` (a temporary that is already promoted; ``use_acc=False`` ignores its values)."""
    slot = kb % NUM_STAGES
    mbarrier.wait(ready.index(slot), (kb // NUM_STAGES) & 1)
    return warpgroup_mma(a_bufs.index(slot), b_bufs.index(slot).permute((1, 0)), spare,
                         use_acc=False, is_async=True)  # fmt: skip

@gluon.jit
def _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb, stride_sa_k, stride_sb_k, sb_hi_off, is_hi,
                       SPLIT: gl.constexpr):  # fmt: skip
    """Combined scale of K block ``kb`` for the tile: ``a_scale[rows, kb] * b_scale[nb, kb]``, as
    ``[BLOCK_M, 1]``; with ``SPLIT`` (a 256-wide B tile over two 128-row scale blocks) as
    ``[BLOCK_M, BLOCK_N]``, taking the scale at ``sb_ptr + sb_hi_off`` on the columns of ``is_hi``
    (``[1, BLOCK_N]``). The choice is constant per register, so it folds away."""
    sa = gl.load(sa_ptrs + kb * stride_sa_k, mask=row_ok, other=0.0)
    if SPLIT:
        lo = gl.expand_dims(sa * gl.load(sb_ptr + kb * stride_sb_k), 1)
        scale = gl.where(is_hi, gl.expand_dims(sa * gl.load(sb_ptr + sb_hi_off + kb * stride_sb_k), 1), lo)
    else:
        scale = gl.expand_dims(sa * gl.load(sb_ptr + kb * stride_sb_k), 1)
    return scale

@gluon.jit
def _gluon_pin(acc):
    """``acc`` passed through a no-op ``wgmma.wait_group 1`` (one wgmma is outstanding wherever this
    is called). The wait is an inline asm with side effects that reads ``acc``, so LLVM must finish
    the promotion FMAs before it, hence before the next wgmma issue. Without it LLVM sinks the
    promotion of block k-1 below the issue of block k+1, whose wgmma overwrites block k-1's
    temporary: the temporary is copied and ptxas serializes the wgmmas (C7514)."""
    return warpgroup_mma_wait(num_outstanding=1, deps=(acc,))

@gluon.jit
def _gluon_mainloop(a_desc, b_desc, off_m, b_row, num_k, sa_ptrs, row_ok, sb_ptr, stride_sa_k,
                    stride_sb_k, sb_hi_off, mma_layout: gl.constexpr, NUM_STAGES: gl.constexpr):  # fmt: skip
    """The block-scaled K loop of one (BLOCK_M, BLOCK_N) tile, the GEMM prototype's
    (``benchmarks/gluon_fp8_gemm.py``; the MoE down's math warps, ``gluon_down._down_math``, run
    the same schedule on a warp-specialized ring): A rows ``off_m ..`` and B rows ``b_row ..``
    through a NUM_STAGES TMA ring, one wgmma in flight while the previous K block is promoted with
    ``a_scale[rows, kb] * b_scale[kb]`` (``sa_ptrs``/``row_ok`` per row, ``sb_ptr`` per tile; a
    256-wide tile spans two 128-row scale blocks, the second at ``sb_ptr + sb_hi_off``). Returns
    the fp32 accumulator in ``mma_layout``."""
    BLOCK_M: gl.constexpr = a_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = b_desc.block_type.shape[0]
    SPLIT: gl.constexpr = BLOCK_N > 128  # the b_scale block is 128 rows (SCALE_GROUP)
    gl.static_assert(BLOCK_N <= 256, "at most two b_scale blocks per tile")
    is_hi = gl.expand_dims(gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma_layout)) >= 128, 0)
    a_bufs = gl.allocate_shared_memory(a_desc.dtype, [NUM_STAGES, BLOCK_M, BLOCK_K], a_desc.layout)
    b_bufs = gl.allocate_shared_memory(b_desc.dtype, [NUM_STAGES, BLOCK_N, BLOCK_K], b_desc.layout)
    ready = _ready_ring(NUM_STAGES)

    # Prologue: blocks 0 .. NUM_STAGES-1 fill the ring. A slot is refilled (with block b + NUM_STAGES)
    # only after the wait that retires block b's wgmma.
    for i in gl.static_range(NUM_STAGES):
        _gluon_load_block(a_desc, b_desc, a_bufs, b_bufs, ready, i, off_m, b_row, i < num_k, NUM_STAGES)

    # Two temporaries with fixed register sets: T0 takes the even K blocks, T1 the odd ones. The loop
    # is unrolled by two so that neither ever changes role; a one-step loop swaps them at the
    # back-edge, the phi copies write the registers of an in-flight wgmma and ptxas then serializes
    # every wgmma (C7515).
    acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    spare1 = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)  # T1 registers, free
    t0_init = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)  # T0 registers
    t0 = _gluon_issue_mma(a_bufs, b_bufs, ready, 0, t0_init, NUM_STAGES)  # block 0 in flight in T0
    scale0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, 0, stride_sa_k, stride_sb_k,
                                sb_hi_off, is_hi, SPLIT)  # fmt: skip

    # Iteration j: issue block 2j+1 into T1 and promote block 2j from T0, then issue block 2j+2
    # into T0 and promote block 2j+1 from T1. Each promotion follows a wait that leaves exactly
    # one wgmma (the one just issued) outstanding.
    for j in range(0, (num_k - 1) // 2):
        kb = 2 * j + 1
        t1 = _gluon_issue_mma(a_bufs, b_bufs, ready, kb, spare1, NUM_STAGES)
        scale1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb, stride_sa_k, stride_sb_k,
                                    sb_hi_off, is_hi, SPLIT)  # fmt: skip
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))  # block kb-1 complete
        nxt = kb + NUM_STAGES - 1  # refill block kb-1's slot
        _gluon_load_block(a_desc, b_desc, a_bufs, b_bufs, ready, nxt, off_m, b_row, nxt < num_k,
                          NUM_STAGES)  # fmt: skip
        acc = _gluon_pin(acc + done0 * scale0)

        t0 = _gluon_issue_mma(a_bufs, b_bufs, ready, kb + 1, done0, NUM_STAGES)
        scale0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb + 1, stride_sa_k, stride_sb_k,
                                    sb_hi_off, is_hi, SPLIT)  # fmt: skip
        spare1 = warpgroup_mma_wait(num_outstanding=1, deps=(t1,))  # block kb complete
        _gluon_load_block(a_desc, b_desc, a_bufs, b_bufs, ready, nxt + 1, off_m, b_row, nxt + 1 < num_k,
                          NUM_STAGES)  # fmt: skip
        acc = _gluon_pin(acc + spare1 * scale1)

    # Tail: block num_k-2 or num_k-1 is in flight in T0. With num_k even, block num_k-1 is not
    # issued yet: it goes into T1 while block num_k-2 is promoted.
    if num_k % 2 == 0:
        t1 = _gluon_issue_mma(a_bufs, b_bufs, ready, num_k - 1, spare1, NUM_STAGES)
        scale1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, num_k - 1, stride_sa_k, stride_sb_k,
                                    sb_hi_off, is_hi, SPLIT)  # fmt: skip
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))
        acc = acc + done0 * scale0
        done1 = warpgroup_mma_wait(num_outstanding=0, deps=(t1,))
        acc = acc + done1 * scale1
    else:
        done0 = warpgroup_mma_wait(num_outstanding=0, deps=(t0,))
        acc = acc + done0 * scale0

    for s in gl.static_range(NUM_STAGES):
        mbarrier.invalidate(ready.index(s))

    return acc



@gluon.jit
def _moe_tile(pid, max_blocks, num_pid_n, GROUP_M: gl.constexpr):
    """``(row block, column block)`` of program ``pid`` in main's grouped order (``GROUP_M`` row
    blocks share their weight columns in L2), as ``kernels.fused_moe._grouped_pid``."""
    width = GROUP_M * num_pid_n
    first_m = (pid // width) * GROUP_M
    size_m = gl.minimum(max_blocks - first_m, GROUP_M)
    return first_m + (pid % width) % size_m, (pid % width) // size_m
