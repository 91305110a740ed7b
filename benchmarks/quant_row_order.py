"""Candidate for the ``sorted_x`` quantization: two passes that write in row order.

``kernels.quant.quantize_fp8_groups_sorted`` reads each token once and writes it to its ``top_k``
rows of the alignment: scattered 128-byte row writes, 1.37 TB/s at deepseek-r1 T=16384 (BENCHMARKS.md,
run 67). This candidate quantizes x per token first (:func:`kernels.quant.quantize_fp8_groups`, ``T``
rows) and then copies the fp8 rows and their scales into the alignment's order with a row gather
(``top_k`` reads of 1 byte per element, mostly from L2 while the ``T`` quantized rows fit in it, and
writes in row order). Same bits on every row below ``num_padded`` (padding rows zeros, scale
1e-10 / 448), so ``benchmarks/quant_sorted_bench.py`` times the two side by side.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.align import Alignment
from kernels.quant import FP8, quantize_fp8_groups


@triton.jit
def _gather_rows_kernel(
    q_ptr, s_ptr, out_q_ptr, out_s_ptr, sorted_ids_ptr, num_padded_ptr,
    num_slots, H, G,
    stride_q, stride_s, stride_oq, stride_os,
    TOP_K: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_G: tl.constexpr,
):  # fmt: skip
    """Rows ``r`` of program ``(pid_r, pid_h)``: ``out_q[r, cols] = q[sorted_ids[r] // TOP_K, cols]``
    as bytes (zeros for padding rows); the ``pid_h == 0`` programs also copy the ``G`` scales (1e-10 /
    448 for padding rows). q_ptr: (T, H) uint8 view of e4m3; s_ptr: (T, G) fp32; out_q_ptr:
    (max_padded, H) uint8; out_s_ptr: (max_padded, G) fp32; rows from ``num_padded`` on untouched."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    in_use = rows < tl.load(num_padded_ptr)
    slot = tl.load(sorted_ids_ptr + rows, mask=in_use, other=num_slots)
    real = in_use & (slot < num_slots)
    tok = tl.where(real, slot // TOP_K, 0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    col_ok = (cols < H)[None, :]
    codes = tl.load(q_ptr + tok[:, None] * stride_q + cols[None, :], mask=real[:, None] & col_ok, other=0)
    tl.store(out_q_ptr + rows[:, None].to(tl.int64) * stride_oq + cols[None, :], codes,
             mask=in_use[:, None] & col_ok)  # fmt: skip
    if tl.program_id(1) == 0:
        groups = tl.arange(0, BLOCK_G)
        g_ok = (groups < G)[None, :]
        zero_scale = tl.math.div_rn(tl.full((BLOCK_R, BLOCK_G), 1e-10, tl.float32), 448.0)
        scales = tl.load(s_ptr + tok[:, None] * stride_s + groups[None, :], mask=real[:, None] & g_ok,
                         other=0.0)  # fmt: skip
        scales = tl.where(real[:, None], scales, zero_scale)
        tl.store(out_s_ptr + rows[:, None].to(tl.int64) * stride_os + groups[None, :], scales,
                 mask=in_use[:, None] & g_ok)  # fmt: skip


def quantize_fp8_groups_sorted_two_pass(
    x: torch.Tensor, al: Alignment, top_k: int, *, block_r: int = 16, block_h: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`kernels.quant.quantize_fp8_groups_sorted`'s result (``(max_padded, H)`` e4m3 and
    ``(max_padded, cdiv(H, 128))`` fp32, rows from ``num_padded`` on unwritten) in two passes:
    quantize the ``T`` tokens, then gather the rows into the alignment's order."""
    if al.num_slots != x.shape[0] * top_k:
        raise ValueError(f"alignment of {al.num_slots} slots does not fit T={x.shape[0]} x top_k={top_k}")
    q, s = quantize_fp8_groups(x)
    h, groups = q.shape[1], s.shape[1]
    out_q = torch.empty((al.max_padded, h), dtype=FP8, device=x.device)
    out_s = torch.empty((al.max_padded, groups), dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(al.max_padded, block_r), triton.cdiv(h, block_h))
    _gather_rows_kernel[grid](
        q.view(torch.uint8), s, out_q.view(torch.uint8), out_s, al.sorted_ids, al.num_padded,
        al.num_slots, h, groups, q.stride(0), s.stride(0), out_q.stride(0), out_s.stride(0),
        TOP_K=top_k, BLOCK_R=block_r, BLOCK_H=block_h, BLOCK_G=triton.next_power_of_2(groups),
        num_warps=4,
    )  # fmt: skip
    return out_q, out_s
