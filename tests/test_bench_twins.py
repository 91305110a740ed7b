"""``benchmarks.bench_fused_moe.gluon_gate_up_twins``: the tactics ``--gate-up-twin`` (and
``layer_kernels.py``, ``layer_power_ab.py``) time beside the default (no GPU: the tactic space only)."""

from __future__ import annotations

from benchmarks.bench_fused_moe import gluon_gate_up_twins
from kernels import MoEProblem, default_tactic

QWEN3_235B = MoEProblem(4096, 4096, 1536, 64, 8, "bfloat16")


def test_the_default_with_each_other_gluon_gate_up_of_its_block_m() -> None:
    dflt = default_tactic(QWEN3_235B, gluon=True)
    twins = gluon_gate_up_twins(QWEN3_235B, dflt, gluon=True)
    assert dflt.gate_up.name == "n128k64g8w8s3tGSP"
    assert [t.gate_up.name for t in twins] == ["n128k64g8w8s4tGP", "n128k64g8w8s4tGSP", "n128k64g8w8s3tGP"]
    assert all(t.block_m == dflt.block_m and t.down == dflt.down for t in twins)


def test_no_twins_without_gluon() -> None:
    assert gluon_gate_up_twins(QWEN3_235B, default_tactic(QWEN3_235B), gluon=False) == []
