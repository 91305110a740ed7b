"""fp8 block-scale MoE gate/up GEMM for Hopper in Gluon: the ``gluon`` tiles of ``gate_up``.

Same inputs and outputs as ``kernels.fused_moe._gate_up_kernel`` with ``BLOCK_SCALE`` (so either
kernel's h feeds either down kernel), for one rank's L local experts::

    xq  (T, H) float8_e4m3fn      xs  (T, H/128) float32              per token, per 128-wide group
    w1q (L, 2I, H) float8_e4m3fn  w1s (L, 2I/128, H/128) float32      per 128x128 block; rows [0, I)
                                                                      gate, rows [I, 2I) up
    sorted_ids, expert_ids, num_padded: kernels.align.moe_align (padding rows hold num_slots = T*k)
    hq  (max_padded, I) float8_e4m3fn   hs (max_padded, I/128) float32   (outputs)

Row r of block b (expert e = expert_ids[b]) reads x[sorted_ids[r] // k] (token 0 for padding rows),
``gate = sum_kb (x . w1[e, n]) * xs[tok, kb] * w1s[e, n // 128, kb]``, up the same with rows I + n,
``h = silu(gate) * up``, quantized per row per 128 columns with main's IEEE divisions. Needs H and I
multiples of 128 and block_m 64 or 128.

Data movement per K block: the gate and up weight tiles (128 x 128 each) by TMA into a NUM_STAGES
ring with one mbarrier per slot; the BLOCK_M gathered x rows by 16-byte ``cp.async`` per thread (Hopper's
TMA cannot gather rows), one commit group per K block, then a proxy fence and a CTA barrier before
the wgmmas read them.

Two schedules, picked by block_m (both wgmma-asynchronous, promotion in fp32 registers):

- block_m 64, ``paired``: gate(k) and up(k) are issued together, ``wgmma.wait_group 2`` retires
  block k-1's pair, which is promoted while block k's runs. Six live 64x128 fp32 tiles: 240 registers
  on 8 warps, no spills (4 warps spill).
- block_m 128, ``stagger``: gate(k) issued, up(k-1) retired and promoted, up(k) issued, gate(k)
  retired and promoted: four live tiles. ptxas still serializes its wgmmas (C7514, not understood),
  but it ran 4.9x main's spilling Triton bm128 tile (BENCHMARKS.md, run 36).

H100, deepseek-r1 DEP8, 4000 tokens (run 36): paired bm64 / 8 warps / 4 stages 729 TFLOP/s, 1.32x
main's fastest Triton gate/up tile.
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
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from kernels.align import Alignment
from kernels.gluon_common import (
    SCALE_GROUP,
    _gluon_pin,
    _mma_layout,
    _moe_mma,
    _moe_tile,
    _pin2,
    _promote,
    _ready_ring,
)
from kernels.tactics import GemmTile

SCHEMES = {64: "paired", 128: "stagger"}
"""The schedule each block_m runs (the only two the kernel is written for)."""


@gluon.jit
def _moe_load_block(x_ptr, a_rows, offs_k, w_desc, a_bufs, bg_bufs, bu_bufs, ready, kb, num_k,
                    row_g, row_u, NUM_STAGES: gl.constexpr):  # fmt: skip
    """Fill ring slot ``kb % NUM_STAGES`` with K block ``kb``: the gathered x rows (every thread,
    cp.async, one commit group) and the gate and up weight tiles (TMA, completing the slot's
    mbarrier). Past the last block the copies are predicated off (the cp.async group is still
    committed, empty, so that ``wait_group`` counts stay the same every step)."""
    BLOCK_K: gl.constexpr = w_desc.block_type.shape[1]
    slot = kb % NUM_STAGES
    pred = kb < num_k
    ptrs = a_rows + gl.expand_dims(kb * BLOCK_K + offs_k, 0)
    async_copy.async_copy_global_to_shared(a_bufs.index(slot), ptrs, mask=pred)
    async_copy.commit_group()
    bar = ready.index(slot)
    mbarrier.expect(bar, 2 * w_desc.block_type.nbytes, pred=pred)
    tma.async_copy_global_to_shared(w_desc, [row_g, kb * BLOCK_K], bar, bg_bufs.index(slot), pred=pred)
    tma.async_copy_global_to_shared(w_desc, [row_u, kb * BLOCK_K], bar, bu_bufs.index(slot), pred=pred)

@gluon.jit
def _moe_wait_block(a_bufs, ready, kb, NUM_STAGES: gl.constexpr):
    """Wait until K block ``kb`` is in shared memory: this thread's cp.async group of the block
    (``NUM_STAGES - 2`` later groups may still be pending, see ``_moe_load_block``'s callers),
    a generic-to-async proxy fence for the wgmma, a CTA barrier for the other threads' rows,
    and the slot's TMA mbarrier for the weight tiles."""
    slot = kb % NUM_STAGES
    async_copy.wait_group(NUM_STAGES - 2)
    fence_async_shared()
    gl.thread_barrier()
    mbarrier.wait(ready.index(slot), (kb // NUM_STAGES) & 1)



@gluon.jit
def _moe_scales(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk):
    """Combined scales of K block ``kb``: (xs[tok, kb] * w1s[gate block, kb], same for up)."""
    sa = gl.load(sa_ptrs + kb)
    return sa * gl.load(gs_ptr + kb * stride_wsk), sa * gl.load(us_ptr + kb * stride_wsk)



@gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
def _gluon_gate_up_fp8_kernel(
    x_ptr, w_desc, h_desc,  # x (T, H) fp8 pointer; TMA descs: w1 as (L*2I, H) fp8, hq (max_padded, I)
    xs_ptr, ws_ptr, hs_ptr,  # fp32: xs (T, H/128), w1s (L, 2I/128, H/128), hs (max_padded, I/128)
    sorted_ids_ptr, expert_ids_ptr, num_padded_ptr,  # int32 (max_padded,), (max_blocks,), (1,)
    N, K, num_slots, top_k, max_blocks,  # N = I, K = H
    stride_xm, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr, SCHEME: gl.constexpr,
):  # fmt: skip
    """One (BLOCK_M rows, 128 columns of h) tile per program; grid ``max_blocks * cdiv(I, 128)``
    in main's grouped order. BLOCK_M comes from ``h_desc``'s block, BLOCK_N = BLOCK_K = 128 from
    ``w_desc``'s. H must be a multiple of 128 (no masked K tail)."""
    BLOCK_M: gl.constexpr = h_desc.block_type.shape[0]
    BLOCK_N: gl.constexpr = w_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = w_desc.block_type.shape[1]
    NUM_WARPS: gl.constexpr = gl.num_warps()
    gl.static_assert(BLOCK_N == 128 and BLOCK_K == 128, "one scale group per program and K step")
    gl.static_assert(h_desc.block_type.shape[1] == BLOCK_N, "h tile is BLOCK_M x 128")
    gl.static_assert(NUM_STAGES >= 3, "cp.async wait_group NUM_STAGES-2 needs a ring of 3+")

    pid_m, pid_n = _moe_tile(gl.program_id(0), max_blocks, gl.cdiv(N, BLOCK_N), GROUP_M)
    if pid_m * BLOCK_M >= gl.load(num_padded_ptr):
        return
    e = gl.load(expert_ids_ptr + pid_m)
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    row_g = e * 2 * N + off_n
    row_u = row_g + N
    num_k = gl.cdiv(K, BLOCK_K)

    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, BLOCK_N, NUM_WARPS)
    row_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)
    # Gather layout: 16 fp8 (one 16-byte cp.async) per thread, 8 threads per 128-byte row.
    gather_layout: gl.constexpr = gl.BlockedLayout([1, 16], [4, 8], [NUM_WARPS, 1], [1, 0])
    a_layout: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)

    a_bufs = gl.allocate_shared_memory(gl.float8e4nv, [NUM_STAGES, BLOCK_M, BLOCK_K], a_layout)
    bg_bufs = gl.allocate_shared_memory(w_desc.dtype, [NUM_STAGES, BLOCK_N, BLOCK_K], w_desc.layout)
    bu_bufs = gl.allocate_shared_memory(w_desc.dtype, [NUM_STAGES, BLOCK_N, BLOCK_K], w_desc.layout)
    ready = _ready_ring(NUM_STAGES)

    # Gathered rows: token = slot // top_k, padding rows (slot == num_slots) read token 0.
    g_rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, gather_layout))
    g_slot = gl.load(sorted_ids_ptr + g_rows)
    g_tok = gl.where(g_slot < num_slots, g_slot // top_k, 0).to(gl.int64)
    a_rows = x_ptr + gl.expand_dims(g_tok * stride_xm, 1)
    offs_k = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, gather_layout))

    for i in gl.static_range(NUM_STAGES):
        _moe_load_block(x_ptr, a_rows, offs_k, w_desc, a_bufs, bg_bufs, bu_bufs, ready, i, num_k,
                        row_g, row_u, NUM_STAGES)  # fmt: skip

    rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
    slot_ids = gl.load(sorted_ids_ptr + rows)
    tok = gl.where(slot_ids < num_slots, slot_ids // top_k, 0).to(gl.int64)
    sa_ptrs = xs_ptr + tok * stride_xsm
    ws_e = ws_ptr + e.to(gl.int64) * stride_wse
    gs_ptr = ws_e + (off_n // 128) * stride_wsn
    us_ptr = ws_e + ((N + off_n) // 128) * stride_wsn

    acc_g = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    acc_u = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
    if SCHEME == "paired":
        # T0 (even K blocks) and T1 (odd) each hold a (gate, up) pair; unrolled by two so that no
        # temporary changes role at the back-edge (C7515). Each wait leaves the pair just issued
        # (two wgmmas) outstanding and retires the previous pair, which is then promoted.
        sg1 = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
        su1 = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
        g0 = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
        u0 = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
        _moe_wait_block(a_bufs, ready, 0, NUM_STAGES)
        g0 = _moe_mma(a_bufs, bg_bufs, 0, g0, NUM_STAGES)
        u0 = _moe_mma(a_bufs, bu_bufs, 0, u0, NUM_STAGES)
        cg0, cu0 = _moe_scales(sa_ptrs, gs_ptr, us_ptr, 0, stride_wsk)
        for j in range(0, (num_k - 1) // 2):
            kb = 2 * j + 1
            _moe_wait_block(a_bufs, ready, kb, NUM_STAGES)
            g1 = _moe_mma(a_bufs, bg_bufs, kb, sg1, NUM_STAGES)
            u1 = _moe_mma(a_bufs, bu_bufs, kb, su1, NUM_STAGES)
            cg1, cu1 = _moe_scales(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk)
            dg0, du0 = warpgroup_mma_wait(num_outstanding=2, deps=(g0, u0))  # block kb-1 done
            nxt = kb + NUM_STAGES - 1  # refill block kb-1's slot
            _moe_load_block(x_ptr, a_rows, offs_k, w_desc, a_bufs, bg_bufs, bu_bufs, ready, nxt, num_k,
                            row_g, row_u, NUM_STAGES)  # fmt: skip
            acc_g, acc_u = _pin2(_promote(acc_g, dg0, cg0), _promote(acc_u, du0, cu0))

            _moe_wait_block(a_bufs, ready, kb + 1, NUM_STAGES)
            g0 = _moe_mma(a_bufs, bg_bufs, kb + 1, dg0, NUM_STAGES)
            u0 = _moe_mma(a_bufs, bu_bufs, kb + 1, du0, NUM_STAGES)
            cg0, cu0 = _moe_scales(sa_ptrs, gs_ptr, us_ptr, kb + 1, stride_wsk)
            sg1, su1 = warpgroup_mma_wait(num_outstanding=2, deps=(g1, u1))  # block kb done
            _moe_load_block(x_ptr, a_rows, offs_k, w_desc, a_bufs, bg_bufs, bu_bufs, ready, nxt + 1,
                            num_k, row_g, row_u, NUM_STAGES)  # fmt: skip
            acc_g, acc_u = _pin2(_promote(acc_g, sg1, cg1), _promote(acc_u, su1, cu1))
        if num_k % 2 == 0:
            _moe_wait_block(a_bufs, ready, num_k - 1, NUM_STAGES)
            g1 = _moe_mma(a_bufs, bg_bufs, num_k - 1, sg1, NUM_STAGES)
            u1 = _moe_mma(a_bufs, bu_bufs, num_k - 1, su1, NUM_STAGES)
            cg1, cu1 = _moe_scales(sa_ptrs, gs_ptr, us_ptr, num_k - 1, stride_wsk)
            dg0, du0 = warpgroup_mma_wait(num_outstanding=2, deps=(g0, u0))
            acc_g = _promote(acc_g, dg0, cg0)
            acc_u = _promote(acc_u, du0, cu0)
            dg1, du1 = warpgroup_mma_wait(num_outstanding=0, deps=(g1, u1))
            acc_g = _promote(acc_g, dg1, cg1)
            acc_u = _promote(acc_u, du1, cu1)
        else:
            dg0, du0 = warpgroup_mma_wait(num_outstanding=0, deps=(g0, u0))
            acc_g = _promote(acc_g, dg0, cg0)
            acc_u = _promote(acc_u, du0, cu0)
    else:
        gl.static_assert(SCHEME == "stagger", "SCHEME is 'paired' or 'stagger'")
        # TG only ever holds gate blocks, TU only up blocks. Order per K block k: issue gate(k),
        # retire + promote up(k-1), issue up(k), retire + promote gate(k): one wgmma in flight
        # during every promotion, four live tiles.
        tg = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
        tu = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
        _moe_wait_block(a_bufs, ready, 0, NUM_STAGES)
        g = _moe_mma(a_bufs, bg_bufs, 0, tg, NUM_STAGES)
        cg, cu = _moe_scales(sa_ptrs, gs_ptr, us_ptr, 0, stride_wsk)
        u = _moe_mma(a_bufs, bu_bufs, 0, tu, NUM_STAGES)
        tg = warpgroup_mma_wait(num_outstanding=1, deps=(g,))  # gate(0) done
        acc_g = _gluon_pin(_promote(acc_g, tg, cg))
        cu_prev = cu
        for kb in range(1, num_k):
            _moe_wait_block(a_bufs, ready, kb, NUM_STAGES)
            g = _moe_mma(a_bufs, bg_bufs, kb, tg, NUM_STAGES)
            cg, cu = _moe_scales(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk)
            tu = warpgroup_mma_wait(num_outstanding=1, deps=(u,))  # up(kb-1) done: block kb-1 retired
            _moe_load_block(x_ptr, a_rows, offs_k, w_desc, a_bufs, bg_bufs, bu_bufs, ready,
                            kb + NUM_STAGES - 1, num_k, row_g, row_u, NUM_STAGES)  # fmt: skip
            acc_u = _gluon_pin(_promote(acc_u, tu, cu_prev))
            u = _moe_mma(a_bufs, bu_bufs, kb, tu, NUM_STAGES)
            tg = warpgroup_mma_wait(num_outstanding=1, deps=(g,))  # gate(kb) done
            acc_g = _gluon_pin(_promote(acc_g, tg, cg))
            cu_prev = cu
        tu = warpgroup_mma_wait(num_outstanding=0, deps=(u,))
        acc_u = _promote(acc_u, tu, cu_prev)

    async_copy.wait_group(0)
    for s in gl.static_range(NUM_STAGES):
        mbarrier.invalidate(ready.index(s))

    # Epilogue as main's: h = silu(gate) * up, one e4m3 group per row, IEEE divisions.
    cols = off_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma_layout))
    h = acc_g / (1.0 + gl.exp(-acc_g)) * acc_u
    h = gl.where(gl.expand_dims(cols < N, 0), h, 0.0)
    h_scale = gl.div_rn(gl.maximum(gl.max(gl.abs(h), axis=1), 1e-10), 448.0)
    hq = gl.div_rn(h, gl.expand_dims(h_scale, 1))
    hq = gl.minimum(gl.maximum(hq, -448.0), 448.0)
    gl.store(hs_ptr + rows.to(gl.int64) * stride_hsm + pid_n, h_scale)
    h_smem = gl.allocate_shared_memory(h_desc.dtype, [BLOCK_M, BLOCK_N], h_desc.layout)
    h_smem.store(hq.to(h_desc.dtype))
    fence_async_shared()
    tma.async_copy_shared_to_global(h_desc, [off_m, off_n], h_smem)
    tma.store_wait(pendings=0)



def launch_gluon_gate_up(
    xq: torch.Tensor,
    xs: torch.Tensor,
    w1q: torch.Tensor,
    w1s: torch.Tensor,
    hq: torch.Tensor,
    hs: torch.Tensor,
    al: Alignment,
    tile: GemmTile,
    top_k: int,
    scheme: str | None = None,
) -> None:
    """Gate/up GEMM + silu * up + e4m3 group quantization of h into ``hq``/``hs``.

    xq: (T, H) float8_e4m3fn, unit stride in H, 16-byte aligned rows; xs: (T, H/128) float32, unit
    stride in the group dim; w1q: (L, 2I, H) float8_e4m3fn contiguous; w1s: (L, 2I/128, H/128)
    float32; hq: (al.max_padded, I) float8_e4m3fn contiguous; hs: (al.max_padded, I/128) float32.
    H and I multiples of 128, ``al.block_m`` in :data:`SCHEMES`, ``tile`` 128 x 128 (the caller,
    ``kernels.quant.fused_moe_fp8``, checks all of this with ``kernels.tactics.gluon_misfit``).
    Rows at or past ``num_padded`` are not written. ``scheme`` overrides the schedule of
    :data:`SCHEMES` (``"paired"`` or ``"stagger"``; for benchmarks).
    """
    num_local, two_i, h = w1q.shape
    i = two_i // 2
    w_layout = gl.NVMMASharedLayout.get_default_for([SCALE_GROUP, SCALE_GROUP], gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([al.block_m, SCALE_GROUP], gl.float8e4nv)
    w_desc = TensorDescriptor.from_tensor(w1q.view(num_local * two_i, h), [SCALE_GROUP, SCALE_GROUP],
                                          w_layout)  # fmt: skip
    h_desc = TensorDescriptor.from_tensor(hq, [al.block_m, SCALE_GROUP], h_layout)
    _gluon_gate_up_fp8_kernel[(al.max_blocks * (i // SCALE_GROUP),)](
        xq, w_desc, h_desc, xs, w1s, hs,
        al.sorted_ids, al.expert_ids, al.num_padded,
        i, h, al.num_slots, top_k, al.max_blocks,
        xq.stride(0), xs.stride(0), w1s.stride(0), w1s.stride(1), w1s.stride(2), hs.stride(0),
        NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, SCHEME=scheme or SCHEMES[al.block_m],
        num_warps=tile.num_warps,
    )  # fmt: skip
