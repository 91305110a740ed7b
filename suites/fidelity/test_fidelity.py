"""Tuning fidelity on the GPU (runs with `pytest --moetune --moetune-profile full`): the tactic
tuned on the routing that models the traffic (its distribution, over ``ROUTING_DRAWS`` draws) must stay
within 2% of the best tactic on that traffic (routing of every rank, dispatched to the measured rank;
3 draws the tunings never saw, timed as their mean). Balanced-aware and naive tuning are measured
beside it.

The matched tuning is ``aware:<traffic>``, this plugin's dummy routing of the traffic's shape, with
one explained exception: zipf traffic under DEP. There the measured rank holds the hottest shard and
receives more than the ``T * top_k`` slots that DESIGN.md's DEP dummy rule gives it (``T`` rows, every
slot local): at deepseek-r1 dep8, 5.7x the slots and 7.5x the rows on its hottest expert. Dummy
routing cannot carry that load, so the matched tuning there is ``dispatch:zipf:1.2``
(``Tuner.with_routing(dispatch_topk)``, what ``moetune tune --routing dispatch`` does), and
``aware:zipf:1.2`` is reported beside it.

One more point is a listed, explained exception (``KNOWN_MISSES``): there the matched tuning may lose
up to 10% but must pick the oracle's tile (``block_m``).

Device run 15 (BENCHMARKS.md) tuned on one draw: random-aware tuning missed 2% at 8 of 20 points,
balanced-aware at 11 (up to 25% at tile boundaries); the draws are the answer under test here.

Set ``$MOETUNE_FIDELITY_OUT`` to a folder to keep each case's points as JSON (``benchmarks`` builds
the BENCHMARKS.md table from them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pytest_moetune import Topology, get_model
from pytest_moetune.fidelity import KnownMiss, markdown_table, measure_fidelity, unexplained_misses
from pytest_moetune.problem import TuningProblem
from pytest_moetune.runner import RunnerRegistry
from pytest_moetune.tuner import Tuner

MAX_AWARE_REGRET = 0.02
ROUTING_DRAWS = 4
BUCKETS = [16, 64, 256, 512, 1024]
CASES = [("qwen3-235b-a22b", "dep2"), ("deepseek-r1", "dep8"), ("deepseek-r1", "ep8")]
KNOWN_MISSES = {
    ("deepseek-r1", "dep8", 512, "zipf:1.2"): KnownMiss(
        max_regret=0.10,
        same=("block_m",),
        reason="device runs 18 (H100) and 19 (H200): the dispatched tuning picks the oracle's "
        "block_m=128 and loses 7-9% to a pipeline-depth or TMA variant of it; exact in run 20 (H100). "
        "The hot rank gets ~4100 rows, ~3800 on one expert; which variant wins flips with the exact "
        "tile count of the one traffic draw, and the 4 tuning draws (which include it) average that out.",
    ),
}


@pytest.mark.moetune
@pytest.mark.skipif(not torch.cuda.is_available(), reason="times kernels on a CUDA GPU")
@pytest.mark.parametrize(("model_name", "topology_name"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_aware_tuning_is_within_2pct_of_the_oracle(
    moetune_runners: RunnerRegistry, moetune_profile: str, model_name: str, topology_name: str
) -> None:
    if moetune_profile != "full":
        pytest.skip("times every tactic on dispatched traffic (minutes): runs with --moetune-profile full")
    model = get_model(model_name)
    topology = Topology.parse(topology_name, model.num_experts, model.top_k)
    problem = TuningProblem(model, topology, "bf16", tune_max_num_tokens=8192)
    tuner = Tuner(moetune_runners.get("fused_moe"), routing_draws=ROUTING_DRAWS, progress=False)
    points = measure_fidelity(tuner, problem, BUCKETS)
    out = os.environ.get("MOETUNE_FIDELITY_OUT")
    if out:
        path = Path(out) / f"fidelity-{model_name}-{topology_name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([p.to_dict() for p in points], indent=1))
    misses = unexplained_misses(points, MAX_AWARE_REGRET, KNOWN_MISSES)
    assert not misses, "the matched tuning lost more than 2% here (or broke a known miss's bound):\n" + (
        markdown_table(misses)
    )
