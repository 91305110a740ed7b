"""Do two tactics keep their order from a tuning's inputs to the evaluation traffic? (issue 6)

    PYTHONPATH=. python3 benchmarks/twin_order.py FIDELITY_JSON BUCKET TRAFFIC [--repeats 15]

Takes one point of a fidelity run (``fidelity-<model>-<topology>.json``, written by the suite with
``$MOETUNE_FIDELITY_OUT``): its oracle tactic and the matched tuning's choice (``dispatch:<traffic>``
under DEP, ``aware:<traffic>`` under pure EP). Times the two in turn, ``--repeats`` times, on
  - ``tuned``: the inputs that tuning timed (the suite's routing draws, tuner seeds 0, 1, ...);
  - ``traffic``: the suite's evaluation traffic (its draws from ``TRAFFIC_SEED``, cycled);
interleaving the two setups, and prints each tactic's median per setup and how often the choice was
faster. The same order in both setups with a steady gap says the tuner mis-measured; an order that
follows the setup says the two draws of one distribution rank them differently.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kernels.runner import FusedMoERunner
from pytest_moetune import Topology, get_model
from pytest_moetune.dispatch import dispatch_topk
from pytest_moetune.fidelity import TRAFFIC_SEED, traffic_inputs, tunings
from pytest_moetune.problem import TuningProblem
from pytest_moetune.tuner import Tuner
from suites.fidelity.test_fidelity import ROUTING_DRAWS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fidelity_json", type=Path)
    ap.add_argument("bucket", type=int)
    ap.add_argument("traffic")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--traffic-draws", type=int, default=3)
    args = ap.parse_args()
    points = json.loads(args.fidelity_json.read_text())
    found = [p for p in points if p["bucket"] == args.bucket and p["traffic"] == args.traffic]
    if not found:
        raise SystemExit(f"no point at bucket {args.bucket}, traffic {args.traffic!r}: {args.fidelity_json}")
    point = found[0]
    model = get_model(point["model"])
    topology = Topology.parse(point["topology"], model.num_experts, model.top_k)
    problem = TuningProblem(model, topology, point["dtype"], tune_max_num_tokens=8192)
    matched = f"{'dispatch' if topology.use_dp else 'aware'}:{args.traffic}"
    runner = FusedMoERunner()
    tuner = Tuner(runner, routing_draws=ROUTING_DRAWS, progress=False)
    if topology.use_dp:
        tuner = tuner.with_routing(dispatch_topk)
    tuned_problem = tunings(problem)[matched]
    choice = runner.tactic_from_dict(point["choices"][matched]["tactic"])
    oracle = runner.tactic_from_dict(point["oracle_tactic"])
    if tuner.label(choice) == tuner.label(oracle):
        raise SystemExit(f"{matched} chose the oracle at this point: nothing to compare")
    setups = {
        "tuned": tuner.input_sets_for(tuned_problem.at(args.bucket), tuned_problem),
        "traffic": traffic_inputs(
            tuner, problem, args.bucket, args.traffic, TRAFFIC_SEED, args.traffic_draws
        )[0],
    }
    samples: dict[str, dict[str, list[float]]] = {name: {"choice": [], "oracle": []} for name in setups}
    for _ in range(args.repeats):
        for name, input_sets in setups.items():
            times = tuner.retime(input_sets, [choice, oracle], 1)
            samples[name]["choice"].append(times[tuner.label(choice)])
            samples[name]["oracle"].append(times[tuner.label(oracle)])
    print(
        f"{point['model']} {point['topology']} T={args.bucket} {args.traffic}: {matched} chose "
        f"{tuner.label(choice)}\n  oracle {tuner.label(oracle)}"
    )
    print("| setup | choice median us | oracle median us | choice / oracle | choice faster |")
    print("|---|---|---|---|---|")
    report = {"point": {k: point[k] for k in ("model", "topology", "bucket", "traffic")}, "setups": {}}
    for name, runs in samples.items():
        c, o = statistics.median(runs["choice"]), statistics.median(runs["oracle"])
        wins = sum(a < b for a, b in zip(runs["choice"], runs["oracle"], strict=True))
        print(f"| {name} | {c:.1f} | {o:.1f} | {c / o:.3f} | {wins}/{args.repeats} |")
        report["setups"][name] = runs
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
