"""Fused MoE layer in Triton: EP-local alignment, gate/up GEMM + activation, down GEMM + routing
weight, deterministic top-k combine.

``out[t] = sum_j w[t, j] * W2[e] @ (silu(W1g[e] @ x[t]) * (W1u[e] @ x[t]))`` over the slots ``j``
whose global expert ``e = topk_ids[t, j]`` lies in ``[offset, offset + L)``; other slots add nothing
and get no rows, blocks or tiles.

Launch sequence (all device work, no host sync, CUDA-graph capturable):

1. :func:`kernels.align.moe_align`: sorted slot list padded per expert to ``block_m``.
2. ``_gate_up_kernel``: per row block of one expert, gathers the block's token rows of ``x``
   straight from ``x`` (no permuted copy) or, for a tile with ``sorted_x``, reads them by TMA from a
   copy of x's rows in the alignment's order (:func:`kernels.row_gather.gather_rows_sorted`),
   computes the gate and up tiles together and writes ``h = silu(gate) * up`` (x's dtype) at the
   block's padded rows. A bf16/fp16 ``persistent`` Gluon tile runs the warp-specialized Gluon
   gate/up of :mod:`kernels.gluon_gate_up_ws` instead (Hopper), on that copy with ``sorted_x``,
   else gathering x's rows itself.
3. ``_down_kernel``: ``h @ W2[e]^T`` per row block, scaled by the slot's routing weight in fp32,
   stored (x's dtype) at the slot's row of a ``(T*k, H)`` buffer; or, for a bf16/fp16 tile with
   ``gluon``, the persistent warp-specialized Gluon down (:mod:`kernels.gluon_down`, Hopper), which
   stores each tile by TMA into a ``(max_padded, H)`` buffer in the alignment's row order.
4. ``_combine_kernel``: ``out[t] = sum_{j=0..k-1}`` of the local slots' rows (found through the
   alignment's ``slot_rows`` after the Gluon down) in fixed order, fp32 accumulation; no atomics,
   so the same inputs give the same bits on every run.

The fp8 block-scale variant lives in :mod:`kernels.quant`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from kernels.align import Alignment, moe_align
from kernels.gluon_support import HAS_GLUON, gluon_unready
from kernels.pdl import pdl_args, pdl_enter, pdl_launch_next
from kernels.row_gather import gather_rows_sorted
from kernels.tactics import GemmTile, MoEProblem, Tactic, default_tactic, gluon_misfit

if HAS_GLUON:
    from kernels.gluon_down import launch_gluon_down
    from kernels.gluon_gate_up_ws import launch_gluon_gate_up_ws_16bit

ACTIVATIONS = ("silu",)
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


@triton.jit
def _grouped_pid(pid, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Map a flat program id to (row block, column tile), ``GROUP_M`` row blocks per column sweep."""
    width = GROUP_M * num_pid_n
    group = pid // width
    first_m = group * GROUP_M
    size_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % size_m
    pid_n = (pid % width) // size_m
    return pid_m, pid_n


@triton.jit
def _quotient_rn(h, scale):
    """``h / scale`` (fp32, broadcast), ``div_rn``'s quotient wherever h is normal (and the same e4m3
    codes everywhere), with one IEEE division per scale instead of per element:
    ``kernels.gluon_gate_up._e4m3_quotient``'s Markstein correction."""
    recip = tl.math.div_rn(tl.full(scale.shape, 1.0, tl.float32), scale)
    q0 = h * recip
    return tl.fma(tl.fma(q0, scale, -h), -recip, q0)  # -recip: once per row


# Token-count arguments are not specialized (==1, %16): one compile serves every bucket.
@triton.jit(do_not_specialize=["num_slots", "max_blocks"])
def _gate_up_kernel(
    x_ptr, w1_ptr, h_ptr, sorted_ids_ptr, expert_ids_ptr, num_padded_ptr,
    xs_ptr, w1s_ptr, hs_ptr,
    N, K, num_slots, top_k, max_blocks,
    stride_xm, stride_xk, stride_we, stride_wn, stride_wk, stride_hm, stride_hn,
    stride_xsm, stride_wse, stride_wsn, stride_hsm,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr, DOT_PRECISION: tl.constexpr, USE_TMA: tl.constexpr,
    BLOCK_SCALE: tl.constexpr, SORTED_X: tl.constexpr, PDL: tl.constexpr,
):
    """h[r, :] = silu(x[tok(r)] @ W1[e, :N]^T) * (x[tok(r)] @ W1[e, N:]^T) per padded row r.

    x_ptr: (T, K) fp16/bf16/fp32 (fp8 e4m3 with BLOCK_SCALE), rows gathered through sorted_ids;
    w1_ptr: (L, 2N, K) same dtype, rows [0, N) gate and [N, 2N) up; h_ptr: (max_padded, N) out,
    x's dtype (fp8 e4m3 with BLOCK_SCALE); sorted_ids_ptr: (max_padded,) int32 flat slot ids
    (sentinel num_slots on padding rows); expert_ids_ptr: (max_blocks,) int32 local expert per row
    block; num_padded_ptr: (1,) int32. N = intermediate size I, K = hidden size H.

    BLOCK_SCALE (fp8 w8a8, DeepSeek recipe; BLOCK_K == BLOCK_N == 128): xs_ptr: (T, cdiv(K, 128))
    fp32 per-token group scales of x; w1s_ptr: (L, cdiv(2N, 128), cdiv(K, 128)) fp32 128x128 block
    scales of w1; hs_ptr: (max_padded, cdiv(N, 128)) fp32 out, the per-row group scales of h
    (each program's 128 columns are one group, quantized in the epilogue). Unused otherwise.

    USE_TMA: w1_ptr is a TMA descriptor of w1 viewed as (L*2N, K), block (BLOCK_N, BLOCK_K);
    tail rows of a tile spill into the next rows, i.e. only into output columns never stored.

    SORTED_X: x is already in the alignment's row order (``kernels.row_gather``): x_ptr is a TMA
    descriptor of that (max_padded, K) copy, block (BLOCK_M, BLOCK_K), so a program reads its rows as
    one box per K step instead of gathering them; with BLOCK_SCALE, xs_ptr is (max_padded,
    cdiv(K, 128)) in the same order. The dot operands are the same values, so h is the same.
    """
    pdl_enter(PDL, LAUNCH_NEXT=False)  # the next kernel launches after this one's K loop
    pid = tl.program_id(0)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    pid_m, pid_n = _grouped_pid(pid, max_blocks, num_pid_n, GROUP_M)
    if pid_m * BLOCK_M >= tl.load(num_padded_ptr):
        return
    e = tl.load(expert_ids_ptr + pid_m).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slot = tl.load(sorted_ids_ptr + offs_m)
    # padding rows read token 0 (finite data); their h rows are never consumed
    token = tl.where(slot < num_slots, slot // top_k, 0).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_bn = offs_n % N  # wrap: loads stay in bounds without masks, stores are masked
    offs_k = tl.arange(0, BLOCK_K)
    if not SORTED_X:
        a_ptrs = x_ptr + token[:, None] * stride_xm + offs_k[None, :] * stride_xk
    if USE_TMA:
        row_g = (e * 2 * N + pid_n * BLOCK_N).to(tl.int32)
        row_u = row_g + N
    else:
        g_ptrs = w1_ptr + e * stride_we + offs_bn[None, :] * stride_wn + offs_k[:, None] * stride_wk
        u_ptrs = g_ptrs + N * stride_wn
    if BLOCK_SCALE:
        # fp8: each 128-deep fp8 dot is promoted to fp32 and scaled before it is added (Hopper's
        # fp8 tensor-core accumulation is not full fp32; accumulating in place across K blocks
        # measured 1.0-1.5% error against 0.5% here, and was not faster)
        xs_ptrs = xs_ptr + (offs_m.to(tl.int64) if SORTED_X else token) * stride_xsm
        gs_ptrs = w1s_ptr + e * stride_wse + (offs_bn // 128) * stride_wsn
        us_ptrs = w1s_ptr + e * stride_wse + ((offs_bn + N) // 128) * stride_wsn
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(0, tl.cdiv(K, BLOCK_K)):
        if SORTED_X:  # the box's columns past K read as zeros
            a = x_ptr.load([(pid_m * BLOCK_M).to(tl.int32), kk * BLOCK_K])
        elif EVEN_K:
            a = tl.load(a_ptrs)
        else:
            a = tl.load(a_ptrs, mask=offs_k[None, :] < K - kk * BLOCK_K, other=0.0)
        if USE_TMA:
            bg = tl.trans(w1_ptr.load([row_g, kk * BLOCK_K]))
            bu = tl.trans(w1_ptr.load([row_u, kk * BLOCK_K]))
        else:
            if EVEN_K:
                bg = tl.load(g_ptrs)
                bu = tl.load(u_ptrs)
            else:
                k_left = K - kk * BLOCK_K
                bg = tl.load(g_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
                bu = tl.load(u_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
            g_ptrs += BLOCK_K * stride_wk
            u_ptrs += BLOCK_K * stride_wk
        if BLOCK_SCALE:
            a_s = tl.load(xs_ptrs + kk)
            g_s = tl.load(gs_ptrs + kk)
            u_s = tl.load(us_ptrs + kk)
            acc_g += tl.dot(a, bg) * (a_s[:, None] * g_s[None, :])
            acc_u += tl.dot(a, bu) * (a_s[:, None] * u_s[None, :])
        else:
            acc_g = tl.dot(a, bg, acc_g, input_precision=DOT_PRECISION)
            acc_u = tl.dot(a, bu, acc_u, input_precision=DOT_PRECISION)
        if not SORTED_X:
            a_ptrs += BLOCK_K * stride_xk
    pdl_launch_next(PDL)
    h = acc_g / (1.0 + tl.exp(-acc_g)) * acc_u
    n_ok = offs_n[None, :] < N
    h_ptrs = h_ptr + offs_m[:, None].to(tl.int64) * stride_hm + offs_n[None, :] * stride_hn
    if BLOCK_SCALE:
        # one 128-wide group per program: per-row scale so the group's max maps to e4m3's 448
        h = tl.where(n_ok, h, 0.0)
        h_scale = tl.math.div_rn(tl.maximum(tl.max(tl.abs(h), axis=1), 1e-10), 448.0)
        hq = tl.clamp(_quotient_rn(h, h_scale[:, None]), -448.0, 448.0)
        tl.store(h_ptrs, hq.to(h_ptr.dtype.element_ty), mask=n_ok)
        tl.store(hs_ptr + offs_m.to(tl.int64) * stride_hsm + pid_n, h_scale)
    else:
        tl.store(h_ptrs, h.to(h_ptr.dtype.element_ty), mask=n_ok)


# Token-count arguments are not specialized (==1, %16): one compile serves every bucket.
@triton.jit(do_not_specialize=["num_slots", "max_blocks"])
def _down_kernel(
    h_ptr, w2_ptr, y_ptr, sorted_ids_ptr, expert_ids_ptr, num_padded_ptr, topk_weights_ptr,
    hs_ptr, w2s_ptr,
    N, K, num_slots, max_blocks,
    stride_hm, stride_hk, stride_we, stride_wn, stride_wk, stride_ym, stride_yn,
    stride_hsm, stride_wse, stride_wsn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr, DOT_PRECISION: tl.constexpr, USE_TMA: tl.constexpr,
    BLOCK_SCALE: tl.constexpr, PDL: tl.constexpr,
):
    """y[slot(r), :] = w[slot(r)] * (h[r] @ W2[e]^T) for the real (non-padding) rows r.

    h_ptr: (max_padded, K) fp16/bf16/fp32 (fp8 e4m3 with BLOCK_SCALE); w2_ptr: (L, N, K) same
    dtype; y_ptr: (T*k, N) out, bf16/fp16/fp32, one row per flat slot; sorted_ids_ptr:
    (max_padded,) int32; expert_ids_ptr: (max_blocks,) int32; num_padded_ptr: (1,) int32;
    topk_weights_ptr: (T*k,) fp32. N = hidden size H, K = intermediate size I.

    BLOCK_SCALE (BLOCK_K == 128): hs_ptr: (max_padded, cdiv(K, 128)) fp32 group scales of h;
    w2s_ptr: (L, cdiv(N, 128), cdiv(K, 128)) fp32 block scales of w2. Unused otherwise.

    USE_TMA: h_ptr and w2_ptr are TMA descriptors of h (max_padded, K), block (BLOCK_M, BLOCK_K),
    and of w2 viewed as (L*N, K), block (BLOCK_N, BLOCK_K).
    """
    pdl_enter(PDL, LAUNCH_NEXT=False)  # the next kernel launches after this one's K loop
    pid = tl.program_id(0)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    pid_m, pid_n = _grouped_pid(pid, max_blocks, num_pid_n, GROUP_M)
    if pid_m * BLOCK_M >= tl.load(num_padded_ptr):
        return
    e = tl.load(expert_ids_ptr + pid_m).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slot = tl.load(sorted_ids_ptr + offs_m)
    valid = slot < num_slots
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_bn = offs_n % N
    offs_k = tl.arange(0, BLOCK_K)
    if USE_TMA:
        row_a = pid_m * BLOCK_M
        row_b = (e * N + pid_n * BLOCK_N).to(tl.int32)
    else:
        a_ptrs = h_ptr + offs_m[:, None].to(tl.int64) * stride_hm + offs_k[None, :] * stride_hk
        b_ptrs = w2_ptr + e * stride_we + offs_bn[None, :] * stride_wn + offs_k[:, None] * stride_wk
    if BLOCK_SCALE:
        hs_ptrs = hs_ptr + offs_m.to(tl.int64) * stride_hsm
        ws_ptrs = w2s_ptr + e * stride_wse + (offs_bn // 128) * stride_wsn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(0, tl.cdiv(K, BLOCK_K)):
        if USE_TMA:
            a = h_ptr.load([row_a, kk * BLOCK_K])
            b = tl.trans(w2_ptr.load([row_b, kk * BLOCK_K]))
        else:
            if EVEN_K:
                a = tl.load(a_ptrs)
                b = tl.load(b_ptrs)
            else:
                k_left = K - kk * BLOCK_K
                a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
                b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
            a_ptrs += BLOCK_K * stride_hk
            b_ptrs += BLOCK_K * stride_wk
        if BLOCK_SCALE:
            a_s = tl.load(hs_ptrs + kk)
            b_s = tl.load(ws_ptrs + kk)
            acc += tl.dot(a, b) * (a_s[:, None] * b_s[None, :])
        else:
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
    pdl_launch_next(PDL)
    w = tl.load(topk_weights_ptr + slot, mask=valid, other=0.0)
    acc = acc * w[:, None]
    y_ptrs = y_ptr + slot[:, None].to(tl.int64) * stride_ym + offs_n[None, :] * stride_yn
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=valid[:, None] & (offs_n[None, :] < N))


# Token-count arguments are not specialized (==1, %16): one compile serves every bucket.
@triton.jit(do_not_specialize=["num_tokens"])
def _combine_kernel(
    y_ptr, topk_ids_ptr, slot_rows_ptr, out_ptr,
    num_tokens, N, expert_offset, num_local,
    stride_ym, stride_om,
    TOP_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BY_ROWS: tl.constexpr,
    PDL: tl.constexpr,
):
    """out[t] = sum over j = 0..TOP_K-1 (in order) of slot t*TOP_K + j's row of y for local slots,
    fp32 sum.

    y_ptr: (T*k, N) x's dtype, one row per slot (rows of non-local slots never read), or with
    ``BY_ROWS`` (max_padded, N) in the alignment's row order, slot s's row at ``slot_rows[s]`` (-1:
    not local); topk_ids_ptr: (T, k) int32; slot_rows_ptr: (T*k,) int32 (``BY_ROWS`` only);
    out_ptr: (T, N) x's dtype. N = hidden size H.
    """
    pdl_enter(PDL)
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    t_ok = offs_t < num_tokens
    n_ok = offs_n < N
    acc = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
    for j in tl.static_range(TOP_K):
        slot = offs_t * TOP_K + j
        if BY_ROWS:
            row = tl.load(slot_rows_ptr + slot, mask=t_ok, other=-1)
            local = t_ok & (row >= 0)
        else:
            e = tl.load(topk_ids_ptr + slot, mask=t_ok, other=-1) - expert_offset
            local = t_ok & (e >= 0) & (e < num_local)
            row = slot
        ptrs = y_ptr + row[:, None].to(tl.int64) * stride_ym + offs_n[None, :]
        acc += tl.load(ptrs, mask=local[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
    o_ptrs = out_ptr + offs_t[:, None].to(tl.int64) * stride_om + offs_n[None, :]
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=t_ok[:, None] & n_ok[None, :])


def _err(msg: str) -> ValueError:
    return ValueError(f"fused_moe: {msg}")


def validate_inputs(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    local_expert_offset: int,
    activation: str,
    *,
    weight_dtypes: tuple[torch.dtype, ...] | None = None,
    check_ids: bool = False,
    num_experts: int | None = None,
) -> tuple[int, int, int, int, int]:
    """Check shapes, dtypes, devices, strides and (with ``check_ids``) the id range.

    Returns ``(T, H, I, L, k)``. Raises ``ValueError`` naming the first mismatch. Only
    ``check_ids`` reads device memory back (a host sync), so it is off on the hot path.
    """
    for name, t in (("x", x), ("w1", w1), ("w2", w2), ("topk_ids", topk_ids),
                    ("topk_weights", topk_weights)):
        if not isinstance(t, torch.Tensor):
            raise _err(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if x.dim() != 2:
        raise _err(f"x must be 2-D (T, H), got shape {tuple(x.shape)}")
    if w1.dim() != 3 or w2.dim() != 3:
        raise _err(f"w1 and w2 must be 3-D, got {tuple(w1.shape)} and {tuple(w2.shape)}")
    t_, h = x.shape
    num_local, two_i, h1 = w1.shape
    if h1 != h:
        raise _err(f"w1 is (L, 2I, H) = {tuple(w1.shape)} but x has H={h}")
    if two_i % 2:
        raise _err(f"w1 dim 1 must be 2*I (gate rows then up rows), got odd {two_i}")
    i = two_i // 2
    if tuple(w2.shape) != (num_local, h, i):
        raise _err(f"w2 must be (L, H, I) = {(num_local, h, i)}, got {tuple(w2.shape)}")
    if topk_ids.dim() != 2 or topk_ids.shape[0] != t_:
        raise _err(f"topk_ids must be (T={t_}, k), got {tuple(topk_ids.shape)}")
    k = topk_ids.shape[1]
    if tuple(topk_weights.shape) != (t_, k):
        raise _err(f"topk_weights must be (T, k) = {(t_, k)}, got {tuple(topk_weights.shape)}")
    if k < 1:
        raise _err("top_k must be >= 1")
    if x.dtype not in _FLOAT_DTYPES:
        raise _err(f"x dtype {x.dtype} not supported; use one of {_FLOAT_DTYPES}")
    allowed_w = weight_dtypes or (x.dtype,)
    if w1.dtype not in allowed_w or w2.dtype not in allowed_w:
        raise _err(f"w1/w2 dtypes {w1.dtype}/{w2.dtype} must be {allowed_w} (x is {x.dtype})")
    if topk_ids.dtype != torch.int32:
        raise _err(f"topk_ids dtype must be torch.int32, got {topk_ids.dtype}")
    if topk_weights.dtype != torch.float32:
        raise _err(f"topk_weights dtype must be torch.float32, got {topk_weights.dtype}")
    devs = {t.device for t in (x, w1, w2, topk_ids, topk_weights)}
    if len(devs) != 1:
        raise _err(f"all tensors must be on one device, got {sorted(map(str, devs))}")
    for name, t in (("x", x), ("w1", w1), ("w2", w2)):
        if t.numel() and t.stride(-1) != 1:
            raise _err(f"{name} must have unit stride in its last dim, got strides {t.stride()}")
    for name, t in (("topk_ids", topk_ids), ("topk_weights", topk_weights)):
        if not t.is_contiguous():
            raise _err(f"{name} must be contiguous, got strides {t.stride()}")
    if isinstance(local_expert_offset, bool) or not isinstance(local_expert_offset, int) or (
        local_expert_offset < 0
    ):
        raise _err(f"local_expert_offset must be an int >= 0, got {local_expert_offset!r}")
    if activation not in ACTIVATIONS:
        raise _err(f"activation {activation!r} not supported; use one of {ACTIVATIONS}")
    if check_ids and topk_ids.numel():
        lo = int(topk_ids.min())
        hi = int(topk_ids.max())
        upper = num_experts if num_experts is not None else None
        if lo < 0 or (upper is not None and hi >= upper):
            bound = f"[0, {upper})" if upper is not None else ">= 0"
            raise _err(f"topk_ids must lie in {bound}, got range [{lo}, {hi}]")
    return t_, h, i, num_local, k


def tma_ok(t: torch.Tensor) -> bool:
    """Whether ``t`` can back a TMA descriptor: 16-byte aligned base and non-unit strides."""
    elem = t.element_size()
    return t.data_ptr() % 16 == 0 and all(
        (st * elem) % 16 == 0 for st in t.stride()[:-1]
    ) and t.stride(-1) == 1


def _desc_2d(t: torch.Tensor, rows: int, block: list[int]) -> TensorDescriptor:
    """Descriptor of ``t`` seen as ``(rows, t.shape[-1])`` (leading dims folded, uniform stride)."""
    return TensorDescriptor(t, [rows, t.shape[-1]], [t.stride(-2), 1], block)


def _launch_gate_up(x: torch.Tensor, w1: torch.Tensor, h: torch.Tensor, al: Alignment,
                    tile: GemmTile, top_k: int, dot_precision: str,
                    scales: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
    """Gate/up GEMM. ``scales = (x_scale, w1_scale, h_scale out)`` selects fp8 block scaling.
    With ``tile.sorted_x``, ``x`` (and ``x_scale``) are ``(al.max_padded, H)`` in the alignment's
    row order (:func:`kernels.row_gather.gather_rows_sorted`), read by TMA. A 16-bit Gluon tile runs
    the persistent Gluon gate/up (:mod:`kernels.gluon_gate_up_ws`)."""
    if tile.gluon and scales is None:
        launch_gluon_gate_up_ws_16bit(x, w1, h, al, tile, top_k)
        return
    n, kdim = w1.shape[1] // 2, w1.shape[2]
    grid = (al.max_blocks * triton.cdiv(n, tile.block_n),)
    w1_arg: torch.Tensor | TensorDescriptor = w1
    if tile.tma:
        _require_tma(w1, "w1", folded=True)
        w1_arg = _desc_2d(w1, w1.shape[0] * w1.shape[1], [tile.block_n, tile.block_k])
    x_arg: torch.Tensor | TensorDescriptor = x
    if tile.sorted_x:
        if x.shape[0] != al.max_padded:  # TMA would read the missing rows as zeros
            raise _err(f"a sorted_x tile reads x in the alignment's order, ({al.max_padded}, H) rows; "
                       f"got {tuple(x.shape)}")  # fmt: skip
        _require_tma(x, "x in the alignment's order", folded=False)
        x_arg = _desc_2d(x, x.shape[0], [al.block_m, tile.block_k])
    xs, w1s, hs = scales if scales is not None else (x, x, x)
    _gate_up_kernel[grid](
        x_arg, w1_arg, h, al.sorted_ids, al.expert_ids, al.num_padded,
        xs, w1s, hs,
        n, kdim, al.num_slots, top_k, al.max_blocks,
        x.stride(0), x.stride(1), w1.stride(0), w1.stride(1), w1.stride(2),
        h.stride(0), h.stride(1),
        xs.stride(0), w1s.stride(0), w1s.stride(1) if w1s.dim() > 1 else 0, hs.stride(0),
        BLOCK_M=al.block_m, BLOCK_N=tile.block_n, BLOCK_K=tile.block_k, GROUP_M=tile.group_m,
        EVEN_K=kdim % tile.block_k == 0, DOT_PRECISION=dot_precision, USE_TMA=tile.tma,
        BLOCK_SCALE=scales is not None, SORTED_X=tile.sorted_x,
        num_warps=tile.num_warps, num_stages=tile.num_stages, **pdl_args(h.device),
    )


def _require_tma(t: torch.Tensor, name: str, *, folded: bool) -> None:
    ok = tma_ok(t) and (not folded or t.stride(0) == t.shape[1] * t.stride(1))
    if not ok:
        raise _err(
            f"tactic asks for TMA but {name} (shape {tuple(t.shape)}, strides {t.stride()}, "
            f"{t.dtype}) needs a 16-byte aligned base, 16-byte multiple row strides"
            + (" and contiguous expert slabs" if folded else "")
        )


def _launch_down(h: torch.Tensor, w2: torch.Tensor, y: torch.Tensor, topk_weights: torch.Tensor,
                 al: Alignment, tile: GemmTile, dot_precision: str,
                 scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """Down GEMM. ``scales = (h_scale, w2_scale)`` selects fp8 block scaling."""
    n, kdim = w2.shape[1], w2.shape[2]
    grid = (al.max_blocks * triton.cdiv(n, tile.block_n),)
    h_arg: torch.Tensor | TensorDescriptor = h
    w2_arg: torch.Tensor | TensorDescriptor = w2
    if tile.tma:
        _require_tma(w2, "w2", folded=True)
        _require_tma(h, "h", folded=False)
        h_arg = _desc_2d(h, h.shape[0], [al.block_m, tile.block_k])
        w2_arg = _desc_2d(w2, w2.shape[0] * w2.shape[1], [tile.block_n, tile.block_k])
    hs, w2s = scales if scales is not None else (h, h)
    _down_kernel[grid](
        h_arg, w2_arg, y, al.sorted_ids, al.expert_ids, al.num_padded, topk_weights,
        hs, w2s,
        n, kdim, al.num_slots, al.max_blocks,
        h.stride(0), h.stride(1), w2.stride(0), w2.stride(1), w2.stride(2),
        y.stride(0), y.stride(1),
        hs.stride(0), w2s.stride(0), w2s.stride(1) if w2s.dim() > 1 else 0,
        BLOCK_M=al.block_m, BLOCK_N=tile.block_n, BLOCK_K=tile.block_k, GROUP_M=tile.group_m,
        EVEN_K=kdim % tile.block_k == 0, DOT_PRECISION=dot_precision, USE_TMA=tile.tma,
        BLOCK_SCALE=scales is not None,
        num_warps=tile.num_warps, num_stages=tile.num_stages, **pdl_args(h.device),
    )


def launch_down_rows(h: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor, al: Alignment,
                     tile: GemmTile, out_dtype: torch.dtype, dot_precision: str,
                     scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """The down GEMM + routing weight into a new y for :func:`launch_combine`: for a Gluon tile
    (:mod:`kernels.gluon_down`) ``(al.max_padded, H)`` in the alignment's row order, stored by TMA
    (the combine then reads slot s's row at ``al.slot_rows[s]``), else ``(T*k, H)`` one row per slot
    (``_down_kernel``). h: ``(al.max_padded, I)``; w2: ``(L, H, I)``; ``scales = (h_scale,
    w2_scale)`` for fp8 h and w2; y in ``out_dtype``."""
    n = w2.shape[1]
    if tile.gluon:
        y = torch.empty((al.max_padded, n), dtype=out_dtype, device=h.device)
        hs, w2s = scales if scales is not None else (None, None)
        launch_gluon_down(h, hs, w2, w2s, y, topk_weights, al, tile)
    else:
        y = torch.empty((al.num_slots, n), dtype=out_dtype, device=h.device)
        _launch_down(h, w2, y, topk_weights, al, tile, dot_precision, scales=scales)
    return y


def check_gluon_tiles(tactic: Tactic, h: int, i: int, w1: torch.Tensor, w2: torch.Tensor) -> None:
    """``ValueError`` naming why a Gluon tile of ``tactic`` cannot run on these weights (their dtype:
    fp8, or 16-bit with the down's kernel only; :func:`kernels.tactics.gluon_misfit`), its device
    (:func:`kernels.gluon_support.gluon_unready`) or their strides (TMA), if one cannot."""
    dtype = str(w1.dtype).removeprefix("torch.")
    gemms = (("gate_up", tactic.gate_up, "w1", w1), ("down", tactic.down, "w2", w2))
    for gemm, tile, name, weights in gemms:
        if not tile.gluon:
            continue
        why = gluon_misfit(gemm, tactic.block_m, tile, h, i, dtype) or gluon_unready(w1.device)
        if why is not None:
            raise _err(f"tactic {tactic.name}: the {gemm} tile is a Gluon tile, but {why}")
        _require_tma(weights, name, folded=True)  # its weights come by TMA over (L * rows, cols)


def launch_combine(y: torch.Tensor, topk_ids: torch.Tensor, out: torch.Tensor,
                   local_expert_offset: int, num_local: int, slot_rows: torch.Tensor | None = None) -> None:
    """Deterministic top-k combine. y: (T*k, H) one row per slot, or with ``slot_rows`` (the
    alignment's ``(T*k,)`` int32) (max_padded, H) in the alignment's row order; topk_ids: (T, k)
    int32; out: (T, H) written."""
    t_, k = topk_ids.shape
    n = out.shape[1]
    block_n = min(1024, triton.next_power_of_2(n))
    block_t = max(1, 2048 // block_n)
    grid = (triton.cdiv(t_, block_t), triton.cdiv(n, block_n))
    _combine_kernel[grid](
        y, topk_ids, topk_ids if slot_rows is None else slot_rows, out, t_, n, local_expert_offset, num_local,
        y.stride(0), out.stride(0),
        TOP_K=k, BLOCK_T=block_t, BLOCK_N=block_n, BY_ROWS=slot_rows is not None, num_warps=4,
        **pdl_args(out.device),
    )


def problem_of(x: torch.Tensor, w1: torch.Tensor, topk_ids: torch.Tensor) -> MoEProblem:
    """The :class:`MoEProblem` of a call (expected rows assume DEP: all slots local)."""
    return MoEProblem(
        num_tokens=x.shape[0], hidden_size=x.shape[1], intermediate_size=w1.shape[1] // 2,
        num_local_experts=w1.shape[0], top_k=topk_ids.shape[1],
        dtype=str(x.dtype).removeprefix("torch."),
    )


def fused_moe(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
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
    """Fused MoE layer of one rank (bf16/fp16/fp32 in, fp32 accumulation).

    Args:
        x: ``(T, H)`` fp16/bf16/fp32, unit stride in H.
        w1: ``(L, 2I, H)`` x's dtype; rows ``[0, I)`` gate, ``[I, 2I)`` up; unit stride in H.
        w2: ``(L, H, I)`` x's dtype; unit stride in I.
        topk_ids: ``(T, k)`` int32 contiguous, *global* expert ids; slots outside
            ``[local_expert_offset, local_expert_offset + L)`` (negative ids too) are dropped.
        topk_weights: ``(T, k)`` float32 contiguous routing weights.
        local_expert_offset: global id of local expert 0.
        activation: ``"silu"`` (``silu(gate) * up``).
        tactic: tile config; ``None`` uses :func:`kernels.tactics.default_tactic` (with the 16-bit
            Gluon down where the device runs Gluon). A Gluon tile needs a Hopper GPU and the sizes
            of :func:`kernels.tactics.gluon_misfit` (bf16/fp16: the down, and the persistent
            gate/up at block_m 128).
        validate: also check the id range on the host (``0 <= id < num_experts``); this reads
            ``topk_ids`` back, so it is a host sync and is off by default (out-of-shard ids are
            dropped by the kernels anyway, so memory safety never depends on it).
        num_experts: global expert count, used by ``validate``.
        out: optional ``(T, H)`` contiguous tensor of x's dtype to write (every element is
            written, zeros for tokens with no local slot); allocated when ``None``.

    Returns ``out (T, H)`` in x's dtype. Same inputs give bitwise the same output. Raises
    ``ValueError`` naming the mismatch for bad shapes, dtypes, devices, strides or ids.
    """
    t_, h, i, num_local, k = validate_inputs(
        x, w1, w2, topk_ids, topk_weights, local_expert_offset, activation,
        check_ids=validate, num_experts=num_experts,
    )
    if tactic is None:
        tactic = default_tactic(problem_of(x, w1, topk_ids), gluon=gluon_unready(x.device) is None)
    elif not isinstance(tactic, Tactic):
        raise _err(f"tactic must be a kernels.Tactic, got {type(tactic).__name__}")
    check_gluon_tiles(tactic, h, i, w1, w2)
    if out is None:
        out = torch.empty((t_, h), dtype=x.dtype, device=x.device)
    elif (
        not isinstance(out, torch.Tensor) or tuple(out.shape) != (t_, h) or out.dtype != x.dtype
        or out.device != x.device or not out.is_contiguous()
    ):
        raise _err(
            f"out must be a contiguous ({t_}, {h}) {x.dtype} tensor on {x.device}, got "
            + (f"{tuple(out.shape)} {out.dtype} on {out.device} strides {out.stride()}"
               if isinstance(out, torch.Tensor) else type(out).__name__)
        )
    if t_ == 0:
        return out
    dot_precision = "ieee" if x.dtype == torch.float32 else "tf32"
    al = moe_align(topk_ids, tactic.block_m, num_local, local_expert_offset)
    hbuf = torch.empty((al.max_padded, i), dtype=x.dtype, device=x.device)
    x_rows = gather_rows_sorted(x, al, k)[0] if tactic.gate_up.sorted_x else x
    _launch_gate_up(x_rows, w1, hbuf, al, tactic.gate_up, k, dot_precision)
    y = launch_down_rows(hbuf, w2, topk_weights, al, tactic.down, x.dtype, dot_precision)
    slot_rows = al.slot_rows if tactic.down.gluon else None
    launch_combine(y, topk_ids, out, local_expert_offset, num_local, slot_rows=slot_rows)
    return out
