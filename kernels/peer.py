"""The plain-PyTorch peer layer on ``torch._grouped_mm``: what a user would write instead.

Same arguments and routing semantics as :func:`kernels.fused_moe`: align (stable sort of the slots
by local expert, non-local slots sorted last and masked), permute (gather the token rows), gate/up
grouped GEMM, ``silu(gate) * up``, down grouped GEMM, weighted combine. No host sync, so it is
CUDA-graph capturable; torch's grouped GEMM (CUTLASS on Hopper) does the expert GEMMs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grouped_mm_moe(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    *,
    local_expert_offset: int = 0,
    activation: str = "silu",
) -> torch.Tensor:
    """MoE layer from torch ops and ``torch._grouped_mm``.

    Args:
        x: ``(T, H)`` bf16 (``torch._grouped_mm`` on CUDA takes bf16).
        w1: ``(L, 2I, H)``; w2: ``(L, H, I)``; same dtype as x.
        topk_ids: ``(T, k)`` int32 global ids; topk_weights: ``(T, k)`` float32.

    Returns ``(T, H)`` in x's dtype.
    """
    if activation != "silu":
        raise ValueError(f"peer: activation {activation!r} not supported; use 'silu'")
    t_, h = x.shape
    num_local, two_i, _ = w1.shape
    i = two_i // 2
    k = topk_ids.shape[1]
    rel = topk_ids.reshape(-1) - local_expert_offset
    local = (rel >= 0) & (rel < num_local)
    # Non-local slots ride in the last group and get weight 0: every output row of both grouped
    # GEMMs is then computed from real data (finite), so no masking pass is needed. (Under pure EP
    # this computes the dropped slots on expert L-1 for nothing; the benchmark's cases are DEP/EP1,
    # where every slot is local.)
    key = torch.where(local, rel, num_local - 1)
    sorted_key, order = torch.sort(key, stable=True)
    bounds = torch.arange(1, num_local + 1, device=x.device, dtype=sorted_key.dtype)
    offs = torch.searchsorted(sorted_key, bounds).to(torch.int32)  # group ends, no host sync
    xs = x.index_select(0, order // k)  # permute: one row per slot, grouped by expert
    gate_up = torch._grouped_mm(xs, w1.transpose(1, 2), offs=offs)
    act = F.silu(gate_up[:, :i]) * gate_up[:, i:]
    y = torch._grouped_mm(act, w2.transpose(1, 2), offs=offs)
    per_slot = torch.empty_like(y).index_copy_(0, order, y).view(t_, k, h)
    weights = torch.where(local, topk_weights.reshape(-1), 0).view(t_, 1, k).to(x.dtype)
    return torch.bmm(weights, per_slot).view(t_, h)
