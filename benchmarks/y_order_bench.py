"""Times the two ends of the down GEMM's output ``y`` in the two row orders it could have, on the GPU.

    PYTHONPATH=. python3 benchmarks/y_order_bench.py [--json PATH]

Today ``y`` is ``(T*k, H)``, one row per flat slot: the down GEMM's epilogue stores each (BLOCK_M,
BLOCK_N) tile's rows at their slots, scattered over the whole buffer, and the combine reads the
local slots of each token. Under DEP only ``1/EP`` of the slots are local, so both ends touch a
sparse ``T*k*H*2``-byte range (1.9 GB at deepseek-r1 DEP8, 16384 tokens). The candidate keeps ``y``
in the alignment's row order, ``(max_padded, H)``: the epilogue stores its tile's rows contiguously
and the combine finds each slot's row through ``Alignment.slot_rows``, so both ends stay inside the
``num_padded`` rows actually written.

Per case (balanced routing, block_m 128, bf16) it times, with ``triton.testing.do_bench_cudagraph``:
the tile store alone (a copy kernel with the down's tile shape, reading a dense ``(max_padded, H)``
source and storing to slot rows or to padded rows) and the combine (today's ``launch_combine`` on
slot-order ``y`` against a combine through ``slot_rows`` on row-order ``y``), and checks the two
combines give the same bits. Bytes count the local rows once each way. ``store_then_combine_slot``
times both in one graph.

Result (H200, session 10, runs 2 and 3; BENCHMARKS.md "On the H200"): no difference between the
orders, because under the benchmark's balanced DEP routing every slot is local; the store runs at
3.9 TB/s, the combine at 4.1-4.4 TB/s, and the combine inside the layer takes the same time.
"""

from __future__ import annotations

import argparse
import json

import torch
import triton
import triton.language as tl

POINTS = [("deepseek-r1-dep8", 4096), ("deepseek-r1-dep8", 16384), ("qwen3-235b-a22b-dep2", 16384),
          ("mixtral-8x7b-ep1", 16384), ("qwen3-30b-a3b-ep1", 16384)]  # fmt: skip
TILE_M, TILE_N = 128, 128


@triton.jit
def _tile_store_kernel(src_ptr, y_ptr, sorted_ids_ptr, num_padded_ptr, num_slots, N,
                       BY_SLOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The down epilogue's store: src (max_padded, N) -> y row ``slot`` (BY_SLOT) or row ``r``."""
    pid_m = tl.program_id(0)
    if pid_m * BLOCK_M >= tl.load(num_padded_ptr):
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    slot = tl.load(sorted_ids_ptr + offs_m)
    valid = slot < num_slots
    vals = tl.load(src_ptr + offs_m[:, None].to(tl.int64) * N + offs_n[None, :])
    row = slot if BY_SLOT else offs_m
    tl.store(y_ptr + row[:, None].to(tl.int64) * N + offs_n[None, :], vals,
             mask=valid[:, None] & (offs_n[None, :] < N))


@triton.jit(do_not_specialize=["num_tokens"])
def _combine_rows_kernel(y_ptr, slot_rows_ptr, out_ptr, num_tokens, N, stride_ym, stride_om,
                         TOP_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
    """out[t] = sum over j (in order) of y[slot_rows[t*k + j]] for slots with a row (>= 0), fp32.

    y_ptr: (max_padded, N) in the alignment's row order; slot_rows_ptr: (T*k,) int32; out_ptr: (T, N).
    """
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    t_ok = offs_t < num_tokens
    n_ok = offs_n < N
    acc = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
    for j in tl.static_range(TOP_K):
        row = tl.load(slot_rows_ptr + offs_t * TOP_K + j, mask=t_ok, other=-1)
        ptrs = y_ptr + row[:, None].to(tl.int64) * stride_ym + offs_n[None, :]
        acc += tl.load(ptrs, mask=(row >= 0)[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
    o_ptrs = out_ptr + offs_t[:, None].to(tl.int64) * stride_om + offs_n[None, :]
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=t_ok[:, None] & n_ok[None, :])


def combine_rows(y: torch.Tensor, slot_rows: torch.Tensor, out: torch.Tensor, top_k: int) -> None:
    """Row-order combine, launched like ``kernels.fused_moe.launch_combine``."""
    t_, n = out.shape
    block_n = min(1024, triton.next_power_of_2(n))
    block_t = max(1, 2048 // block_n)
    grid = (triton.cdiv(t_, block_t), triton.cdiv(n, block_n))
    _combine_rows_kernel[grid](y, slot_rows, out, t_, n, y.stride(0), out.stride(0),
                               TOP_K=top_k, BLOCK_T=block_t, BLOCK_N=block_n, num_warps=4)  # fmt: skip


def one_point(name: str, tokens: int) -> dict[str, object]:
    """Time the tile stores and the combines of one case at ``tokens`` tokens; print and return them."""
    from benchmarks.bench_fused_moe import CASES, balanced_topk
    from kernels.align import moe_align
    from kernels.fused_moe import launch_combine

    dev = torch.device("cuda")
    case = CASES[name]
    h, k = case.hidden, case.top_k
    ids, _ = balanced_topk(tokens, case, 0, dev)
    al = moe_align(ids, TILE_M, case.local_experts, case.offset)
    padded = int(al.num_padded.item())
    local = int((al.slot_rows >= 0).sum().item())
    src = torch.randn(al.max_padded, h, device=dev).to(torch.bfloat16)
    y_slot = torch.zeros(tokens * k, h, dtype=torch.bfloat16, device=dev)
    y_rows = torch.zeros(al.max_padded, h, dtype=torch.bfloat16, device=dev)
    out_a = torch.empty(tokens, h, dtype=torch.bfloat16, device=dev)
    out_b = torch.full_like(out_a, float("nan"))
    grid = (al.max_blocks, triton.cdiv(h, TILE_N))

    def store(y: torch.Tensor, by_slot: bool) -> None:
        _tile_store_kernel[grid](src, y, al.sorted_ids, al.num_padded, al.num_slots, h, BY_SLOT=by_slot,
                                 BLOCK_M=TILE_M, BLOCK_N=TILE_N, num_warps=4)  # fmt: skip

    def combine_slot() -> None:
        launch_combine(y_slot, ids, out_a, case.offset, case.local_experts)

    def combine_by_rows() -> None:
        combine_rows(y_rows, al.slot_rows, out_b, k)

    store(y_slot, True)
    store(y_rows, False)
    combine_slot()
    combine_by_rows()
    same = torch.equal(out_a.view(torch.int16), out_b.view(torch.int16))
    timings = {
        "store_slot": lambda: store(y_slot, True),
        "store_rows": lambda: store(y_rows, False),
        "combine_slot": combine_slot,
        "combine_rows": combine_by_rows,
        "store_then_combine_slot": lambda: (store(y_slot, True), combine_slot()),
    }
    us = {key: triton.testing.do_bench_cudagraph(fn, rep=50) * 1e3 for key, fn in timings.items()}
    row_bytes = 2 * h
    nbytes = {"store": (padded + local) * row_bytes, "combine": (local + tokens) * row_bytes}
    nbytes["store_then"] = nbytes["store"] + nbytes["combine"]
    print(f"{name} T={tokens}: local rows {local} of {tokens * k}, padded {padded}; slot-order y "
          f"{tokens * k * row_bytes / 1e9:.2f} GB, same bits: {same}")
    for key, val in us.items():
        moved = next(b for prefix, b in nbytes.items() if key.startswith(prefix))
        print(f"  {key}: {val:.1f} us, {moved / val / 1e6:.2f} TB/s")
    return {"case": name, "tokens": tokens, "local": local, "padded": padded, "same": same,
            **{f"{key}_us": val for key, val in us.items()}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results = [one_point(name, tokens) for name, tokens in POINTS]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
