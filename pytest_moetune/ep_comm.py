"""Expert-parallel dispatch and combine over ``torch.distributed`` (any backend: NCCL on GPUs, gloo
on CPUs), kernel-agnostic: the distributed suite runs the tuned kernel between these two steps.

- **DEP** (:func:`dep_dispatch` / :func:`dep_combine`): every rank routes its own ``T`` rows; an
  all-to-all sends each row to every rank owning one of its experts (all ``top_k`` ids travel, the
  receiving kernel drops the non-local ones); the partial outputs come back by the reverse
  all-to-all and are summed per row in rank order (deterministic).
- **Pure EP** (:func:`ep_gather` / :func:`ep_combine`): attention is tensor parallel, so every rank
  holds the same ``T`` rows (rows that arrive sharded, sequence-parallel style, are all-gathered
  first); each rank computes its experts' share of every row, dropping the non-local slots, and an
  all-reduce sums the shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from pytest_moetune.topology import Topology


@dataclass(frozen=True)
class DispatchPlan:
    """How rows left this rank, to bring their outputs back.

    ``send_rows``: ``(S,)`` int64 indices of this rank's rows in send order (grouped by destination
    rank); ``send_splits`` / ``recv_splits``: rows sent to / received from each rank.
    """

    send_rows: torch.Tensor
    send_splits: list[int]
    recv_splits: list[int]
    num_tokens: int


def _exchange(tensor: torch.Tensor, send: list[int], recv: list[int], group: dist.ProcessGroup | None):
    out = tensor.new_empty((sum(recv), *tensor.shape[1:]))
    dist.all_to_all_single(out, tensor.contiguous(), recv, send, group=group)
    return out


def dep_dispatch(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    topology: Topology,
    group: dist.ProcessGroup | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, DispatchPlan]:
    """Send each of this rank's rows to every rank whose shard holds one of its experts.

    Args:
        x: ``(T, H)`` this rank's rows; topk_ids: ``(T, k)`` int32 global ids;
            topk_weights: ``(T, k)`` float32. ``T`` may differ between ranks.

    Returns:
        The received ``x (R, H)``, ``topk_ids (R, k)``, ``topk_weights (R, k)`` and the plan.
    """
    world = topology.ep_size
    local = topology.local_num_experts
    destination = topk_ids.long() // local  # (T, k) owning rank of each slot
    touched = torch.zeros(x.shape[0], world, dtype=torch.bool, device=x.device)
    touched.scatter_(1, destination, True)
    per_rank = [touched[:, d].nonzero().squeeze(1) for d in range(world)]
    send_rows = torch.cat(per_rank) if per_rank else torch.empty(0, dtype=torch.long, device=x.device)
    send_splits = [int(rows.numel()) for rows in per_rank]
    counts = torch.tensor(send_splits, dtype=torch.int64, device=x.device)
    received = torch.empty_like(counts)
    dist.all_to_all_single(received, counts, group=group)
    recv_splits = [int(c) for c in received.tolist()]
    plan = DispatchPlan(send_rows, send_splits, recv_splits, int(x.shape[0]))
    return (
        _exchange(x[send_rows], send_splits, recv_splits, group),
        _exchange(topk_ids[send_rows], send_splits, recv_splits, group),
        _exchange(topk_weights[send_rows], send_splits, recv_splits, group),
        plan,
    )


def dep_combine(
    partial: torch.Tensor, plan: DispatchPlan, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """Return the received rows' partial outputs ``(R, H)`` to their ranks and sum them per row.

    Returns ``(T, H)`` in ``partial``'s dtype: each row the sum, in rank order, of the partial
    outputs of the ranks it was sent to (rows sent nowhere are zero).
    """
    back = _exchange(partial, plan.recv_splits, plan.send_splits, group)
    world = len(plan.send_splits)
    per_rank = torch.zeros(
        world, plan.num_tokens, partial.shape[1], dtype=torch.float32, device=partial.device
    )
    start = 0
    for rank, count in enumerate(plan.send_splits):
        rows = plan.send_rows[start : start + count]
        per_rank[rank, rows] = back[start : start + count].float()
        start += count
    return per_rank.sum(dim=0).to(partial.dtype)


def ep_gather(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    group: dist.ProcessGroup | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole batch from every rank's shard of it, concatenated in rank order (equal shards)."""

    def gather(t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, t.contiguous(), group=group)
        return torch.cat(parts)

    return gather(x), gather(topk_ids), gather(topk_weights)


def ep_combine(partial: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Sum every rank's share ``(T, H)`` of the layer output (fp32 all-reduce); same on every rank."""
    total = partial.float().contiguous()
    dist.all_reduce(total, group=group)
    return total.to(partial.dtype)
