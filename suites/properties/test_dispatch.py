"""The simulated dispatch against the dummy model of one rank's traffic."""

from __future__ import annotations

import math

import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from pytest_moetune.dispatch import dispatch_topk, router_view
from pytest_moetune.routing import dummy_topk, routing_stats
from pytest_moetune.strategies import token_counts, topologies
from pytest_moetune.topology import Topology


@given(topologies(use_dp=False), token_counts(), st.integers(0, 1000))
def test_pure_ep_processes_its_own_rows(topology: Topology, num_tokens: int, seed: int) -> None:
    ids, weights = dispatch_topk(num_tokens, topology, "random", seed)
    expected = dummy_topk(num_tokens, topology, "random", seed)
    assert torch.equal(ids, expected[0]) and torch.equal(weights, expected[1])


@given(
    topologies(use_dp=True, max_ep_size=16), token_counts(min_value=1, max_value=256), st.integers(0, 1000)
)
def test_dep_delivers_exactly_the_rows_that_touch_the_shard(
    topology: Topology, num_tokens: int, seed: int
) -> None:
    ids, _ = dispatch_topk(num_tokens, topology, "random", seed)
    every, _ = dummy_topk(num_tokens * topology.ep_size, router_view(topology), "random", seed)
    offset, local = topology.local_expert_offset, topology.local_num_experts
    touches = ((every >= offset) & (every < offset + local)).any(dim=1)
    assert torch.equal(ids, every[touches])
    assert (
        routing_stats(ids, topology).rows_per_local_expert
        == routing_stats(every, topology).rows_per_local_expert
    )


@given(topologies(use_dp=True, max_ep_size=16), token_counts(min_value=1, max_value=256))
def test_dep_balanced_dispatch_matches_the_dummy_model_when_the_shard_holds_top_k(
    topology: Topology, num_tokens: int
) -> None:
    """L >= top_k: real dispatch gives each local expert T * top_k / L rows (+-1 when balanced),
    the same m as the dummy routing the tuner uses."""
    assume(topology.local_num_experts >= topology.top_k)
    ids, _ = dispatch_topk(num_tokens, topology, "balanced")
    expected = topology.expected_rows_per_local_expert(num_tokens)
    rows = routing_stats(ids, topology).rows_per_local_expert
    assert math.floor(expected) - 1 <= min(rows) and max(rows) <= math.ceil(expected) + 1


def test_dep_with_fewer_local_experts_than_top_k_gets_top_k_over_l_times_the_dummy_rows() -> None:
    """gpt-oss-120b at dep64 (L=2 < top_k=4): the dummy rule of DESIGN.md (T rows, each carrying the
    whole shard) gives T rows per local expert; real dispatch of balanced routing gives
    T * top_k / L = 2T. Recorded here so the model check (issue 7) starts from a known gap."""
    topology = Topology.parse("dep64", num_experts=128, top_k=4, ep_rank=5)
    dummy = routing_stats(dummy_topk(256, topology, "balanced")[0], topology).rows_per_local_expert
    real = routing_stats(dispatch_topk(256, topology, "balanced")[0], topology).rows_per_local_expert
    assert dummy == (256, 256) and real == (512, 512)
