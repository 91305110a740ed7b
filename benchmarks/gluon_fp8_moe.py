"""fp8 block-scale MoE gate/up GEMM for Hopper in Triton Gluon: gathered x rows through cp.async, gate and
up weight tiles through a TMA ring, and one wgmma kept in flight while finished K blocks are promoted.

    PYTHONPATH=. python benchmarks/gluon_fp8_moe.py --offline   # CPU only: compile for sm_90a, report
    PYTHONPATH=. python benchmarks/gluon_fp8_moe.py --gpu       # H100: check against main, time (NOT RUN YET)

Same inputs and outputs as ``kernels.fused_moe._gate_up_kernel`` with ``BLOCK_SCALE=True`` (DeepSeek
fp8 recipe), for one rank's L local experts::

    xq  (T, H) float8_e4m3fn      xs  (T, cdiv(H,128)) float32        per token, per 128-wide group
    w1q (L, 2I, H) float8_e4m3fn  w1s (L, cdiv(2I,128), cdiv(H,128))  per 128x128 block; rows [0, I)
                                  float32                             gate, rows [I, 2I) up
    sorted_ids (max_padded,) int32, expert_ids (max_blocks,) int32, num_padded (1,) int32
                                  (kernels.align.moe_align; padding rows hold num_slots = T*k)
    hq  (max_padded, I) float8_e4m3fn   hs (max_padded, cdiv(I,128)) float32   (outputs)

Row r of block b (expert e = expert_ids[b]) reads x[sorted_ids[r] // k] (token 0 for padding rows), and
    gate[r, n] = sum_kb (x[r, kb] . w1[e, n, kb]) * xs[tok, kb] * w1s[e, n // 128, kb]
    up[r, n]   = the same with w1 rows I + n,     h = silu(gate) * up,
then h is quantized per row per 128-column group (each program owns one group, BLOCK_N = 128):
``hs[r, g] = max(|h[r, group g]|, 1e-10) / 448`` and ``hq = clamp(h / hs, -448, 448)`` in e4m3, with
the same IEEE divisions as main's epilogue. Blocks past ``num_padded`` exit at once.

Data movement per K block (BLOCK_K = 128): the two weight tiles (gate rows ``e*2I + n0``, up rows
``e*2I + I + n0``, each 128 x 128) come by TMA into a NUM_STAGES ring with one mbarrier per slot; the
BLOCK_M gathered x rows cannot come by TMA on Hopper (no gather mode before sm_100), so every thread
issues 16-byte ``cp.async`` copies (``gluon...ampere.async_copy``) of its rows into the same ring slot's
A buffer (NVMMA 128-byte swizzle), one commit group per K block. Before a block's wgmmas each thread
waits for its own copies (``cp.async.wait_group NUM_STAGES-2``, the commit count is the same every
step), fences the generic-proxy writes for the async proxy and the CTA meets at a barrier.

Two schedules (``SCHEME``), both wgmma-asynchronous with the promotion ``acc += t * (xs * ws)``
done in fp32 registers while the tensor core works:
  * ``paired`` (the GEMM prototype's scheme doubled): gate(k) and up(k) are issued together, then
    ``wgmma.wait_group 2`` retires block k-1's pair, which is promoted while block k's pair runs.
    Live fp32 tiles: 2 accumulators + 2 pairs of temporaries = 6 tiles of BLOCK_M x 128; K loop
    unrolled by two (traps below).
  * ``stagger``: gate(k) is issued, ``wait_group 1`` retires up(k-1), which is promoted; up(k) is
    issued, ``wait_group 1`` retires gate(k), promoted. One wgmma is always in flight during each
    promotion, but each temporary keeps one role (gate or up), so live tiles are 2 accumulators + 2
    temporaries = 4 tiles and the loop needs no unrolling.

The ptxas traps of ``benchmarks/gluon_fp8_gemm.py`` apply: temporaries that swap roles at a loop
back-edge make ptxas serialize every wgmma (C7515; hence the paired scheme's unroll by two), and
promotions that LLVM sinks below the next issue into the same registers do too (C7514; hence the
no-op ``wgmma.wait_group`` "pin" after each promotion).

Register budget, fp32 tile of BLOCK_M x 128 per thread = BLOCK_M * 128 / (32 * num_warps):
64 rows / 8 warps: 32 (paired 192, stagger 128); 64 / 4 and 128 / 8: 64 (paired 384, stagger 256);
128 / 4: 128. (16 warps would halve the tiles but caps a thread at 128 registers.)

Offline result (triton 3.6.0 bundled ptxas, sm_90a; ``--offline``), the Gluon kernel only:
    paired  64 rows, 8 warps, 3/4/5 stages: 240/238/242 registers, no spills, no C75xx message,
            loop waits ``wgmma.wait_group 2`` only (retire + pin), smem 123/164/205 KB. THE WORKING POINT.
    paired  64 rows, 4 warps and 128 rows, 8 warps: 255 registers, ~2.5 KB spills, ptxas C7512
            (wgmmas serialized for lack of registers).
    stagger 64 rows, 8 warps: 172 registers, no spills, but ptxas C7514 serializes the wgmmas (a non-
            wgmma instruction reads accumulator registers of an in-flight wgmma, by ptxas's analysis; the
            PTX shows no such read and fixed register sets per role). Not resolved in the time box:
            dropping the pins gives C7515, pinning both accumulators at each pin and unrolling by two
            both still give C7514. 128 rows / 8 warps: 160 B spills + C7514.
So BLOCK_M = 128 has no configuration that keeps one wgmma in flight without spilling; use 64.
Main's Triton kernel compiled the same way spills 52 B at 64/8 warps and waits ``wait_group 0`` after
every dot.

STATUS: ``--offline`` has been run (CPU, compile only). The GPU mode (``--gpu``: agreement with main's
Triton ``_launch_gate_up`` and timings) has NOT been run: the kernel has never executed, nothing here
is measured, and correctness (including the cp.async/wgmma proxy fencing) is unverified.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from functools import partial
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

if HAS_GLUON:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.experimental.gluon.language.nvidia.ampere import async_copy
    from triton.experimental.gluon.language.nvidia.hopper import (
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from benchmarks.gluon_fp8_gemm import _gluon_pin, _mma_layout, _ready_ring

GROUP = 128  # scale group width; BLOCK_N and BLOCK_K
SCHEMES = ("paired", "stagger")


# --------------------------------------------------------------------------------------------------
# Gluon kernel
# --------------------------------------------------------------------------------------------------
if HAS_GLUON:

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
    def _moe_mma(a_bufs, b_bufs, kb, spare, NUM_STAGES: gl.constexpr):
        """Issue K block ``kb``'s wgmma (A rows x one weight tile) asynchronously into ``spare``'s
        registers (``use_acc=False``: its values are ignored)."""
        slot = kb % NUM_STAGES
        return warpgroup_mma(a_bufs.index(slot), b_bufs.index(slot).permute((1, 0)), spare,
                             use_acc=False, is_async=True)  # fmt: skip

    @gluon.jit
    def _moe_scales(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk):
        """Combined scales of K block ``kb``: (xs[tok, kb] * w1s[gate block, kb], same for up)."""
        sa = gl.load(sa_ptrs + kb)
        return sa * gl.load(gs_ptr + kb * stride_wsk), sa * gl.load(us_ptr + kb * stride_wsk)

    @gluon.jit
    def _moe_tile(pid, max_blocks, num_pid_n, GROUP_M: gl.constexpr):
        """``(row block, column block)`` of program ``pid`` in main's grouped order (``GROUP_M`` row
        blocks share their weight columns in L2), as ``kernels.fused_moe._grouped_pid``."""
        width = GROUP_M * num_pid_n
        first_m = (pid // width) * GROUP_M
        size_m = gl.minimum(max_blocks - first_m, GROUP_M)
        return first_m + (pid % width) % size_m, (pid % width) // size_m

    @gluon.jit
    def _pin2(acc_g, acc_u):
        """Both accumulators through a no-op ``wgmma.wait_group 2`` (two wgmmas outstanding where this
        is called): the paired scheme's version of ``_gluon_pin`` (C7514 trap)."""
        return warpgroup_mma_wait(num_outstanding=2, deps=(acc_g, acc_u))

    @gluon.jit
    def _promote(acc, t, scale):
        return acc + t * gl.expand_dims(scale, 1)

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


# --------------------------------------------------------------------------------------------------
# Host wrapper (GPU)
# --------------------------------------------------------------------------------------------------
def gluon_gate_up_fp8(
    xq: torch.Tensor,
    xs: torch.Tensor,
    w1q: torch.Tensor,
    w1s: torch.Tensor,
    alignment: Any,
    block_m: int | None = None,
    num_warps: int = 8,
    num_stages: int = 4,
    *,
    top_k: int | None = None,
    scheme: str = "paired",
    group_m: int = 8,
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate/up GEMM + silu*up + e4m3 group quantization of h with the Gluon kernel.

    xq: (T, H) float8_e4m3fn, contiguous rows, H % 128 == 0; xs: (T, H/128) float32;
    w1q: (L, 2I, H) float8_e4m3fn contiguous (gate rows [0, I), up rows [I, 2I)), I % 128 == 0;
    w1s: (L, 2I/128, H/128) float32; alignment: ``kernels.align.Alignment`` of the routing with
    ``alignment.block_m == block_m`` (``block_m`` None takes it from the alignment).
    ``top_k`` defaults to ``alignment.num_slots // T``. Returns ``(hq (max_padded, I) float8_e4m3fn,
    hs (max_padded, I/128) float32)``; rows at or past ``num_padded`` are not written.
    """
    if not HAS_GLUON:
        raise RuntimeError("this Triton build has no triton.experimental.gluon")
    assert scheme in SCHEMES, scheme
    t_, h = xq.shape
    num_local, two_i, h_w = w1q.shape
    i = two_i // 2
    block_m = alignment.block_m if block_m is None else block_m
    assert alignment.block_m == block_m, f"alignment made for block_m={alignment.block_m}, not {block_m}"
    assert h_w == h and h % GROUP == 0 and i % GROUP == 0, (tuple(xq.shape), tuple(w1q.shape))
    assert xq.dtype == w1q.dtype == torch.float8_e4m3fn
    assert xs.dtype == w1s.dtype == torch.float32
    assert tuple(xs.shape) == (t_, h // GROUP) and xs.stride(1) == 1
    assert tuple(w1s.shape) == (num_local, two_i // GROUP, h // GROUP)
    assert xq.stride(1) == 1 and xq.stride(0) % 16 == 0, "x rows are copied in 16-byte cp.async chunks"
    assert w1q.is_contiguous()
    k = top_k if top_k is not None else alignment.num_slots // t_
    max_padded = alignment.max_padded
    if out is None:
        hq = torch.empty((max_padded, i), dtype=torch.float8_e4m3fn, device=xq.device)
        hs = torch.empty((max_padded, i // GROUP), dtype=torch.float32, device=xq.device)
    else:
        hq, hs = out
        assert hq.shape == (max_padded, i) and hq.dtype == torch.float8_e4m3fn, (hq.shape, hq.dtype)
        assert hs.shape == (max_padded, i // GROUP) and hs.dtype == torch.float32, (hs.shape, hs.dtype)
    w_layout = gl.NVMMASharedLayout.get_default_for([GROUP, GROUP], gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([block_m, GROUP], gl.float8e4nv)
    w_desc = TensorDescriptor.from_tensor(w1q.view(num_local * two_i, h), [GROUP, GROUP], w_layout)
    h_desc = TensorDescriptor.from_tensor(hq, [block_m, GROUP], h_layout)
    grid = (alignment.max_blocks * (i // GROUP),)
    _gluon_gate_up_fp8_kernel[grid](
        xq, w_desc, h_desc, xs, w1s, hs,
        alignment.sorted_ids, alignment.expert_ids, alignment.num_padded,
        i, h, alignment.num_slots, k, alignment.max_blocks,
        xq.stride(0), xs.stride(0), w1s.stride(0), w1s.stride(1), w1s.stride(2), hs.stride(0),
        NUM_STAGES=num_stages, GROUP_M=group_m, SCHEME=scheme, num_warps=num_warps,
    )  # fmt: skip
    return hq, hs


# --------------------------------------------------------------------------------------------------
# Offline compile (no GPU)
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Variant:
    """One compile point: schedule, BLOCK_M, warps, ring depth."""

    scheme: str
    block_m: int
    num_warps: int
    num_stages: int

    @property
    def tile(self) -> tuple[int, int, int, int]:
        return (self.block_m, GROUP, self.num_warps, self.num_stages)


OFFLINE_VARIANTS = [
    Variant("paired", 64, 8, 4),  # the working point: no spills, no C75xx, wait_group 2 in the loop
    Variant("paired", 64, 8, 3),
    Variant("paired", 64, 8, 5),
    Variant("paired", 64, 4, 4),
    Variant("paired", 128, 8, 3),
    Variant("stagger", 64, 8, 4),
    Variant("stagger", 64, 4, 4),
    Variant("stagger", 128, 8, 3),
    Variant("stagger", 128, 4, 3),
]


def compile_gluon_moe(variant: Variant) -> Any:
    """The Gluon gate/up kernel compiled for sm_90a without a GPU, specialized like a launch on
    DeepSeek-like shapes (pointers, N, K, x row stride 16-divisible; scale strides not)."""
    fn = _gluon_gate_up_fp8_kernel
    w_layout = gl.NVMMASharedLayout.get_default_for([GROUP, GROUP], gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([variant.block_m, GROUP], gl.float8e4nv)
    signature = {
        "x_ptr": "*fp8e4nv",
        "w_desc": f"tensordesc<fp8e4nv[{GROUP},{GROUP}],{w_layout!r}>",
        "h_desc": f"tensordesc<fp8e4nv[{variant.block_m},{GROUP}],{h_layout!r}>",
        "xs_ptr": "*fp32", "ws_ptr": "*fp32", "hs_ptr": "*fp32",
        "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32",
        "N": "i32", "K": "i32", "num_slots": "i32", "top_k": "i32", "max_blocks": "i32",
        "stride_xm": "i32", "stride_xsm": "i32", "stride_wse": "i32", "stride_wsn": "i32",
        "stride_wsk": "i32", "stride_hsm": "i32",
        "NUM_STAGES": "constexpr", "GROUP_M": "constexpr", "SCHEME": "constexpr",
    }  # fmt: skip
    constexprs = {"NUM_STAGES": variant.num_stages, "GROUP_M": 8, "SCHEME": variant.scheme}
    aligned = ("x_ptr", "xs_ptr", "ws_ptr", "hs_ptr", "sorted_ids_ptr", "expert_ids_ptr", "num_padded_ptr",
               "N", "K", "stride_xm")  # fmt: skip
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    options = {"num_warps": variant.num_warps, "num_stages": variant.num_stages}
    return triton.compile(source, target=TARGET, options=options)


def compile_triton_main(block_m: int, num_warps: int, num_stages: int) -> Any:
    """Main's Triton ``_gate_up_kernel`` (BLOCK_SCALE, TMA weights, 128x128) compiled for sm_90a,
    for the register/wait comparison."""
    from triton.compiler import ASTSource

    from kernels.fused_moe import _gate_up_kernel

    fn = _gate_up_kernel
    constexprs = {"BLOCK_M": block_m, "BLOCK_N": GROUP, "BLOCK_K": GROUP, "GROUP_M": 8, "EVEN_K": True,
                  "DOT_PRECISION": "tf32", "USE_TMA": True, "BLOCK_SCALE": True}  # fmt: skip
    types = {"x_ptr": "*fp8e4nv", "w1_ptr": f"tensordesc<fp8e4nv[{GROUP},{GROUP}]>", "h_ptr": "*fp8e4nv",
             "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32", "num_padded_ptr": "*i32",
             "xs_ptr": "*fp32", "w1s_ptr": "*fp32", "hs_ptr": "*fp32"}  # fmt: skip
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in fn.arg_names}
    aligned = ("x_ptr", "h_ptr", "xs_ptr", "w1s_ptr", "hs_ptr", "N", "K", "stride_xm", "stride_hm")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})


def offline_reports(variants: list[Variant] | None = None, with_triton: bool = True) -> list[CompileReport]:
    """Compile every Gluon variant (kernel name ``gluon-<scheme>``) and, with ``with_triton``, main's
    Triton kernel at the same BLOCK_M / warps / stages (kernel name ``triton-main``)."""
    reports = []
    seen: set[tuple[int, int, int, int]] = set()
    for v in variants or OFFLINE_VARIANTS:
        if HAS_GLUON:
            reports.append(_report(f"gluon-{v.scheme}", v.tile, lambda v=v: compile_gluon_moe(v)))
        else:
            reports.append(CompileReport(f"gluon-{v.scheme}", *v.tile, ok=False, error="no gluon"))
        if with_triton and v.tile not in seen:
            seen.add(v.tile)
            build = lambda v=v: compile_triton_main(v.block_m, v.num_warps, v.num_stages)  # noqa: E731
            reports.append(_report("triton-main", v.tile, build))
    return reports


# --------------------------------------------------------------------------------------------------
# GPU mode (NOT RUN YET)
# --------------------------------------------------------------------------------------------------
def expert_weights_fp8(
    num_local: int, rows: int, cols: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random expert weights ``(L, rows, cols)`` float8_e4m3fn and their ``(L, rows/128, cols/128)``
    float32 block scales, on ``gen``'s device, quantized one expert at a time (the fp32 temporaries
    of all experts at once would not fit beside the rest)."""
    from kernels.quant import quantize_fp8_block

    wq = torch.empty((num_local, rows, cols), dtype=torch.float8_e4m3fn, device=gen.device)
    ws = torch.empty((num_local, rows // GROUP, cols // GROUP), dtype=torch.float32, device=gen.device)
    for e in range(num_local):
        w = torch.randn(1, rows, cols, device=gen.device, generator=gen) * 0.02
        wq[e : e + 1], ws[e : e + 1] = quantize_fp8_block(w)
    return wq, ws


def fastest_main_tile(
    tiles: Any, launch: Callable[[Any], None], flops: float, label: str
) -> tuple[float, Any]:
    """Times main's Triton kernel at each of its fp8 ``tiles`` (``(block_n, block_k, warps, stages)``
    from ``kernels.tactics``, TMA on) through ``launch(tile)``, prints each, and returns ``(ms, tile)``
    of the fastest: the reference output and the speed-up baseline of the Gluon variants."""
    from kernels.tactics import GemmTile

    best: tuple[float, Any] | None = None
    for bn, bk, warps, stages in tiles:
        tile = GemmTile(bn, bk, 8, warps, stages, tma=True)
        ms = bench_ms(partial(launch, tile))
        print(f"  triton-main {label} {tile.name}: {ms * 1e3:.1f} us {flops / ms / 1e9:.0f} TFLOP/s")
        if best is None or ms < best[0]:
            best = (ms, tile)
    if best is None:
        raise ValueError(f"no main tiles to time for {label}")
    return best


def run_gpu(variants: list[Variant], num_tokens: int = 4096) -> None:
    """deepseek-r1 DEP8 (L=32 local experts of 256, H=7168, I=2048, top_k=8), balanced routing:
    for each variant, the Gluon kernel against main's Triton ``_launch_gate_up`` (same alignment,
    fp8 block scale, TMA weights, main's fp8 gate_up tiles for that block_m), then both timed.

    Expected agreement: both kernels compute the same fp32 sums per 128-deep K block in the same
    order; only FMA contraction and the wgmma's internal accumulation order may differ (~1e-6
    relative on gate/up). That can move a few values of h across an e4m3 rounding boundary (one code
    step is 2^-3 relative) or change a row's amax (then its whole group rescales by ~1e-7), so compare
    dequantized h in relative Frobenius norm (bound 1e-2, expected ~1e-4 or less) and report the
    fraction of differing e4m3 codes (expected well under 1%) and the max relative hs difference.
    """
    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from kernels.align import moe_align
    from kernels.fused_moe import _launch_gate_up
    from kernels.quant import dequantize_fp8_groups, quantize_fp8_groups
    from kernels.tactics import _GATE_UP_FP8

    case = CASES["deepseek-r1-dep8"]
    dev = torch.device("cuda")
    num_local, k, h, i = case.local_experts, case.top_k, case.hidden, case.intermediate
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(num_tokens, h, device=dev, generator=gen, dtype=torch.bfloat16)
    xq, xs = quantize_fp8_groups(x)
    w1q, w1s = expert_weights_fp8(num_local, 2 * i, h, gen)
    ids, _ = balanced_topk(num_tokens, case, 0, dev)
    rows = num_tokens * k  # every slot is local under DEP balanced routing
    flops = 2.0 * rows * h * 2 * i
    print(f"deepseek-r1-dep8 T={num_tokens}: L={num_local} H={h} I={i} top_k={k}, {rows} routed rows, "
          f"{flops / 1e12:.2f} TFLOP per call (2 * rows * H * 2I)")  # fmt: skip

    for block_m in dict.fromkeys(v.block_m for v in variants):  # the working point (first) first
        al = moe_align(ids, block_m, num_local, case.offset)
        # rows past num_padded are never written (sorted_ids there is uninitialized): compare real rows
        padded = int(al.num_padded.item())  # host sync: fine here
        real = (al.sorted_ids[:padded] < al.num_slots).nonzero().squeeze(1)
        hq_ref = torch.empty((al.max_padded, i), dtype=torch.float8_e4m3fn, device=dev)
        hs_ref = torch.empty((al.max_padded, i // GROUP), dtype=torch.float32, device=dev)

        def ref_call(
            tile: Any, al: Any = al, hq_ref: torch.Tensor = hq_ref, hs_ref: torch.Tensor = hs_ref
        ) -> None:
            _launch_gate_up(xq, w1q, hq_ref, al, tile, k, "tf32", scales=(xs, w1s, hs_ref))

        ref_ms, ref_tile = fastest_main_tile(_GATE_UP_FP8[block_m], ref_call, flops, f"bm{block_m}")
        # reference outputs from the fastest Triton tile
        _launch_gate_up(xq, w1q, hq_ref, al, ref_tile, k, "tf32", scales=(xs, w1s, hs_ref))
        torch.cuda.synchronize()
        codes_ref = hq_ref.view(torch.uint8)[real]  # index as bytes (fp8 indexing support varies)
        h_ref = dequantize_fp8_groups(codes_ref.view(torch.float8_e4m3fn), hs_ref[real])
        for v in (v for v in variants if v.block_m == block_m):
            tag = f"gluon-{v.scheme} bm{v.block_m} w{v.num_warps} s{v.num_stages}"
            hq = torch.empty_like(hq_ref)
            hs = torch.empty_like(hs_ref)

            def call(v: Variant = v, al: Any = al, hq: torch.Tensor = hq, hs: torch.Tensor = hs) -> None:
                gluon_gate_up_fp8(xq, xs, w1q, w1s, al, v.block_m, v.num_warps, v.num_stages,
                                  scheme=v.scheme, out=(hq, hs))  # fmt: skip

            try:
                call()
                torch.cuda.synchronize()
                codes_out = hq.view(torch.uint8)[real]
                h_out = dequantize_fp8_groups(codes_out.view(torch.float8_e4m3fn), hs[real])
                rel = float((h_out - h_ref).norm() / h_ref.norm())
                codes = float((codes_out != codes_ref).float().mean())
                hs_rel = float(((hs[real] - hs_ref[real]).abs() / hs_ref[real].abs()).max())
                ms = bench_ms(call)
            except Exception as exc:  # report and go on, unless CUDA is gone
                print(f"  {tag}: FAILED {type(exc).__name__}: {str(exc)[:400]}")
                if is_cuda_fault(exc):
                    raise
                continue
            verdict = "ok" if rel < 1e-2 else "WRONG (bound 1e-2)"
            print(f"  {tag}: rel err (dequantized h) {rel:.2e} {verdict}; e4m3 codes differing "
                  f"{100 * codes:.3f}%; max rel hs diff {hs_rel:.1e}; {ms * 1e3:.1f} us "
                  f"{flops / ms / 1e9:.0f} TFLOP/s ({ref_ms / ms:.2f}x triton-main "
                  f"{ref_tile.name})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="compile for sm_90a and report (CPU only)")
    mode.add_argument("--gpu", action="store_true", help="correctness and timing on an H100 (not run yet)")
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per rank for --gpu")
    args = parser.parse_args()
    if args.gpu or (not args.offline and torch.cuda.is_available()):
        run_gpu(OFFLINE_VARIANTS, args.tokens)
    else:
        print_offline(offline_reports())


if __name__ == "__main__":
    main()
