"""Prototype: the wide fp8 MoE gate/up, warp-specialized: 4 loader warps feed 8 math warps.

    PYTHONPATH=. python benchmarks/gluon_fp8_moe_ws.py --offline   # CPU: compile for sm_90a, report
    PYTHONPATH=. python benchmarks/gluon_fp8_moe_ws.py --gpu       # H100: check against wide, time

Same inputs, outputs and launch arguments as the wide schedule of ``kernels.gluon_gate_up`` (block_m
64), for one rank's L local experts::

    xq  (T, H) float8_e4m3fn      xs  (T, H/128) float32              per token, per 128-wide group
    w1q (L, 2I, H) float8_e4m3fn  w1s (L, 2I/128, H/128) float32      rows [0, I) gate, [I, 2I) up
    sorted_ids, expert_ids, num_padded: kernels.align.moe_align with block_m 64
    hq  (max_padded, I) float8_e4m3fn   hs (max_padded, I/128) float32   (outputs)

One program writes 64 rows x 128 columns of h. The math is the wide kernel's as it was until branch
``fp8-one-box`` (which loads the slot as one (2, 128, 128) box, gate rows then up rows): per K block
a 256-row weight tile from four 64-row TMA boxes [gate n0.., up n0.., gate n0+64.., up n0+64..], one
[64 x 256] wgmma (each warpgroup one m64n128k32 chain covering gate and up of 64 h columns), one
wgmma in flight while the previous block is promoted ``acc += t * (xs[row, kb] * w1s[block, kb])``,
loop unrolled by two with pinned promotions, the same epilogue. Same fp32 operations in the same
order, so the output should be bit-identical to the wide kernel's.

Why: in the wide kernel the 8 math warps also gather x (Hopper TMA cannot gather rows): every K
block each thread issues its cp.async copies, waits for its own older ones (``cp.async.wait_group``),
fences, and the CTA meets at a barrier before the wgmma; its PTX has 7 CTA barriers per K block
(2 around that wait, 5 in the refill: before the cp.async/expect and between the TMA boxes).
Hypothesis: that costs the gate/up its ~25% gap to the dense block-scaled GEMM (H100: wide 798
TFLOP/s, dense ~1000+). Run 49 says only partly (STATUS below).

Design (``gl.warp_specialize``, 8 + 4 warps, 384 threads):

- Loader partition (worker, 4 warps, 24 registers): reads sorted_ids itself (token = slot // top_k,
  padding rows with slot == num_slots read token 0), then per K block: wait ``empty[slot]``, cp.async
  the 64 gathered rows (16 B per copy, 4 per thread) and ``cp.async.mbarrier.arrive.noinc`` on
  ``ready[slot]``, then ``expect`` (an arrive with 32 KB of transaction bytes) and the four TMA boxes.
  ``ready`` is initialized with count 1 + 128: one expect arrival plus one no-increment arrival per
  loader thread, each firing when that thread's copies have landed. (The incrementing form would
  let the TMA bytes complete a phase before a slow thread's arrive has even been issued.)
- Math partition (default, 8 warps, 240 registers): per K block ``mbarrier.wait(ready[slot])``, a
  proxy fence, the wgmma; after ``wgmma.wait_group 1`` retires block kb-1, each math thread arrives
  on ``empty[slot of kb-1]`` (count 256). No cp.async, no ``wait_group`` of copies, no CTA barrier
  (one 256-thread named barrier per K block remains, from the membar pass: see below).
- Phases: slot = kb % NUM_STAGES, ready phase (kb // NUM_STAGES) & 1, the loader waits empty with
  the opposite parity (a fresh barrier passes parity 1 at once, so the first NUM_STAGES fills go
  straight through). The loader refills a slot as soon as both warpgroups have retired its wgmma,
  so it runs up to NUM_STAGES - 1 blocks ahead of the wgmma being issued.

Proxy fence (generic -> async): cp.async writes shared memory through the generic proxy, wgmma
reads it through the async proxy, so a ``fence.proxy.async`` must sit between them in causality
order. The writing thread cannot fence after its copies complete without waiting for them (that wait
is what we remove), so the reader fences: each math thread runs ``fence_async_shared()`` right after
its ``mbarrier.wait`` on ``ready`` returns (the wait has acquire semantics and the no-increment
cp.async arrive makes the copies visible to it), before the wgmma. That is the order the Gluon
tutorial (08-warp-specialization) asks for ("a fence is needed somewhere between" the generic write
and the async read, even across partitions synchronized by mbarriers); CUTLASS-style gather
mainloops that signal cp.async through ``cp.async.mbarrier.arrive.noinc`` (quack's sm90 gather_A
pipeline, ``PipelineTmaCpAsync``) fence on neither side as far as I read them, so ours is the
conservative choice: one fence per math thread per K block. The TMA-written weight tiles need
none (async proxy on both sides, ordered by the transaction count). The reverse direction needs
none: a slot is released only after ``wgmma.wait_group`` has retired the wgmma that read it.

Release arrive: Triton 3.6's ``mbarrier.arrive`` lowers to an arrive by thread 0 only, so it needs a
256-thread barrier before it (both warpgroups must have retired the block) and its membar pass puts
another one after it: two math barriers per K block. ``async_copy.mbarrier_arrive(...,
increment_count=False)`` lowers to a per-thread ``cp.async.mbarrier.arrive.noinc``; these threads
have no copies in flight, so it is a plain per-thread arrive, and the math loop keeps one named
barrier (``bar.sync 0, 256``) per K block, before the ready wait (membar's rule between two waits
on the same barrier array, "can't have a warp get ahead").

Offline (triton 3.6.0, bundled ptxas, sm_90a; ``offline_reports_ws``): compiles at 3/4/5 stages,
``setmaxnreg`` 240 for the math warps and 24 for the loader (kernel ``.maxnreg`` 168 = 64K / 384
threads, which is what ``ptxas -v`` reports as "Used 168 registers"); by the SASS (nvdisasm, split at
the USETMAXREG instructions) the math code uses 223 registers and the loader 22, no local memory
(no STL/LDL), ptxas reports 0 spill bytes and no C75xx/warning line. PTX: only m64n128k32 wgmmas,
``wgmma.wait_group 1`` in the loop; the promotion has the wide kernel's 256 fma.rn.f32 (38 selp
against its 42). Math-path barriers per K block: 1 named 256-thread barrier (wide: 7 CTA barriers).
The loader meets 6 loader-only barriers (``bar.sync 2, 128``) per K block from the lowering of the
TMA issue. Shared memory 139,324 / 180,292 / 221,276 B at 3 / 4 / 5 stages (4 stages: ring 160 KB,
barriers, h tile, epilogue scratch; the wide kernel's h tile aliases the ring, here the ring is live
across the partitions).
``tests/test_gluon_fp8_moe_ws_compiles.py`` holds these.

Open risks on the GPU: (1) ready count and the noinc arrivals (a wrong count hangs, it does not
miscompute); (2) the per-thread noinc arrive as the release of a slot that wgmmas read (no copies
pending, so it fires at once; it has no .release qualifier, ordering rests on the blocking
``wgmma.wait_group`` before it); (3) 24 registers leave the loader 2 spare: more gather rows per
thread would spill; (4) the membar barrier before each ready wait still syncs the two math
warpgroups once per K block.

``SORTED`` (session 10): x already in the alignment's row order (``kernels.quant.
quantize_fp8_groups_sorted``, as the kernels' ``sorted_x`` tiles take it): the loader issues one TMA
box of x rows beside the four weight boxes, ``ready`` counts the expect alone, and the math warps
read the x scales by row. Offline (triton 3.6.0): math 229 registers, loader 14, no local memory,
no C75xx, 245 SASS instructions and 2 CTA barriers per two K blocks (the kernels' wide schedule
with sorted x: 331 and 8; halves with sorted x: 349 and 8, per ``benchmarks.sass_loop``). Session 9's
Triton 3.6
assertion with a sorted warp-specialized gate/up (ConvertTritonGPUToLLVM, ``SmallVector idx <
size``) does not occur in this form. Not yet run on a GPU: ``--gpu`` times it as ``ws-sorted``
against the kernels' ``wide-sorted`` on the same inputs.

STATUS (BENCHMARKS.md, run 49, H100, ``--gpu --tokens 4000,16384``, deepseek-r1 DEP8): correct, no
hang, bit-identical to the wide kernel (0 e4m3 codes and 0 scales differ). Not clearly faster: at
4000 tokens ws 4 stages 775 TFLOP/s against wide's 794 (5 stages 765, 3 stages 663); at 16384 ws
794 against wide's 751 (+6%). So the gather and its barriers in the math warps are not the whole
gap. Not in ``kernels/``. (Run 49 ran this file before its promotion scale and epilogue were
imported from ``kernels.gluon_gate_up`` instead of copied; the operations are the same.)
"""

from __future__ import annotations

from functools import partial
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

    from kernels.gluon_common import _gluon_pin, _mma_layout, _moe_tile
    from kernels.gluon_gate_up import _quantize_store_h, _wide_scale

GROUP = 128
HALF = 64  # rows per TMA box, columns per gate or up half of a warpgroup's wgmma
LOADER_WARPS = 4
LOADER_REGS = 24


if HAS_GLUON:

    @gluon.jit
    def _ws_weight_boxes(w_desc, bar, b, row_g, row_u, k0):
        """The slot's four 64-row weight boxes [gate n0.., up n0.., gate n0+64.., up n0+64..] by TMA,
        completing ``bar``."""
        BOX: gl.constexpr = w_desc.block_type.shape[0]
        tma.async_copy_global_to_shared(w_desc, [row_g, k0], bar, b.slice(0, BOX))
        tma.async_copy_global_to_shared(w_desc, [row_u, k0], bar, b.slice(BOX, BOX))
        tma.async_copy_global_to_shared(w_desc, [row_g + BOX, k0], bar, b.slice(2 * BOX, BOX))
        tma.async_copy_global_to_shared(w_desc, [row_u + BOX, k0], bar, b.slice(3 * BOX, BOX))

    @gluon.jit
    def _ws_loader_sorted(x_desc, w_desc, a_bufs, b_bufs, ready, empty, off_m, row_g, row_u, num_k):
        """Loader partition with x already in the alignment's row order (``SORTED``): per K block,
        once the slot is free, one TMA box of x rows and the four weight boxes, all counted by the
        slot's ``expect`` (the ``ready`` count is 1)."""
        NUM_STAGES: gl.constexpr = a_bufs.shape[0]
        BLOCK_K: gl.constexpr = a_bufs.shape[2]
        for kb in range(num_k):
            slot = kb % NUM_STAGES
            mbarrier.wait(empty.index(slot), ((kb // NUM_STAGES) & 1) ^ 1)
            bar = ready.index(slot)
            k0 = kb * BLOCK_K
            mbarrier.expect(bar, x_desc.block_type.nbytes + 4 * w_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(x_desc, [off_m, k0], bar, a_bufs.index(slot))
            _ws_weight_boxes(w_desc, bar, b_bufs.index(slot), row_g, row_u, k0)

    @gluon.jit
    def _ws_loader(x_ptr, sorted_ids_ptr, w_desc, a_bufs, b_bufs, ready, empty, off_m, row_g, row_u,
                   num_k, num_slots, top_k, stride_xm):  # fmt: skip
        """Loader partition: for every K block, wait until its ring slot is free (``empty``), then
        cp.async the 64 gathered x rows and TMA the four 64-row weight boxes into the slot; the
        slot's ``ready`` barrier completes when every loader thread's copies have landed (one
        ``cp.async.mbarrier.arrive.noinc`` each) and the TMA bytes have arrived (``expect``)."""
        NUM_STAGES: gl.constexpr = a_bufs.shape[0]
        BLOCK_M: gl.constexpr = a_bufs.shape[1]
        BLOCK_K: gl.constexpr = a_bufs.shape[2]
        WARPS: gl.constexpr = gl.num_warps()
        gather_layout: gl.constexpr = gl.BlockedLayout([1, 16], [4, 8], [WARPS, 1], [1, 0])
        g_rows = off_m + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, gather_layout))
        g_slot = gl.load(sorted_ids_ptr + g_rows)
        g_tok = gl.where(g_slot < num_slots, g_slot // top_k, 0).to(gl.int64)
        a_rows = x_ptr + gl.expand_dims(g_tok * stride_xm, 1)
        offs_k = gl.expand_dims(gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, gather_layout)), 0)
        for kb in range(num_k):
            slot = kb % NUM_STAGES
            mbarrier.wait(empty.index(slot), ((kb // NUM_STAGES) & 1) ^ 1)
            bar = ready.index(slot)
            k0 = kb * BLOCK_K
            # The gather first (its addresses are ready, and the TMA issue below meets loader-warp
            # barriers of the lowering); each thread's arrive fires when its own copies complete.
            async_copy.async_copy_global_to_shared(a_bufs.index(slot), a_rows + (k0 + offs_k))
            async_copy.mbarrier_arrive(bar, increment_count=False)
            mbarrier.expect(bar, 4 * w_desc.block_type.nbytes)
            _ws_weight_boxes(w_desc, bar, b_bufs.index(slot), row_g, row_u, k0)
        # Hygiene: nothing of this partition in flight when it returns.
        async_copy.commit_group()
        async_copy.wait_group(0)

    @gluon.jit
    def _ws_issue(a_bufs, b_bufs, ready, kb, spare, NUM_STAGES: gl.constexpr):
        """Wait for K block ``kb``'s slot and issue its [64 x 256] wgmma into ``spare``'s registers.
        The proxy fence orders the loader's cp.async writes (generic proxy), visible to this thread
        once the mbarrier wait returns, before the wgmma's shared-memory reads (async proxy)."""
        slot = kb % NUM_STAGES
        mbarrier.wait(ready.index(slot), (kb // NUM_STAGES) & 1)
        fence_async_shared()
        return warpgroup_mma(a_bufs.index(slot), b_bufs.index(slot).permute((1, 0)), spare,
                             use_acc=False, is_async=True)  # fmt: skip

    @gluon.jit
    def _ws_release(empty, kb, NUM_STAGES: gl.constexpr):
        """This thread is done with K block ``kb``'s slot (its warpgroup's wgmma of the block has
        retired): a per-thread arrive on the slot's ``empty`` barrier (count = the 256 math threads).

        ``cp.async.mbarrier.arrive.noinc`` is used as a plain per-thread arrive (these threads have
        no cp.async in flight, so it fires at once). Triton 3.6 lowers ``mbarrier.arrive`` to an
        arrive by thread 0 only, which needs a 256-thread barrier before it (both warpgroups must
        have retired the block) and gets another one after it from the membar pass."""
        async_copy.mbarrier_arrive(empty.index(kb % NUM_STAGES), increment_count=False)

    @gluon.jit
    def _ws_math(a_bufs, b_bufs, ready, empty, h_desc, xs_ptr, ws_ptr, hs_ptr, sorted_ids_ptr, e, off_m,
                 off_n, pid_n, N, num_k, num_slots, top_k, stride_xsm, stride_wse, stride_wsn, stride_wsk,
                 stride_hsm, SORTED: gl.constexpr):  # fmt: skip
        """Default partition (the 8 math warps): the wide kernel's K loop and epilogue, waiting on the
        ready barriers only and releasing each slot (``empty``) once its wgmma has retired. With
        ``SORTED`` the x scales are rows of the alignment's order too."""
        NUM_STAGES: gl.constexpr = a_bufs.shape[0]
        BLOCK_M: gl.constexpr = h_desc.block_type.shape[0]
        BLOCK_N: gl.constexpr = h_desc.block_type.shape[1]
        BOX: gl.constexpr = BLOCK_N // 2  # columns per gate or up half
        NUM_WARPS: gl.constexpr = gl.num_warps()
        mma_layout: gl.constexpr = _mma_layout(BLOCK_M, 2 * BLOCK_N, NUM_WARPS)
        row_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)

        rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
        if SORTED:
            sa_ptrs = xs_ptr + rows.to(gl.int64) * stride_xsm
        else:
            slot_ids = gl.load(sorted_ids_ptr + rows)
            tok = gl.where(slot_ids < num_slots, slot_ids // top_k, 0).to(gl.int64)
            sa_ptrs = xs_ptr + tok * stride_xsm
        ws_e = ws_ptr + e.to(gl.int64) * stride_wse
        gs_ptr = ws_e + (off_n // 128) * stride_wsn
        us_ptr = ws_e + ((N + off_n) // 128) * stride_wsn
        wide_cols = gl.arange(0, 2 * BLOCK_N, layout=gl.SliceLayout(0, mma_layout))
        is_gate = gl.expand_dims((wide_cols // BOX) % 2 == 0, 0)

        acc = gl.zeros([BLOCK_M, 2 * BLOCK_N], gl.float32, mma_layout)
        spare1 = gl.zeros([BLOCK_M, 2 * BLOCK_N], gl.float32, mma_layout)
        t0 = _ws_issue(a_bufs, b_bufs, ready, 0, gl.zeros([BLOCK_M, 2 * BLOCK_N], gl.float32, mma_layout),
                       NUM_STAGES)  # fmt: skip
        scale0 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, 0, stride_wsk, is_gate)
        for j in range(0, (num_k - 1) // 2):
            kb = 2 * j + 1
            t1 = _ws_issue(a_bufs, b_bufs, ready, kb, spare1, NUM_STAGES)
            scale1 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb, stride_wsk, is_gate)
            done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))  # block kb-1 complete
            _ws_release(empty, kb - 1, NUM_STAGES)
            acc = _gluon_pin(acc + done0 * scale0)

            t0 = _ws_issue(a_bufs, b_bufs, ready, kb + 1, done0, NUM_STAGES)
            scale0 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, kb + 1, stride_wsk, is_gate)
            spare1 = warpgroup_mma_wait(num_outstanding=1, deps=(t1,))  # block kb complete
            _ws_release(empty, kb, NUM_STAGES)
            acc = _gluon_pin(acc + spare1 * scale1)
        if num_k % 2 == 0:
            t1 = _ws_issue(a_bufs, b_bufs, ready, num_k - 1, spare1, NUM_STAGES)
            scale1 = _wide_scale(sa_ptrs, gs_ptr, us_ptr, num_k - 1, stride_wsk, is_gate)
            done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))
            acc = acc + done0 * scale0
            done1 = warpgroup_mma_wait(num_outstanding=0, deps=(t1,))
            acc = acc + done1 * scale1
        else:
            done0 = warpgroup_mma_wait(num_outstanding=0, deps=(t0,))
            acc = acc + done0 * scale0

        # Epilogue: the wide kernel's (columns are (half, gate/up, 64 columns)).
        epi_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [NUM_WARPS, 1], [1, 0])
        gate, up = gl.split(gl.permute(gl.reshape(acc, [BLOCK_M, 2, 2, BOX]), (0, 1, 3, 2)))
        gate = gl.convert_layout(gl.reshape(gate, [BLOCK_M, BLOCK_N]), epi_layout)
        up = gl.convert_layout(gl.reshape(up, [BLOCK_M, BLOCK_N]), epi_layout)
        _quantize_store_h(gate, up, epi_layout, off_m, off_n, pid_n, N, h_desc, hs_ptr, stride_hsm)

    @gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
    def _gluon_gate_up_ws_kernel(
        x_ptr, w_desc, h_desc,  # x (T, H) fp8; TMA, box (64, 128): w1 as (L*2I, H) fp8, hq (max_padded, I)
        xs_ptr, ws_ptr, hs_ptr,  # fp32: xs (T, H/128), w1s (L, 2I/128, H/128), hs (max_padded, I/128)
        sorted_ids_ptr, expert_ids_ptr, num_padded_ptr,  # int32 (max_padded,), (max_blocks,), (1,)
        N, K, num_slots, top_k, max_blocks,  # N = I, K = H
        stride_xm, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm,
        NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
        LOADER_WARPS: gl.constexpr, LOADER_REGS: gl.constexpr, SORTED: gl.constexpr = False,
    ):  # fmt: skip
        """The wide kernel's arguments plus the loader partition's warps and registers; with ``SORTED``
        the first argument is a TMA descriptor of x in the alignment's row order ((max_padded, H),
        box (64, 128)) and xs is in that order too, as in ``kernels.gluon_gate_up``."""
        BLOCK_M: gl.constexpr = h_desc.block_type.shape[0]
        BLOCK_N: gl.constexpr = h_desc.block_type.shape[1]
        BOX: gl.constexpr = w_desc.block_type.shape[0]
        BLOCK_K: gl.constexpr = w_desc.block_type.shape[1]
        gl.static_assert(BLOCK_M == 64 and BLOCK_N == 128 and BLOCK_K == 128 and BOX == 64, "64 x 128 tiles")
        gl.static_assert(gl.num_warps() == 8, "two math warpgroups, one per 64-column half of h")
        gl.static_assert(NUM_STAGES >= 2, "one wgmma in flight needs a ring of 2+")

        pid_m, pid_n = _moe_tile(gl.program_id(0), max_blocks, gl.cdiv(N, BLOCK_N), GROUP_M)
        if pid_m * BLOCK_M >= gl.load(num_padded_ptr):
            return
        e = gl.load(expert_ids_ptr + pid_m)
        off_m = pid_m * BLOCK_M
        off_n = pid_n * BLOCK_N
        row_g = e * 2 * N + off_n
        row_u = row_g + N
        num_k = gl.cdiv(K, BLOCK_K)

        a_layout: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
        a_bufs = gl.allocate_shared_memory(gl.float8e4nv, [NUM_STAGES, BLOCK_M, BLOCK_K], a_layout)
        b_bufs = gl.allocate_shared_memory(w_desc.dtype, [NUM_STAGES, 2 * BLOCK_N, BLOCK_K], w_desc.layout)
        ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
        for s in gl.static_range(NUM_STAGES):
            # ready: one expect-tx arrival (TMA), + one cp.async.mbarrier.arrive.noinc per loader thread
            # when the loader gathers
            mbarrier.init(ready.index(s), count=1 if SORTED else 1 + 32 * LOADER_WARPS)
            mbarrier.init(empty.index(s), count=32 * gl.num_warps())

        if SORTED:
            gl.warp_specialize([
                (_ws_math, (a_bufs, b_bufs, ready, empty, h_desc, xs_ptr, ws_ptr, hs_ptr, sorted_ids_ptr, e,
                            off_m, off_n, pid_n, N, num_k, num_slots, top_k, stride_xsm, stride_wse,
                            stride_wsn, stride_wsk, stride_hsm, SORTED)),
                (_ws_loader_sorted, (x_ptr, w_desc, a_bufs, b_bufs, ready, empty, off_m, row_g, row_u,
                                     num_k)),
            ], [LOADER_WARPS], [LOADER_REGS])  # fmt: skip
        else:
            gl.warp_specialize([
                (_ws_math, (a_bufs, b_bufs, ready, empty, h_desc, xs_ptr, ws_ptr, hs_ptr, sorted_ids_ptr, e,
                            off_m, off_n, pid_n, N, num_k, num_slots, top_k, stride_xsm, stride_wse,
                            stride_wsn, stride_wsk, stride_hsm, SORTED)),
                (_ws_loader, (x_ptr, sorted_ids_ptr, w_desc, a_bufs, b_bufs, ready, empty, off_m, row_g,
                              row_u, num_k, num_slots, top_k, stride_xm)),
            ], [LOADER_WARPS], [LOADER_REGS])  # fmt: skip


def launch_gluon_gate_up_ws(
    xq: torch.Tensor, xs: torch.Tensor, w1q: torch.Tensor, w1s: torch.Tensor, hq: torch.Tensor,
    hs: torch.Tensor, al: Any, top_k: int, num_stages: int = 4, group_m: int = 8,
    loader_warps: int = LOADER_WARPS, loader_regs: int = LOADER_REGS, sorted_x: bool = False,
) -> None:  # fmt: skip
    """The warp-specialized gate/up into ``hq``/``hs``; arguments and conditions as
    ``kernels.gluon_gate_up.launch_gluon_gate_up`` at ``al.block_m == 64`` (``sorted_x``: xq/xs in
    the alignment's row order, from ``kernels.quant.quantize_fp8_groups_sorted``)."""
    if al.block_m != 64:
        raise ValueError(f"the warp-specialized gate/up runs block_m 64, got {al.block_m}")
    num_local, two_i, h = w1q.shape
    i = two_i // 2
    w_layout = gl.NVMMASharedLayout.get_default_for([HALF, GROUP], gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([64, GROUP], gl.float8e4nv)
    w_desc = TensorDescriptor.from_tensor(w1q.view(num_local * two_i, h), [HALF, GROUP], w_layout)
    h_desc = TensorDescriptor.from_tensor(hq, [64, GROUP], h_layout)
    x_arg: Any = xq
    if sorted_x:
        x_layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)  # = a_bufs'
        x_arg = TensorDescriptor.from_tensor(xq, [64, GROUP], x_layout)
    _gluon_gate_up_ws_kernel[(al.max_blocks * (i // GROUP),)](
        x_arg, w_desc, h_desc, xs, w1s, hs,
        al.sorted_ids, al.expert_ids, al.num_padded,
        i, h, al.num_slots, top_k, al.max_blocks,
        xq.stride(0), xs.stride(0), w1s.stride(0), w1s.stride(1), w1s.stride(2), hs.stride(0),
        NUM_STAGES=num_stages, GROUP_M=group_m, LOADER_WARPS=loader_warps, LOADER_REGS=loader_regs,
        SORTED=sorted_x, num_warps=8,
    )  # fmt: skip


def compile_gluon_ws(num_stages: int = 4, loader_warps: int = LOADER_WARPS,
                     loader_regs: int = LOADER_REGS, sorted_x: bool = False) -> Any:  # fmt: skip
    """The warp-specialized kernel compiled for sm_90a without a GPU, specialized as
    ``benchmarks.gluon_fp8_moe.compile_gluon_moe`` specializes the wide kernel."""
    from benchmarks.gluon_fp8_moe import compile_gate_up_kernel

    constexprs = {"NUM_STAGES": num_stages, "GROUP_M": 8, "LOADER_WARPS": loader_warps,
                  "LOADER_REGS": loader_regs, "SORTED": sorted_x}  # fmt: skip
    return compile_gate_up_kernel(_gluon_gate_up_ws_kernel, [HALF, GROUP], 64, 8, constexprs)


def partition_registers(cubin: bytes) -> tuple[dict[int, int], int]:
    """``({setmaxnreg value: registers used}, local-memory instruction count)`` from the SASS of
    ``cubin`` (Triton's bundled nvdisasm): the code is split at each ``USETMAXREG`` instruction and
    each piece is charged to the count it sets (key 0: the entry code before any). Used = highest
    ``R<n>`` + 1. A heuristic (it assumes each partition's code follows its own USETMAXREG), but
    ``ptxas -v`` only reports the kernel-wide ``.maxnreg`` of a warp-specialized kernel."""
    import os
    import re
    import subprocess
    import tempfile

    import triton

    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as handle:
        handle.write(cubin)
    try:
        done = subprocess.run([nvdisasm, "-c", handle.name], capture_output=True, text=True, check=True)
    finally:
        os.unlink(handle.name)
    sass = done.stdout
    used: dict[int, int] = {}
    current = 0
    for line in sass.splitlines():
        setreg = re.search(r"USETMAXREG\.[\w.]+\s+(?:\w+,\s*)?(0x[0-9a-f]+|\d+)", line)
        if setreg:
            current = int(setreg.group(1), 0)
        regs = [int(r) for r in re.findall(r"\bR(\d+)\b", line)]
        if regs:
            used[current] = max(used.get(current, 0), max(regs) + 1)
    return used, len(re.findall(r"\b(?:STL|LDL)\b", sass))


def offline_reports_ws(stages: tuple[int, ...] = (4, 3, 5)) -> list[tuple[Any, dict[int, int], int]]:
    """For each ring depth: ``(CompileReport "gluon-ws", partition registers, STL/LDL count)``, the
    report filled by ``benchmarks.gluon_fp8_moe``'s ``_report`` (its ``registers`` is the kernel-wide
    ``.maxnreg``; the per-partition counts come from :func:`partition_registers`)."""
    from benchmarks.gluon_fp8_moe import _report

    out = []
    for num_stages in stages:
        compiled: list[Any] = []

        def build(num_stages: int = num_stages, compiled: list[Any] = compiled) -> Any:
            compiled.append(compile_gluon_ws(num_stages))
            return compiled[-1]

        report = _report("gluon-ws", (64, GROUP, 8, num_stages), build)
        regs, local = partition_registers(compiled[0].asm["cubin"]) if compiled else ({}, -1)
        out.append((report, regs, local))
    return out


def run_gpu(token_counts: list[int]) -> None:
    """deepseek-r1 DEP8, balanced routing, block_m 64: the warp-specialized kernel at 4, 3 and 5
    stages against ``kernels.gluon_gate_up``'s wide kernel (4 stages) on the same inputs: the share
    of e4m3 codes and the largest scale difference against wide (expected 0: same fp32 operations
    in the same order), then CUDA-graph timings of both."""
    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from benchmarks.gluon_fp8_gemm import bench_ms
    from benchmarks.gluon_fp8_moe import expert_weights_fp8
    from kernels.align import moe_align
    from kernels.gluon_gate_up import launch_gluon_gate_up
    from kernels.quant import quantize_fp8_groups, quantize_fp8_groups_sorted
    from kernels.tactics import GemmTile

    case = CASES["deepseek-r1-dep8"]
    dev = torch.device("cuda")
    num_local, k, h, i = case.local_experts, case.top_k, case.hidden, case.intermediate
    gen = torch.Generator(device=dev).manual_seed(0)
    w1q, w1s = expert_weights_fp8(num_local, 2 * i, h, gen)
    wide_tile = GemmTile(GROUP, GROUP, 8, 8, 4, tma=True, gluon=True)
    sorted_tile = GemmTile(GROUP, GROUP, 8, 8, 4, tma=True, gluon=True, sorted_x=True)
    for tokens in token_counts:
        x = torch.randn(tokens, h, device=dev, generator=gen, dtype=torch.bfloat16)
        xq, xs = quantize_fp8_groups(x)
        al = moe_align(balanced_topk(tokens, case, 0, dev)[0], 64, num_local, case.offset)
        xq_sorted, xs_sorted = quantize_fp8_groups_sorted(x, al, k)
        real = (al.sorted_ids[: int(al.num_padded.item())] < al.num_slots).nonzero().squeeze(1)
        flops = 2.0 * tokens * k * h * 2 * i
        reference: tuple[torch.Tensor, torch.Tensor] | None = None
        variants = (("wide", 4), ("ws", 4), ("ws", 3), ("ws", 5), ("wide-sorted", 4), ("ws-sorted", 4),
                    ("ws-sorted", 5))  # fmt: skip
        for name, stages in variants:
            hq = torch.empty((al.max_padded, i), dtype=torch.float8_e4m3fn, device=dev)
            hs = torch.empty((al.max_padded, i // GROUP), dtype=torch.float32, device=dev)
            if name == "wide":
                call = partial(launch_gluon_gate_up, xq, xs, w1q, w1s, hq, hs, al, wide_tile, k)
            elif name == "wide-sorted":
                call = partial(launch_gluon_gate_up, xq_sorted, xs_sorted, w1q, w1s, hq, hs, al,
                               sorted_tile, k, sorted_x=True)  # fmt: skip
            elif name == "ws":
                call = partial(launch_gluon_gate_up_ws, xq, xs, w1q, w1s, hq, hs, al, k, stages)
            else:
                call = partial(launch_gluon_gate_up_ws, xq_sorted, xs_sorted, w1q, w1s, hq, hs, al, k, stages,
                               sorted_x=True)  # fmt: skip
            call()
            torch.cuda.synchronize()
            codes, scales = hq.view(torch.uint8)[real], hs[real]
            if reference is None:
                reference, agreement = (codes, scales), ""
            else:
                differing = float((codes != reference[0]).float().mean())
                agreement = (f"codes differing from wide {100 * differing:.4f}%, max |hs diff| "
                             f"{float((scales - reference[1]).abs().max()):.2e}; ")  # fmt: skip
            ms = bench_ms(call)
            print(f"T={tokens} {name} s{stages}: {agreement}{ms * 1e3:.1f} us {flops / ms / 1e9:.0f} TFLOP/s",
                  flush=True)  # fmt: skip


def main() -> None:
    from benchmarks.gluon_fp8_gemm import mode_parser, print_offline, wants_gpu

    parser = mode_parser(__doc__)
    parser.add_argument("--tokens", default="4000,16384", help="tokens per rank for --gpu, comma-separated")
    args = parser.parse_args()
    if not HAS_GLUON:
        raise SystemExit("this Triton build has no triton.experimental.gluon")
    if wants_gpu(args):
        run_gpu([int(t) for t in args.tokens.split(",")])
        return
    results = offline_reports_ws()
    print_offline([r for r, _, _ in results])
    for report, regs, local in results:
        print(f"gluon-ws s{report.num_stages}: registers by setmaxnreg value {regs}, STL/LDL {local}")


if __name__ == "__main__":
    main()
