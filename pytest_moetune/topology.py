"""Expert-parallel / data-parallel topology of one MoE layer, seen from one rank.

Two regimes (DESIGN.md section 1):

- **DEP** (``use_dp=True``, short name ``dep<N>``): attention is data parallel and the all-to-all
  delivers to each rank rows whose top-k slots live in the rank's expert shard.
- **Pure EP** (``use_dp=False``, short name ``ep<N>``): each rank processes its own rows routed over
  all ``num_experts``; only the slots that land in its shard are computed, the rest are dropped.

Pure value objects: no torch, no GPU.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_SHORT_NAME = re.compile(r"^(?P<kind>dep|ep)(?P<size>[0-9]+)$")


@dataclass(frozen=True)
class TopologySpec:
    """A topology short name (``ep8``, ``dep2``) not yet bound to a model's expert count.

    This is what ``--moetune-topology`` and the ``moe_topology`` fixture carry: the command line knows
    the parallel layout, the test knows the model. ``bind`` joins the two into a :class:`Topology`.
    """

    ep_size: int
    use_dp: bool

    def __post_init__(self) -> None:
        if isinstance(self.ep_size, bool) or not isinstance(self.ep_size, int) or self.ep_size < 1:
            raise ValueError(f"ep_size must be an integer >= 1, got {self.ep_size!r}")

    @classmethod
    def parse(cls, name: str) -> TopologySpec:
        """Parse ``ep<N>`` (pure EP) or ``dep<N>`` (attention DP + EP), ``N >= 1``."""
        match = _SHORT_NAME.match(name.strip()) if isinstance(name, str) else None
        if match is None or int(match["size"]) < 1:
            raise ValueError(
                f"unknown topology short name {name!r}: expected 'ep<N>' (pure expert parallel) "
                "or 'dep<N>' (attention data parallel + expert parallel) with N >= 1, "
                "e.g. 'ep1', 'ep8', 'dep2', 'dep8'"
            )
        return cls(ep_size=int(match["size"]), use_dp=match["kind"] == "dep")

    @property
    def name(self) -> str:
        """The short name, ``dep<N>`` or ``ep<N>``."""
        return f"{'dep' if self.use_dp else 'ep'}{self.ep_size}"

    def bind(self, num_experts: int, top_k: int, ep_rank: int = 0) -> Topology:
        """This layout for a model with ``num_experts`` routed experts and ``top_k`` slots per row."""
        return Topology(num_experts, top_k, self.ep_size, ep_rank, self.use_dp)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Topology:
    """One rank's view of an MoE layer under expert parallelism.

    Args:
        num_experts: routed experts of the layer, ``E >= 1``, divisible by ``ep_size``.
        top_k: slots (experts) per token, ``1 <= top_k <= num_experts``.
        ep_size: expert-parallel ranks; each holds ``num_experts // ep_size`` experts.
        ep_rank: this rank, ``0 <= ep_rank < ep_size``.
        use_dp: attention data parallel (DEP). Rows reach a rank through the all-to-all and carry
            only slots of its shard. ``False`` is pure EP: the rank sees its own rows over all experts.

    Raises:
        ValueError: naming the bad value.
    """

    num_experts: int
    top_k: int
    ep_size: int = 1
    ep_rank: int = 0
    use_dp: bool = False

    def __post_init__(self) -> None:
        for field in ("num_experts", "top_k", "ep_size", "ep_rank"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{field} must be an int, got {value!r}")
        if not isinstance(self.use_dp, bool):
            raise ValueError(f"use_dp must be a bool, got {self.use_dp!r}")
        if self.num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {self.num_experts}")
        if self.ep_size < 1:
            raise ValueError(f"ep_size must be >= 1, got {self.ep_size}")
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={self.num_experts}], got {self.top_k}")
        if self.num_experts % self.ep_size:
            raise ValueError(f"num_experts={self.num_experts} is not divisible by ep_size={self.ep_size}")
        if not 0 <= self.ep_rank < self.ep_size:
            raise ValueError(f"ep_rank must be in [0, ep_size={self.ep_size}), got {self.ep_rank}")

    @classmethod
    def parse(cls, name: str, num_experts: int, top_k: int, ep_rank: int = 0) -> Topology:
        """``Topology.parse("dep8", num_experts=256, top_k=8, ep_rank=3)``."""
        return TopologySpec.parse(name).bind(num_experts, top_k, ep_rank)

    @property
    def spec(self) -> TopologySpec:
        return TopologySpec(self.ep_size, self.use_dp)

    @property
    def name(self) -> str:
        """The short name, ``dep<N>`` or ``ep<N>``."""
        return self.spec.name

    @property
    def local_num_experts(self) -> int:
        """Experts held by each rank, ``L = num_experts // ep_size``."""
        return self.num_experts // self.ep_size

    @property
    def local_expert_offset(self) -> int:
        """Global id of this rank's first expert; its shard is ``[offset, offset + L)``."""
        return self.ep_rank * self.local_num_experts

    @property
    def local_slots_per_row(self) -> float:
        """Slots of one delivered row that land in this rank's shard (an expectation under pure EP).

        DEP: ``top_k`` when ``L >= top_k``, else exactly ``L``. Pure EP: ``top_k * L / E``.
        """
        if self.use_dp:
            return float(min(self.top_k, self.local_num_experts))
        return self.top_k * self.local_num_experts / self.num_experts

    def expected_rows_per_local_expert(self, num_tokens: int) -> float:
        """Rows each local expert computes for ``num_tokens`` rows on this rank, on average.

        DEP: ``T * top_k / L`` (``T`` when ``L < top_k``: every row carries the whole shard).
        Pure EP: ``T * top_k / num_experts``.
        """
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
            raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
        return num_tokens * self.local_slots_per_row / self.local_num_experts

    def is_local(self, expert_id: int) -> bool:
        """Whether global ``expert_id`` lives in this rank's shard."""
        return self.local_expert_offset <= expert_id < self.local_expert_offset + self.local_num_experts

    def with_rank(self, ep_rank: int) -> Topology:
        """The same layout seen from ``ep_rank``."""
        return Topology(self.num_experts, self.top_k, self.ep_size, ep_rank, self.use_dp)

    def ranks(self) -> Iterator[Topology]:
        """The topology of every rank, ``ep_rank = 0 .. ep_size - 1``."""
        for rank in range(self.ep_size):
            yield self.with_rank(rank)

    def __str__(self) -> str:
        return (
            f"{self.name}(E={self.num_experts}, top_k={self.top_k}, rank={self.ep_rank}, "
            f"L={self.local_num_experts}, offset={self.local_expert_offset})"
        )
