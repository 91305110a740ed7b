"""Tuning fidelity on the GPU (runs with `pytest --moetune --moetune-fidelity suites/fidelity`, about
10 minutes on an H100, outside both profiles' budgets): the tactic
tuned on the routing that models the traffic (its distribution, over ``ROUTING_DRAWS`` draws) must stay
within 2% of the best tactic on that traffic (routing of every rank, dispatched to the measured rank;
3 draws the tunings never saw, timed as their mean). Balanced-aware, dummy-routed and naive tuning
are measured beside it.

Under pure EP the matched tuning is ``aware:<traffic>``, this plugin's dummy routing of the traffic's
shape: the rank routes its own rows, so that is the real traffic. Under DEP it is
``dispatch:<traffic>`` (``Tuner.with_routing(dispatch_topk)``, what ``moetune tune --routing
dispatch`` does): DESIGN.md's DEP dummy rule gives the rank ``T`` rows, every slot local, where
real dispatch delivers rows of all ranks with few local slots each (deepseek-r1 dep8, T=64: 336
rows, not 64), and under zipf skew 5.7x the slots and 7.5x the rows on the hottest expert. On the
H100 (device runs 20, 21, 23) ``aware:random`` lost 2.4-3.8% at deepseek-r1 dep8 T=64 in every
run, always with the same narrow gate/up tile, where the dispatched tunings were exact.
``aware:<traffic>`` stays in the table beside it.

One explained exception (``TWINS``): a choice that differs from the oracle only in TMA or pipeline
depth (same tiles) may lose up to 6%. Those twins' order is not a property of the workload: at
qwen3-235b-a22b dep2 T=1024 zipf, on the same inputs, the TMA gate/up tile was 4.6% faster than its
pointer-load twin in run 22 and 4.6% slower in run 24 (two H100 machines), and the dispatched tuning
picked the other one each time. Single measurements of these layers spread by +-6% (outliers
+10%): in run 30 the dispatched tuning's twin at deepseek-r1 dep8 T=1024 random measured 7.4% behind
the oracle, and 0.9% behind over 15 paired measurements in run 34. So a regret past 1% is confirmed
by more measurements beside the oracle before it counts (``CONFIRM_REPEATS`` in
``pytest_moetune.fidelity``).

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
from pytest_moetune.fidelity import TwinRule, markdown_table, measure_fidelity, unexplained_misses
from pytest_moetune.problem import TuningProblem
from pytest_moetune.runner import RunnerRegistry
from pytest_moetune.tuner import Tuner

MAX_AWARE_REGRET = 0.02
ROUTING_DRAWS = 4
BUCKETS = [16, 64, 256, 512, 1024]
CASES = [("qwen3-235b-a22b", "dep2"), ("deepseek-r1", "dep8"), ("deepseek-r1", "ep8")]
TWINS = TwinRule(
    fields=frozenset({"tma", "num_stages"}),
    max_regret=0.06,
    reason="TMA and pointer-load twins of one tile swap places between runs on the same inputs "
    "(qwen3-235b-a22b dep2 T=1024 zipf: 4.6% either way in H100 runs 22 and 24); twins lost 4.5-5.1% "
    "in runs 21-24",
)


@pytest.mark.moetune
@pytest.mark.moetune_fidelity
@pytest.mark.skipif(not torch.cuda.is_available(), reason="times kernels on a CUDA GPU")
@pytest.mark.parametrize(("model_name", "topology_name"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_aware_tuning_is_within_2pct_of_the_oracle(
    moetune_runners: RunnerRegistry, model_name: str, topology_name: str
) -> None:
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
    misses = unexplained_misses(points, MAX_AWARE_REGRET, TWINS)
    assert not misses, "the matched tuning lost more than 2% here (6% for the oracle's twin):\n" + (
        markdown_table(misses)
    )
