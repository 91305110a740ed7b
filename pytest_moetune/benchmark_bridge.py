"""Hand the gate's GPU round timings to pytest-benchmark, when it is active.

The timing stays ours (CUDA-graph rounds); pytest-benchmark only stores and compares them, so
``--benchmark-json``, ``--benchmark-autosave`` and ``pytest-benchmark compare`` show every gated
case, with its tactic and topology in ``extra_info``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from pytest_moetune.harness import CheckResult, MoECase


def _benchmark_session(config: pytest.Config) -> Any | None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or getattr(session, "disabled", True):
        return None
    return session


def record_rounds(config: pytest.Config, node: pytest.Item, case: MoECase, result: CheckResult) -> bool:
    """Append ``result``'s rounds (seconds) as one benchmark of the pytest-benchmark session.

    Returns whether pytest-benchmark took them (it is absent, disabled, or off under xdist otherwise).
    """
    session = _benchmark_session(config)
    if session is None:
        return False
    from pytest_benchmark.stats import Metadata

    callspec = getattr(node, "callspec", None)
    topology = case.problem().topology
    fixture = SimpleNamespace(
        name=f"{node.name}::{result.case}",
        fullname=f"{node.nodeid}::{result.case}",
        group="moetune",
        param=callspec.id if callspec else None,
        params={k: str(v) for k, v in callspec.params.items()} if callspec else None,
        extra_info={
            "moetune_case": result.case,
            "verdict": result.verdict,
            "tactic": result.tactic,
            "topology": {
                "name": topology.name,
                "ep_size": topology.ep_size,
                "use_dp": topology.use_dp,
                "local_num_experts": topology.local_num_experts,
            },
            "distribution": str(case.distribution),
            "num_tokens": case.num_tokens,
            "timer": "cuda-graph rounds (per-launch time, median of each round's replays)",
        },
        cprofile_stats=None,
        has_error=False,
    )
    metadata = Metadata(fixture, iterations=1, options=dict(session.options))
    for round_us in result.rounds_us:
        metadata.stats.update(round_us * 1e-6)
    session.benchmarks.append(metadata)
    return True
