"""Dummy top-k routing that looks like the traffic one rank really sees (DESIGN.md section 3).

Everything is built in *rank-relative* expert ids, where ``[0, L)`` is the measured rank's shard,
and shifted to global ids by ``(rel + local_expert_offset) % num_experts`` at the end. So the layout
is the same on every rank up to the shard offset, and skewed distributions put their hottest experts
on the measured rank (the rank that gates a step).

Which experts a row may pick (its *target set*):

- DEP with ``L >= top_k``: the ``L`` local experts; every slot is local.
- DEP with ``L < top_k``: all ``L`` local experts, plus ``top_k - L`` distinct experts of other shards.
- Pure EP: all ``num_experts``; about ``1 / ep_size`` of the slots are local.

The random draws run on the CPU from ``torch.Generator().manual_seed(seed)`` and are moved to
``device`` afterwards, so a seed gives the same routing on every device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from pytest_moetune.distributions import Distribution, default_distribution, parse_distribution
from pytest_moetune.replay import load_trace, resample_trace
from pytest_moetune.topology import Topology


def _balanced_pick(num_tokens: int, picks: int, pool: int) -> torch.Tensor:
    """Round robin: row ``t`` takes ``(t * picks + j) % pool`` for ``j < picks`` (``picks <= pool``).

    Returns ``(T, picks)`` int64 indices into the pool, distinct within a row; each pool entry is
    taken ``T * picks / pool`` times, +-1.
    """
    slots = torch.arange(num_tokens * picks, dtype=torch.int64).view(num_tokens, picks)
    return slots % pool


def _gumbel_pick(
    num_tokens: int, picks: int, log_popularity: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Sample ``picks`` distinct pool entries per row, without replacement, by popularity.

    Top-k of ``log p + Gumbel noise`` draws a Plackett-Luce sample of ``p`` (for uniform ``p`` it is
    the top-k of random scores). Returns ``(T, picks)`` int64 indices into the pool.
    """
    uniform = torch.rand(num_tokens, log_popularity.numel(), generator=generator)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-20)))
    return torch.topk(log_popularity + gumbel, picks, dim=1).indices


def _log_popularity(dist: Distribution, num_experts: int) -> torch.Tensor:
    """``(E,)`` float32 log-popularity of rank-relative experts: flat, or zipf with 0 hottest."""
    if dist.kind == "zipf":
        assert dist.alpha is not None
        ranks = torch.arange(1, num_experts + 1, dtype=torch.float64)
        return (-dist.alpha * torch.log(ranks)).float()
    return torch.zeros(num_experts)


def _relative_ids(
    num_tokens: int, topology: Topology, dist: Distribution, generator: torch.Generator
) -> torch.Tensor:
    """``(T, top_k)`` int64 rank-relative ids for ``balanced``, ``random`` and ``zipf``."""
    num_experts, top_k, local = topology.num_experts, topology.top_k, topology.local_num_experts
    log_p = _log_popularity(dist, num_experts)

    def pick(picks: int, pool_start: int, pool_end: int) -> torch.Tensor:
        if dist.kind == "balanced":
            return pool_start + _balanced_pick(num_tokens, picks, pool_end - pool_start)
        return pool_start + _gumbel_pick(num_tokens, picks, log_p[pool_start:pool_end], generator)

    if not topology.use_dp:
        return pick(top_k, 0, num_experts)
    if local >= top_k:
        return pick(top_k, 0, local)
    whole_shard = torch.arange(local, dtype=torch.int64).expand(num_tokens, local)
    return torch.cat([whole_shard, pick(top_k - local, local, num_experts)], dim=1)


def _weights(num_tokens: int, top_k: int, dist: Distribution, generator: torch.Generator) -> torch.Tensor:
    """``(T, top_k)`` float32 routing weights: positive, each row sums to 1.

    Uniform ``1 / top_k`` for ``balanced`` and ``replay``; a softmax of normal logits otherwise.
    """
    if dist.kind in ("balanced", "replay"):
        return torch.full((num_tokens, top_k), 1.0 / top_k, dtype=torch.float32)
    logits = torch.randn(num_tokens, top_k, generator=generator)
    return torch.softmax(logits, dim=1, dtype=torch.float32)


def dummy_topk(
    num_tokens: int,
    topology: Topology,
    distribution: str | Distribution | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dummy router output for ``num_tokens`` rows on ``topology``'s rank.

    Args:
        num_tokens: rows this rank processes (``T >= 0``).
        topology: the layout and the measured rank.
        distribution: ``balanced``, ``random``, ``zipf:<alpha>`` or ``replay:<path>``; ``None``
            takes ``$MOETUNE_DUMMY_DISTRIBUTION``, else ``balanced``.
        seed: seeds ``random`` and ``zipf`` (``balanced`` and ``replay`` are deterministic).
        device: where the tensors go (default CPU).

    Returns:
        ``topk_ids``: ``(T, top_k)`` int32 global expert ids, distinct within a row.
        ``topk_weights``: ``(T, top_k)`` float32, positive, rows summing to 1.

    Raises:
        ValueError: negative or non-int ``num_tokens``, unknown distribution, bad alpha, bad replay file.
    """
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
        raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
    if not isinstance(topology, Topology):
        raise ValueError(f"topology must be a Topology, got {type(topology).__name__}")
    dist = default_distribution() if distribution is None else parse_distribution(distribution)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)

    if dist.kind == "replay":
        assert dist.path is not None
        ids = resample_trace(load_trace(dist.path, topology), topology, num_tokens)
    else:
        relative = _relative_ids(num_tokens, topology, dist, generator)
        ids = (relative + topology.local_expert_offset) % topology.num_experts
    weights = _weights(num_tokens, topology.top_k, dist, generator)
    return ids.to(device=device, dtype=torch.int32), weights.to(device=device)


@dataclass(frozen=True)
class RoutingStats:
    """What one rank's kernel sees of a routing, for reports and assertions.

    ``rows_per_local_expert[i]`` counts the slots routed to global expert ``offset + i``.
    """

    num_tokens: int
    rows_per_local_expert: tuple[int, ...]
    local_slot_fraction: float
    local_experts_touched: int
    experts_touched: int
    max_load: int
    mean_load: float

    @property
    def imbalance(self) -> float:
        """``max_load / mean_load`` over local experts (1.0 is perfectly balanced; 0 if no load)."""
        return self.max_load / self.mean_load if self.mean_load else 0.0

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["rows_per_local_expert"] = list(self.rows_per_local_expert)
        out["imbalance"] = self.imbalance
        return out


def routing_stats(topk_ids: torch.Tensor, topology: Topology) -> RoutingStats:
    """Summarise ``topk_ids`` ``(T, top_k)`` integer global ids from ``topology``'s rank.

    ``local_slot_fraction`` is the share of all slots that land in the shard; ``experts_touched``
    counts distinct global experts, ``local_experts_touched`` local ones with at least one row (their
    weights are what a kernel must read).
    """
    if topk_ids.dim() != 2 or topk_ids.shape[1] != topology.top_k:
        raise ValueError(f"topk_ids has shape {tuple(topk_ids.shape)}, expected (T, top_k={topology.top_k})")
    flat = topk_ids.reshape(-1).to(device="cpu", dtype=torch.int64)
    if flat.numel() and int(flat.min()) < 0:
        raise ValueError(f"topk_ids has negative expert id {int(flat.min())}")
    counts = torch.bincount(flat, minlength=topology.num_experts)
    if counts.numel() > topology.num_experts:
        raise ValueError(f"topk_ids has expert id {int(flat.max())} >= num_experts={topology.num_experts}")
    offset = topology.local_expert_offset
    local = counts[offset : offset + topology.local_num_experts]
    total = flat.numel()
    return RoutingStats(
        num_tokens=int(topk_ids.shape[0]),
        rows_per_local_expert=tuple(int(c) for c in local.tolist()),
        local_slot_fraction=float(local.sum()) / total if total else 0.0,
        local_experts_touched=int((local > 0).sum()),
        experts_touched=int((counts > 0).sum()),
        max_load=int(local.max()),
        mean_load=float(local.float().mean()),
    )
