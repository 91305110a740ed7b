"""Tuned-throughput regression suite (runs with `pytest --moetune` on a GPU).

Each case tunes the repo's fused MoE layer for its token bucket on the topology's dummy routing,
measures the tuned tactic by CUDA-graph replay and is judged against
``baselines/<gpu>/suites.perf.test_tuned_throughput.json``.
"""

from __future__ import annotations

import pytest

from pytest_moetune.harness import MoECase

CASES = [
    ("qwen3-235b-a22b", "dep2", 64),
    ("qwen3-235b-a22b", "dep2", 512),
    ("deepseek-r1", "dep8", 64),
    ("deepseek-r1", "ep8", 64),
    ("mixtral-8x7b", "ep1", 16),
]


@pytest.mark.parametrize(("model", "topology", "tokens"), CASES, ids=[f"{m}-{t}-T{n}" for m, t, n in CASES])
@pytest.mark.parametrize("dtype", ["bf16", "fp8_w8a8"])
def test_tuned_throughput(moetune, model: str, topology: str, tokens: int, dtype: str) -> None:  # type: ignore[no-untyped-def]
    moetune.check(MoECase(model, topology, tokens, dtype=dtype, tune_max_num_tokens=8192))
