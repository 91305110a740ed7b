"""What gets tuned: a model's MoE layer on one rank's topology, over token-count buckets.

No torch here: problems are value objects that name the shapes, the layout and the routing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pytest_moetune.distributions import Distribution, parse_distribution
from pytest_moetune.models import ModelShape
from pytest_moetune.topology import Topology

DTYPES = ("bf16", "fp16", "fp8_w8a8")
"""Data types a runner may support: bf16/fp16 activations and weights, or fp8 e4m3 w8a8 with 128x128
weight block scales and per-token 128-wide activation group scales."""
DEFAULT_TUNE_MAX_NUM_TOKENS = 8192


def token_buckets(tune_max_num_tokens: int) -> tuple[int, ...]:
    """Powers of two up to ``tune_max_num_tokens``, plus that value: ``1, 2, 4, ..., max``."""
    if isinstance(tune_max_num_tokens, bool) or not isinstance(tune_max_num_tokens, int):
        raise ValueError(f"tune_max_num_tokens must be an int, got {tune_max_num_tokens!r}")
    if tune_max_num_tokens < 1:
        raise ValueError(f"tune_max_num_tokens must be >= 1, got {tune_max_num_tokens}")
    buckets = [1 << i for i in range(tune_max_num_tokens.bit_length()) if 1 << i <= tune_max_num_tokens]
    if buckets[-1] != tune_max_num_tokens:
        buckets.append(tune_max_num_tokens)
    return tuple(buckets)


@dataclass(frozen=True)
class BucketProblem:
    """One bucket of a :class:`TuningProblem`: the static problem a runner builds inputs for.

    ``num_tokens`` is the rows this rank processes (``T``); the routing of those rows comes separately
    (``make_inputs(problem, topk_ids, topk_weights)``).
    """

    model: ModelShape
    topology: Topology
    dtype: str
    num_tokens: int
    routed_local_slots: float | None = None
    """(token, slot) pairs the tuning routing sent to this rank's experts (the mean over its draws),
    where the tuner counted them; ``None``: the topology's expectation. They differ where a skewed
    distribution puts its hottest shard on the measured rank: under pure EP zipf:1.2 sends ~70% of
    deepseek-r1's EP8 slots there, 5.7x the even share; under DEP the all-to-all delivers it more
    rows than its own ``T`` (dispatched routing), so the count may exceed ``T * top_k``."""

    def __post_init__(self) -> None:
        slots = self.routed_local_slots
        if slots is not None and not (math.isfinite(slots) and slots >= 0):
            raise ValueError(f"routed_local_slots={slots!r} must be a finite number >= 0")

    @property
    def expected_rows_per_local_expert(self) -> float:
        """``T * top_k / L`` under DEP, ``T * top_k / E`` under pure EP; with ``routed_local_slots``,
        those over ``L``."""
        if self.routed_local_slots is None:
            return self.topology.expected_rows_per_local_expert(self.num_tokens)
        return self.routed_local_slots / self.topology.local_num_experts

    @property
    def expected_local_slots(self) -> float:
        """(token, slot) pairs the rank's experts compute, on average: ``routed_local_slots`` where
        the tuner counted them, else the topology's expectation."""
        if self.routed_local_slots is not None:
            return self.routed_local_slots
        return self.num_tokens * self.topology.local_slots_per_row


@dataclass(frozen=True)
class TuningProblem:
    """A model's routed-expert layer, a data type, one rank's topology and the dummy routing to tune on.

    ``topology.num_experts`` / ``top_k`` must match the model's.
    """

    model: ModelShape
    topology: Topology
    dtype: str = "bf16"
    distribution: Distribution = field(default_factory=lambda: Distribution("balanced"))
    tune_max_num_tokens: int = DEFAULT_TUNE_MAX_NUM_TOKENS

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if (self.topology.num_experts, self.topology.top_k) != (self.model.num_experts, self.model.top_k):
            raise ValueError(
                f"topology has E={self.topology.num_experts}, top_k={self.topology.top_k} but model "
                f"{self.model.name!r} has E={self.model.num_experts}, top_k={self.model.top_k}"
            )
        object.__setattr__(self, "distribution", parse_distribution(self.distribution))
        token_buckets(self.tune_max_num_tokens)  # validates

    @property
    def buckets(self) -> tuple[int, ...]:
        return token_buckets(self.tune_max_num_tokens)

    def bucket_for(self, num_tokens: int) -> int:
        """The bucket whose tactic serves ``num_tokens``: the largest bucket ``<= num_tokens``, clamped
        to ``[1, tune_max_num_tokens]`` (0 tokens use the first bucket, more than the max the last)."""
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
            raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
        chosen = self.buckets[0]
        for bucket in self.buckets:
            if bucket <= num_tokens:
                chosen = bucket
        return chosen

    def at(self, num_tokens: int) -> BucketProblem:
        """The static problem of the bucket ``num_tokens`` (which need not be a bucket)."""
        return BucketProblem(self.model, self.topology, self.dtype, num_tokens)

    def describe(self) -> str:
        return (
            f"{self.model.name} {self.topology.name} {self.dtype} {self.distribution.name} "
            f"max={self.tune_max_num_tokens}"
        )
