"""A candidate fp8 gate/up that reads x once per tile: each math warpgroup its own partition.

    env -u TRITON_INTERPRET PYTHONPATH=. python3 benchmarks/gluon_gate_up_dual.py   # offline compile

Same inputs, outputs and tile walk as ``kernels.gluon_gate_up_ws._gluon_gate_up_ws_kernel`` (x in the
alignment's order, block_m 128, 128 h columns per tile, one e4m3 group)::

    xq  (max_padded, H) float8_e4m3fn   xs  (max_padded, H/128) float32   x in the alignment's order
    w1q (L, 2I, H) float8_e4m3fn        w1s (L, 2I/128, H/128) float32    rows [0, I) gate, [I, 2I) up
    hq  (max_padded, I) float8_e4m3fn   hs  (max_padded, I/128) float32   (outputs)

What differs (session 22's run 106: the committed kernel's second pass over K re-reads x, 4-9% of its
time; its two math warpgroups run in lockstep, one CTA barrier per K block,
``benchmarks/ws_barrier_probe.py``):

- one pass over K per tile: a ring slot holds the x box ``(128, 128)`` and both halves' weight boxes
  ``(2, 64, 128)`` (h columns ``n .. n + 63`` and ``n + 64 .. n + 127``, each 64 gate rows then the
  same 64 up rows), 48 KB;
- the two math warpgroups are two partitions of 4 warps (``warp_specialize``), warpgroup ``g`` taking
  x rows ``64 g .. 64 g + 63``, so their barriers are their own and one can promote while the other's
  wgmma runs. Per K block each issues the half-0 wgmma, waits for it and promotes it into ``acc0``,
  then the same for half 1 into ``acc1`` (one temporary: ``acc0``, ``acc1`` and it are 3 x 64
  registers per thread), then releases the slot;
- each warpgroup's epilogue is its own 64 rows: ``silu(gate) * up`` of both halves, the group scale,
  the codes by two TMA stores of ``(64, 64)`` that its next tile waits for.

The promotion of each K block is the committed kernel's (``xs[row, kb]`` times the gate or up block's
scale, in K order), so the bits are the same.

Measured (BENCHMARKS.md, H200 runs 111-112, ``benchmarks/fp8_gate_up_probe.py``): the committed
kernel's bits at all 8 points; 0.95-0.99x its time at mixtral, 0.95-1.00x at qwen3-235b, 1.01-1.06x
at deepseek-r1 and 1.00-1.04x at qwen3-30b (``stagger`` 0.95-1.03x): level overall, so not a
kernel. If it becomes one (a mixtral tile), its epilogue and loader should share
``kernels.gluon_gate_up_ws``'s helpers instead of mirroring them.
"""

from __future__ import annotations

from typing import Any

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
from kernels.gluon_common import SCALE_GROUP, _gluon_block_scale, _mma_layout
from kernels.gluon_down import LOADER_REGS, LOADER_WARPS, _sm_count, _ws_schedule
from kernels.gluon_gate_up import _h_scale, _halves_h
from kernels.gluon_gate_up_ws import HALF, TILE_N, _ws_quantize, _ws_tile

MATH_REGS = 232
"""Registers per thread of each math partition: (65536 - 128 x LOADER_REGS) / 256."""


@gluon.jit
def _dual_loader(x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
                 num_pid_n, num_k, GROUP_M: gl.constexpr):  # fmt: skip
    """Every K block of every tile of this program into the ring: the x box and both halves' weight
    boxes, on the slot's ``ready`` once both math partitions released it (``empty``)."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_K: gl.constexpr = a_bufs.shape[2]
    nbytes: gl.constexpr = x_desc.block_type.nbytes + 2 * w_desc.block_type.nbytes
    f = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, e = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        off_m = pid_m * 128
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
    """One half's wgmma of a K block (``a`` the warpgroup's 64 x rows, the weight box ``index`` read
    as its 128 rows), overwriting the temporary ``t``; waited for at once."""
    b = b_bufs.index(index)
    b = b.reshape([b.shape[0] * b.shape[1], b.shape[2]])
    t = warpgroup_mma(a, b.permute((1, 0)), t, use_acc=False, is_async=True)
    return warpgroup_mma_wait(num_outstanding=0, deps=(t,))


@gluon.jit
def _dual_math(a_bufs, b_bufs, ready, empty, start, h_lo, h_hi, h_desc, xs_ptr, ws_ptr, hs_ptr,
               expert_ids_ptr, N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm, pid, step,
               total, num_m, num_pid_n, num_k, GROUP_M: gl.constexpr, ROW0: gl.constexpr,
               STAGGER: gl.constexpr):  # fmt: skip
    """One math partition (4 warps): x rows ``ROW0 .. ROW0 + 63`` of every tile, both halves in one
    pass over K, then its rows' epilogue. ``STAGGER``: partition 1 starts once partition 0 has
    promoted its first wgmma (every thread arrives on ``start``), so that one promotes while the
    other's wgmma runs from the start."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    WIDE: gl.constexpr = 2 * HALF
    mma_layout: gl.constexpr = _mma_layout(64, WIDE, gl.num_warps())
    is_up = gl.expand_dims(gl.arange(0, WIDE, layout=gl.SliceLayout(0, mma_layout)) >= HALF, 0)
    if STAGGER and ROW0 != 0:
        mbarrier.wait(start, 0)
    f = 0
    for tile in range(pid, total, step):
        pid_m, pid_n, e = _ws_tile(tile, num_m, num_pid_n, expert_ids_ptr, GROUP_M)
        off_m = pid_m * 128 + ROW0
        off_n = pid_n * TILE_N
        rows = off_m + gl.arange(0, 64, layout=gl.SliceLayout(1, mma_layout))
        sa_ptrs = xs_ptr + rows.to(gl.int64) * stride_xsm
        row_ok = rows < num_m * 128
        gs_ptr = ws_ptr + e.to(gl.int64) * stride_wse + pid_n * stride_wsn
        up_off = ((N + off_n) // TILE_N - pid_n) * stride_wsn
        acc0 = gl.zeros([64, WIDE], gl.float32, mma_layout)
        acc1 = gl.zeros([64, WIDE], gl.float32, mma_layout)
        t = gl.zeros([64, WIDE], gl.float32, mma_layout)
        for kb in range(num_k):
            slot = f % NUM_STAGES
            mbarrier.wait(ready.index(slot), (f // NUM_STAGES) & 1)
            a = a_bufs.index(slot).slice(ROW0, 64)
            scale = _gluon_block_scale(sa_ptrs, row_ok, gs_ptr, kb, 1, stride_wsk, up_off, is_up, True)
            t = _dual_issue(a, b_bufs, 2 * slot, t)
            # pinned (see ``kernels.gluon_common._gluon_pin``): LLVM would sink the promotion below the
            # next issue and give that wgmma a second temporary, 4 x 64 registers: spills
            acc0 = warpgroup_mma_wait(num_outstanding=0, deps=(acc0 + t * scale,))
            if STAGGER and ROW0 == 0:  # noqa: SIM102 (a constexpr test, then a runtime one)
                if f == 0:
                    async_copy.mbarrier_arrive(start, increment_count=False)
            t = _dual_issue(a, b_bufs, 2 * slot + 1, t)
            async_copy.mbarrier_arrive(empty.index(slot), increment_count=False)
            acc1 = warpgroup_mma_wait(num_outstanding=0, deps=(acc1 + t * scale,))
            f += 1
        h0 = _halves_h(acc0)
        h1 = _halves_h(acc1)
        h_layout: gl.constexpr = h0.type.layout
        h_scale = _h_scale(gl.maximum(gl.max(gl.abs(h0), axis=1), gl.max(gl.abs(h1), axis=1)))
        rows_h = off_m + gl.arange(0, 64, layout=gl.SliceLayout(1, h_layout))
        gl.store(hs_ptr + rows_h.to(gl.int64) * stride_hsm + pid_n, h_scale)
        tma.store_wait(pendings=0)  # this partition's previous codes have left h_lo / h_hi
        gl.thread_barrier()
        _ws_quantize(h0, h_scale, h_lo)
        _ws_quantize(h1, h_scale, h_hi)
        fence_async_shared()
        gl.thread_barrier()
        tma.async_copy_shared_to_global(h_desc, [off_m, off_n], h_lo)
        tma.async_copy_shared_to_global(h_desc, [off_m, off_n + HALF], h_hi)
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
    MATH_REGS: gl.constexpr, STAGGER: gl.constexpr,
):  # fmt: skip
    """Persistent: grid ``G`` <= the number of SMs; the launch's 4 warps are math partition 0, 4 more
    are math partition 1, ``LOADER_WARPS`` more load."""
    BLOCK_K: gl.constexpr = x_desc.block_type.shape[1]
    gl.static_assert(x_desc.block_type.shape[0] == 128 and BLOCK_K == 128, "x box (128, 128)")
    gl.static_assert(gl.num_warps() == 4, "4 warps per math partition")
    a_bufs = gl.allocate_shared_memory(x_desc.dtype, [NUM_STAGES, 128, BLOCK_K], x_desc.layout)
    b_bufs = gl.allocate_shared_memory(w_desc.dtype, [2 * NUM_STAGES, 2, HALF, BLOCK_K], w_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(NUM_STAGES):
        mbarrier.init(ready.index(s), count=1)
        mbarrier.init(empty.index(s), count=2 * 32 * gl.num_warps())  # every thread of both partitions
    start = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    mbarrier.init(start, count=32 * gl.num_warps())  # every thread of partition 0
    lo0 = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    hi0 = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    lo1 = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    hi1 = gl.allocate_shared_memory(h_desc.dtype, h_desc.block_type.shape, h_desc.layout)
    num_m, num_pid_n, total, num_k, pid, step = _ws_schedule(num_padded_ptr, N, K, 128, TILE_N, BLOCK_K)
    gl.warp_specialize([
        (_dual_math, (a_bufs, b_bufs, ready, empty, start, lo0, hi0, h_desc, xs_ptr, ws_ptr, hs_ptr,
                      expert_ids_ptr, N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm, pid,
                      step, total, num_m, num_pid_n, num_k, GROUP_M, 0, STAGGER)),
        (_dual_math, (a_bufs, b_bufs, ready, empty, start, lo1, hi1, h_desc, xs_ptr, ws_ptr, hs_ptr,
                      expert_ids_ptr, N, stride_xsm, stride_wse, stride_wsn, stride_wsk, stride_hsm, pid,
                      step, total, num_m, num_pid_n, num_k, GROUP_M, 64, STAGGER)),
        (_dual_loader, (x_desc, w_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, pid, step, total, num_m,
                        num_pid_n, num_k, GROUP_M)),
    ], [4, LOADER_WARPS], [MATH_REGS, LOADER_REGS])  # fmt: skip


def descriptors(xq: torch.Tensor, w1q: torch.Tensor, hq: torch.Tensor) -> tuple[Any, Any, Any]:
    """x (max_padded, H) box (128, 128); w1 viewed as (2L, I, H) box (2, 64, 128); hq box (64, 64)."""
    num_local, two_i, h = w1q.shape
    x_layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
    w_box, h_box = [2, HALF.value, SCALE_GROUP], [64, HALF.value]
    w_layout = gl.NVMMASharedLayout.get_default_for(w_box, gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for(h_box, gl.float8e4nv)
    return (TensorDescriptor.from_tensor(xq, [128, SCALE_GROUP], x_layout),
            TensorDescriptor.from_tensor(w1q.view(num_local * 2, two_i // 2, h), w_box, w_layout),
            TensorDescriptor.from_tensor(hq, h_box, h_layout))  # fmt: skip


def launch_gluon_gate_up_dual(xq: torch.Tensor, xs: torch.Tensor, w1q: torch.Tensor, w1s: torch.Tensor,
                              hq: torch.Tensor, hs: torch.Tensor, al: Alignment, num_stages: int = 4,
                              group_m: int = 8, stagger: bool = False) -> None:  # fmt: skip
    """The dual gate/up on x in the alignment's order (``kernels.quant.quantize_fp8_groups_sorted``),
    shapes as in the module docstring, ``al.block_m`` 128, H and I multiples of 128."""
    if al.block_m != 128:
        raise ValueError(f"the dual gate/up runs at block_m 128, got {al.block_m}")
    i, h = w1q.shape[1] // 2, w1q.shape[2]
    x_desc, w_desc, h_desc = descriptors(xq, w1q, hq)
    programs = min(al.max_blocks * (i // SCALE_GROUP), _sm_count(xq.device.index))
    _gluon_gate_up_dual_kernel[(programs,)](
        x_desc, w_desc, h_desc, xs, w1s, hs, al.expert_ids, al.num_padded, i, h,
        xs.stride(0), w1s.stride(0), w1s.stride(1), w1s.stride(2), hs.stride(0),
        NUM_STAGES=num_stages, GROUP_M=group_m, LOADER_WARPS=LOADER_WARPS, LOADER_REGS=LOADER_REGS,
        MATH_REGS=MATH_REGS, STAGGER=stagger, num_warps=4,
    )  # fmt: skip


def compile_offline(num_stages: int = 4, stagger: bool = False) -> Any:
    """The kernel compiled for sm_90a without a GPU (deepseek-like specialization)."""
    import triton
    from triton.experimental.gluon._runtime import GluonASTSource

    from benchmarks.gluon_fp8_gemm import TARGET

    fn = _gluon_gate_up_dual_kernel
    x_layout = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=8, rank=2)
    w_layout = gl.NVMMASharedLayout.get_default_for([2, HALF.value, SCALE_GROUP], gl.float8e4nv)
    h_layout = gl.NVMMASharedLayout.get_default_for([64, HALF.value], gl.float8e4nv)
    signature = {
        "x_desc": f"tensordesc<fp8e4nv[128,{SCALE_GROUP}],{x_layout!r}>",
        "w_desc": f"tensordesc<fp8e4nv[2,{HALF.value},{SCALE_GROUP}],{w_layout!r}>",
        "h_desc": f"tensordesc<fp8e4nv[64,{HALF.value}],{h_layout!r}>",
        "xs_ptr": "*fp32", "ws_ptr": "*fp32", "hs_ptr": "*fp32", "expert_ids_ptr": "*i32",
        "num_padded_ptr": "*i32", "N": "i32", "K": "i32", "stride_xsm": "i32", "stride_wse": "i32",
        "stride_wsn": "i32", "stride_wsk": "i32", "stride_hsm": "i32",
        "NUM_STAGES": "constexpr", "GROUP_M": "constexpr", "LOADER_WARPS": "constexpr",
        "LOADER_REGS": "constexpr", "MATH_REGS": "constexpr", "STAGGER": "constexpr",
    }  # fmt: skip
    constexprs = {"NUM_STAGES": num_stages, "GROUP_M": 8, "LOADER_WARPS": LOADER_WARPS,
                  "LOADER_REGS": LOADER_REGS, "MATH_REGS": MATH_REGS, "STAGGER": stagger}  # fmt: skip
    aligned = ("xs_ptr", "ws_ptr", "hs_ptr", "expert_ids_ptr", "num_padded_ptr", "N", "K")
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    source = GluonASTSource(fn, signature, constexprs, attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": 4, "num_stages": num_stages})


def offline(stages: list[int], stagger: bool = False) -> list[dict[str, Any]]:
    """One compile report per ring depth (``benchmarks.gluon_fp8_gemm._report``: registers, spills,
    wgmma waits, ptxas warnings, shared memory, CTA barriers in the K loop's SASS: 8 k32 wgmmas per
    K block, two halves of four)."""
    import dataclasses

    from benchmarks.gluon_fp8_gemm import _report

    return [dataclasses.asdict(_report("gluon-gate-up-dual", (128, 128, 8, s),
                                       lambda s=s: compile_offline(s, stagger), mma_per_iteration=8))
            for s in stages]  # fmt: skip


if __name__ == "__main__":
    import json

    for report in offline([4]) + offline([4], stagger=True):
        print(json.dumps(report))
