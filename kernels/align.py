"""EP-local alignment of (token, slot) pairs to expert row blocks, on the device, no host sync.

Given ``topk_ids (T, k)`` (global expert ids) and the rank's shard ``[offset, offset + L)``, the
alignment lists the *local* (token, slot) pairs grouped by local expert, each group padded to a
multiple of ``block_m``; non-local slots are dropped entirely (no rows, no blocks). Outputs:

- ``sorted_ids (max_padded,) int32``: flat slot index ``t * k + j`` per padded row; padding rows hold
  the sentinel ``T * k``. Rows of one expert keep ascending slot order (stable), so the layout is a
  pure function of ``topk_ids``.
- ``expert_ids (max_blocks,) int32``: the local expert of each row block, ``-1`` past the end.
- ``num_padded (1,) int32``: the padded total (device scalar); GEMM programs whose row block starts
  at or past it exit at once.

``max_padded`` is a host-side upper bound computed from shapes alone
(``T*k + min(L, T*k) * (block_m - 1)``, rounded up to ``block_m``), so grids are sized without
reading anything back and the whole layer can be captured in a CUDA graph.

Two paths: up to ``FUSED_MAX_SLOTS`` slots one program does everything (one launch, the decode
case); above it three launches (per-chunk histogram, a scan over chunks and experts, a stable
scatter) spread the work over ``cdiv(T*k, CHUNK)`` programs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

CHUNK = 1024
FUSED_MAX_SLOTS = 1024


@dataclass(frozen=True)
class Alignment:
    """Result of :func:`moe_align`; tensors live on ``topk_ids``' device."""

    sorted_ids: torch.Tensor
    expert_ids: torch.Tensor
    num_padded: torch.Tensor
    block_m: int
    num_slots: int

    @property
    def max_padded(self) -> int:
        return self.sorted_ids.numel()

    @property
    def max_blocks(self) -> int:
        return self.expert_ids.numel()


def max_padded_rows(num_slots: int, num_local_experts: int, block_m: int) -> int:
    """Host-side upper bound of the padded row count (a multiple of ``block_m``, at least one)."""
    bound = num_slots + min(num_local_experts, num_slots) * (block_m - 1)
    return max(block_m, triton.cdiv(bound, block_m) * block_m)


def _lanes(num_local_experts: int) -> int:
    return max(16, triton.next_power_of_2(num_local_experts))


def _sub(lanes: int) -> int:
    # one-hot tiles of (SUB, LANES) stay at <= 8K elements per program
    return max(16, min(256, 8192 // lanes))


@triton.jit
def _local_expert(topk_ids_ptr, idx, num_slots, expert_offset, num_local):
    """Local expert of flat slots ``idx`` (``-1`` when out of range or not in the shard)."""
    inb = idx < num_slots
    ids = tl.load(topk_ids_ptr + idx, mask=inb, other=-1)
    e = ids - expert_offset
    ok = inb & (ids >= 0) & (e >= 0) & (e < num_local)
    return tl.where(ok, e, -1)


@triton.jit
def _write_padding(sorted_ids_ptr, start, count, padded, sentinel, BLOCK_M: tl.constexpr,
                   LANES: tl.constexpr):
    """Fill rows ``[start+count, start+padded)`` of every expert lane with the sentinel."""
    PB: tl.constexpr = 16
    for j0 in tl.static_range(0, BLOCK_M, PB):
        j = j0 + tl.arange(0, PB)
        pos = (start + count)[:, None] + j[None, :]
        mask = j[None, :] < (padded - count)[:, None]
        tl.store(sorted_ids_ptr + pos, tl.full((LANES, PB), 0, tl.int32) + sentinel, mask=mask)


@triton.jit
def _write_expert_ids(expert_ids_ptr, block_end, blk_lo, blk_hi, num_local,
                      LANES: tl.constexpr, BB: tl.constexpr):
    """Per-block expert of blocks ``[blk_lo, blk_hi)``: the number of experts ending at or before
    the block (``block_end`` inclusive prefix of blocks per expert, huge on lanes >= L)."""
    for b0 in range(blk_lo, blk_hi, BB):
        blocks = b0 + tl.arange(0, BB)
        eid = tl.sum((block_end[None, :] <= blocks[:, None]).to(tl.int32), axis=1)
        eid = tl.where(eid < num_local, eid, -1)
        tl.store(expert_ids_ptr + blocks, eid, mask=blocks < blk_hi)


@triton.jit
def _align_fused_kernel(
    topk_ids_ptr, sorted_ids_ptr, expert_ids_ptr, num_padded_ptr,
    num_slots, expert_offset, num_local, max_blocks,
    BLOCK_M: tl.constexpr, LANES: tl.constexpr, SUB: tl.constexpr, BB: tl.constexpr,
):
    """Whole alignment in one program (``num_slots <= FUSED_MAX_SLOTS``).

    topk_ids_ptr: (T*k,) int32 global ids; sorted_ids_ptr: (max_padded,) int32 out;
    expert_ids_ptr: (max_blocks,) int32 out; num_padded_ptr: (1,) int32 out.
    """
    lanes = tl.arange(0, LANES)
    counts = tl.zeros((LANES,), tl.int32)
    for s in range(0, num_slots, SUB):
        e = _local_expert(topk_ids_ptr, s + tl.arange(0, SUB), num_slots, expert_offset, num_local)
        counts += tl.sum((e[:, None] == lanes[None, :]).to(tl.int32), axis=0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    end = tl.cumsum(padded, axis=0)
    start = end - padded
    tl.store(num_padded_ptr, tl.sum(padded, axis=0))
    _write_padding(sorted_ids_ptr, start, counts, padded, num_slots, BLOCK_M, LANES)
    block_end = tl.where(lanes < num_local, end // BLOCK_M, 0x7FFFFFFF)
    _write_expert_ids(expert_ids_ptr, block_end, 0, max_blocks, num_local, LANES, BB)
    base = start
    for s in range(0, num_slots, SUB):
        idx = s + tl.arange(0, SUB)
        e = _local_expert(topk_ids_ptr, idx, num_slots, expert_offset, num_local)
        onehot = (e[:, None] == lanes[None, :]).to(tl.int32)
        rank = tl.cumsum(onehot, axis=0) - 1 + base[None, :]
        pos = tl.sum(tl.where(onehot > 0, rank, 0), axis=1)
        tl.store(sorted_ids_ptr + pos, idx, mask=e >= 0)
        base += tl.sum(onehot, axis=0)


@triton.jit
def _align_count_kernel(
    topk_ids_ptr, counts_ptr,
    num_slots, expert_offset, num_local,
    CHUNK_: tl.constexpr, LANES: tl.constexpr, SUB: tl.constexpr,
):
    """Per-chunk histogram. topk_ids_ptr: (T*k,) int32; counts_ptr: (num_chunks, LANES) int32 out."""
    pid = tl.program_id(0)
    lanes = tl.arange(0, LANES)
    counts = tl.zeros((LANES,), tl.int32)
    for s in tl.static_range(0, CHUNK_, SUB):
        idx = pid * CHUNK_ + s + tl.arange(0, SUB)
        e = _local_expert(topk_ids_ptr, idx, num_slots, expert_offset, num_local)
        counts += tl.sum((e[:, None] == lanes[None, :]).to(tl.int32), axis=0)
    tl.store(counts_ptr + pid * LANES + lanes, counts)


@triton.jit
def _align_scan_kernel(
    counts_ptr, chunk_base_ptr, block_end_ptr, sorted_ids_ptr, num_padded_ptr,
    num_chunks, num_local, sentinel,
    BLOCK_M: tl.constexpr, LANES: tl.constexpr, CB: tl.constexpr,
):
    """Scan over chunks and experts (one program).

    counts_ptr: (num_chunks, LANES) int32; chunk_base_ptr: (num_chunks, LANES) int32 out, the first
    padded row of each (chunk, expert) pair; block_end_ptr: (LANES,) int32 out, inclusive prefix of
    row blocks per expert; sorted_ids_ptr: (max_padded,) int32, padding rows written here;
    num_padded_ptr: (1,) int32 out.
    """
    lanes = tl.arange(0, LANES)
    running = tl.zeros((LANES,), tl.int32)
    for c0 in range(0, num_chunks, CB):
        rows = c0 + tl.arange(0, CB)
        ptrs = rows[:, None] * LANES + lanes[None, :]
        m = (rows < num_chunks)[:, None]
        cnt = tl.load(counts_ptr + ptrs, mask=m, other=0)
        tl.store(chunk_base_ptr + ptrs, tl.cumsum(cnt, axis=0) - cnt + running[None, :], mask=m)
        running += tl.sum(cnt, axis=0)
    padded = (running + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    end = tl.cumsum(padded, axis=0)
    start = end - padded
    tl.store(num_padded_ptr, tl.sum(padded, axis=0))
    tl.store(block_end_ptr + lanes, tl.where(lanes < num_local, end // BLOCK_M, 0x7FFFFFFF))
    _write_padding(sorted_ids_ptr, start, running, padded, sentinel, BLOCK_M, LANES)
    # turn per-expert prefixes into absolute rows: chunk_base += start[e]
    for c0 in range(0, num_chunks, CB):
        rows = c0 + tl.arange(0, CB)
        ptrs = rows[:, None] * LANES + lanes[None, :]
        m = (rows < num_chunks)[:, None]
        base = tl.load(chunk_base_ptr + ptrs, mask=m, other=0)
        tl.store(chunk_base_ptr + ptrs, base + start[None, :], mask=m)


@triton.jit
def _align_scatter_kernel(
    topk_ids_ptr, chunk_base_ptr, block_end_ptr, sorted_ids_ptr, expert_ids_ptr,
    num_slots, expert_offset, num_local, max_blocks, blocks_per_prog,
    CHUNK_: tl.constexpr, LANES: tl.constexpr, SUB: tl.constexpr, BB: tl.constexpr,
):
    """Stable scatter of each chunk's local slots, plus expert ids of a slice of row blocks.

    topk_ids_ptr: (T*k,) int32; chunk_base_ptr: (num_chunks, LANES) int32; block_end_ptr: (LANES,)
    int32; sorted_ids_ptr: (max_padded,) int32 out; expert_ids_ptr: (max_blocks,) int32 out.
    """
    pid = tl.program_id(0)
    lanes = tl.arange(0, LANES)
    base = tl.load(chunk_base_ptr + pid * LANES + lanes)
    for s in tl.static_range(0, CHUNK_, SUB):
        idx = pid * CHUNK_ + s + tl.arange(0, SUB)
        e = _local_expert(topk_ids_ptr, idx, num_slots, expert_offset, num_local)
        onehot = (e[:, None] == lanes[None, :]).to(tl.int32)
        rank = tl.cumsum(onehot, axis=0) - 1 + base[None, :]
        pos = tl.sum(tl.where(onehot > 0, rank, 0), axis=1)
        tl.store(sorted_ids_ptr + pos, idx, mask=e >= 0)
        base += tl.sum(onehot, axis=0)
    block_end = tl.load(block_end_ptr + lanes)
    lo = pid * blocks_per_prog
    hi = tl.minimum(lo + blocks_per_prog, max_blocks)
    _write_expert_ids(expert_ids_ptr, block_end, lo, hi, num_local, LANES, BB)


def moe_align(
    topk_ids: torch.Tensor,
    block_m: int,
    num_local_experts: int,
    local_expert_offset: int = 0,
    *,
    fused: bool | None = None,
) -> Alignment:
    """Group the local (token, slot) pairs of ``topk_ids`` by local expert, padded to ``block_m``.

    Args:
        topk_ids: ``(T, k)`` int32, contiguous; global expert ids.
        block_m: row-block size (power of two >= 16), shared with the GEMMs.
        num_local_experts: ``L``, experts of this rank's shard.
        local_expert_offset: first global id of the shard.
        fused: force the one-program path (True) or the three-launch path (False); ``None`` picks
            by size (``T*k <= FUSED_MAX_SLOTS`` is fused).

    Returns an :class:`Alignment`. Enqueues device work only: no host synchronization.
    """
    if topk_ids.dim() != 2 or topk_ids.dtype != torch.int32 or not topk_ids.is_contiguous():
        raise ValueError(
            f"topk_ids must be a contiguous 2-D int32 tensor, got shape {tuple(topk_ids.shape)} "
            f"dtype {topk_ids.dtype} strides {topk_ids.stride()}"
        )
    if block_m < 16 or block_m & (block_m - 1):
        raise ValueError(f"block_m={block_m} must be a power of two >= 16")
    if num_local_experts < 1 or local_expert_offset < 0:
        raise ValueError(
            f"num_local_experts={num_local_experts} must be >= 1 and "
            f"local_expert_offset={local_expert_offset} >= 0"
        )
    num_slots = topk_ids.numel()
    max_padded = max_padded_rows(num_slots, num_local_experts, block_m)
    max_blocks = max_padded // block_m
    dev = topk_ids.device
    sorted_ids = torch.empty(max_padded, dtype=torch.int32, device=dev)
    expert_ids = torch.empty(max_blocks, dtype=torch.int32, device=dev)
    num_padded = torch.empty(1, dtype=torch.int32, device=dev)
    lanes = _lanes(num_local_experts)
    sub = _sub(lanes)
    bb = max(16, min(128, 8192 // lanes))
    if fused is None:
        fused = num_slots <= FUSED_MAX_SLOTS
    if fused:
        _align_fused_kernel[(1,)](
            topk_ids, sorted_ids, expert_ids, num_padded,
            num_slots, local_expert_offset, num_local_experts, max_blocks,
            BLOCK_M=block_m, LANES=lanes, SUB=sub, BB=bb, num_warps=4,
        )
    else:
        num_chunks = max(1, triton.cdiv(num_slots, CHUNK))
        counts = torch.empty((num_chunks, lanes), dtype=torch.int32, device=dev)
        chunk_base = torch.empty((num_chunks, lanes), dtype=torch.int32, device=dev)
        block_end = torch.empty(lanes, dtype=torch.int32, device=dev)
        _align_count_kernel[(num_chunks,)](
            topk_ids, counts, num_slots, local_expert_offset, num_local_experts,
            CHUNK_=CHUNK, LANES=lanes, SUB=sub, num_warps=4,
        )
        cb = max(1, min(64, 8192 // lanes))
        _align_scan_kernel[(1,)](
            counts, chunk_base, block_end, sorted_ids, num_padded,
            num_chunks, num_local_experts, num_slots,
            BLOCK_M=block_m, LANES=lanes, CB=cb, num_warps=4,
        )
        _align_scatter_kernel[(num_chunks,)](
            topk_ids, chunk_base, block_end, sorted_ids, expert_ids,
            num_slots, local_expert_offset, num_local_experts, max_blocks,
            triton.cdiv(max_blocks, num_chunks),
            CHUNK_=CHUNK, LANES=lanes, SUB=sub, BB=bb, num_warps=4,
        )
    return Alignment(sorted_ids, expert_ids, num_padded, block_m, num_slots)
