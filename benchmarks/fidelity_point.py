"""Fidelity at a few buckets of one case, with the suite's settings (a quick check of single points).

    PYTHONPATH=. python3 benchmarks/fidelity_point.py deepseek-r1 dep8 64 [256 ...] [--out DIR]

Tunes and times exactly what ``suites/fidelity`` does for that case (same routing draws, traffic,
twin rule), but only at the given buckets; prints the table and the points the suite would fail, and
writes ``fidelity-<model>-<topology>.json`` into ``--out`` for ``fidelity_table.py``. Exit status 1
when a point misses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kernels.runner import FusedMoERunner
from pytest_moetune import Topology, get_model
from pytest_moetune.fidelity import markdown_table, measure_fidelity, unexplained_misses
from pytest_moetune.problem import TuningProblem
from pytest_moetune.tuner import Tuner
from suites.fidelity.test_fidelity import MAX_AWARE_REGRET, ROUTING_DRAWS, TWINS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("topology")
    ap.add_argument("buckets", type=int, nargs="+")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    model = get_model(args.model)
    topology = Topology.parse(args.topology, model.num_experts, model.top_k)
    problem = TuningProblem(model, topology, "bf16", tune_max_num_tokens=8192)
    tuner = Tuner(FusedMoERunner(), routing_draws=ROUTING_DRAWS, progress=False)
    points = measure_fidelity(tuner, problem, args.buckets)
    print(markdown_table(points))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"fidelity-{args.model}-{args.topology}.json"
        path.write_text(json.dumps([p.to_dict() for p in points], indent=1))
    misses = unexplained_misses(points, MAX_AWARE_REGRET, TWINS)
    print(f"\n{len(points) - len(misses)}/{len(points)} points pass the suite's rule")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
