"""The gate's decision rule on synthetic rounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_moetune.verdict import (
    IMPROVED,
    INCONCLUSIVE,
    OK,
    REGRESSED,
    coefficient_of_variation,
    compare_rounds,
)

QUIET = [100.0, 100.2, 99.9, 100.1, 99.8]  # CV ~0.16%


def scaled(rounds: list[float], factor: float) -> list[float]:
    return [r * factor for r in rounds]


@pytest.mark.parametrize(
    ("factor", "verdict"),
    [(1.0, OK), (1.03, OK), (0.97, OK), (1.10, REGRESSED), (0.90, IMPROVED), (1.06, REGRESSED)],
)
def test_quiet_rounds(factor: float, verdict: str) -> None:
    result = compare_rounds(QUIET, scaled(list(reversed(QUIET)), factor))
    assert result.verdict == verdict
    assert result.ratio == pytest.approx(factor, rel=1e-9)


def test_a_regression_names_its_evidence() -> None:
    result = compare_rounds(QUIET, scaled(QUIET, 1.10))
    assert result.p_slower < 0.05 < result.p_faster
    assert result.bound == pytest.approx(0.05)


def test_noise_above_threshold_is_inconclusive() -> None:
    noisy = [100.0, 92.0, 108.0, 97.0, 104.0]  # CV ~6%: 3 x noise ~ 18% > 5%
    assert compare_rounds(QUIET, scaled(noisy, 1.06)).verdict == INCONCLUSIVE
    assert compare_rounds(noisy, noisy).verdict == INCONCLUSIVE


def test_a_change_beyond_the_noise_bound_is_still_judged() -> None:
    noisy = [100.0, 96.0, 104.0, 98.0, 102.0]  # CV ~3%: bound ~9.5%
    assert compare_rounds(noisy, scaled(noisy, 1.30)).verdict == REGRESSED


def test_a_big_ratio_without_statistical_support_is_not_a_regression() -> None:
    # The medians differ by 10%, but the rounds overlap: Mann-Whitney does not agree.
    baseline = [100.0, 100.0, 100.0, 130.0, 130.0]
    now = [110.0, 110.0, 110.0, 100.0, 100.0]
    result = compare_rounds(baseline, now)
    assert result.ratio == pytest.approx(1.10)
    assert result.verdict != REGRESSED


rounds = st.lists(st.floats(50.0, 200.0), min_size=5, max_size=10)


@given(rounds, rounds, st.floats(0.1, 10.0))
def test_verdict_is_scale_invariant(baseline: list[float], now: list[float], scale: float) -> None:
    a = compare_rounds(baseline, now)
    b = compare_rounds(scaled(baseline, scale), scaled(now, scale))
    assert a.verdict == b.verdict
    assert a.ratio == pytest.approx(b.ratio) and a.noise == pytest.approx(b.noise)


@given(rounds, rounds)
def test_swapping_sides_never_repeats_a_directional_verdict(baseline: list[float], now: list[float]) -> None:
    """The noise is the same both ways; the bound is met by |r - 1| one way and |1/r - 1| the other,
    so a regression seen backwards is an improvement, or falls just short of the bound."""
    forward, backward = compare_rounds(baseline, now).verdict, compare_rounds(now, baseline).verdict
    if forward == REGRESSED:
        assert backward in (IMPROVED, OK, INCONCLUSIVE)
    if forward == IMPROVED:
        assert backward == REGRESSED


@pytest.mark.parametrize(
    ("baseline", "now", "threshold", "message"),
    [
        ([1.0], [1.0, 1.0], 0.05, "baseline needs at least 2 rounds, got 1"),
        ([1.0, 1.0], [1.0, 0.0], 0.05, "now rounds must be finite and > 0, got 0.0"),
        ([1.0, float("nan")], [1.0, 1.0], 0.05, "got nan"),
        ([1.0, 1.0], [1.0, 1.0], 0.0, "threshold must be in"),
    ],
)
def test_bad_input(baseline: list[float], now: list[float], threshold: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare_rounds(baseline, now, threshold)


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([5.0]) == 0.0
    assert coefficient_of_variation([1.0, 3.0]) == pytest.approx(2**0.5 / 2)


def test_decide_judges_a_stored_result_at_any_threshold() -> None:
    """A 4.5% slowdown: within a 5% threshold, caught at 4% when quiet and significant."""
    from pytest_moetune.verdict import decide

    assert decide(1.045, 0.005, 0.001, 1.0, threshold=0.05) == OK
    assert decide(1.045, 0.005, 0.001, 1.0, threshold=0.04) == REGRESSED
    assert decide(1.045, 0.005, 0.2, 1.0, threshold=0.04) == OK  # the test does not agree
    assert decide(1.045, 0.02, 0.001, 1.0, threshold=0.04) == INCONCLUSIVE  # 3 x noise = 6% > 4.5%
