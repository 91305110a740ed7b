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
- ``slot_rows (T*k,) int32``: the inverse of ``sorted_ids``, the padded row of each slot, ``-1`` for
  slots that are not local (a token-major pass can scatter a token's data to its rows with it).

``max_padded`` is a host-side upper bound computed from shapes alone
(``T*k + min(L, T*k) * (block_m - 1)``, rounded up to ``block_m``), so grids are sized without
reading anything back and the whole layer can be captured in a CUDA graph.

Two paths: up to ``FUSED_MAX_SLOTS`` slots one program does everything (one launch, the decode
case); above it four launches spread the work over ``cdiv(T*k, CHUNK)`` programs: a per-chunk
histogram, a scan over chunks (per expert, along contiguous memory), a scan over experts (one
program, ``L``-long vectors), and a stable scatter (rank inside a chunk from a CHUNK x CHUNK
compare). No step does work proportional to ``L`` per slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels.pdl import pdl_args, pdl_enter

CHUNK = 128
FUSED_MAX_SLOTS = 256


@dataclass(frozen=True)
class Alignment:
    """Result of :func:`moe_align`; tensors live on ``topk_ids``' device."""

    sorted_ids: torch.Tensor
    expert_ids: torch.Tensor
    num_padded: torch.Tensor
    block_m: int
    num_slots: int
    slot_rows: torch.Tensor

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


@triton.jit
def _local_expert(topk_ids_ptr, idx, num_slots, expert_offset, num_local, LANES: tl.constexpr):
    """Local expert of flat slots ``idx``; ``LANES`` (a spare histogram bin) when the slot is out
    of range or its id is not in the shard."""
    inb = idx < num_slots
    ids = tl.load(topk_ids_ptr + idx, mask=inb, other=-1)
    e = ids - expert_offset
    ok = inb & (ids >= 0) & (e >= 0) & (e < num_local)
    return tl.where(ok, e, LANES)


@triton.jit
def _local_histogram(e, LANES: tl.constexpr):
    """Histogram over local experts of keys ``e`` in ``[0, LANES]`` (``LANES`` = dropped slot).
    Dropped slots are binned at 0 and taken back out, so no bin past ``LANES`` is needed."""
    dropped = e == LANES
    hist = tl.histogram(tl.where(dropped, 0, e), LANES)
    return hist - tl.where(tl.arange(0, LANES) == 0, tl.sum(dropped.to(tl.int32), axis=0), 0)


@triton.jit
def _rank_in_chunk(e, CHUNK_: tl.constexpr):
    """For each element, how many earlier elements of the chunk have the same key (stable rank).
    A (CHUNK, CHUNK) compare reduced along the contiguous axis."""
    i = tl.arange(0, CHUNK_)
    same = (e[:, None] == e[None, :]) & (i[None, :] < i[:, None])
    return tl.sum(same.to(tl.int32), axis=1)


@triton.jit
def _finish_experts(counts, lanes, sorted_ids_ptr, block_end_ptr, num_padded_ptr, num_local,
                    sentinel, BLOCK_M: tl.constexpr, LANES: tl.constexpr):
    """From per-expert counts: padded sizes, first padded row per expert (returned), the padded
    total, the inclusive block prefix per expert, and the sentinel in every padding row."""
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    end = tl.cumsum(padded, axis=0)
    start = end - padded
    tl.store(num_padded_ptr, tl.sum(padded, axis=0))
    tl.store(block_end_ptr + lanes, tl.where(lanes < num_local, end // BLOCK_M, 0x7FFFFFFF))
    PB: tl.constexpr = 16
    for j0 in tl.static_range(0, BLOCK_M, PB):
        j = j0 + tl.arange(0, PB)
        pos = (start + counts)[:, None] + j[None, :]
        mask = j[None, :] < (padded - counts)[:, None]
        tl.store(sorted_ids_ptr + pos, tl.full((LANES, PB), 0, tl.int32) + sentinel, mask=mask)
    return start


@triton.jit
def _write_expert_ids(expert_ids_ptr, block_end_ptr, blk_lo, blk_hi, num_local,
                      LANES: tl.constexpr, BB: tl.constexpr):
    """Per-block expert of blocks ``[blk_lo, blk_hi)``: the number of experts whose blocks end at
    or before the block (``block_end`` is huge on lanes >= L); ``-1`` past the padded total."""
    block_end = tl.load(block_end_ptr + tl.arange(0, LANES))
    for b0 in range(blk_lo, blk_hi, BB):
        blocks = b0 + tl.arange(0, BB)
        eid = tl.sum((block_end[None, :] <= blocks[:, None]).to(tl.int32), axis=1)
        eid = tl.where(eid < num_local, eid, -1)
        tl.store(expert_ids_ptr + blocks, eid, mask=blocks < blk_hi)


@triton.jit
def _store_rows(sorted_ids_ptr, slot_rows_ptr, idx, pos, local, num_slots):
    """Both directions of the alignment for slots ``idx`` (a chunk, int32): a local slot's id into its
    padded row ``pos`` of ``sorted_ids``, and each slot's row into ``slot_rows`` (``-1`` for a
    non-local one; indices at or past ``num_slots`` are not slots)."""
    tl.store(sorted_ids_ptr + pos, idx, mask=local)
    tl.store(slot_rows_ptr + idx, tl.where(local, pos, -1), mask=idx < num_slots)


@triton.jit
def _align_fused_kernel(
    topk_ids_ptr, sorted_ids_ptr, expert_ids_ptr, num_padded_ptr, block_end_ptr, slot_rows_ptr,
    num_slots, expert_offset, num_local, max_blocks,
    BLOCK_M: tl.constexpr, LANES: tl.constexpr, CHUNK_: tl.constexpr, BB: tl.constexpr, PDL: tl.constexpr,
):
    """Whole alignment in one program (``num_slots <= FUSED_MAX_SLOTS``, the decode case).

    topk_ids_ptr: (T*k,) int32 global ids; sorted_ids_ptr: (max_padded,) int32 out;
    expert_ids_ptr: (max_blocks,) int32 out; num_padded_ptr: (1,) int32 out;
    block_end_ptr: (LANES,) int32 scratch; slot_rows_ptr: (T*k,) int32 out.
    """
    pdl_enter(PDL)
    lanes = tl.arange(0, LANES)
    counts = tl.zeros((LANES,), tl.int32)
    for s in range(0, num_slots, CHUNK_):
        e = _local_expert(topk_ids_ptr, s + tl.arange(0, CHUNK_), num_slots, expert_offset,
                          num_local, LANES)
        counts += _local_histogram(e, LANES)
    start = _finish_experts(counts, lanes, sorted_ids_ptr, block_end_ptr, num_padded_ptr,
                            num_local, num_slots, BLOCK_M, LANES)
    base = start
    for s in range(0, num_slots, CHUNK_):
        idx = s + tl.arange(0, CHUNK_)
        e = _local_expert(topk_ids_ptr, idx, num_slots, expert_offset, num_local, LANES)
        local = e < LANES
        pos = tl.gather(base, tl.where(local, e, 0), 0) + _rank_in_chunk(e, CHUNK_)
        _store_rows(sorted_ids_ptr, slot_rows_ptr, idx, pos, local, num_slots)
        base += _local_histogram(e, LANES)
    tl.debug_barrier()
    _write_expert_ids(expert_ids_ptr, block_end_ptr, 0, max_blocks, num_local, LANES, BB)


@triton.jit
def _align_count_kernel(
    topk_ids_ptr, counts_t_ptr,
    num_slots, expert_offset, num_local, num_chunks,
    CHUNK_: tl.constexpr, LANES: tl.constexpr, PDL: tl.constexpr,
):
    """Per-chunk histogram. topk_ids_ptr: (T*k,) int32; counts_t_ptr: (LANES, num_chunks) int32
    out (transposed, so the scan over chunks runs along contiguous memory)."""
    pdl_enter(PDL)
    pid = tl.program_id(0)
    e = _local_expert(topk_ids_ptr, pid * CHUNK_ + tl.arange(0, CHUNK_), num_slots,
                      expert_offset, num_local, LANES)
    lanes = tl.arange(0, LANES)
    tl.store(counts_t_ptr + lanes * num_chunks + pid, _local_histogram(e, LANES))


@triton.jit
def _align_scan_chunks_kernel(
    counts_t_ptr, totals_ptr,
    num_chunks,
    EB: tl.constexpr, CB: tl.constexpr, PDL: tl.constexpr,
):
    """Exclusive prefix over chunks, in place, for EB experts per program.

    counts_t_ptr: (LANES, num_chunks) int32, counts in, per-(expert, chunk) first rank out;
    totals_ptr: (LANES,) int32 out, rows per expert.
    """
    pdl_enter(PDL)
    lanes = tl.program_id(0) * EB + tl.arange(0, EB)
    running = tl.zeros((EB,), tl.int32)
    for c0 in range(0, num_chunks, CB):
        cols = c0 + tl.arange(0, CB)
        ptrs = counts_t_ptr + lanes[:, None] * num_chunks + cols[None, :]
        m = (cols < num_chunks)[None, :]
        cnt = tl.load(ptrs, mask=m, other=0)
        tl.store(ptrs, tl.cumsum(cnt, axis=1) - cnt + running[:, None], mask=m)
        running += tl.sum(cnt, axis=1)
    tl.store(totals_ptr + lanes, running)


@triton.jit
def _align_scan_experts_kernel(
    totals_ptr, start_ptr, block_end_ptr, sorted_ids_ptr, num_padded_ptr,
    num_local, sentinel,
    BLOCK_M: tl.constexpr, LANES: tl.constexpr, PDL: tl.constexpr,
):
    """Scan over experts (one program). totals_ptr: (LANES,) int32; start_ptr: (LANES,) int32 out,
    first padded row per expert; block_end_ptr: (LANES,) int32 out; sorted_ids_ptr:
    (max_padded,) int32, padding rows written; num_padded_ptr: (1,) int32 out."""
    pdl_enter(PDL)
    lanes = tl.arange(0, LANES)
    counts = tl.load(totals_ptr + lanes)
    start = _finish_experts(counts, lanes, sorted_ids_ptr, block_end_ptr, num_padded_ptr,
                            num_local, sentinel, BLOCK_M, LANES)
    tl.store(start_ptr + lanes, start)


@triton.jit
def _align_scatter_kernel(
    topk_ids_ptr, counts_t_ptr, start_ptr, block_end_ptr, sorted_ids_ptr, expert_ids_ptr, slot_rows_ptr,
    num_slots, expert_offset, num_local, num_chunks, max_blocks, blocks_per_prog,
    CHUNK_: tl.constexpr, LANES: tl.constexpr, BB: tl.constexpr, PDL: tl.constexpr,
):
    """Stable scatter of one chunk's local slots, plus the expert ids of a slice of row blocks.

    topk_ids_ptr: (T*k,) int32; counts_t_ptr: (LANES, num_chunks) int32 per-(expert, chunk)
    first rank; start_ptr, block_end_ptr: (LANES,) int32; sorted_ids_ptr: (max_padded,) int32
    out; expert_ids_ptr: (max_blocks,) int32 out; slot_rows_ptr: (T*k,) int32 out.
    """
    pdl_enter(PDL)
    pid = tl.program_id(0)
    idx = pid * CHUNK_ + tl.arange(0, CHUNK_)
    e = _local_expert(topk_ids_ptr, idx, num_slots, expert_offset, num_local, LANES)
    local = e < LANES
    ec = tl.where(local, e, 0)
    pos = (tl.load(start_ptr + ec) + tl.load(counts_t_ptr + ec * num_chunks + pid)
           + _rank_in_chunk(e, CHUNK_))
    _store_rows(sorted_ids_ptr, slot_rows_ptr, idx, pos, local, num_slots)
    lo = pid * blocks_per_prog
    hi = tl.minimum(lo + blocks_per_prog, max_blocks)
    _write_expert_ids(expert_ids_ptr, block_end_ptr, lo, hi, num_local, LANES, BB)


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
    slot_rows = torch.empty(num_slots, dtype=torch.int32, device=dev)
    lanes = _lanes(num_local_experts)
    bb = max(16, min(128, 8192 // lanes))
    block_end = torch.empty(lanes, dtype=torch.int32, device=dev)
    pdl = pdl_args(dev)
    if fused is None:
        fused = num_slots <= FUSED_MAX_SLOTS
    if fused:
        _align_fused_kernel[(1,)](
            topk_ids, sorted_ids, expert_ids, num_padded, block_end, slot_rows,
            num_slots, local_expert_offset, num_local_experts, max_blocks,
            BLOCK_M=block_m, LANES=lanes, CHUNK_=CHUNK, BB=bb, num_warps=4, **pdl,
        )
    else:
        num_chunks = max(1, triton.cdiv(num_slots, CHUNK))
        counts_t = torch.empty((lanes, num_chunks), dtype=torch.int32, device=dev)
        totals = torch.empty(lanes, dtype=torch.int32, device=dev)
        start = torch.empty(lanes, dtype=torch.int32, device=dev)
        _align_count_kernel[(num_chunks,)](
            topk_ids, counts_t, num_slots, local_expert_offset, num_local_experts, num_chunks,
            CHUNK_=CHUNK, LANES=lanes, num_warps=4, **pdl,
        )
        eb = 8
        _align_scan_chunks_kernel[(lanes // eb,)](
            counts_t, totals, num_chunks, EB=eb, CB=256, num_warps=4, **pdl,
        )
        _align_scan_experts_kernel[(1,)](
            totals, start, block_end, sorted_ids, num_padded, num_local_experts, num_slots,
            BLOCK_M=block_m, LANES=lanes, num_warps=4, **pdl,
        )
        _align_scatter_kernel[(num_chunks,)](
            topk_ids, counts_t, start, block_end, sorted_ids, expert_ids, slot_rows,
            num_slots, local_expert_offset, num_local_experts, num_chunks, max_blocks,
            triton.cdiv(max_blocks, num_chunks),
            CHUNK_=CHUNK, LANES=lanes, BB=bb, num_warps=4, **pdl,
        )
    return Alignment(sorted_ids, expert_ids, num_padded, block_m, num_slots, slot_rows)
