"""Tuning fidelity: how much a tuned tactic loses on realistic traffic (issue 6).

For one model x topology x bucket, tactics are tuned several ways (:func:`tunings`):

- ``aware:<distribution>``: on this plugin's topology-aware dummy routing with that distribution
  (``balanced``: every local expert gets exactly ``T * top_k / L`` rows; ``random``: seeded random
  routing under the same DEP/EP rules, so rows per expert fluctuate the way real traffic does;
  ``zipf:<a>``: skewed, the hottest shard on the measured rank). Under pure EP the one named like
  the traffic (:attr:`FidelityPoint.matched_tuning`) is what a user who knows the traffic's shape
  tunes on;
- ``dispatch:<distribution>`` (DEP only, the matched tuning there): on every rank's routing with
  that distribution, dispatched to the measured rank (``Tuner.with_routing(dispatch_topk)``).
  DESIGN.md's DEP dummy rule gives the rank ``T`` rows with every slot local; real dispatch
  delivers rows of all ranks, each with few local slots (deepseek-r1 dep8: ~5.3x the rows, ~1.5
  local slots each), and under skew more than ``T * top_k`` slots to the rank holding the hottest
  shard. The dispatched tuning sees both;
- ``naive``: as a tuner blind to attention DP and to the rank's shard does, on random routing over
  all experts (:func:`naive_problem`).

Every choice and every tactic of the space are then timed on realistic traffic, routing of all ranks
through the topology's dispatch (:func:`~pytest_moetune.dispatch.dispatch_topk`), and
``regret = time(chosen) / time(oracle) - 1`` with the oracle the fastest tactic measured there. The
traffic is several draws (``traffic_draws``, seeds from ``TRAFFIC_SEED``, which no tuning uses) and a
time is the mean over them. The whole space is screened on the first draw; the screen's finalists
and the choices are then timed together on every draw (``RETIME_REPEATS``) before that ratio is taken,
and a choice more than 1% behind is timed again beside the oracle (``CONFIRM_REPEATS``) first.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_moetune.dispatch import dispatch_topk, router_view
from pytest_moetune.distributions import Distribution, parse_distribution
from pytest_moetune.problem import TuningProblem
from pytest_moetune.tuner import Tuner, finalists, medians

DEFAULT_TRAFFIC = ("random", "zipf:1.2")
DEFAULT_AWARE = ("balanced", *DEFAULT_TRAFFIC)
DEFAULT_DISPATCHED = DEFAULT_TRAFFIC
NAIVE = "naive"
TRAFFIC_SEED = 100
"""First seed of the evaluation traffic: apart from the tuners' seeds (0, 1, ... per draw), so no
tuning has seen the traffic it is judged on."""
SCREEN_MARGIN = 0.10
SCREEN_FINALISTS = 8
"""The whole space is screened on the first traffic draw; the oracle is the best of the fastest
``SCREEN_FINALISTS`` within ``SCREEN_MARGIN`` of that screen's best, timed on every draw. A tactic
10% behind on one draw does not win the mean of draws of the same traffic, and screening on one
draw costs a third of timing the space on three."""
RETIME_REPEATS = 5
"""The oracle's finalists and every tuning's choice are timed this many times on every draw,
interleaved: the minimum over a hundred single measurements is biased low, which would inflate every
regret."""
CONFIRM_ABOVE = 0.01
CONFIRM_REPEATS = 10
"""A choice more than ``CONFIRM_ABOVE`` behind the oracle after the re-timing is timed
``CONFIRM_REPEATS`` more times beside the oracle, and both times become medians of all their
measurements. On the H100 one measurement of a deepseek-r1 dep8 T=1024 layer ranges over +-6% with
outliers to +10% (device run 34), enough to move a median of five by several percent: run 30 put a
twin 7.4% behind the oracle that 15 paired measurements in run 34 put 0.9% behind. Every choice
past half the 2% bound is confirmed, passing or failing, so the extra measurements do not only ever
rescue misses."""
DISPATCH_PREFIX = "dispatch:"


def naive_problem(problem: TuningProblem) -> TuningProblem:
    """The same kernel configuration tuned on random routing over all experts, DP ignored."""
    return dataclasses.replace(
        problem, topology=router_view(problem.topology), distribution=Distribution("random")
    )


def tunings(
    problem: TuningProblem,
    aware: Sequence[str] = DEFAULT_AWARE,
    dispatched: Sequence[str] = DEFAULT_DISPATCHED,
) -> dict[str, TuningProblem]:
    """The problems to tune, by name: ``aware:<distribution>`` for each of ``aware``,
    ``dispatch:<distribution>`` for each of ``dispatched`` under DEP (under pure EP dispatch changes
    nothing: the rank routes its own rows), and ``naive``."""
    named = {
        f"aware:{name}": dataclasses.replace(problem, distribution=parse_distribution(name)) for name in aware
    }
    if problem.topology.use_dp:
        for name in dispatched:
            named[DISPATCH_PREFIX + name] = dataclasses.replace(
                problem, distribution=parse_distribution(name)
            )
    named[NAIVE] = naive_problem(problem)
    return named


@dataclass(frozen=True)
class FidelityPoint:
    """One (model, topology, dtype, bucket, traffic) point. Times in microseconds per launch, the mean
    over ``traffic_draws`` draws of the traffic (``rows``: the rows the rank receives, averaged).

    ``choices`` maps each tuning's name (see :func:`tunings`) to ``{"tactic": dict, "us": float,
    "samples": int, "tuned_us": {"choice": float | None, "oracle": float | None}}``: its tuned tactic,
    that tactic's time on this traffic (``inf`` if it failed there) and the number of measurements
    whose median it is (more where it was confirmed), and the times the tuning itself measured for
    its choice and for this point's oracle (re-timed or sweep; ``None``: not timed there). A miss
    where the tuning measured the oracle slower than its choice is the routing model's; one where it
    measured the oracle faster, or never re-timed it, is the tuner's.
    """

    model: str
    topology: str
    dtype: str
    bucket: int
    traffic: str
    rows: int
    oracle_tactic: dict[str, Any]
    oracle_us: float
    choices: dict[str, dict[str, Any]]
    tactics_timed: int
    traffic_draws: int = 1

    @property
    def matched_tuning(self) -> str:
        """The tuning that models this traffic (its own distribution, other seeds): the dispatched
        one, ``dispatch:<traffic>``, where it was measured, else ``aware:<traffic>``."""
        dispatched = DISPATCH_PREFIX + self.traffic
        return dispatched if dispatched in self.choices else f"aware:{self.traffic}"

    def regret(self, tuning: str) -> float:
        """``time(choice of tuning) / time(oracle) - 1``."""
        return self.choices[tuning]["us"] / self.oracle_us - 1

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["regrets"] = {name: self.regret(name) for name in self.choices}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FidelityPoint:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def measure_fidelity(
    tuner: Tuner,
    problem: TuningProblem,
    buckets: Sequence[int],
    traffic: Sequence[str] = DEFAULT_TRAFFIC,
    seed: int = TRAFFIC_SEED,
    aware: Sequence[str] = DEFAULT_AWARE,
    dispatched: Sequence[str] = DEFAULT_DISPATCHED,
    traffic_draws: int = 3,
) -> list[FidelityPoint]:
    """Tune ``problem`` each way of :func:`tunings` on ``buckets``, then time the choices and the
    whole space on each ``traffic`` distribution dispatched through ``problem.topology``:
    ``traffic_draws`` draws (seeds ``seed, seed + 1, ...``; keep them apart from the tuner's seeds),
    cycled in one graph, so a time is the mean over the draws, as a server sees traffic that changes
    every step. The whole space is screened on the first draw; its finalists (``SCREEN_MARGIN``,
    ``SCREEN_FINALISTS``) and every choice are then timed on all draws ``RETIME_REPEATS`` times,
    interleaved; a choice more than ``CONFIRM_ABOVE`` behind the fastest is timed ``CONFIRM_REPEATS``
    more times beside it, and the medians of all measurements give the oracle and the regrets. A
    choice that fails on that traffic gets an infinite time (infinite regret)."""
    runner = tuner.runner
    named = tunings(problem, aware, dispatched)
    dispatching = tuner.with_routing(dispatch_topk)
    results = {
        name: (dispatching if name.startswith(DISPATCH_PREFIX) else tuner).tune(p, buckets=buckets)
        for name, p in named.items()
    }
    points = []
    for bucket in buckets:
        tuned = {name: result.bucket(bucket) for name, result in results.items()}
        chosen = {name: bucket_result.tactic for name, bucket_result in tuned.items()}
        space: dict[str, Hashable] = {}
        for tactic in [
            *runner.tactics(problem.at(bucket)),
            *runner.tactics(named[NAIVE].at(bucket)),
            *chosen.values(),
        ]:
            space.setdefault(tuner.label(tactic), tactic)
        for name in traffic:
            input_sets, rows = traffic_inputs(tuner, problem, bucket, name, seed, traffic_draws)
            screened = tuner.time_each(input_sets[:1], space.values())
            chosen_labels = [label for label in map(tuner.label, chosen.values()) if label in screened]
            best = finalists(screened, SCREEN_MARGIN, SCREEN_FINALISTS)
            contenders = dict.fromkeys([*best, *chosen_labels])
            samples = tuner.retime_samples(input_sets, [space[label] for label in contenders], RETIME_REPEATS)
            times, oracle_label = _medians(samples, name, bucket)
            doubtful = [
                label
                for label in dict.fromkeys(chosen_labels)
                if label in times and times[label] > times[oracle_label] * (1 + CONFIRM_ABOVE)
            ]
            if doubtful:
                confirm = [space[label] for label in (oracle_label, *doubtful)]
                for label, values in tuner.retime_samples(input_sets, confirm, CONFIRM_REPEATS).items():
                    samples[label].extend(values)
                times, oracle_label = _medians(samples, name, bucket)
            points.append(
                FidelityPoint(
                    model=problem.model.name,
                    topology=problem.topology.name,
                    dtype=problem.dtype,
                    bucket=bucket,
                    traffic=name,
                    rows=round(sum(rows) / len(rows)),
                    oracle_tactic=json.loads(oracle_label),
                    oracle_us=times[oracle_label],
                    choices={
                        tuning: {
                            "tactic": json.loads(tuner.label(tactic)),
                            "us": times.get(tuner.label(tactic), math.inf),
                            "samples": len(samples.get(tuner.label(tactic), [])),
                            "tuned_us": {
                                "choice": tuned[tuning].measured_us(tuner.label(tactic)),
                                "oracle": tuned[tuning].measured_us(oracle_label),
                            },
                        }
                        for tuning, tactic in chosen.items()
                    },
                    tactics_timed=len(screened),
                    traffic_draws=traffic_draws,
                )
            )
    return points


def traffic_inputs(
    tuner: Tuner, problem: TuningProblem, bucket: int, traffic: str, seed: int = TRAFFIC_SEED, draws: int = 3
) -> tuple[list[Any], list[int]]:
    """The evaluation traffic of a point: ``draws`` routings of every rank (seeds ``seed, seed + 1,
    ...``) dispatched to the measured rank, each made into the runner's inputs on the tuner's device,
    and the rows each delivers."""
    input_sets, rows = [], []
    for draw in range(draws):
        ids, weights = dispatch_topk(bucket, problem.topology, traffic, seed + draw)
        rows.append(int(ids.shape[0]))
        input_sets.append(
            tuner.runner.make_inputs(problem.at(rows[-1]), ids.to(tuner.device), weights.to(tuner.device))
        )
    return input_sets, rows


def _medians(samples: Mapping[str, list[float]], traffic: str, bucket: int) -> tuple[dict[str, float], str]:
    """Each tactic's median time (those with measurements) and the label of the fastest."""
    times = medians(samples)
    if not times:
        raise RuntimeError(f"no tactic ran on {traffic} traffic at bucket {bucket}")
    return times, min(times, key=times.__getitem__)


@dataclass(frozen=True)
class TwinRule:
    """Tactics that differ only in ``fields`` (keys at any depth of the tactic dict, e.g. ``tma`` and
    ``num_stages``: the same tiles, another load path or pipeline depth) are twins. Where the twins'
    order is not a property of the workload (it flips between runs on the same inputs), a matched
    tuning that picks the oracle's twin may lose up to ``max_regret``; ``reason`` says why."""

    fields: frozenset[str]
    max_regret: float
    reason: str

    def are_twins(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        return _without(a, self.fields) == _without(b, self.fields)


def _without(tactic: Mapping[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    return {
        key: _without(value, fields) if isinstance(value, Mapping) else value
        for key, value in tactic.items()
        if key not in fields
    }


def unexplained_misses(
    points: Sequence[FidelityPoint], max_regret: float, twins: TwinRule | None = None
) -> list[FidelityPoint]:
    """Points where the matched tuning loses more than ``max_regret``, except (given ``twins``) where
    it picked the oracle's twin and stays within the twins' own bound."""
    out = []
    for point in points:
        regret = point.regret(point.matched_tuning)
        if regret <= max_regret:
            continue
        tactic = point.choices[point.matched_tuning]["tactic"]
        if twins is None or not twins.are_twins(tactic, point.oracle_tactic) or regret > twins.max_regret:
            out.append(point)
    return out


def tuning_names(points: Sequence[FidelityPoint]) -> list[str]:
    """Every tuning of ``points``, in first-seen order (pure EP points have no dispatched tuning)."""
    return list(dict.fromkeys(name for p in points for name in p.choices))


def markdown_table(points: Sequence[FidelityPoint]) -> str:
    """Rows for BENCHMARKS.md: the regret of each tuning's choice per point (``-``: not tuned there),
    and the regret of the tuning matched to the traffic."""
    names = tuning_names(points)
    lines = [
        "| model | topology | dtype | bucket | traffic | rows | oracle us | "
        + " | ".join(f"{name} regret" for name in names)
        + " | matched regret |",
        "|---|---|---|---|---|---|---|" + "---|" * (len(names) + 1),
    ]
    for p in points:
        cells = [f"{100 * p.regret(n):.1f}%" if n in p.choices else "-" for n in names]
        cells.append(f"{100 * p.regret(p.matched_tuning):.1f}% ({p.matched_tuning})")
        lines.append(
            f"| {p.model} | {p.topology} | {p.dtype} | {p.bucket} | {p.traffic} | {p.rows} | "
            f"{p.oracle_us:.1f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)
