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
multiples of 128, block_m 64 or 128, 8 warps (two warpgroups).

Data movement per K block (BLOCK_K = 128): the weight rows by one TMA copy into a ring slot with one
mbarrier per slot: w1 is viewed as ``(2L, I, H)`` (plane ``2e`` expert e's gate rows, ``2e + 1`` its
up rows) and the box ``(2, ROWS, 128)`` brings ROWS gate rows and the same ROWS up rows (one copy
instead of two or four 64-row boxes: 27% fewer K-loop instructions, bit-identical, but hardly
faster, BENCHMARKS.md run 62). The BLOCK_M x rows come one of two ways:

- gathered (default): 16-byte ``cp.async`` per thread from x's token rows (Hopper's TMA cannot
  gather rows), one commit group per K block, then a proxy fence and a CTA barrier before the
  wgmmas read them;
- ``SORTED`` (the tile's ``sorted_x``): x was quantized straight into the alignment's row order
  (``kernels.quant.quantize_fp8_groups_sorted``), so the rows are one ``(BLOCK_M, 128)`` TMA box on
  the slot's mbarrier, beside the weights. No warp waits for the others' copies: 798 to 945-957
  TFLOP/s at 4000 tokens, 829 to 895-922 at 16384 (H100, run 63), the same bits.

One program owns BLOCK_M rows x 128 h columns (one e4m3 group), in one of two schedules picked by
block_m. Both keep one wgmma in flight while the previous K block is promoted in fp32 registers with
a per-column scale (the gate block's on gate columns, the up block's on up columns), in a loop
unrolled by two (``_wide_mainloop``, which mirrors :func:`kernels.gluon_common._gluon_mainloop`), and
each warpgroup issues one m64n128 wgmma per K block:

- block_m 64, ``wide``: a slot holds 256 weight rows, gate ``n0 .. n0 + 127`` then up ``n0 ..``; in
  the ``64 x 256`` wgmma warpgroup 0 computes the gate values of the program's 128 h columns and
  warpgroup 1 the up values. The epilogue's layout conversion brings each column's pair together.
  Three live 64 x 256 fp32 tiles: 236-237 registers, no spills.
- block_m 128, ``halves``: a slot holds 128 weight rows (64 gate rows, then the same 64 up rows)
  and each warpgroup takes 64 of the x rows. The program makes two passes over K, one per 64 h
  columns; pass 0's h waits in shared memory as fp32 until pass 1's is done, since the group's
  scale needs both. The ring streams across the passes (pass 0's last retirements request pass 1's
  first blocks). Three live 128 x 128 tiles: 244-255 registers, no spills. It replaced the
  ``stagger`` schedule (gate and up as separate 128-wide wgmmas, which ptxas serialized): 756-783
  TFLOP/s against stagger's 659-661 (BENCHMARKS.md, run 54).

H100, deepseek-r1 DEP8, x gathered (BENCHMARKS.md, runs 45, 54, 62, 63): wide 4 stages 758-798
TFLOP/s at 4000 tokens and 761-829 at 16384, about 1.4x main's fastest Triton gate/up tile; halves
the same alone (756-798), but in the layer its block_m 128 also brings the faster block_m 128 Gluon
down. Both are bit-identical to main's Triton kernel, with x gathered or sorted.
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
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from kernels.align import Alignment
from kernels.gluon_common import (
    SCALE_GROUP,
    _gluon_pin,
    _mma_layout,
    _moe_tile,
    _ready_ring,
)
from kernels.tactics import GemmTile

SCHEMES = {64: "wide", 128: "halves"}
"""The schedule each block_m runs (the only two the kernel is written for)."""

WEIGHT_ROWS = {"wide": 128, "halves": 64}
"""Gate rows (and as many up rows) of one ring slot per schedule: the weight TMA box is
``(2, WEIGHT_ROWS, 128)`` over w1 viewed as ``(2L, I, H)``."""

H_BOX = {"wide": 128, "halves": 64}
"""Columns of one hq TMA store box per schedule (halves stores each pass's 64 columns)."""


@gluon.jit
def _moe_load_block(a_src, a_off, w_desc, a_bufs, b_bufs, ready, g, num_k, e2, n0,
                    NUM_STAGES: gl.constexpr, PASSES: gl.constexpr, SORTED: gl.constexpr):  # fmt: skip
    """Fill ring slot ``g % NUM_STAGES`` with block ``g`` of the program's stream of ``PASSES * num_k``
    K blocks: pass ``p = g // num_k``, K block ``g % num_k`` (one pass, or two in ``halves``).

    The x rows: gathered (``SORTED`` False; ``a_src`` the ``[BLOCK_M, 1]`` row pointers, ``a_off``
    the ``[BLOCK_K]`` column offsets) by cp.async from every thread, one commit group; or, with
    ``SORTED``, one TMA box ``(BLOCK_M, 128)`` of ``a_src`` (a descriptor over x already in the
    alignment's row order) at ``(a_off, k0)``, ``a_off`` the program's first row. The slot's weight
    rows by one TMA copy of ``w_desc``'s 3-D box ``(2, ROWS, 128)`` at ``(e2, n0 + p * ROWS, k0)``
    in w1 viewed as ``(2L, I, H)``: ROWS gate rows of expert ``e2 // 2``, then the same ROWS up rows.
    The TMA copies complete the slot's mbarrier. Past the stream the copies are predicated off (a
    gather's cp.async group is still committed, empty, so that ``wait_group`` counts stay the same
    every step)."""
    ROWS: gl.constexpr = w_desc.block_type.shape[1]
    BLOCK_K: gl.constexpr = w_desc.block_type.shape[2]
    slot = g % NUM_STAGES
    if PASSES == 1:
        pred = g < num_k
        k0 = g * BLOCK_K
        n = n0
    else:
        gl.static_assert(PASSES == 2, "one or two passes")
        pred = g < 2 * num_k
        p = (g >= num_k).to(gl.int32)  # no division in the loop
        k0 = (g - p * num_k) * BLOCK_K
        n = n0 + p * ROWS
    bar = ready.index(slot)
    if SORTED:
        mbarrier.expect(bar, w_desc.block_type.nbytes + a_src.block_type.nbytes, pred=pred)
        tma.async_copy_global_to_shared(a_src, [a_off, k0], bar, a_bufs.index(slot), pred=pred)
    else:
        async_copy.async_copy_global_to_shared(a_bufs.index(slot), a_src + gl.expand_dims(k0 + a_off, 0),
                                               mask=pred)  # fmt: skip
        async_copy.commit_group()
        mbarrier.expect(bar, w_desc.block_type.nbytes, pred=pred)
    tma.async_copy_global_to_shared(w_desc, [e2, n, k0], bar, b_bufs.index(slot), pred=pred)

@gluon.jit
def _moe_wait_block(a_bufs, ready, kb, NUM_STAGES: gl.constexpr, SORTED: gl.constexpr):
    """Wait until K block ``kb`` is in shared memory. Gathered x rows: this thread's cp.async group
    of the block (``NUM_STAGES - 2`` later groups may still be pending, see ``_moe_load_block``'s
    callers), a generic-to-async proxy fence for the wgmma, a CTA barrier for the other threads'
    rows. Then (both modes) the slot's TMA mbarrier."""
    slot = kb % NUM_STAGES
    if not SORTED:
        async_copy.wait_group(NUM_STAGES - 2)
        fence_async_shared()
        gl.thread_barrier()
    mbarrier.wait(ready.index(slot), (kb // NUM_STAGES) & 1)

@gluon.jit
def _wide_issue(a_bufs, b_bufs, ready, g, spare, NUM_STAGES: gl.constexpr, SORTED: gl.constexpr):
    """Wait for block ``g`` of the stream and issue its ``BLOCK_M x 2 ROWS`` wgmma into ``spare``'s
    registers (the slot's ``(2, ROWS, 128)`` box read as ``2 ROWS x 128``: the same bytes, since the
    128-byte swizzle follows the shared-memory address)."""
    _moe_wait_block(a_bufs, ready, g, NUM_STAGES, SORTED)
    slot = g % NUM_STAGES
    b = b_bufs.index(slot).reshape([2 * b_bufs.shape[2], b_bufs.shape[3]])  # (gate, up) rows, K
    return warpgroup_mma(a_bufs.index(slot), b.permute((1, 0)), spare, use_acc=False, is_async=True)

@gluon.jit
def _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk, is_gate):
    """The ``[BLOCK_M, slot]`` promotion scale of K block ``kb``: ``xs[row, kb]`` times the gate
    block's scale on gate columns (``is_gate``, ``[1, slot]``) and the up block's on up columns.
    The choice is the same for all of a thread's accumulator registers (gate and up columns belong
    to different warpgroups in wide, to fixed registers in halves), so the promotion costs one FMA
    per element and one select per row."""
    sa = gl.expand_dims(gl.load(sa_ptrs + kb), 1)
    gate_scale = gl.load(gs_ptr + kb * stride_wsk)
    return gl.where(is_gate, sa * gate_scale, sa * gl.load(us_ptr + kb * stride_wsk))

@gluon.jit
def _wide_mainloop(a_bufs, b_bufs, ready, a_src, a_off, w_desc, e2, n0, num_k, base,
                   sa_ptrs, gs_ptr, us_ptr, stride_wsk, mma_layout: gl.constexpr,
                   NUM_STAGES: gl.constexpr, PASSES: gl.constexpr, PREFETCH: gl.constexpr,
                   SORTED: gl.constexpr):  # fmt: skip
    """One pass's K loop over stream blocks ``base .. base + num_k - 1`` of ``PASSES * num_k`` (the
    ring's first NUM_STAGES blocks from ``base`` already requested): T0 takes the even K blocks, T1
    the odd ones, one wgmma in flight while the previous block is promoted, unrolled by two so that
    no temporary changes role (see :mod:`kernels.gluon_common`). Retiring block ``g`` requests block
    ``g + NUM_STAGES``; with ``PREFETCH`` also in the tail, so that the next pass's first blocks are
    in flight when this one ends. Returns the ``[BLOCK_M, slot]`` fp32 accumulator in
    ``mma_layout``; its columns are ROWS gate columns, then the ROWS up columns of the same h columns.
    ``e2``/``n0`` locate the program's weight rows (see :func:`_moe_load_block`)."""
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    ROWS: gl.constexpr = b_bufs.shape[2]
    WIDE: gl.constexpr = 2 * ROWS
    wide_cols = gl.arange(0, WIDE, layout=gl.SliceLayout(0, mma_layout))
    is_gate = gl.expand_dims(wide_cols < ROWS, 0)

    acc = gl.zeros([BLOCK_M, WIDE], gl.float32, mma_layout)
    spare1 = gl.zeros([BLOCK_M, WIDE], gl.float32, mma_layout)
    t0 = _wide_issue(a_bufs, b_bufs, ready, base, gl.zeros([BLOCK_M, WIDE], gl.float32, mma_layout),
                     NUM_STAGES, SORTED)  # fmt: skip
    scale0 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, 0, stride_wsk, is_gate)
    for j in range(0, (num_k - 1) // 2):
        kb = 2 * j + 1
        t1 = _wide_issue(a_bufs, b_bufs, ready, base + kb, spare1, NUM_STAGES, SORTED)
        scale1 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk, is_gate)
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))  # block kb-1 complete
        nxt = base + kb + NUM_STAGES - 1  # refill block kb-1's slot
        _moe_load_block(a_src, a_off, w_desc, a_bufs, b_bufs, ready, nxt, num_k, e2, n0,
                        NUM_STAGES, PASSES, SORTED)  # fmt: skip
        acc = _gluon_pin(acc + done0 * scale0)

        t0 = _wide_issue(a_bufs, b_bufs, ready, base + kb + 1, done0, NUM_STAGES, SORTED)
        scale0 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb + 1, stride_wsk, is_gate)
        spare1 = warpgroup_mma_wait(num_outstanding=1, deps=(t1,))  # block kb complete
        _moe_load_block(a_src, a_off, w_desc, a_bufs, b_bufs, ready, nxt + 1, num_k, e2, n0,
                        NUM_STAGES, PASSES, SORTED)  # fmt: skip
        acc = _gluon_pin(acc + spare1 * scale1)
    last = base + num_k - 1
    if num_k % 2 == 0:
        t1 = _wide_issue(a_bufs, b_bufs, ready, last, spare1, NUM_STAGES, SORTED)
        scale1 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, num_k - 1, stride_wsk, is_gate)
        done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))
        if PREFETCH:
            _moe_load_block(a_src, a_off, w_desc, a_bufs, b_bufs, ready, last - 1 + NUM_STAGES, num_k,
                            e2, n0, NUM_STAGES, PASSES, SORTED)  # fmt: skip
        acc = acc + done0 * scale0
        done1 = warpgroup_mma_wait(num_outstanding=0, deps=(t1,))
        acc = acc + done1 * scale1
    else:
        done0 = warpgroup_mma_wait(num_outstanding=0, deps=(t0,))
        acc = acc + done0 * scale0
    if PREFETCH:
        _moe_load_block(a_src, a_off, w_desc, a_bufs, b_bufs, ready, last + NUM_STAGES, num_k, e2, n0,
                        NUM_STAGES, PASSES, SORTED)  # fmt: skip
    return acc

@gluon.jit
def _drain_ring(ready, NUM_STAGES: gl.constexpr):
    """Wait for this thread's last cp.async groups (the empty ones past the last K block still
    write zeros) and retire the ring's mbarriers, so that the ring's memory is free."""
    async_copy.wait_group(0)
    for s in gl.static_range(NUM_STAGES):
        mbarrier.invalidate(ready.index(s))

@gluon.jit
def _silu_mul(gate, up):
    """``silu(gate) * up`` in fp32, written as main's epilogue writes it."""
    return gate / (1.0 + gl.exp(-gate)) * up

@gluon.jit
def _h_scale(amax):
    """The e4m3 scale of a row group from its ``max |h|``, with main's IEEE division."""
    return gl.div_rn(gl.maximum(amax, 1e-10), 448.0)

@gluon.jit
def _e4m3_quotient(h, h_scale):
    """``h / h_scale[:, None]`` (``(ROWS, COLS)`` fp32 over ``(ROWS,)`` fp32 row scales), rounded as
    main's IEEE division, clamped to +-448: what the e4m3 codes are cast from.

    One IEEE division per row (the scale's reciprocal ``y``), not per element: ``q0 = h y``, the
    residual ``r = q0 s - h`` by an FMA (exact), ``q = q0 - r y`` by another (Markstein's correction,
    which gives the correctly rounded quotient). Written with the residual negated, a zero h keeps its
    sign with no select. So ``q`` is ``div_rn(h, s)`` wherever h is a normal number, and the e4m3 codes
    are the same everywhere (a subnormal h's code is a zero of its sign either way):
    ``suites/kernels/test_e4m3_quotient_gpu.py`` checks both on the GPU, ``benchmarks/quotient_check.py``
    emulates it on the CPU. Per thread and tile that is 2 divisions instead of 64; the fp8 gate/up took
    0.955-0.988x its time (0.79x at qwen3-30b T = 1024) and the fp8 layer 0.975x at T >= 1024 on the
    H200 (BENCHMARKS.md, session 24, runs 123 and 126-127)."""
    scale = gl.expand_dims(h_scale, 1)
    recip = gl.div_rn(gl.full_like(scale, 1.0), scale)
    q0 = h * recip
    q = gl.fma(gl.fma(q0, scale, -h), -recip, q0)  # -recip: once per row
    return gl.minimum(gl.maximum(q, -448.0), 448.0)

@gluon.jit
def _store_hq(h, h_scale, h_desc, off_m, off_n):
    """``h`` (``h_desc``'s box, fp32) divided by its row scales ``h_scale`` (:func:`_e4m3_quotient`),
    to e4m3 and into ``hq[off_m.., off_n..]`` through shared memory and a TMA store."""
    hq = _e4m3_quotient(h, h_scale)
    h_smem = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    h_smem.store(hq.to(h_desc.dtype))
    fence_async_shared()
    tma.async_copy_shared_to_global(h_desc, [off_m, off_n], h_smem)
    tma.store_wait(pendings=0)

@gluon.jit
def _quantize_store_h(gate, up, layout: gl.constexpr, off_m, off_n, pid_n, N, h_desc, hs_ptr,
                      stride_hsm):  # fmt: skip
    """Main's epilogue: ``h = silu(gate) * up`` (``[BLOCK_M, 128]`` fp32 in ``layout``), one e4m3
    group per row with IEEE divisions; the scale to ``hs[rows, pid_n]``, the codes to ``hq`` by TMA."""
    BLOCK_M: gl.constexpr = h_desc.block_type.shape[0]
    BLOCK_N: gl.constexpr = h_desc.block_type.shape[1]
    cols = off_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, layout))
    h = gl.where(gl.expand_dims(cols < N, 0), _silu_mul(gate, up), 0.0)
    h_scale = _h_scale(gl.max(gl.abs(h), axis=1))
    rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, layout))
    gl.store(hs_ptr + rows.to(gl.int64) * stride_hsm + pid_n, h_scale)
    _store_hq(h, h_scale, h_desc, off_m, off_n)

@gluon.jit
def _halves_h(acc):
    """``silu(gate) * up`` of a ``[BLOCK_M, 2 W]`` accumulator whose columns are W gate columns, then
    the same W up columns (W = 64 for the fp8 halves tile, 128 for the 16-bit persistent one), as
    ``[BLOCK_M, W]`` fp32. In the wgmma layout a thread holds column c and column c + W of its rows,
    so the split is a register renaming: h stays in the accumulator's threads (no layout conversion
    through shared memory)."""
    BLOCK_M: gl.constexpr = acc.shape[0]
    W: gl.constexpr = acc.shape[1] // 2
    gate, up = gl.split(gl.permute(gl.reshape(acc, [BLOCK_M, 2, W]), (0, 2, 1)))
    return _silu_mul(gate, up)

@gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
def _gluon_gate_up_fp8_kernel(
    x_src, w_desc, h_desc,  # x (T, H) fp8 pointer, or with SORTED a TMA descriptor over x in the
                            # alignment's row order (max_padded, H), box (BLOCK_M, 128);
                            # TMA: w1 as (2L, I, H) fp8, box (2, WEIGHT_ROWS, 128); hq (max_padded, I),
                            # box (BLOCK_M, H_BOX)
    xs_ptr, ws_ptr, hs_ptr,  # fp32: xs (T, H/128) (SORTED: (max_padded, H/128)), w1s (L, 2I/128, H/128),
                             # hs (max_padded, I/128)
    sorted_ids_ptr, expert_ids_ptr, num_padded_ptr,  # int32 (max_padded,), (max_blocks,), (1,)
    N, K, num_slots, top_k, max_blocks,  # N = I, K = H
    stride_xm, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr, SCHEME: gl.constexpr, SORTED: gl.constexpr,
):  # fmt: skip
    """One (BLOCK_M rows, 128 columns of h) tile per program; grid ``max_blocks * cdiv(I, 128)``
    in main's grouped order. BLOCK_M comes from ``h_desc``'s block, BLOCK_K = 128 from ``w_desc``'s.
    H must be a multiple of 128 (no masked K tail)."""
    BLOCK_M: gl.constexpr = h_desc.block_type.shape[0]
    BLOCK_N: gl.constexpr = 128  # h columns per program: one scale group
    BLOCK_K: gl.constexpr = w_desc.block_type.shape[2]
    NUM_WARPS: gl.constexpr = gl.num_warps()
    PASSES: gl.constexpr = 2 if SCHEME == "halves" else 1
    SLOT_ROWS: gl.constexpr = 2 * BLOCK_N // PASSES  # weight rows per ring slot
    gl.static_assert(BLOCK_K == 128, "one scale group per K step")
    gl.static_assert(h_desc.block_type.shape[1] * PASSES == BLOCK_N, "hq box: the program's columns")
    gl.static_assert(NUM_STAGES >= 3, "cp.async wait_group NUM_STAGES-2 needs a ring of 3+")

    pid_m, pid_n = _moe_tile(gl.program_id(0), max_blocks, gl.cdiv(N, BLOCK_N), GROUP_M)
    if pid_m * BLOCK_M >= gl.load(num_padded_ptr):
        return
    e = gl.load(expert_ids_ptr + pid_m)
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    e2 = 2 * e  # expert e's gate plane in w1 viewed as (2L, I, H); its up plane is e2 + 1
    num_k = gl.cdiv(K, BLOCK_K)

    a_layout: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
    a_bufs = gl.allocate_shared_memory(gl.float8e4nv, [NUM_STAGES, BLOCK_M, BLOCK_K], a_layout)
    b_bufs = gl.allocate_shared_memory(w_desc.dtype, [NUM_STAGES, 2, SLOT_ROWS // 2, BLOCK_K], w_desc.layout)
    ready = _ready_ring(NUM_STAGES)

    if SORTED:  # x rows already in the alignment's order: one TMA box per K block
        gl.static_assert(x_src.block_type.shape[0] == BLOCK_M, "x box: the program's rows")
        a_src = x_src
        a_off = off_m
    else:
        # Gathered rows: token = slot // top_k, padding rows (slot == num_slots) read token 0.
        # Gather layout: 16 fp8 (one 16-byte cp.async) per thread, 8 threads per 128-byte row.
        gather_layout: gl.constexpr = gl.BlockedLayout([1, 16], [4, 8], [NUM_WARPS, 1], [1, 0])
        g_rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, gather_layout))
        g_slot = gl.load(sorted_ids_ptr + g_rows)
        g_tok = gl.where(g_slot < num_slots, g_slot // top_k, 0).to(gl.int64)
        a_src = x_src + gl.expand_dims(g_tok * stride_xm, 1)
        a_off = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, gather_layout))
    for i in gl.static_range(NUM_STAGES):
        _moe_load_block(a_src, a_off, w_desc, a_bufs, b_bufs, ready, i, num_k, e2, off_n, NUM_STAGES,
                        PASSES, SORTED)  # fmt: skip

    if SCHEME == "wide":
        gl.static_assert(BLOCK_M == 64, "wide: 64 rows, one warpgroup per 64 h columns")
    else:
        gl.static_assert(SCHEME == "halves", "SCHEME is 'wide' or 'halves'")
        gl.static_assert(BLOCK_M == 128, "halves: 128 rows, one warpgroup per 64 rows")
    gl.static_assert(NUM_WARPS == 8, "8 warps: two wgmma warpgroups")
    gl.static_assert(w_desc.block_type.shape[0] == 2 and w_desc.block_type.shape[1] * 2 == SLOT_ROWS,
                     "weight box (2, SLOT_ROWS / 2, 128): gate rows, then up rows")  # fmt: skip
    # one m64n128 wgmma per warpgroup: warps [4, 2] over 64 x 256 (wide), [8, 1] over 128 x 128 (halves)
    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, SLOT_ROWS, NUM_WARPS)
    rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, mma_layout))
    if SORTED:
        sa_ptrs = xs_ptr + rows.to(gl.int64) * stride_xsm
    else:
        slot_ids = gl.load(sorted_ids_ptr + rows)
        tok = gl.where(slot_ids < num_slots, slot_ids // top_k, 0).to(gl.int64)
        sa_ptrs = xs_ptr + tok * stride_xsm
    ws_e = ws_ptr + e.to(gl.int64) * stride_wse
    gs_ptr = ws_e + (off_n // 128) * stride_wsn  # both halves of a halves program share these blocks
    us_ptr = ws_e + ((N + off_n) // 128) * stride_wsn

    if SCHEME == "wide":
        acc = _wide_mainloop(a_bufs, b_bufs, ready, a_src, a_off, w_desc, e2, off_n, num_k, 0, sa_ptrs,
                             gs_ptr, us_ptr, stride_wsk, mma_layout, NUM_STAGES, PASSES, False,
                             SORTED)  # fmt: skip
        # The predicated-off gathers past the last K block still zero-fill their A slots
        # asynchronously: drain them before the epilogue's shared-memory scratch may reuse the ring.
        _drain_ring(ready, NUM_STAGES)
        # Columns are (gate/up, 128 columns), one warpgroup each: a layout conversion brings the
        # gate and up values of one h column into the same thread before the split.
        pair_layout: gl.constexpr = gl.BlockedLayout([1, 2, 8], [4, 1, 8], [NUM_WARPS, 1, 1], [2, 1, 0])
        pairs = gl.convert_layout(gl.reshape(acc, [BLOCK_M, 2, BLOCK_N]), pair_layout)
        gate, up = gl.split(gl.permute(pairs, (0, 2, 1)))
        epi_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [NUM_WARPS, 1], [1, 0])
        gate = gl.convert_layout(gate, epi_layout)
        up = gl.convert_layout(up, epi_layout)
        _quantize_store_h(gate, up, epi_layout, off_m, off_n, pid_n, N, h_desc, hs_ptr, stride_hsm)
    else:
        # Pass p computes h columns off_n + 64p ..: pass 0's h waits in shared memory (fp32) until
        # pass 1's is done, because the e4m3 group (128 columns) spans both. The ring streams on
        # across the passes: pass 0's last retirements already request pass 1's first blocks.
        stash = gl.allocate_shared_memory(gl.float32, [BLOCK_M, BLOCK_N // 2],
                                          gl.SwizzledSharedLayout(1, 1, 1, order=[1, 0]))  # fmt: skip
        acc = _wide_mainloop(a_bufs, b_bufs, ready, a_src, a_off, w_desc, e2, off_n, num_k, 0, sa_ptrs,
                             gs_ptr, us_ptr, stride_wsk, mma_layout, NUM_STAGES, PASSES, True,
                             SORTED)  # fmt: skip
        stash.store(_halves_h(acc))  # each thread reads back only what it wrote: no barrier
        acc = _wide_mainloop(a_bufs, b_bufs, ready, a_src, a_off, w_desc, e2, off_n, num_k, num_k, sa_ptrs,
                             gs_ptr, us_ptr, stride_wsk, mma_layout, NUM_STAGES, PASSES, False,
                             SORTED)  # fmt: skip
        _drain_ring(ready, NUM_STAGES)
        h_hi = _halves_h(acc)
        h_layout: gl.constexpr = h_hi.type.layout
        h_lo = stash.load(h_layout)
        h_scale = _h_scale(gl.maximum(gl.max(gl.abs(h_lo), axis=1), gl.max(gl.abs(h_hi), axis=1)))
        rows_h = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, h_layout))
        gl.store(hs_ptr + rows_h.to(gl.int64) * stride_hsm + pid_n, h_scale)
        _store_hq(h_lo, h_scale, h_desc, off_m, off_n)
        _store_hq(h_hi, h_scale, h_desc, off_m, off_n + BLOCK_N // 2)


def gate_up_descriptors(
    xq: torch.Tensor, w1q: torch.Tensor, hq: torch.Tensor, block_m: int, rows: int, h_cols: int,
    sorted_x: bool, h_rows: int | None = None,
) -> tuple[torch.Tensor | TensorDescriptor, TensorDescriptor, TensorDescriptor]:
    """The x source and TMA descriptors of a Gluon gate/up launch, in the kernels' shared layouts:
    with ``sorted_x`` x in the alignment's order ``(max_padded, H)`` with box ``(block_m, 128)``,
    else ``xq`` itself (its rows gathered by the kernel); w1 viewed as ``(2L, I, H)`` with box
    ``(2, rows, 128)`` (``rows`` gate rows, then the same up rows); hq ``(max_padded, I)`` with box
    ``(h_rows, h_cols)`` (``h_rows`` defaults to block_m; the dual kernel stores 64-row halves)."""
    num_local, two_i, h = w1q.shape
    w_box, h_box = [2, rows, SCALE_GROUP], [block_m if h_rows is None else h_rows, h_cols]
    w_layout = gl.NVMMASharedLayout.get_default_for(w_box, gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for(h_box, gl.float8e4nv)
    x_src: torch.Tensor | TensorDescriptor = xq
    if sorted_x:
        x_layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)  # = a_bufs'
        x_src = TensorDescriptor.from_tensor(xq, [block_m, SCALE_GROUP], x_layout)
    return (x_src, TensorDescriptor.from_tensor(w1q.view(num_local * 2, two_i // 2, h), w_box, w_layout),
            TensorDescriptor.from_tensor(hq, h_box, h_layout))  # fmt: skip


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
    *,
    sorted_x: bool = False,
) -> None:
    """Gate/up GEMM + silu * up + e4m3 group quantization of h into ``hq``/``hs``.

    xq: (T, H) float8_e4m3fn, unit stride in H, 16-byte aligned rows; xs: (T, H/128) float32, unit
    stride in the group dim; with ``sorted_x`` both are already in the alignment's row order instead
    (row r holds the token of ``al.sorted_ids[r]``): xq (al.max_padded, H) contiguous, xs
    (al.max_padded, H/128), and x comes by TMA instead of a cp.async gather. w1q: (L, 2I, H)
    float8_e4m3fn contiguous; w1s: (L, 2I/128, H/128) float32; hq: (al.max_padded, I)
    float8_e4m3fn contiguous; hs: (al.max_padded, I/128) float32.
    H and I multiples of 128, ``al.block_m`` in :data:`SCHEMES`, 8 warps, ``tile`` 128 x 128
    (the caller, ``kernels.quant.fused_moe_fp8``, checks all of this with
    ``kernels.tactics.gluon_misfit``). Rows at or past ``num_padded`` are not written. A
    ``tile.persistent`` (block_m 128) runs :mod:`kernels.gluon_gate_up_ws` instead.
    """
    if tile.persistent:
        from kernels.gluon_gate_up_ws import launch_gluon_gate_up_ws  # it imports this module's helpers

        if sorted_x != tile.sorted_x or al.block_m != 128:
            raise ValueError(f"a persistent gate/up tile ({tile.name}) runs at block_m 128 on x in the "
                             f"layout its sorted_x names, got sorted_x={sorted_x}, "
                             f"block_m={al.block_m}")  # fmt: skip
        launch_gluon_gate_up_ws(xq, xs, w1q, w1s, hq, hs, al, tile, top_k)
        return
    h, i = w1q.shape[2], w1q.shape[1] // 2
    scheme = SCHEMES[al.block_m]
    x_src, w_desc, h_desc = gate_up_descriptors(xq, w1q, hq, al.block_m, WEIGHT_ROWS[scheme], H_BOX[scheme],
                                                sorted_x)  # fmt: skip
    _gluon_gate_up_fp8_kernel[(al.max_blocks * (i // SCALE_GROUP),)](
        x_src, w_desc, h_desc, xs, w1s, hs,
        al.sorted_ids, al.expert_ids, al.num_padded,
        i, h, al.num_slots, top_k, al.max_blocks,
        xq.stride(0), xs.stride(0), w1s.stride(0), w1s.stride(1), w1s.stride(2), hs.stride(0),
        NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, SCHEME=scheme, SORTED=sorted_x,
        num_warps=tile.num_warps,
    )  # fmt: skip
