"""Ceilings and rooflines: an fp8 case is bounded by the fp8 matmul rate where one was measured, and
a comparison across sessions uses the same kind of ceiling on both sides."""

from __future__ import annotations

import pytest

from pytest_moetune.ceilings import (
    BURST_WARMUP_S,
    COPY,
    FP8_MATMUL,
    MATMUL,
    MATMUL_WARMUP_S,
    Ceilings,
    Roofline,
    case_roofline,
    normalize_rounds,
)
from pytest_moetune.models import MODELS

BF16_ONLY = Ceilings(copy_bytes_per_s=3e12, matmul_flops_per_s=7e14)
WITH_FP8 = Ceilings(copy_bytes_per_s=3e12, matmul_flops_per_s=7e14, fp8_matmul_flops_per_s=1.25e15)


def test_an_fp8_case_is_bounded_by_the_fp8_rate_where_measured() -> None:
    roof = Roofline(flops=10**13, bytes=10**9, fp8=True)  # 10 TFLOP, 1 GB: MMA-bound
    assert roof.regime(WITH_FP8) == FP8_MATMUL
    assert roof.floor_us(WITH_FP8) == pytest.approx(10**13 / 1.25e15 * 1e6)
    assert roof.floor_us(BF16_ONLY) == pytest.approx(10**13 / 7e14 * 1e6)  # no fp8 rate: the bf16 one
    bf16 = Roofline(flops=10**13, bytes=10**9)
    assert bf16.regime(WITH_FP8) == MATMUL and bf16.floor_us(WITH_FP8) == roof.floor_us(BF16_ONLY)
    memory_bound = Roofline(flops=10**9, bytes=10**10, fp8=True)
    assert memory_bound.regime(WITH_FP8) == COPY


def test_case_roofline_marks_fp8_cases() -> None:
    model = MODELS["deepseek-r1"]
    assert case_roofline(model, "fp8_w8a8", 64, 512, 32).fp8
    assert not case_roofline(model, "bf16", 64, 512, 32).fp8


def test_normalize_uses_one_kind_of_ceiling_on_both_sides() -> None:
    slower_fp8 = Ceilings(copy_bytes_per_s=3e12, matmul_flops_per_s=7e14, fp8_matmul_flops_per_s=1.0e15)
    assert normalize_rounds([100.0], slower_fp8, WITH_FP8, FP8_MATMUL) == pytest.approx([80.0])
    # either session measured no fp8 rate: both sides fall back to the bf16 rate (equal here)
    assert normalize_rounds([100.0], slower_fp8, BF16_ONLY, FP8_MATMUL) == pytest.approx([100.0])
    assert normalize_rounds([100.0], BF16_ONLY, slower_fp8, FP8_MATMUL) == pytest.approx([100.0])
    faster_bf16 = Ceilings(copy_bytes_per_s=3e12, matmul_flops_per_s=7.7e14)
    assert normalize_rounds([100.0], faster_bf16, slower_fp8, FP8_MATMUL) == pytest.approx([110.0])


def test_ceilings_round_trip_and_older_entries_load() -> None:
    assert Ceilings.from_dict(WITH_FP8.to_dict()) == WITH_FP8
    assert Ceilings.from_dict(BF16_ONLY.to_dict()) == BF16_ONLY
    assert "fp8_matmul_flops_per_s" not in BF16_ONLY.to_dict()
    assert BF16_ONLY.rates() == {
        "copy_bytes_per_s": 3e12,
        "matmul_flops_per_s": 7e14,
        "matmul_warmup_s": 0.05,
    }
    assert WITH_FP8.rates()["fp8_matmul_flops_per_s"] == 1.25e15
    assert Ceilings.from_dict({"copy_bytes_per_s": 3e12, "matmul_flops_per_s": 7e14}) == BF16_ONLY
    sustained = Ceilings(copy_bytes_per_s=3e12, matmul_flops_per_s=6.7e14, matmul_warmup_s=MATMUL_WARMUP_S)
    assert Ceilings.from_dict(sustained.rates()) == sustained
    assert Ceilings.from_dict(sustained.to_dict()) == sustained


def test_matmul_rates_timed_after_different_warm_ups_do_not_normalize_each_other() -> None:
    """An entry from before the sustained warm-up holds none and reads as the 50 ms burst; a matmul-bound
    case against it keeps its raw times, while a copy-bound one is still normalized."""
    old = Ceilings.from_dict({"copy_bytes_per_s": 3e12, "matmul_flops_per_s": 7.5e14})
    assert old.matmul_warmup_s == BURST_WARMUP_S
    now = Ceilings(copy_bytes_per_s=2.7e12, matmul_flops_per_s=6.75e14, matmul_warmup_s=MATMUL_WARMUP_S)
    assert not now.matmul_comparable(old) and now.matmul_comparable(now)
    assert normalize_rounds([100.0], now, old, MATMUL) == [100.0]
    assert normalize_rounds([100.0], now, old, FP8_MATMUL) == [100.0]
    assert normalize_rounds([100.0], now, old, COPY) == pytest.approx([90.0])
    then = Ceilings(copy_bytes_per_s=3e12, matmul_flops_per_s=7.5e14, matmul_warmup_s=MATMUL_WARMUP_S)
    assert normalize_rounds([100.0], now, then, MATMUL) == pytest.approx([90.0])


def test_a_negative_matmul_warm_up_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match=r"-0\.5"):
        Ceilings(copy_bytes_per_s=3e12, matmul_flops_per_s=7e14, matmul_warmup_s=-0.5)


def test_a_non_positive_fp8_rate_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match="-1"):
        Ceilings(copy_bytes_per_s=3e12, matmul_flops_per_s=7e14, fp8_matmul_flops_per_s=-1.0)
