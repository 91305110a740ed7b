"""Properties of ``dummy_topk``: the invariants of DESIGN.md section 3, for every topology."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from pytest_moetune.distributions import ENV_VAR, Distribution
from pytest_moetune.routing import dummy_topk, routing_stats
from pytest_moetune.strategies import distributions, token_counts, topologies
from pytest_moetune.topology import Topology

BALANCED = Distribution("balanced")
RANDOM = Distribution("random")
SIGMAS = 6.0
"""Statistical bound for random routing: a per-expert count within 6 binomial standard deviations
(+1 for discreteness) of its mean. A correct sampler breaks it with probability ~2e-9 per expert; the
suite is derandomized in CI, so a failure is a real, reproducible deviation."""


def local_mask(ids: torch.Tensor, topology: Topology) -> torch.Tensor:
    offset = topology.local_expert_offset
    return (ids >= offset) & (ids < offset + topology.local_num_experts)


def counts(ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    return torch.bincount(ids.reshape(-1).long(), minlength=num_experts)


@given(topologies(), token_counts(), distributions(), st.integers(0, 2**31 - 1))
def test_shapes_dtypes_range_and_distinct_ids(
    topology: Topology, num_tokens: int, dist: Distribution, seed: int
) -> None:
    ids, weights = dummy_topk(num_tokens, topology, dist, seed)
    assert ids.shape == weights.shape == (num_tokens, topology.top_k)
    assert ids.dtype == torch.int32 and weights.dtype == torch.float32
    if num_tokens == 0:
        return
    assert int(ids.min()) >= 0 and int(ids.max()) < topology.num_experts
    ordered = ids.sort(dim=1).values
    assert not (ordered[:, 1:] == ordered[:, :-1]).any(), "an expert repeats within a row"
    assert bool((weights > 0).all())
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(num_tokens), atol=1e-5, rtol=0)


@given(topologies(), token_counts(min_value=1), distributions(), st.integers(0, 1000))
def test_locality_per_regime(topology: Topology, num_tokens: int, dist: Distribution, seed: int) -> None:
    ids, _ = dummy_topk(num_tokens, topology, dist, seed)
    local = local_mask(ids, topology)
    if topology.use_dp and topology.local_num_experts >= topology.top_k:
        assert bool(local.all()), "DEP: every slot must be in the rank's shard"
    elif topology.use_dp:
        # L < top_k: exactly L local slots per row (the whole shard) plus distinct others.
        assert bool((local.sum(dim=1) == topology.local_num_experts).all())
    elif dist.kind == "balanced":
        expected = num_tokens * topology.top_k * topology.local_num_experts / topology.num_experts
        assert abs(int(local.sum()) - expected) <= topology.local_num_experts


@given(topologies(), token_counts(min_value=1))
def test_balanced_is_exact_over_the_target_set(topology: Topology, num_tokens: int) -> None:
    ids, _ = dummy_topk(num_tokens, topology, BALANCED)
    load = counts(ids, topology.num_experts)
    offset, local = topology.local_expert_offset, topology.local_num_experts
    shard = load[offset : offset + local]
    if not topology.use_dp:
        assert int(load.max() - load.min()) <= 1, "pure EP: balanced over all experts, +-1"
    elif local >= topology.top_k:
        assert int(shard.max() - shard.min()) <= 1 and int(shard.sum()) == num_tokens * topology.top_k
    else:
        assert bool((shard == num_tokens).all()), "DEP, L < top_k: every row carries every local expert"
        others = torch.cat([load[:offset], load[offset + local :]])
        assert int(others.max() - others.min()) <= 1
    # The rows-per-local-expert formula holds exactly, up to rounding.
    expected = topology.expected_rows_per_local_expert(num_tokens)
    assert math.floor(expected) <= int(shard.min()) and int(shard.max()) <= math.ceil(expected)


@given(topologies(), token_counts(min_value=1, max_value=2048), st.integers(0, 2**31 - 1))
def test_random_rows_per_local_expert_within_bound(topology: Topology, num_tokens: int, seed: int) -> None:
    ids, _ = dummy_topk(num_tokens, topology, RANDOM, seed)
    shard = counts(ids, topology.num_experts)[
        topology.local_expert_offset : topology.local_expert_offset + topology.local_num_experts
    ]
    expected = topology.expected_rows_per_local_expert(num_tokens)
    p = min(1.0, expected / num_tokens)  # each row picks a given local expert with probability p
    bound = SIGMAS * math.sqrt(num_tokens * p * (1 - p)) + 1
    assert float((shard.float() - expected).abs().max()) <= bound
    if topology.use_dp:  # the total is exact: every row delivers its local slots
        assert int(shard.sum()) == round(expected * topology.local_num_experts)


@given(topologies(), token_counts(), distributions(), st.integers(0, 1000))
def test_same_layout_on_every_rank_up_to_the_offset(
    topology: Topology, num_tokens: int, dist: Distribution, seed: int
) -> None:
    ref_ids, ref_weights = dummy_topk(num_tokens, topology.with_rank(0), dist, seed)
    for rank in topology.ranks():
        ids, weights = dummy_topk(num_tokens, rank, dist, seed)
        shifted = (ids.long() - rank.local_expert_offset) % topology.num_experts
        assert torch.equal(shifted, ref_ids.long())
        assert torch.equal(weights, ref_weights)
        assert (
            routing_stats(ids, rank).rows_per_local_expert
            == routing_stats(ref_ids, topology.with_rank(0)).rows_per_local_expert
        )


@given(topologies(), token_counts(), distributions(), st.integers(0, 2**31 - 1))
def test_seed_reproducible(topology: Topology, num_tokens: int, dist: Distribution, seed: int) -> None:
    first = dummy_topk(num_tokens, topology, dist, seed)
    second = dummy_topk(num_tokens, topology, dist, seed)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@given(topologies(max_top_k=8), token_counts(min_value=16, max_value=256), st.integers(0, 2**30))
def test_different_seeds_differ(topology: Topology, num_tokens: int, seed: int) -> None:
    assume(topology.top_k >= 2)  # with one slot, the weight is always 1 and ids may be forced
    first = dummy_topk(num_tokens, topology, RANDOM, seed)
    second = dummy_topk(num_tokens, topology, RANDOM, seed + 1)
    assert not (torch.equal(first[0], second[0]) and torch.equal(first[1], second[1]))


@given(token_counts(min_value=1), distributions(), st.integers(0, 100))
def test_balanced_is_deterministic_and_seed_free(num_tokens: int, dist: Distribution, seed: int) -> None:
    topology = Topology(64, 8, 4, 1, use_dp=True)
    ids, weights = dummy_topk(num_tokens, topology, BALANCED, seed)
    again_ids, again_weights = dummy_topk(num_tokens, topology, BALANCED, seed + 7)
    assert torch.equal(ids, again_ids) and torch.equal(weights, again_weights)
    assert bool((weights == 1 / 8).all())


@given(st.integers(1, 8), st.integers(2, 16), token_counts(min_value=1, max_value=512), distributions())
def test_local_below_top_k_rule(local: int, ep_size: int, num_tokens: int, dist: Distribution) -> None:
    """gpt-oss-120b at dep64 is L=2 < top_k=4: exactly L local slots per row, the rest distinct
    and from other shards (the case upstream engines crashed on)."""
    top_k = local + 1 + (num_tokens % 3)
    assume(top_k <= local * ep_size)
    topology = Topology(local * ep_size, top_k, ep_size, ep_size - 1, use_dp=True)
    ids, _ = dummy_topk(num_tokens, topology, dist)
    is_local = local_mask(ids, topology)
    assert bool((is_local.sum(dim=1) == local).all())
    non_local = ids[~is_local].view(num_tokens, top_k - local)
    assert not bool(local_mask(non_local, topology).any())
    ordered = ids.sort(dim=1).values
    assert not (ordered[:, 1:] == ordered[:, :-1]).any()


@pytest.mark.parametrize("alpha", [0.6, 1.2, 2.0])
def test_zipf_puts_the_hottest_shard_on_the_measured_rank(alpha: float) -> None:
    dist = Distribution("zipf", alpha=alpha)
    for rank in Topology.parse("ep8", num_experts=256, top_k=8).ranks():
        ids, _ = dummy_topk(4096, rank, dist, seed=1)
        load = counts(ids, 256).view(8, 32).sum(dim=1)  # slots per shard
        assert int(load.argmax()) == rank.ep_rank
        assert routing_stats(ids, rank).local_slot_fraction > 1 / 8
    dep = Topology.parse("dep8", num_experts=256, top_k=8, ep_rank=5)
    shard = routing_stats(dummy_topk(4096, dep, dist, seed=1)[0], dep).rows_per_local_expert
    assert shard[0] == max(shard) and shard[0] > 2 * shard[-1], "zipf skews within the shard too"


@given(topologies(), distributions())
def test_zero_tokens_gives_empty_tensors(topology: Topology, dist: Distribution) -> None:
    ids, weights = dummy_topk(0, topology, dist)
    assert ids.shape == weights.shape == (0, topology.top_k)


def test_routing_stats_of_a_known_routing() -> None:
    topology = Topology(8, 2, ep_size=2, ep_rank=1)
    ids = torch.tensor([[4, 5], [4, 0], [1, 2]], dtype=torch.int32)
    stats = routing_stats(ids, topology)
    assert stats.rows_per_local_expert == (2, 1, 0, 0)
    assert stats.local_slot_fraction == pytest.approx(3 / 6)
    assert (stats.local_experts_touched, stats.experts_touched, stats.max_load) == (2, 5, 2)
    assert stats.mean_load == pytest.approx(0.75) and stats.imbalance == pytest.approx(2 / 0.75)
    assert stats.to_dict()["rows_per_local_expert"] == [2, 1, 0, 0]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        pytest.param(torch.tensor([[1, 9]]), "expert id 9 >= num_experts=8", id="too-high"),
        pytest.param(torch.tensor([[-1, 2]]), "negative expert id -1", id="negative"),
        pytest.param(torch.tensor([1, 2]), r"shape \(2,\)", id="one-dimensional"),
    ],
)
def test_routing_stats_rejects_bad_ids(ids: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        routing_stats(ids, Topology(8, 2))


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tokens", [-1, -100, 1.5, True, "8"])
def test_bad_token_count(num_tokens: object) -> None:
    with pytest.raises(ValueError, match=f"num_tokens must be an int >= 0, got {num_tokens!r}"):
        dummy_topk(num_tokens, Topology(8, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["uniform", "zipf", "replay", "balanced:1", "RANDOM", ""])
def test_unknown_distribution_lists_the_valid_ones(spec: str) -> None:
    with pytest.raises(ValueError, match=f"unknown dummy routing distribution {spec!r}") as err:
        dummy_topk(4, Topology(8, 2), spec)
    for form in ("balanced", "random", "zipf:<alpha>", "replay:<"):
        assert form in str(err.value)


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("zipf:1.2", {}),
        ("zipf", {}),
        ("random", {"alpha": 1.2}),
        ("replay", {}),
        ("balanced", {"path": Path("t.pt")}),
    ],
)
def test_a_distribution_is_built_from_a_kind_not_a_spec_string(kind: str, fields: dict[str, object]) -> None:
    """``Distribution("zipf:1.2")`` once silently routed uniformly (the kind was not ``zipf``)."""
    with pytest.raises(ValueError, match=repr(kind)):
        Distribution(kind, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", ["0", "-1.5", "nan", "inf", "abc", ""])
def test_bad_zipf_alpha(alpha: str) -> None:
    with pytest.raises(ValueError, match=f"bad zipf alpha {alpha!r}"):
        dummy_topk(4, Topology(8, 2), f"zipf:{alpha}")


def test_default_distribution_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    topology = Topology(16, 4, 2, 1, use_dp=True)
    monkeypatch.setenv(ENV_VAR, "zipf:1.5")
    from_env = dummy_topk(64, topology, seed=3)
    explicit = dummy_topk(64, topology, "zipf:1.5", seed=3)
    assert torch.equal(from_env[0], explicit[0]) and torch.equal(from_env[1], explicit[1])
    monkeypatch.delenv(ENV_VAR)
    assert torch.equal(dummy_topk(64, topology)[0], dummy_topk(64, topology, "balanced")[0])
    monkeypatch.setenv(ENV_VAR, "skewed")
    with pytest.raises(ValueError, match=rf"\${ENV_VAR}: unknown dummy routing distribution 'skewed'"):
        dummy_topk(64, topology)
