"""fp8 (e4m3) w8a8 block-scale MoE, the DeepSeek recipe, for Hopper.

- Weights: e4m3 with one fp32 scale per 128 x 128 block (``w ~= w_fp8 * scale[block]``);
  ``w1_scale (L, cdiv(2I, 128), cdiv(H, 128))``, ``w2_scale (L, cdiv(H, 128), cdiv(I, 128))``.
- Activations: e4m3 with one fp32 scale per token per 128-wide group of columns, the group's
  absolute max mapped to e4m3's largest finite value (448). ``x`` is quantized on the device right
  after the alignment, by :func:`quantize_fp8_groups` (one row per token, which the gate/up
  gathers), or for a gate/up tile with ``sorted_x`` by :func:`quantize_fp8_groups_sorted`
  (one row per routed slot, in the alignment's order, which the gate/up reads by TMA).
  ``h = silu(gate) * up`` is quantized in the gate/up GEMM's epilogue (each program owns one
  128-wide group of h's columns).
- GEMMs: fp8 tensor-core dots per 128-deep K block, scaled by ``a_scale[row] * b_scale[col]`` and
  accumulated in fp32; routing weight, output and combine as in the bf16 layer (out in x's dtype).
  Each GEMM runs the Triton kernel of :mod:`kernels.fused_moe` or, for a tile with ``gluon`` set,
  the Hopper Gluon kernel (:mod:`kernels.gluon_gate_up`, :mod:`kernels.gluon_down`), which keeps the
  wgmmas in flight during the promotion; both write the same h, so a tactic may mix them.

The fp32 reference for this path is :func:`kernels.reference.fused_moe_reference` on the
dequantized inputs with ``act_quant="fp8_group"`` (it quantizes h by the same recipe).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.align import Alignment, moe_align
from kernels.fused_moe import (
    _err,
    _launch_gate_up,
    check_gluon_tiles,
    launch_combine,
    launch_down_rows,
    validate_inputs,
)
from kernels.gluon_support import HAS_GLUON, gluon_unready
from kernels.pdl import pdl_args, pdl_enter
from kernels.row_gather import gather_rows_sorted
from kernels.tactics import MoEProblem, Tactic, default_tactic

if HAS_GLUON:
    from kernels.gluon_gate_up import launch_gluon_gate_up

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
GROUP = 128


@triton.jit
def _quantize_tile(x_ptr, rows, row_ok, offs_h, h_ok, stride_xm):
    """The e4m3 codes and scales of ``x[rows, offs_h]`` (one GROUP-wide group per row; masked rows
    read as zeros): ``(q [R, GROUP] fp32 holding e4m3 values, scale [R] fp32)``. IEEE divisions
    (div_rn), so the rounding matches torch's fp32 recipe bit for bit."""
    x = tl.load(x_ptr + rows[:, None].to(tl.int64) * stride_xm + offs_h[None, :],
                mask=row_ok[:, None] & h_ok[None, :], other=0.0).to(tl.float32)
    scale = tl.math.div_rn(tl.maximum(tl.max(tl.abs(x), axis=1), 1e-10), 448.0)
    return tl.clamp(tl.math.div_rn(x, scale[:, None]), -448.0, 448.0), scale


@triton.jit
def _quant_groups_kernel(
    x_ptr, q_ptr, s_ptr,
    T, H,
    stride_xm, stride_qm, stride_sm,
    BLOCK_T: tl.constexpr, GROUP_: tl.constexpr, PDL: tl.constexpr,
):
    """Per-token, per-GROUP-column fp8 quantization.

    x_ptr: (T, H) bf16/fp16/fp32; q_ptr: (T, H) fp8 e4m3 out; s_ptr: (T, cdiv(H, GROUP)) fp32 out.
    """
    pdl_enter(PDL)
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    g = tl.program_id(1)
    offs_h = g * GROUP_ + tl.arange(0, GROUP_)
    t_ok = offs_t < T
    h_ok = offs_h < H
    q, scale = _quantize_tile(x_ptr, offs_t, t_ok, offs_h, h_ok, stride_xm)
    tl.store(q_ptr + offs_t[:, None].to(tl.int64) * stride_qm + offs_h[None, :],
             q.to(q_ptr.dtype.element_ty), mask=t_ok[:, None] & h_ok[None, :])
    tl.store(s_ptr + offs_t.to(tl.int64) * stride_sm + g, scale, mask=t_ok)


@triton.jit
def _quant_groups_sorted_kernel(
    x_ptr, q_ptr, s_ptr,
    slot_rows_ptr, sorted_ids_ptr, num_padded_ptr,
    T, H, num_slots, token_blocks,
    stride_xm, stride_qm, stride_sm,
    TOP_K: tl.constexpr, BLOCK_T: tl.constexpr, PAD_ROWS: tl.constexpr, GROUP_: tl.constexpr,
    PDL: tl.constexpr,
):
    """:func:`_quant_groups_kernel` written in the alignment's row order, token-major.

    x_ptr: (T, H); q_ptr: (max_padded, H) fp8 e4m3 out; s_ptr: (max_padded, cdiv(H, GROUP)) fp32
    out; slot_rows_ptr: (T*TOP_K,) int32, each slot's padded row or -1; sorted_ids_ptr:
    (max_padded,) int32; num_padded_ptr: (1,) int32. Programs ``pid < token_blocks`` read BLOCK_T
    tokens' group once and write it to each local slot's row; the others zero PAD_ROWS padded rows'
    group where they are padding (``sorted_ids == num_slots``, scale 1e-10 / 448 as for a zero row).
    Rows from ``num_padded`` on are not written.
    """
    pdl_enter(PDL)
    pid = tl.program_id(0)
    g = tl.program_id(1)
    offs_h = g * GROUP_ + tl.arange(0, GROUP_)
    h_ok = offs_h < H
    if pid < token_blocks:
        offs_t = pid * BLOCK_T + tl.arange(0, BLOCK_T)
        t_ok = offs_t < T
        q, scale = _quantize_tile(x_ptr, offs_t, t_ok, offs_h, h_ok, stride_xm)
        q = q.to(q_ptr.dtype.element_ty)
        for j in tl.static_range(TOP_K):
            rows = tl.load(slot_rows_ptr + offs_t * TOP_K + j, mask=t_ok, other=-1)
            ok = rows >= 0
            tl.store(q_ptr + rows[:, None].to(tl.int64) * stride_qm + offs_h[None, :], q,
                     mask=ok[:, None] & h_ok[None, :])
            tl.store(s_ptr + rows.to(tl.int64) * stride_sm + g, scale, mask=ok)
    else:
        pad_rows = (pid - token_blocks) * PAD_ROWS + tl.arange(0, PAD_ROWS)
        in_use = pad_rows < tl.load(num_padded_ptr)
        pad = in_use & (tl.load(sorted_ids_ptr + pad_rows, mask=in_use, other=0) == num_slots)
        zero = tl.zeros((PAD_ROWS, GROUP_), tl.float32)
        tl.store(q_ptr + pad_rows[:, None].to(tl.int64) * stride_qm + offs_h[None, :],
                 zero.to(q_ptr.dtype.element_ty), mask=pad[:, None] & h_ok[None, :])
        zero_scale = tl.math.div_rn(tl.full((PAD_ROWS,), 1e-10, tl.float32), 448.0)
        tl.store(s_ptr + pad_rows.to(tl.int64) * stride_sm + g, zero_scale, mask=pad)


_QUANT_BLOCK_T = 16


def _check_x(x: torch.Tensor) -> None:
    if x.dim() != 2 or x.stride(-1) != 1:
        raise ValueError(f"x must be 2-D with unit last stride, got {tuple(x.shape)} {x.stride()}")


def quantize_fp8_groups(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``x (T, H)`` per token per 128 columns on the device (no host sync).

    Returns ``(x_fp8 (T, H) float8_e4m3fn, scale (T, cdiv(H, 128)) float32)`` with
    ``x ~= x_fp8 * scale[:, col // 128]``.
    """
    _check_x(x)
    t_, h = x.shape
    groups = triton.cdiv(h, GROUP)
    q = torch.empty((t_, h), dtype=FP8, device=x.device)
    s = torch.empty((t_, groups), dtype=torch.float32, device=x.device)
    if t_:
        _quant_groups_kernel[(triton.cdiv(t_, _QUANT_BLOCK_T), groups)](
            x, q, s, t_, h, x.stride(0), q.stride(0), s.stride(0),
            BLOCK_T=_QUANT_BLOCK_T, GROUP_=GROUP, num_warps=4, **pdl_args(x.device),
        )
    return q, s


TWO_PASS_TOP_K = 8
"""From this ``top_k`` on, :func:`quantize_fp8_groups_sorted` quantizes in two passes (tokens, then a
row gather into the alignment's order) instead of one token-major pass with ``top_k`` scattered row
writes per token (H200, BENCHMARKS.md session 10 run 1: deepseek-r1 top_k 8 103 vs 120 µs at T=4096,
396 vs 664 µs at T=16384; mixtral top_k 2 114 vs 78 µs at T=16384)."""


def quantize_fp8_groups_sorted(
    x: torch.Tensor, al: Alignment, top_k: int, *, two_pass: bool | None = None,
    launch: tuple[int, int, int] = (16, 64, 4),
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:func:`quantize_fp8_groups` with the rows written in the alignment's order, on the device.

    ``x (T, H)``; ``al`` from :func:`kernels.align.moe_align` on ``x``'s routing with ``top_k``
    slots per token. Returns ``(x_fp8 (al.max_padded, H) float8_e4m3fn, scale (al.max_padded,
    cdiv(H, 128)) float32)``: row r is token ``al.sorted_ids[r] // top_k``'s quantized row (the
    same bits as :func:`quantize_fp8_groups` gives it), zeros for padding rows; rows from
    ``al.num_padded`` on are left unwritten. It lets a gate/up tile with ``sorted_x`` (Gluon's or
    Triton's) read x by TMA instead of gathering rows.

    Two ways, the same bits: token-major (each token read and quantized once and written to its local
    slots' rows through ``al.slot_rows``: ``2 T H`` bytes in, ``top_k T H`` out in scattered rows) or,
    with ``two_pass``, :func:`quantize_fp8_groups` then a row gather in row order (``top_k T H`` more
    bytes read, mostly from L2). ``two_pass=None`` picks it from ``top_k >= TWO_PASS_TOP_K``.
    ``launch``: the token-major kernel's ``(tokens per program, padded rows per zeroing program,
    warps)``, for ``benchmarks/quant_sorted_bench.py``.
    """
    _check_x(x)
    t_, h = x.shape
    if al.num_slots != t_ * top_k:
        raise ValueError(f"alignment of {al.num_slots} slots does not fit T={t_} x top_k={top_k}")
    groups = triton.cdiv(h, GROUP)
    if t_ and (top_k >= TWO_PASS_TOP_K if two_pass is None else two_pass):
        tq, ts = quantize_fp8_groups(x)
        rows, rows_s = gather_rows_sorted(tq, al, top_k, ts)
        assert rows_s is not None  # scales in, scales out
        return rows, rows_s
    q = torch.empty((al.max_padded, h), dtype=FP8, device=x.device)
    s = torch.empty((al.max_padded, groups), dtype=torch.float32, device=x.device)
    if not t_:
        return q, s
    block_t, pad_rows, warps = launch
    token_blocks = triton.cdiv(t_, block_t)
    _quant_groups_sorted_kernel[(token_blocks + triton.cdiv(al.max_padded, pad_rows), groups)](
        x, q, s, al.slot_rows, al.sorted_ids, al.num_padded,
        t_, h, al.num_slots, token_blocks,
        x.stride(0), q.stride(0), s.stride(0),
        TOP_K=top_k, BLOCK_T=block_t, PAD_ROWS=pad_rows, GROUP_=GROUP, num_warps=warps,
        **pdl_args(x.device),
    )
    return q, s


def dequantize_fp8_groups(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp32 ``q * scale`` with one scale per row per 128 columns."""
    rep = scale.repeat_interleave(GROUP, dim=-1)[..., : q.shape[-1]]
    return q.float() * rep


def quantize_fp8_block(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize weights ``(L, N, K)`` to e4m3 with one fp32 scale per 128 x 128 block (torch ops,
    offline). Returns ``(w_fp8 (L, N, K), scale (L, cdiv(N, 128), cdiv(K, 128)))``."""
    if w.dim() != 3:
        raise ValueError(f"weights must be (L, N, K), got {tuple(w.shape)}")
    num, n, k = w.shape
    nb, kb = triton.cdiv(n, GROUP), triton.cdiv(k, GROUP)
    pad = torch.zeros((num, nb * GROUP, kb * GROUP), dtype=torch.float32, device=w.device)
    pad[:, :n, :k] = w.float()
    blocks = pad.view(num, nb, GROUP, kb, GROUP)
    scale = blocks.abs().amax(dim=(2, 4)).clamp_min(1e-10) / FP8_MAX
    q = (blocks / scale[:, :, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    q = q.view(num, nb * GROUP, kb * GROUP)[:, :n, :k].contiguous()
    return q, scale.contiguous()


def dequantize_fp8_block(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp32 weights from :func:`quantize_fp8_block`'s output."""
    n, k = q.shape[-2:]
    rep = scale.repeat_interleave(GROUP, dim=-2).repeat_interleave(GROUP, dim=-1)
    return q.float() * rep[..., :n, :k]


def _check_scale(name: str, s: torch.Tensor, shape: tuple[int, ...], dev: torch.device) -> None:
    if not isinstance(s, torch.Tensor) or s.dtype != torch.float32 or tuple(s.shape) != shape:
        got = f"{tuple(s.shape)} {s.dtype}" if isinstance(s, torch.Tensor) else type(s).__name__
        raise _err(f"{name} must be float32 of shape {shape} (128x128 blocks), got {got}")
    if s.device != dev or not s.is_contiguous():
        raise _err(f"{name} must be contiguous on {dev}, got {s.device} strides {s.stride()}")


def fused_moe_fp8(
    x: torch.Tensor,
    w1: torch.Tensor,
    w1_scale: torch.Tensor,
    w2: torch.Tensor,
    w2_scale: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    *,
    local_expert_offset: int = 0,
    activation: str = "silu",
    tactic: Tactic | None = None,
    validate: bool = False,
    num_experts: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """fp8 w8a8 block-scale fused MoE layer of one rank (same routing semantics as fused_moe).

    Args:
        x: ``(T, H)`` bf16/fp16, quantized on the device per token per 128 columns.
        w1: ``(L, 2I, H)`` float8_e4m3fn (rows ``[0, I)`` gate, ``[I, 2I)`` up);
        w1_scale: ``(L, cdiv(2I, 128), cdiv(H, 128))`` float32 block scales.
        w2: ``(L, H, I)`` float8_e4m3fn; w2_scale: ``(L, cdiv(H, 128), cdiv(I, 128))`` float32.
        topk_ids, topk_weights, local_expert_offset, activation, validate, num_experts, out: as in
            :func:`kernels.fused_moe`.
        tactic: needs ``gate_up.block_n == gate_up.block_k == down.block_k == 128`` (one scale
            group per K step and per gate/up program); Gluon tiles need a Hopper GPU and the sizes
            of :func:`kernels.tactics.gluon_misfit`. ``None`` uses the fp8 default (with Gluon
            tiles where the device runs them).

    Returns ``out (T, H)`` in x's dtype; deterministic like the bf16 layer.
    """
    t_, h, i, num_local, k = validate_inputs(
        x, w1, w2, topk_ids, topk_weights, local_expert_offset, activation,
        weight_dtypes=(FP8,), check_ids=validate, num_experts=num_experts,
    )
    if x.dtype not in (torch.bfloat16, torch.float16):
        raise _err(f"fp8 layer takes bf16/fp16 activations, got {x.dtype}")
    _check_scale("w1_scale", w1_scale, (num_local, triton.cdiv(2 * i, GROUP),
                                        triton.cdiv(h, GROUP)), x.device)
    _check_scale("w2_scale", w2_scale, (num_local, triton.cdiv(h, GROUP),
                                        triton.cdiv(i, GROUP)), x.device)
    if tactic is None:
        tactic = default_tactic(MoEProblem(t_, h, i, num_local, k, "float8_e4m3fn"),
                                gluon=gluon_unready(x.device) is None)
    elif not isinstance(tactic, Tactic):
        raise _err(f"tactic must be a kernels.Tactic, got {type(tactic).__name__}")
    if (tactic.gate_up.block_n, tactic.gate_up.block_k, tactic.down.block_k) != (128, 128, 128):
        raise _err(f"fp8 tactic needs gate_up block_n = block_k = down block_k = 128, got "
                   f"{tactic.name}")
    check_gluon_tiles(tactic, h, i, w1, w2)
    if out is None:
        out = torch.empty((t_, h), dtype=x.dtype, device=x.device)
    elif (tuple(out.shape) != (t_, h) or out.dtype != x.dtype or out.device != x.device
          or not out.is_contiguous()):
        raise _err(f"out must be a contiguous ({t_}, {h}) {x.dtype} tensor on {x.device}")
    if t_ == 0:
        return out
    al = moe_align(topk_ids, tactic.block_m, num_local, local_expert_offset)
    sorted_x = tactic.gate_up.sorted_x
    xq, xs = quantize_fp8_groups_sorted(x, al, k) if sorted_x else quantize_fp8_groups(x)
    hq = torch.empty((al.max_padded, i), dtype=FP8, device=x.device)
    hs = torch.empty((al.max_padded, triton.cdiv(i, GROUP)), dtype=torch.float32,
                     device=x.device)
    if tactic.gate_up.gluon:
        launch_gluon_gate_up(xq, xs, w1, w1_scale, hq, hs, al, tactic.gate_up, k, sorted_x=sorted_x)
    else:
        _launch_gate_up(xq, w1, hq, al, tactic.gate_up, k, "tf32", scales=(xs, w1_scale, hs))
    y = launch_down_rows(hq, w2, topk_weights, al, tactic.down, x.dtype, "tf32", scales=(hs, w2_scale))
    slot_rows = al.slot_rows if tactic.down.gluon else None
    launch_combine(y, topk_ids, out, local_expert_offset, num_local, slot_rows=slot_rows)
    return out
