"""``benchmarks/fp8_down_choice.py`` times what it says: the fp8 default first, then every tactic of
the space whose gate/up reads sorted x and whose down is a TMA tile, Gluon's and Triton's (CPU, no
kernel runs; its timings are GPU runs, BENCHMARKS.md session 11 run 12)."""

from __future__ import annotations

import pytest

pytest.importorskip("triton")

from benchmarks.fp8_down_choice import candidates
from kernels import MoEProblem, default_tactic, tactics


@pytest.mark.parametrize(
    "problem",
    [
        MoEProblem(4096, 2048, 768, 128, 8, "float8_e4m3fn"),
        MoEProblem(1024, 4096, 1536, 64, 8, "float8_e4m3fn"),
    ],
    ids=["qwen3-30b-256rows", "qwen3-235b-128rows"],
)
def test_candidates_are_the_default_then_every_sorted_tma_down_tactic(problem: MoEProblem) -> None:
    got = candidates(problem)
    assert got[0] == default_tactic(problem, gluon=True)
    assert len(got) == len(set(got))
    rest = got[1:]
    space = tactics(problem, gluon=True)
    assert set(rest) == {t for t in space if t.gate_up.sorted_x and t.down.tma} - {got[0]}
    assert {t.down.gluon for t in rest} == {True, False}  # both kernels' downs are compared
    assert {t.block_m for t in rest} == {64, 128}
