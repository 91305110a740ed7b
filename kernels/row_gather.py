"""Token rows copied into the alignment's row order, so a gate/up GEMM can read x by TMA.

Hopper's TMA loads boxes of consecutive rows; it cannot gather. A gate/up tile with
``GemmTile.sorted_x`` therefore reads a copy of x whose row ``r`` is the row of the token that the
alignment's padded row ``r`` serves (``sorted_ids[r] // top_k``), ``top_k`` rows per token. This
module makes that copy on the device, byte for byte (any dtype: the 16-bit layer's x, or the fp8
codes of the quantized x with their per-row group scales).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.align import Alignment
from kernels.pdl import pdl_args, pdl_enter

GATHER_ROWS, GATHER_BYTES = 16, 512
"""Rows and bytes of a row per program (the fastest of H200 run 1's fp8 launches, session 10)."""


@triton.jit
def _gather_rows_kernel(
    x_ptr, s_ptr, out_ptr, out_s_ptr, sorted_ids_ptr, num_padded_ptr,
    num_slots, row_bytes, G,
    stride_x, stride_s, stride_o, stride_os,
    TOP_K: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_G: tl.constexpr,
    HAS_SCALES: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    """Rows ``r`` of program ``(pid_r, pid_b)``: ``out[r, cols] = x[sorted_ids[r] // TOP_K, cols]``
    as bytes, zeros for padding rows; with ``HAS_SCALES`` the ``pid_b == 0`` programs also copy the
    ``G`` per-row scales (1e-10 / 448 for padding rows, what ``kernels.quant`` gives a zero group).
    x_ptr: (T, row_bytes) uint8 view of x; s_ptr: (T, G) fp32; out_ptr: (max_padded, row_bytes)
    uint8; out_s_ptr: (max_padded, G) fp32; rows from ``num_padded`` on are left untouched."""
    pdl_enter(PDL)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    in_use = rows < tl.load(num_padded_ptr)
    slot = tl.load(sorted_ids_ptr + rows, mask=in_use, other=num_slots)
    real = in_use & (slot < num_slots)
    tok = tl.where(real, slot // TOP_K, 0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    col_ok = (cols < row_bytes)[None, :]
    data = tl.load(x_ptr + tok[:, None] * stride_x + cols[None, :], mask=real[:, None] & col_ok, other=0)
    tl.store(out_ptr + rows[:, None].to(tl.int64) * stride_o + cols[None, :], data,
             mask=in_use[:, None] & col_ok)  # fmt: skip
    if HAS_SCALES:  # noqa: SIM102 (a constexpr branch around a runtime one)
        if tl.program_id(1) == 0:
            groups = tl.arange(0, BLOCK_G)
            g_ok = (groups < G)[None, :]
            zero_scale = tl.math.div_rn(tl.full((BLOCK_R, BLOCK_G), 1e-10, tl.float32), 448.0)
            scales = tl.load(s_ptr + tok[:, None] * stride_s + groups[None, :], mask=real[:, None] & g_ok,
                             other=0.0)  # fmt: skip
            scales = tl.where(real[:, None], scales, zero_scale)
            tl.store(out_s_ptr + rows[:, None].to(tl.int64) * stride_os + groups[None, :], scales,
                     mask=in_use[:, None] & g_ok)  # fmt: skip


def gather_rows_sorted(
    x: torch.Tensor, al: Alignment, top_k: int, scales: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``x``'s rows in the alignment's order, on the device (no host sync).

    ``x (T, H)`` any dtype, unit stride in H; ``al`` from :func:`kernels.align.moe_align` on x's
    routing with ``top_k`` slots per token; ``scales (T, G)`` float32 per-row scales to carry along,
    or ``None``. Returns ``(rows (al.max_padded, H) x's dtype, rows' scales (al.max_padded, G)
    float32 or None)``: row ``r`` is ``x[al.sorted_ids[r] // top_k]``, zeros (scale 1e-10 / 448)
    on padding rows; rows from ``al.num_padded`` on are left unwritten.
    ``ValueError`` names a layout it cannot copy."""
    if x.dim() != 2 or x.stride(1) != 1:
        raise ValueError(f"x must be (T, H) with unit stride in H, got {tuple(x.shape)} strides {x.stride()}")
    t_, h = x.shape
    if al.num_slots != t_ * top_k:
        raise ValueError(f"alignment of {al.num_slots} slots does not fit T={t_} x top_k={top_k}")
    if scales is not None and (scales.dim() != 2 or scales.shape[0] != t_ or scales.dtype != torch.float32
                               or scales.stride(1) != 1):  # fmt: skip
        raise ValueError(f"scales must be ({t_}, G) float32 with unit stride in G, got "
                         f"{tuple(scales.shape)} {scales.dtype} strides {scales.stride()}")  # fmt: skip
    out = torch.empty((al.max_padded, h), dtype=x.dtype, device=x.device)
    out_s = None
    if scales is not None:
        out_s = torch.empty((al.max_padded, scales.shape[1]), dtype=torch.float32, device=x.device)
    if not t_ or not al.max_padded:
        return out, out_s
    raw, raw_out = x.view(torch.uint8), out.view(torch.uint8)
    row_bytes = h * x.element_size()
    s_in, s_out = (scales, out_s) if scales is not None else (x, out)  # placeholders when no scales
    groups = scales.shape[1] if scales is not None else 1
    _gather_rows_kernel[(triton.cdiv(al.max_padded, GATHER_ROWS), triton.cdiv(row_bytes, GATHER_BYTES))](
        raw, s_in, raw_out, s_out, al.sorted_ids, al.num_padded,
        al.num_slots, row_bytes, groups,
        raw.stride(0), s_in.stride(0), raw_out.stride(0), s_out.stride(0),
        TOP_K=top_k, BLOCK_R=GATHER_ROWS, BLOCK_B=GATHER_BYTES, BLOCK_G=triton.next_power_of_2(groups),
        HAS_SCALES=scales is not None, num_warps=4, **pdl_args(x.device),
    )  # fmt: skip
    return out, out_s
