"""``benchmarks/quotient_check.py``'s emulation of the fp8 gate/ups' per-row division: Markstein's
corrected quotient is IEEE ``h / s`` at every normal h and gives its e4m3 codes, and the uncorrected
``h * (1 / s)`` is not (so the check can fail). The kernels themselves are checked on the GPU."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks.quotient_check import TINY, codes, input_sets, quotient


@pytest.mark.parametrize("name", ["recipe", "bits", "near-one", "arbitrary"])
def test_the_corrected_quotient_is_ieee_division(name: str) -> None:
    h, s = input_sets(np.random.default_rng(1), 1 << 18)[name]
    got, want = quotient(h, s), h / s
    normal = np.abs(h) >= TINY
    assert np.array_equal(got.view(np.uint32)[normal], want.view(np.uint32)[normal])
    assert np.array_equal(codes(got), codes(want))


def test_the_uncorrected_product_is_not() -> None:
    h, s = input_sets(np.random.default_rng(1), 1 << 18)["recipe"]
    product = h * (np.float32(1.0) / s)
    assert (product != h / s).sum() > 1000
