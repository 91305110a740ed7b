"""Properties of :class:`Topology` and its short names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_moetune.strategies import token_counts, topologies
from pytest_moetune.topology import Topology, TopologySpec


@given(topologies())
def test_shards_partition_the_experts(topology: Topology) -> None:
    shards = [
        range(r.local_expert_offset, r.local_expert_offset + r.local_num_experts) for r in topology.ranks()
    ]
    assert [r.ep_rank for r in topology.ranks()] == list(range(topology.ep_size))
    assert sorted(e for shard in shards for e in shard) == list(range(topology.num_experts))
    assert all(len(s) == topology.num_experts // topology.ep_size for s in shards)
    assert sum(topology.is_local(e) for e in range(topology.num_experts)) == topology.local_num_experts


@given(topologies(), token_counts())
def test_expected_rows_per_local_expert_formula(topology: Topology, num_tokens: int) -> None:
    expected = topology.expected_rows_per_local_expert(num_tokens)
    k, local, experts = topology.top_k, topology.local_num_experts, topology.num_experts
    if topology.use_dp and local >= k:
        assert expected == pytest.approx(num_tokens * k / local)
    elif topology.use_dp:
        assert expected == pytest.approx(num_tokens)  # every row carries the whole shard
    else:
        assert expected == pytest.approx(num_tokens * k / experts)


@given(topologies())
def test_value_object_is_hashable_and_parses_back(topology: Topology) -> None:
    again = Topology.parse(topology.name, topology.num_experts, topology.top_k, topology.ep_rank)
    assert again == topology and hash(again) == hash(topology)
    assert len({topology, again}) == 1
    assert TopologySpec.parse(topology.name) == topology.spec


@pytest.mark.parametrize(
    ("name", "ep_size", "use_dp"),
    [("ep1", 1, False), ("ep8", 8, False), ("dep2", 2, True), ("dep64", 64, True)],
)
def test_short_names(name: str, ep_size: int, use_dp: bool) -> None:
    topology = Topology.parse(name, num_experts=256, top_k=8, ep_rank=ep_size - 1)
    assert (topology.ep_size, topology.use_dp, topology.ep_rank) == (ep_size, use_dp, ep_size - 1)
    assert topology.name == name


def test_dep8_deepseek_rank3() -> None:
    topology = Topology.parse("dep8", num_experts=256, top_k=8, ep_rank=3)
    assert (topology.local_num_experts, topology.local_expert_offset) == (32, 96)
    assert topology.expected_rows_per_local_expert(64) == 16.0


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        pytest.param(
            {"num_experts": 10, "top_k": 2, "ep_size": 4}, "num_experts=10", id="experts-not-divisible"
        ),
        pytest.param({"num_experts": 8, "top_k": 2, "ep_size": 2, "ep_rank": 2}, "got 2", id="rank-too-high"),
        pytest.param(
            {"num_experts": 8, "top_k": 2, "ep_size": 2, "ep_rank": -1}, "got -1", id="rank-negative"
        ),
        pytest.param({"num_experts": 8, "top_k": 0}, "got 0", id="top-k-zero"),
        pytest.param({"num_experts": 8, "top_k": 9}, "got 9", id="top-k-above-experts"),
        pytest.param({"num_experts": 8, "top_k": 2, "ep_size": 0}, "got 0", id="ep-size-zero"),
        pytest.param({"num_experts": 0, "top_k": 1}, "got 0", id="no-experts"),
        pytest.param({"num_experts": 8.0, "top_k": 2}, "8.0", id="float-experts"),
        pytest.param({"num_experts": 8, "top_k": 2, "use_dp": "yes"}, "'yes'", id="use-dp-not-bool"),
    ],
)
def test_bad_values_name_the_value(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        Topology(**kwargs)


@pytest.mark.parametrize("name", ["dep", "ep0", "dep0", "tp8", "EP8x", "", "ep-1", "dp2"])
def test_unknown_short_name(name: str) -> None:
    with pytest.raises(ValueError, match=f"unknown topology short name {name!r}"):
        Topology.parse(name, num_experts=8, top_k=2)


@given(topologies(), st.integers(-5, -1))
def test_negative_token_count_is_refused(topology: Topology, num_tokens: int) -> None:
    with pytest.raises(ValueError, match=f"got {num_tokens}"):
        topology.expected_rows_per_local_expert(num_tokens)
