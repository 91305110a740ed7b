"""Tuning fidelity: how much a tuned tactic loses on realistic traffic (issue 6).

For one model x topology x bucket, tactics are tuned two ways:

- **aware**: on the topology's dummy routing (this plugin's ``balanced`` by default);
- **naive**: as a tuner blind to attention DP and to the rank's shard does, on random routing over
  all experts (:func:`naive_problem`).

Both chosen tactics and every tactic of the space are then timed on realistic traffic, routing of
all ranks through the topology's dispatch (:func:`~pytest_moetune.dispatch.dispatch_topk`), and
``regret = time(chosen) / time(oracle) - 1`` with the oracle the fastest tactic measured there.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_moetune.dispatch import dispatch_topk, router_view
from pytest_moetune.distributions import Distribution
from pytest_moetune.problem import TuningProblem
from pytest_moetune.tuner import Tuner

DEFAULT_TRAFFIC = ("random", "zipf:1.2")


def naive_problem(problem: TuningProblem) -> TuningProblem:
    """The same kernel configuration tuned on random routing over all experts, DP ignored."""
    return dataclasses.replace(
        problem, topology=router_view(problem.topology), distribution=Distribution("random")
    )


@dataclass(frozen=True)
class FidelityPoint:
    """One (model, topology, dtype, bucket, traffic) point. Times in microseconds per launch."""

    model: str
    topology: str
    dtype: str
    bucket: int
    traffic: str
    rows: int
    oracle_tactic: dict[str, Any]
    oracle_us: float
    aware_tactic: dict[str, Any]
    aware_us: float
    naive_tactic: dict[str, Any]
    naive_us: float
    tactics_timed: int

    @property
    def aware_regret(self) -> float:
        return self.aware_us / self.oracle_us - 1

    @property
    def naive_regret(self) -> float:
        return self.naive_us / self.oracle_us - 1

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(aware_regret=self.aware_regret, naive_regret=self.naive_regret)
        return data


def measure_fidelity(
    tuner: Tuner,
    problem: TuningProblem,
    buckets: Sequence[int],
    traffic: Sequence[str] = DEFAULT_TRAFFIC,
    seed: int = 1,
) -> list[FidelityPoint]:
    """Tune ``problem`` aware and naive on ``buckets``, then time the choices and the whole space
    on each ``traffic`` distribution dispatched through ``problem.topology``. A chosen tactic that
    fails on that traffic gets an infinite time (infinite regret)."""
    runner = tuner.runner
    naive = naive_problem(problem)
    aware_result = tuner.tune(problem, buckets=buckets)
    naive_result = tuner.tune(naive, buckets=buckets)
    points = []
    for bucket in buckets:
        chosen = {"aware": aware_result.tactic_for(bucket), "naive": naive_result.tactic_for(bucket)}
        space: dict[str, Hashable] = {}
        for tactic in [
            *runner.tactics(problem.at(bucket)),
            *runner.tactics(naive.at(bucket)),
            *chosen.values(),
        ]:
            space.setdefault(tuner.label(tactic), tactic)
        for name in traffic:
            ids, weights = dispatch_topk(bucket, problem.topology, name, seed)
            rows = int(ids.shape[0])
            inputs = runner.make_inputs(problem.at(rows), ids.to(tuner.device), weights.to(tuner.device))
            times = _time_all(tuner, inputs, space)
            oracle_label = min(times, key=times.__getitem__)
            points.append(
                FidelityPoint(
                    model=problem.model.name,
                    topology=problem.topology.name,
                    dtype=problem.dtype,
                    bucket=bucket,
                    traffic=name,
                    rows=rows,
                    oracle_tactic=json.loads(oracle_label),
                    oracle_us=times[oracle_label],
                    aware_tactic=json.loads(tuner.label(chosen["aware"])),
                    aware_us=times.get(tuner.label(chosen["aware"]), math.inf),
                    naive_tactic=json.loads(tuner.label(chosen["naive"])),
                    naive_us=times.get(tuner.label(chosen["naive"]), math.inf),
                    tactics_timed=len(times),
                )
            )
    return points


def _time_all(tuner: Tuner, inputs: Any, space: dict[str, Hashable]) -> dict[str, float]:
    """Median per-launch time of every tactic that runs (a tactic that fails here is left out)."""
    times = {}
    for label, tactic in space.items():
        us, _ = tuner.try_time([inputs], tactic)
        if us is not None:
            times[label] = us
    if not times:
        raise RuntimeError("no tactic ran on the realistic traffic")
    return times


def markdown_table(points: Sequence[FidelityPoint]) -> str:
    """Rows for BENCHMARKS.md: regret of the aware and the naive choice per point."""
    lines = [
        "| model | topology | dtype | bucket | traffic | rows | oracle us | aware regret | naive regret |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {p.model} | {p.topology} | {p.dtype} | {p.bucket} | {p.traffic} | {p.rows} | "
            f"{p.oracle_us:.1f} | {100 * p.aware_regret:.1f}% | {100 * p.naive_regret:.1f}% |"
        )
    return "\n".join(lines)
