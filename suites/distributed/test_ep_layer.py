"""The MoE layer over real expert parallelism, on every rank of a torch.distributed launch:

    torchrun --nproc-per-node <gpus> -m pytest suites/distributed      # NCCL, one GPU per rank
    torchrun --nproc-per-node 2 -m pytest suites/distributed           # CPU: gloo + Triton interpreter

``ep_size`` is the world size. Each rank holds only its local experts' weights, routes its own rows
over the global experts, dispatches them (DEP: all-to-all; pure EP: all-gather), runs this repo's
kernel on its shard and combines; the result is checked against the fp32 reference of the whole
layer on one device. Also checked: the rows per local expert after real dispatch against
``Topology.expected_rows_per_local_expert``, and that ranks agree on one tactic per bucket.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from kernels import fused_moe, fused_moe_reference
from kernels.runner import FusedMoERunner, kernel_problem
from pytest_moetune.consensus import agree
from pytest_moetune.dispatch import router_view
from pytest_moetune.ep_comm import dep_combine, dep_dispatch, ep_combine, ep_gather
from pytest_moetune.models import ModelShape, get_model
from pytest_moetune.problem import TuningProblem
from pytest_moetune.routing import dummy_topk, routing_stats
from pytest_moetune.topology import Topology
from pytest_moetune.tuner import Tuner

pytestmark = pytest.mark.moetune_distributed

ON_GPU = torch.cuda.is_available()
TOKENS = 256 if ON_GPU else 32
SIGMAS = 6.0


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[int, int, torch.device]]:
    """(rank, world size, device) of an initialized default process group."""
    if ON_GPU:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if ON_GPU else "gloo")
    device = torch.device("cuda", torch.cuda.current_device()) if ON_GPU else torch.device("cpu")
    yield dist.get_rank(), dist.get_world_size(), device
    dist.barrier()
    if owned:  # NCCL warns (and may hang at exit) when a process group outlives its users
        dist.destroy_process_group()


def model_for(world_size: int) -> ModelShape:
    """qwen3-30b-a3b on GPUs; a small shape with 4 experts per rank for the CPU interpreter."""
    if ON_GPU:
        return get_model("qwen3-30b-a3b")
    return ModelShape("tiny", num_experts=4 * world_size, top_k=2, hidden=64, intermediate=32)


def global_weights(
    model: ModelShape, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole layer's weights, identical on every rank (seeded): w1 (E, 2I, H), w2 (E, H, I)."""
    gen = torch.Generator().manual_seed(1234)
    w1 = torch.randn(model.num_experts, 2 * model.intermediate, model.hidden, generator=gen) / math.sqrt(
        model.hidden
    )
    w2 = torch.randn(model.num_experts, model.hidden, model.intermediate, generator=gen) / math.sqrt(
        model.intermediate
    )
    return w1.to(device=device, dtype=dtype), w2.to(device=device, dtype=dtype)


@pytest.mark.parametrize("use_dp", [True, False], ids=["dep", "ep"])
@pytest.mark.parametrize("routing", ["random", "balanced"])
def test_layer_over_expert_parallelism_matches_one_device(
    world: tuple[int, int, torch.device], use_dp: bool, routing: str
) -> None:
    rank, world_size, device = world
    model = model_for(world_size)
    topology = Topology(model.num_experts, model.top_k, world_size, rank, use_dp)
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    w1, w2 = global_weights(model, dtype, device)
    lo, hi = topology.local_expert_offset, topology.local_expert_offset + topology.local_num_experts
    if use_dp:  # DEP: each rank's own rows, routed over all experts (a different draw per rank)
        x = torch.randn(TOKENS, model.hidden, generator=torch.Generator().manual_seed(rank)).to(device, dtype)
        ids, weights = dummy_topk(TOKENS, router_view(topology), routing, seed=100 + rank, device=device)
        x_in, ids_in, w_in, plan = dep_dispatch(x, ids, weights, topology)
    else:  # pure EP: one batch; each rank holds a shard of it, all-gathered before the layer
        x = torch.randn(TOKENS, model.hidden, generator=torch.Generator().manual_seed(7)).to(device, dtype)
        ids, weights = dummy_topk(TOKENS, router_view(topology.with_rank(0)), routing, seed=7, device=device)
        shard = slice(rank * TOKENS // world_size, (rank + 1) * TOKENS // world_size)
        x_in, ids_in, w_in = ep_gather(x[shard], ids[shard], weights[shard])
        assert torch.equal(ids_in, ids)
    partial = fused_moe(
        x_in, w1[lo:hi].contiguous(), w2[lo:hi].contiguous(), ids_in, w_in, local_expert_offset=lo
    )
    out = dep_combine(partial, plan) if use_dp else ep_combine(partial)

    reference = fused_moe_reference(x, w1, w2, ids, weights)
    error = ((out.float() - reference).norm() / reference.norm()).item()
    assert error <= (1e-2 if ON_GPU else 1e-4), f"rank {rank}: relative error {error:.2e}"

    # model check: rows per local expert after the real dispatch vs the topology's formula
    rows = torch.tensor(routing_stats(ids_in, topology).rows_per_local_expert, dtype=torch.float64)
    expected = topology.expected_rows_per_local_expert(TOKENS)
    deviation = (rows - expected).abs().max().item()
    if routing == "balanced":  # each routing rank puts T*k/E slots on every expert, +-1
        assert deviation <= (world_size if use_dp else 1), (rank, rows.tolist(), expected)
    else:  # binomial: each of the routed rows picks a given expert with probability k/E
        trials = TOKENS * (world_size if use_dp else 1)
        p = model.top_k / model.num_experts
        assert deviation <= SIGMAS * math.sqrt(trials * p * (1 - p)) + 1, (rank, rows.tolist(), expected)


def test_ranks_agree_on_one_tactic_and_divergence_is_detected(world: tuple[int, int, torch.device]) -> None:
    rank, world_size, _ = world
    model = model_for(world_size)
    topology = Topology(model.num_experts, model.top_k, world_size, rank, use_dp=True)
    runner = FusedMoERunner()
    problem = TuningProblem(model, topology, "bf16" if ON_GPU else "fp16").at(TOKENS)
    labels = [t.name for t in runner.tactics(problem)][: max(2, world_size)]
    assert len(labels) >= 2, kernel_problem(problem)
    # per-rank timings in which rank r alone would pick tactic r (a divergent tuning outcome)
    mine = {label: 100.0 + 10.0 * ((i - rank) % len(labels)) for i, label in enumerate(labels)}
    gathered: list[dict[str, float] | None] = [None] * world_size
    dist.all_gather_object(gathered, mine)
    consensus = agree({r: t for r, t in enumerate(gathered) if t is not None})
    assert consensus.divergent and consensus.own_choice[rank] == labels[rank % len(labels)]
    chosen: list[str | None] = [None] * world_size
    dist.all_gather_object(chosen, consensus.tactic)
    assert len(set(chosen)) == 1, f"ranks disagree after consensus: {chosen}"
    assert consensus.slowest_rank_us == min(max(t[label] for t in gathered if t) for label in labels)


@pytest.mark.skipif(not ON_GPU, reason="times every tactic with CUDA graphs on each rank's GPU")
@pytest.mark.parametrize("tokens", [64, 1024])
def test_ranks_tune_on_their_own_dispatched_rows_and_agree(
    world: tuple[int, int, torch.device], tokens: int
) -> None:
    """Each rank times the tactic space on the rows the all-to-all really delivered to it (DEP,
    random routing, its own draw), then the ranks agree on the tactic whose slowest rank is fastest.
    ``$MOETUNE_DISTRIBUTED_OUT`` keeps every rank's timings and the outcome as JSON (rank 0 writes)."""
    rank, world_size, device = world
    model = model_for(world_size)
    topology = Topology(model.num_experts, model.top_k, world_size, rank, use_dp=True)
    x = torch.randn(tokens, model.hidden, generator=torch.Generator().manual_seed(rank)).to(
        device, torch.bfloat16
    )
    ids, weights = dummy_topk(tokens, router_view(topology), "random", seed=200 + rank, device=device)
    _, ids_in, w_in, _ = dep_dispatch(x, ids, weights, topology)
    problem = TuningProblem(model, topology, "bf16")
    runner = FusedMoERunner()
    tuner = Tuner(runner, progress=False)
    inputs = runner.make_inputs(problem.at(int(ids_in.shape[0])), ids_in, w_in)
    mine = tuner.time_each([inputs], runner.tactics(problem.at(tokens)))
    gathered: list[dict[str, float] | None] = [None] * world_size
    dist.all_gather_object(gathered, mine)
    timings = {r: t for r, t in enumerate(gathered) if t is not None}
    consensus = agree(timings)
    chosen: list[str | None] = [None] * world_size
    dist.all_gather_object(chosen, consensus.tactic)
    assert len(set(chosen)) == 1, f"ranks disagree after consensus: {chosen}"
    # a step waits for its slowest rank: what each rank's own pick would cost if all ran it
    own_pick_step_us = {r: max(t[own] for t in timings.values()) for r, own in consensus.own_choice.items()}
    assert all(us >= consensus.slowest_rank_us for us in own_pick_step_us.values())
    out = os.environ.get("MOETUNE_DISTRIBUTED_OUT")
    if out and rank == 0:
        report = {
            "model": model.name,
            "topology": topology.name,
            "tokens_per_rank": tokens,
            "tactics_timed": {r: len(t) for r, t in timings.items()},
            "consensus": consensus.tactic,
            "consensus_step_us": consensus.slowest_rank_us,
            "divergent": consensus.divergent,
            "own_choice": consensus.own_choice,
            "own_pick_step_us": own_pick_step_us,
            "timings_us": timings,
        }
        path = Path(out) / f"consensus-{topology.name}-T{tokens}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, sort_keys=True))
