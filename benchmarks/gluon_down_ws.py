"""Warp-specialized, persistent candidate of the Gluon fp8 down GEMM (``kernels/gluon_down.py``):
4 loader warps issue the TMA ring for 8 math warps that only wait, multiply, promote and store.

    PYTHONPATH=. python benchmarks/gluon_down_ws.py --offline   # CPU: compile for sm_90a, report
    PYTHONPATH=. python benchmarks/gluon_down_ws.py --gpu       # same bits as kernels' down, timed

Why (session 10): the down runs at ~925 TFLOP/s against the gate/up's ~1100 at deepseek-r1 DEP8
(H200, ``benchmarks/layer_kernels.py``). Its K loop issues the ring's refills from the math warps,
and Triton 3.6's lowering of each refill (``mbarrier.expect`` and two TMA copies, each by one
thread) puts 3-4 CTA barriers around it: 8 ``BAR.SYNC`` per two K blocks in the SASS loop, so the
two math warpgroups meet every K block (the H100 profile of run 70 had 10% barrier stalls and the
mbarrier wait for the ring as the top stall lines). A persistent ring alone
(``benchmarks/gluon_down_persistent.py``) gained 1.5-6% at short K.

Design (``gl.warp_specialize``, 8 + 4 warps, 384 threads), persistent over the tiles of
``gluon_down_persistent`` (same grouped order, ``G`` programs, program p takes tiles p, p + G, ...):

- Loader partition (4 warps, 24 registers): a flat K-block counter ``f`` over the program's tiles;
  per block it waits ``empty[f % S]`` (parity ``((f // S) & 1) ^ 1``: a fresh barrier passes parity
  1, so the first ``S`` fills go straight through), ``expect``s the A and B bytes on ``ready[f % S]``
  and issues both TMA copies. It runs up to ``S`` blocks ahead of the wgmmas, across tile
  boundaries, so the next tile's blocks load during this tile's epilogue.
- Math partition (default, 8 warps, 240 registers): the K loop of ``kernels.gluon_common.
  _gluon_mainloop`` (two temporaries, one wgmma in flight, pinned promotions) on the same flat
  counter, waiting on ``ready`` only; after ``wgmma.wait_group`` retires a block each thread arrives
  on its slot's ``empty`` (count 256: both warpgroups must be done with the B tile they share) with
  a per-thread ``cp.async.mbarrier.arrive.noinc`` (no copies in flight, so it fires at once; see
  ``benchmarks/gluon_fp8_moe_ws.py`` for why not ``mbarrier.arrive``). Then the kernels' epilogue.

Same per-tile arithmetic in the same order as ``kernels.gluon_down``, so the same bits. No proxy fence
is needed: TMA writes and wgmma reads are both async-proxy accesses, ordered by the ready barrier's
transaction count; a slot is released only after the wgmma that read it has retired.
"""

from __future__ import annotations

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from benchmarks.gluon_down_persistent import _tile_coords
from kernels.align import Alignment
from kernels.gluon_common import SCALE_GROUP, _gluon_block_scale, _gluon_pin, _mma_layout
from kernels.gluon_down import _down_epilogue
from kernels.tactics import GemmTile

LOADER_WARPS = 4
LOADER_REGS = 24


@gluon.jit
def _ws_down_loader(a_desc, b_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, N, pid, step, total,
                    num_m, num_pid_n, num_k, GROUP_M: gl.constexpr):  # fmt: skip
    """Loader partition: every K block of every tile of this program, in order, into the ring."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_K: gl.constexpr = a_bufs.shape[2]
    BLOCK_N: gl.constexpr = b_bufs.shape[1]
    f = 0
    for tile in range(pid, total, step):
        off_m, _, _, b_row = _tile_coords(tile, num_m, num_pid_n, expert_ids_ptr, N, True, BLOCK_M, BLOCK_N,
                                          GROUP_M)  # fmt: skip
        for kb in range(num_k):
            slot = f % NUM_STAGES
            mbarrier.wait(empty.index(slot), ((f // NUM_STAGES) & 1) ^ 1)
            bar = ready.index(slot)
            mbarrier.expect(bar, a_desc.block_type.nbytes + b_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(a_desc, [off_m, kb * BLOCK_K], bar, a_bufs.index(slot))
            tma.async_copy_global_to_shared(b_desc, [b_row, kb * BLOCK_K], bar, b_bufs.index(slot))
            f += 1


@gluon.jit
def _ws_down_issue(a_bufs, b_bufs, ready, f, spare, NUM_STAGES: gl.constexpr):
    """Wait for flat block ``f``'s slot and issue its wgmma asynchronously into ``spare``'s registers."""
    slot = f % NUM_STAGES
    mbarrier.wait(ready.index(slot), (f // NUM_STAGES) & 1)
    return warpgroup_mma(a_bufs.index(slot), b_bufs.index(slot).permute((1, 0)), spare,
                         use_acc=False, is_async=True)  # fmt: skip


@gluon.jit
def _ws_down_release(empty, f, NUM_STAGES: gl.constexpr):
    """This thread's warpgroup has retired flat block ``f``'s wgmma: a per-thread arrive on its slot."""
    async_copy.mbarrier_arrive(empty.index(f % NUM_STAGES), increment_count=False)


@gluon.jit
def _ws_down_math(a_bufs, b_bufs, ready, empty, y_ptr, hs_ptr, ws_ptr, sorted_ids_ptr, expert_ids_ptr,
                  topk_weights_ptr, N, num_slots, max_blocks, stride_ym, stride_hsm, stride_wse, stride_wsn,
                  pid, step, total, num_m, num_pid_n, num_k, GROUP_M: gl.constexpr):  # fmt: skip
    """Default partition (the 8 math warps): per tile, the kernels' K loop waiting on ``ready`` and
    releasing ``empty``, then the kernels' epilogue."""
    NUM_STAGES: gl.constexpr = a_bufs.shape[0]
    BLOCK_M: gl.constexpr = a_bufs.shape[1]
    BLOCK_N: gl.constexpr = b_bufs.shape[1]
    SPLIT: gl.constexpr = BLOCK_N > 128
    mma_layout: gl.constexpr = _mma_layout(BLOCK_M, BLOCK_N, gl.num_warps())
    row_layout: gl.constexpr = gl.SliceLayout(1, mma_layout)
    is_hi = gl.expand_dims(gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma_layout)) >= 128, 0)
    base = 0
    for tile in range(pid, total, step):
        off_m, off_n, e, _ = _tile_coords(tile, num_m, num_pid_n, expert_ids_ptr, N, True, BLOCK_M, BLOCK_N,
                                          GROUP_M)  # fmt: skip
        rows = off_m + gl.arange(0, BLOCK_M, layout=row_layout)
        sa_ptrs = hs_ptr + rows.to(gl.int64) * stride_hsm
        row_ok = rows < max_blocks * BLOCK_M
        sb_ptr = ws_ptr + e.to(gl.int64) * stride_wse + (off_n // 128) * stride_wsn

        acc = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
        spare1 = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout)
        t0 = _ws_down_issue(a_bufs, b_bufs, ready, base, gl.zeros([BLOCK_M, BLOCK_N], gl.float32, mma_layout),
                            NUM_STAGES)  # fmt: skip
        scale0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, 0, 1, 1, stride_wsn, is_hi, SPLIT)
        for j in range(0, (num_k - 1) // 2):
            kb = 2 * j + 1
            t1 = _ws_down_issue(a_bufs, b_bufs, ready, base + kb, spare1, NUM_STAGES)
            scale1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb, 1, 1, stride_wsn, is_hi, SPLIT)
            done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))
            _ws_down_release(empty, base + kb - 1, NUM_STAGES)
            acc = _gluon_pin(acc + done0 * scale0)

            t0 = _ws_down_issue(a_bufs, b_bufs, ready, base + kb + 1, done0, NUM_STAGES)
            scale0 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, kb + 1, 1, 1, stride_wsn, is_hi, SPLIT)
            spare1 = warpgroup_mma_wait(num_outstanding=1, deps=(t1,))
            _ws_down_release(empty, base + kb, NUM_STAGES)
            acc = _gluon_pin(acc + spare1 * scale1)
        if num_k % 2 == 0:
            t1 = _ws_down_issue(a_bufs, b_bufs, ready, base + num_k - 1, spare1, NUM_STAGES)
            scale1 = _gluon_block_scale(sa_ptrs, row_ok, sb_ptr, num_k - 1, 1, 1, stride_wsn, is_hi, SPLIT)
            done0 = warpgroup_mma_wait(num_outstanding=1, deps=(t0,))
            _ws_down_release(empty, base + num_k - 2, NUM_STAGES)
            acc = acc + done0 * scale0
            done1 = warpgroup_mma_wait(num_outstanding=0, deps=(t1,))
            _ws_down_release(empty, base + num_k - 1, NUM_STAGES)
            acc = acc + done1 * scale1
        else:
            done0 = warpgroup_mma_wait(num_outstanding=0, deps=(t0,))
            _ws_down_release(empty, base + num_k - 1, NUM_STAGES)
            acc = acc + done0 * scale0
        _down_epilogue(acc, y_ptr, rows, off_m, off_n, sorted_ids_ptr, topk_weights_ptr, num_slots, N,
                       stride_ym)  # fmt: skip
        base += num_k


@gluon.jit(do_not_specialize=["num_slots", "max_blocks"])
def _gluon_down_ws_kernel(
    a_desc, b_desc, y_ptr, hs_ptr, ws_ptr,
    sorted_ids_ptr, expert_ids_ptr, num_padded_ptr, topk_weights_ptr,
    N, K, num_slots, max_blocks,
    stride_ym, stride_hsm, stride_wse, stride_wsn,
    NUM_STAGES: gl.constexpr, GROUP_M: gl.constexpr,
    LOADER_WARPS: gl.constexpr, LOADER_REGS: gl.constexpr,
):  # fmt: skip
    """Arguments as ``kernels.gluon_down._gluon_down_fp8_kernel`` plus the loader's warps and
    registers; grid: G <= number of SMs programs, each walking its tiles."""
    BLOCK_M: gl.constexpr = a_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = a_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = b_desc.block_type.shape[0]
    gl.static_assert(BLOCK_K == 128, "one scale group per K step")
    gl.static_assert(BLOCK_N <= 256, "at most two w2 scale blocks per tile")
    gl.static_assert(NUM_STAGES >= 2, "one wgmma in flight needs a ring of 2+")
    num_pid_n = gl.cdiv(N, BLOCK_N)
    num_m = gl.cdiv(gl.load(num_padded_ptr), BLOCK_M)
    total = num_m * num_pid_n
    num_k = gl.cdiv(K, BLOCK_K)
    pid = gl.program_id(0)
    step = gl.num_programs(0)
    a_bufs = gl.allocate_shared_memory(a_desc.dtype, [NUM_STAGES, BLOCK_M, BLOCK_K], a_desc.layout)
    b_bufs = gl.allocate_shared_memory(b_desc.dtype, [NUM_STAGES, BLOCK_N, BLOCK_K], b_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(NUM_STAGES):
        mbarrier.init(ready.index(s), count=1)  # the loader's expect-tx arrival
        mbarrier.init(empty.index(s), count=32 * gl.num_warps())  # every math thread
    gl.warp_specialize([
        (_ws_down_math, (a_bufs, b_bufs, ready, empty, y_ptr, hs_ptr, ws_ptr, sorted_ids_ptr, expert_ids_ptr,
                         topk_weights_ptr, N, num_slots, max_blocks, stride_ym, stride_hsm, stride_wse,
                         stride_wsn, pid, step, total, num_m, num_pid_n, num_k, GROUP_M)),
        (_ws_down_loader, (a_desc, b_desc, a_bufs, b_bufs, ready, empty, expert_ids_ptr, N, pid, step, total,
                           num_m, num_pid_n, num_k, GROUP_M)),
    ], [LOADER_WARPS], [LOADER_REGS])  # fmt: skip


def launch_gluon_down_ws(hq: torch.Tensor, hs: torch.Tensor, w2q: torch.Tensor, w2s: torch.Tensor,
                         y: torch.Tensor, topk_weights: torch.Tensor, al: Alignment, tile: GemmTile,
                         programs: int | None = None) -> None:  # fmt: skip
    """As ``kernels.gluon_down.launch_gluon_down`` (8 math warps: ``tile.num_warps`` must be 8), on
    ``programs`` persistent programs (default: the device's SM count, at most the tile bound)."""
    if tile.num_warps != 8:
        raise ValueError(f"the warp-specialized down has 8 math warps, got tile {tile.name}")
    num_local, h, i = w2q.shape
    a_layout = gl.NVMMASharedLayout.get_default_for([al.block_m, SCALE_GROUP], gl.float8e4nv)
    b_layout = gl.NVMMASharedLayout.get_default_for([tile.block_n, SCALE_GROUP], gl.float8e4nv)
    a_desc = TensorDescriptor.from_tensor(hq, [al.block_m, SCALE_GROUP], a_layout)
    b_desc = TensorDescriptor.from_tensor(w2q.view(num_local * h, i), [tile.block_n, SCALE_GROUP], b_layout)
    bound = al.max_blocks * (h // tile.block_n)
    sms = torch.cuda.get_device_properties(hq.device).multi_processor_count
    _gluon_down_ws_kernel[(min(bound, programs or sms),)](
        a_desc, b_desc, y, hs, w2s,
        al.sorted_ids, al.expert_ids, al.num_padded, topk_weights,
        h, i, al.num_slots, al.max_blocks,
        y.stride(0), hs.stride(0), w2s.stride(0), w2s.stride(1),
        NUM_STAGES=tile.num_stages, GROUP_M=tile.group_m, LOADER_WARPS=LOADER_WARPS, LOADER_REGS=LOADER_REGS,
        num_warps=8,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Offline compile report and GPU comparison
# --------------------------------------------------------------------------------------------------
VARIANTS = [(128, 128, 8, 4), (128, 128, 8, 5), (128, 128, 8, 3), (64, 256, 8, 4)]  # (bm, bn, warps, stages)


def compile_ws(block_m: int, block_n: int, num_warps: int, num_stages: int) -> object:
    """The warp-specialized kernel compiled for sm_90a without a GPU (deepseek-like specialization)."""
    from benchmarks.gluon_down_persistent import compile_kernel

    return compile_kernel(_gluon_down_ws_kernel, block_m, block_n, num_warps,
                          {"NUM_STAGES": num_stages, "GROUP_M": 8, "LOADER_WARPS": LOADER_WARPS,
                           "LOADER_REGS": LOADER_REGS})  # fmt: skip


def run_offline() -> None:
    from benchmarks.gluon_fp8_gemm import _report, print_offline

    print_offline([_report("gluon-down-ws", v, lambda v=v: compile_ws(*v)) for v in VARIANTS])


def run_gpu() -> None:
    """The kernels' down against this one and the persistent candidate, per point and variant."""
    from benchmarks import gluon_down_persistent as persistent

    persistent.run_gpu(VARIANTS, {"persistent": persistent.launch_gluon_down_persistent,
                                  "ws": launch_gluon_down_ws})  # fmt: skip


def main() -> None:
    from benchmarks.gluon_fp8_gemm import mode_parser, wants_gpu

    args = mode_parser(__doc__).parse_args()
    if wants_gpu(args):
        run_gpu()
    else:
        run_offline()


if __name__ == "__main__":
    main()
