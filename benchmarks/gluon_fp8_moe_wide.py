"""Prototype: the fp8 MoE gate/up with one m64n128 wgmma per warpgroup instead of two m64n64 ones.

    PYTHONPATH=. python benchmarks/gluon_fp8_moe.py --offline   # CPU: compile for sm_90a, "gluon-wide" rows
    PYTHONPATH=. python benchmarks/gluon_fp8_moe.py --gpu       # H100: check and time them (not run yet)

Same inputs and outputs as ``kernels.gluon_gate_up`` (and main's Triton gate/up): one program writes
64 rows x 128 columns of h, as e4m3 with one scale per row (the 128-column group).

Why: the paired kernel (``kernels/gluon_gate_up.py``) runs 64 rows on 8 warps, so its two
warpgroups split the 128 columns. Each issues a gate wgmma and an up wgmma of m64n64 (H100, run 36:
729 TFLOP/s, 58% of the dense fp8 rate). Narrow wgmmas read more shared memory per flop. Here the
weight tile of a K block is 256 rows, loaded by four 64-row TMA boxes:

    rows   0- 63: gate rows n0 .. n0+63      rows 128-191: gate rows n0+64 .. n0+127
    rows  64-127: up   rows n0 .. n0+63      rows 192-255: up   rows n0+64 .. n0+127

One [64 x 256] wgmma then gives each warpgroup (warps_per_cta [4, 2]) one m64n128 instruction
covering the gate and up values of the same 64 h columns. The registers are those of the paired
kernel: accumulator and two temporaries of 64 x 256 over 256 threads, 3 x 64 = 192 per thread. The
schedule is the GEMM prototype's: one wgmma in flight while the previous K block is promoted, loop
unrolled by two, promotions pinned. The promotion scale depends on the column's half:
``xs[row] * w1s[gate block]`` on gate columns, ``xs[row] * w1s[up block]`` on up columns. In the
epilogue the accumulator is reshaped to (row, half, column, gate/up) and split into gate and up.

Offline (triton 3.6.0 bundled ptxas, sm_90a): 242 registers at 4 stages and at 3, no spills, no
C75xx message; the PTX has only m64n128k32 wgmmas (paired: m64n64k32) and ``wgmma.wait_group 1`` in
the loop; the promotion has the paired kernel's FMA and select counts (the per-column scale choice
folds away); shared memory 163,872 B at 4 stages. ``tests/test_gluon_fp8_moe_wide_compiles.py``
holds these.

STATUS: compiled offline only; never run on a GPU, nothing measured, correctness unverified.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.gluon_fp8_gemm import HAS_GLUON

if HAS_GLUON:
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

    from kernels.gluon_common import _gluon_pin, _mma_layout, _moe_tile, _ready_ring
    from kernels.gluon_gate_up import _moe_wait_block

GROUP = 128
HALF = 64  # rows per TMA box, columns per gate or up half of a warpgroup's wgmma


if HAS_GLUON:

    @gluon.jit
    def _wide_load_block(a_rows, offs_k, w_desc, a_bufs, b_bufs, ready, kb, num_k, row_g, row_u,
                         NUM_STAGES: gl.constexpr):  # fmt: skip
        """Ring slot ``kb % NUM_STAGES`` gets K block ``kb``: the 64 gathered x rows by cp.async (one
        commit group, empty past the last block) and the 256-row weight tile by four 64-row TMA
        boxes (gate, up, gate + 64, up + 64), which complete the slot's mbarrier."""
        BLOCK_K: gl.constexpr = w_desc.block_type.shape[1]
        BOX: gl.constexpr = w_desc.block_type.shape[0]
        slot = kb % NUM_STAGES
        pred = kb < num_k
        ptrs = a_rows + gl.expand_dims(kb * BLOCK_K + offs_k, 0)
        async_copy.async_copy_global_to_shared(a_bufs.index(slot), ptrs, mask=pred)
        async_copy.commit_group()
        bar = ready.index(slot)
        b = b_bufs.index(slot)
        k0 = kb * BLOCK_K
        mbarrier.expect(bar, 4 * w_desc.block_type.nbytes, pred=pred)
        tma.async_copy_global_to_shared(w_desc, [row_g, k0], bar, b.slice(0, BOX), pred=pred)
        tma.async_copy_global_to_shared(w_desc, [row_u, k0], bar, b.slice(BOX, BOX), pred=pred)
        tma.async_copy_global_to_shared(w_desc, [row_g + BOX, k0], bar, b.slice(2 * BOX, BOX), pred=pred)
        tma.async_copy_global_to_shared(w_desc, [row_u + BOX, k0], bar, b.slice(3 * BOX, BOX), pred=pred)

    @gluon.jit
    def _wide_issue(a_bufs, b_bufs, ready, kb, spare, NUM_STAGES: gl.constexpr):
        """Wait for K block ``kb`` and issue its [64 x 256] wgmma into ``spare``'s registers."""
        _moe_wait_block(a_bufs, ready, kb, NUM_STAGES)
        slot = kb % NUM_STAGES
        return warpgroup_mma(a_bufs.index(slot), b_bufs.index(slot).permute((1, 0)), spare,
                             use_acc=False, is_async=True)  # fmt: skip

    @gluon.jit
    def _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk, is_gate):
        """The [64, 256] promotion scale of K block ``kb``: xs[row, kb] times the gate block's
        scale on gate columns (``is_gate``, [1, 256]) and the up block's on up columns."""
        sa = gl.expand_dims(gl.load(sa_ptrs + kb), 1)
        gate_scale = gl.load(gs_ptr + kb * stride_wsk)
        return gl.where(is_gate, sa * gate_scale, sa * gl.load(us_ptr + kb * stride_wsk))

    @gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
    def _gluon_gate_up_wide_kernel(
        x_ptr, w_desc, h_desc,  # x (T, H) fp8; TMA, box (64, 128): w1 as (L*2I, H) fp8, hq (max_padded, I)
        xs_ptr, ws_ptr, hs_ptr,  # fp32: xs (T, H/128), w1s (L, 2I/128, H/128), hs (max_padded, I/128)
        sorted_ids_ptr, expert_ids_ptr, num_padded_ptr,  # int32 (max_padded,), (max_blocks,), (1,)
        N, K, num_slots, top_k, max_blocks,  # N = I, K = H
        stride_xm, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm,
        NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
    ):  # fmt: skip
        """One (64 rows, 128 columns of h) tile per program, grid ``max_blocks * cdiv(I, 128)`` in
        main's grouped order; the arguments are ``kernels.gluon_gate_up``'s (minus SCHEME), with a
        64-row weight box."""
        BLOCK_M: gl.constexpr = h_desc.block_type.shape[0]
        BLOCK_N: gl.constexpr = h_desc.block_type.shape[1]
        BOX: gl.constexpr = w_desc.block_type.shape[0]
        BLOCK_K: gl.constexpr = w_desc.block_type.shape[1]
        NUM_WARPS: gl.constexpr = gl.num_warps()
        gl.static_assert(BLOCK_M == 64 and BLOCK_N == 128 and BLOCK_K == 128 and BOX == 64, "64 x 128 tiles")
        gl.static_assert(NUM_WARPS == 8, "two warpgroups, one per 64-column half of h")
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

        mma_layout: gl.constexpr = _mma_layout(BLOCK_M, 2 * BLOCK_N, NUM_WARPS)  # warps [4, 2], n128 each
        row_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)
        gather_layout: gl.constexpr = gl.BlockedLayout([1, 16], [4, 8], [NUM_WARPS, 1], [1, 0])
        a_layout: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
        a_bufs = gl.allocate_shared_memory(gl.float8e4nv, [NUM_STAGES, BLOCK_M, BLOCK_K], a_layout)
        b_bufs = gl.allocate_shared_memory(w_desc.dtype, [NUM_STAGES, 2 * BLOCK_N, BLOCK_K], w_desc.layout)
        ready = _ready_ring(NUM_STAGES)

        g_rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, gather_layout))
        g_slot = gl.load(sorted_ids_ptr + g_rows)
        g_tok = gl.where(g_slot < num_slots, g_slot // top_k, 0).to(gl.int64)
        a_rows = x_ptr + gl.expand_dims(g_tok * stride_xm, 1)
        offs_k = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, gather_layout))
        for i in gl.static_range(NUM_STAGES):
            _wide_load_block(a_rows, offs_k, w_desc, a_bufs, b_bufs, ready, i, num_k, row_g, row_u,
                             NUM_STAGES)  # fmt: skip

        rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
        slot_ids = gl.load(sorted_ids_ptr + rows)
        tok = gl.where(slot_ids < num_slots, slot_ids // top_k, 0).to(gl.int64)
        sa_ptrs = xs_ptr + tok * stride_xsm
        ws_e = ws_ptr + e.to(gl.int64) * stride_wse
        gs_ptr = ws_e + (off_n // 128) * stride_wsn
        us_ptr = ws_e + ((N + off_n) // 128) * stride_wsn
        wide_cols = gl.arange(0, 2 * BLOCK_N, layout=gl.SliceLayout(0, mma_layout))
        is_gate = gl.expand_dims((wide_cols // BOX) % 2 == 0, 0)

        # The GEMM prototype's loop: T0 holds even K blocks, T1 odd ones, one wgmma in flight.
        acc = gl.zeros([BLOCK_M, 2 * BLOCK_N], gl.float32, mma_layout)
        spare1 = gl.zeros([BLOCK_M, 2 * BLOCK_N], gl.float32, mma_layout)
        t0 = _wide_issue(a_bufs, b_bufs, ready, 0, gl.zeros([BLOCK_M, 2 * BLOCK_N], gl.float32, mma_layout),
                         NUM_STAGES)  # fmt: skip
        scale0 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, 0, stride_wsk, is_gate)
        for j in range(0, (num_k - 1) // 2):
            kb = 2 * j + 1
            t1 = _wide_issue(a_bufs, b_bufs, ready, kb, spare1, NUM_STAGES)
            scale1 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk, is_gate)
            done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))  # block kb-1 complete
            nxt = kb + NUM_STAGES - 1
            _wide_load_block(a_rows, offs_k, w_desc, a_bufs, b_bufs, ready, nxt, num_k, row_g, row_u,
                             NUM_STAGES)  # fmt: skip
            acc = _gluon_pin(acc + done0 * scale0)

            t0 = _wide_issue(a_bufs, b_bufs, ready, kb + 1, done0, NUM_STAGES)
            scale0 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb + 1, stride_wsk, is_gate)
            spare1 = warpgroup_mma_wait(num_outstanding=1, deps=(t1,))  # block kb complete
            _wide_load_block(a_rows, offs_k, w_desc, a_bufs, b_bufs, ready, nxt + 1, num_k, row_g, row_u,
                             NUM_STAGES)  # fmt: skip
            acc = _gluon_pin(acc + spare1 * scale1)
        if num_k % 2 == 0:
            t1 = _wide_issue(a_bufs, b_bufs, ready, num_k - 1, spare1, NUM_STAGES)
            scale1 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, num_k - 1, stride_wsk, is_gate)
            done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))
            acc = acc + done0 * scale0
            done1 = warpgroup_mma_wait(num_outstanding=0, deps=(t1,))
            acc = acc + done1 * scale1
        else:
            done0 = warpgroup_mma_wait(num_outstanding=0, deps=(t0,))
            acc = acc + done0 * scale0
        async_copy.wait_group(0)
        for s in gl.static_range(NUM_STAGES):
            mbarrier.invalidate(ready.index(s))

        # Epilogue: accumulator columns are (half, gate/up, 64 columns); h column = half * 64 + c.
        epi_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [NUM_WARPS, 1], [1, 0])
        parts = gl.permute(gl.reshape(acc, [BLOCK_M, 2, 2, BOX]), (0, 1, 3, 2))  # (row, half, c, g/u)
        gate, up = gl.split(parts)
        gate = gl.convert_layout(gl.reshape(gate, [BLOCK_M, BLOCK_N]), epi_layout)
        up = gl.convert_layout(gl.reshape(up, [BLOCK_M, BLOCK_N]), epi_layout)
        cols = off_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, epi_layout))
        h = gate / (1.0 + gl.exp(-gate)) * up
        h = gl.where(gl.expand_dims(cols < N, 0), h, 0.0)
        h_scale = gl.div_rn(gl.maximum(gl.max(gl.abs(h), axis=1), 1e-10), 448.0)
        hq = gl.minimum(gl.maximum(gl.div_rn(h, gl.expand_dims(h_scale, 1)), -448.0), 448.0)
        epi_rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, epi_layout))
        gl.store(hs_ptr + epi_rows.to(gl.int64) * stride_hsm + pid_n, h_scale)
        h_smem = gl.allocate_shared_memory(h_desc.dtype, [BLOCK_M, BLOCK_N], h_desc.layout)
        h_smem.store(hq.to(h_desc.dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(h_desc, [off_m, off_n], h_smem)
        tma.store_wait(pendings=0)


def launch_gluon_gate_up_wide(
    xq: torch.Tensor, xs: torch.Tensor, w1q: torch.Tensor, w1s: torch.Tensor, hq: torch.Tensor,
    hs: torch.Tensor, al: Any, top_k: int, num_stages: int = 4, group_m: int = 8,
) -> None:  # fmt: skip
    """The wide gate/up into ``hq``/``hs``; the arguments and their conditions are those of
    ``kernels.gluon_gate_up.launch_gluon_gate_up`` at ``al.block_m == 64`` (8 warps)."""
    if al.block_m != 64:
        raise ValueError(f"the wide gate/up runs block_m 64, got {al.block_m}")
    num_local, two_i, h = w1q.shape
    i = two_i // 2
    w_layout = gl.NVMMASharedLayout.get_default_for([HALF, GROUP], gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([64, GROUP], gl.float8e4nv)
    w_desc = TensorDescriptor.from_tensor(w1q.view(num_local * two_i, h), [HALF, GROUP], w_layout)
    h_desc = TensorDescriptor.from_tensor(hq, [64, GROUP], h_layout)
    _gluon_gate_up_wide_kernel[(al.max_blocks * (i // GROUP),)](
        xq, w_desc, h_desc, xs, w1s, hs,
        al.sorted_ids, al.expert_ids, al.num_padded,
        i, h, al.num_slots, top_k, al.max_blocks,
        xq.stride(0), xs.stride(0), w1s.stride(0), w1s.stride(1), w1s.stride(2), hs.stride(0),
        NUM_STAGES=num_stages, GROUP_M=group_m, num_warps=8,
    )  # fmt: skip
