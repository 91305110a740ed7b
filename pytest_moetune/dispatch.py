"""What one rank really receives: routing of every rank's rows, then dispatch (DESIGN.md section 1).

The dummy distributions of :mod:`pytest_moetune.routing` model one rank's traffic directly. This
module simulates it the long way, for checking that model and for timing tuned tactics on
realistic traffic (the fidelity suite):

- **pure EP**: the rank processes its own ``T`` rows, routed over all experts; the kernel drops the
  slots of other shards.
- **DEP**: each of the ``ep_size`` ranks routes its own ``T`` rows over all experts; the all-to-all
  delivers to the measured rank every row with at least one slot in its shard. The delivered rows
  keep their other slots (the kernel skips them), so per local expert the rank computes
  ``T * top_k / L`` rows on average, from about ``ep_size * T * P(row touches the shard)`` rows.

Skewed distributions keep the measured rank's shard hottest (routing is rank-relative).
"""

from __future__ import annotations

import torch

from pytest_moetune.distributions import Distribution
from pytest_moetune.routing import dummy_topk
from pytest_moetune.topology import Topology


def router_view(topology: Topology) -> Topology:
    """The same rank with attention data parallelism switched off: routing over all experts."""
    return Topology(topology.num_experts, topology.top_k, topology.ep_size, topology.ep_rank, use_dp=False)


def dispatch_topk(
    num_tokens: int,
    topology: Topology,
    distribution: str | Distribution = "random",
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows the measured rank computes when every rank routes ``num_tokens`` rows.

    Returns:
        ``topk_ids (R, top_k)`` int32 global ids and ``topk_weights (R, top_k)`` float32, where
        ``R = num_tokens`` under pure EP and, under DEP, the rows of all ranks that have a slot in
        the measured rank's shard.
    """
    view = router_view(topology)
    if not topology.use_dp:
        return dummy_topk(num_tokens, view, distribution, seed, device)
    ids, weights = dummy_topk(num_tokens * topology.ep_size, view, distribution, seed)
    offset = topology.local_expert_offset
    delivered = ((ids >= offset) & (ids < offset + topology.local_num_experts)).any(dim=1)
    return ids[delivered].to(device), weights[delivered].to(device)
