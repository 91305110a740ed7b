"""The one torch reference of the fused MoE layer (fp32 compute), for tests, benchmarks and tuners.

It takes the same arguments as :func:`kernels.fused_moe` and computes in float32 from the inputs as
given (for fp8 runs, pass the dequantized tensors: the reference sees the same quantized values as
the kernel). TF32 is switched off for its matmuls. Per-slot results are summed over ``j = 0..k-1``
in order, so it is deterministic too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def _full_fp32() -> Iterator[None]:
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def _fake_quant_fp8_groups(a: torch.Tensor, group: int = 128) -> torch.Tensor:
    """Round ``a (R, N)`` to e4m3 with one scale per row per ``group`` columns, back to fp32."""
    r, n = a.shape
    g = -(-n // group)
    pad = torch.zeros((r, g * group), dtype=torch.float32, device=a.device)
    pad[:, :n] = a
    blocks = pad.view(r, g, group)
    scale = blocks.abs().amax(dim=2, keepdim=True).clamp_min(1e-10) / 448.0
    q = (blocks / scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).float() * scale
    return q.view(r, g * group)[:, :n]


def fused_moe_reference(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    *,
    local_expert_offset: int = 0,
    activation: str = "silu",
    act_quant: str | None = None,
) -> torch.Tensor:
    """fp32 reference: ``out[t] = sum_j w[t,j] * W2[e] (silu(W1g[e] x[t]) * W1u[e] x[t])``.

    Args:
        x: ``(T, H)`` any float dtype.
        w1: ``(L, 2I, H)``, rows ``[0, I)`` gate and ``[I, 2I)`` up.
        w2: ``(L, H, I)``.
        topk_ids: ``(T, k)`` integer global expert ids; slots outside
            ``[local_expert_offset, local_expert_offset + L)`` contribute nothing.
        topk_weights: ``(T, k)`` routing weights.
        act_quant: ``None``, or ``"fp8_group"`` to round h = silu(gate) * up to e4m3 per row
            per 128 columns like the fp8 layer does (pass dequantized x and weights then).

    Returns ``(T, H)`` float32. Host-syncs freely (it is a reference, not a fast path).
    """
    if activation != "silu":
        raise ValueError(f"reference: activation {activation!r} not supported; use 'silu'")
    if act_quant not in (None, "fp8_group"):
        raise ValueError(f"reference: act_quant {act_quant!r} not one of None, 'fp8_group'")
    t_, h = x.shape
    num_local, two_i, _ = w1.shape
    i = two_i // 2
    k = topk_ids.shape[1]
    rel = topk_ids.long() - local_expert_offset
    per_slot = torch.zeros((t_, k, h), dtype=torch.float32, device=x.device)
    xf = x.float()
    wf = topk_weights.float()
    with _full_fp32():
        for e in torch.unique(rel[(rel >= 0) & (rel < num_local)]).tolist():
            tok, slot = torch.nonzero(rel == e, as_tuple=True)
            xs = xf[tok]
            w1e = w1[e].float()
            gate = xs @ w1e[:i].T
            up = xs @ w1e[i:].T
            act = torch.nn.functional.silu(gate) * up
            if act_quant == "fp8_group":
                act = _fake_quant_fp8_groups(act)
            y = act @ w2[e].float().T
            per_slot[tok, slot] = y * wf[tok, slot][:, None]
    return per_slot.sum(dim=1)
