"""Tuned-throughput regression suite (runs with `pytest --moetune` on a GPU).

Each case tunes the repo's fused MoE layer for its token bucket on the topology's dummy routing,
measures the tuned tactic by CUDA-graph replay and is judged against
``baselines/<gpu>/suites.perf.test_tuned_throughput.json``. ``--moetune-profile quick|full`` picks
the cases (``suites/perf/cases.py``).
"""

from __future__ import annotations

from pytest_moetune.harness import MoECase


def test_tuned_throughput(moetune, perf_case: MoECase) -> None:  # type: ignore[no-untyped-def]
    moetune.check(perf_case)
