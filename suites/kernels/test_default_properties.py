"""Properties of ``kernels.default_tactic`` over random layer shapes (Hypothesis, no kernel runs).

For any problem the default is a point of the pruned space ``kernels.tactics`` (with and without the
Gluon tiles), and its ``block_m`` follows the rule its docstring states: 16 or 32 only where one block
holds an expert's expected rows, 64 up to 96 rows, 128 above (fp8 stops at 64 without Gluon's tiles).
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from kernels import MoEProblem, default_tactic, tactics

DTYPES = ("bfloat16", "float16", "float8_e4m3fn")


@st.composite
def problems(draw: st.DrawFn) -> MoEProblem:
    """Layer shapes around the ANCHORS models': H and I multiples of 16 (some of 128, as fp8's
    Gluon tiles need), up to 512 local experts, top_k up to 10, 0-16384 tokens, DEP or pure EP."""
    step = draw(st.sampled_from([16, 64, 128]))
    hidden = step * draw(st.integers(1, 8192 // step))
    inter = step * draw(st.integers(1, 16384 // step))
    num_local = draw(st.integers(1, 512))
    top_k = draw(st.integers(1, 10))
    tokens = draw(st.integers(0, 16384))
    slots = draw(st.none() | st.integers(0, tokens * top_k))
    return MoEProblem(tokens, hidden, inter, num_local, top_k, draw(st.sampled_from(DTYPES)), slots)


@given(problems(), st.booleans())
def test_the_default_is_a_point_of_the_space(problem: MoEProblem, gluon: bool) -> None:
    default = default_tactic(problem, gluon=gluon)
    assert default in tactics(problem, gluon=gluon), default.name


@given(problems())
def test_block_m_holds_an_experts_rows_in_one_block_up_to_32(problem: MoEProblem) -> None:
    rows = problem.rows_per_expert
    block_m = default_tactic(problem).block_m
    expected = 16 if rows <= 16 else 32 if rows <= 32 else 64 if rows <= 96 else 128
    if problem.dtype == "float8_e4m3fn":  # Triton's fp8 tiles stop at 64 (the Gluon ones are off here)
        expected = min(expected, 64)
    assert block_m == expected
    if rows <= 32:
        assert math.ceil(rows / block_m) <= 1
