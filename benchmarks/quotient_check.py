"""The fp8 gate/ups' per-row division, emulated on the CPU: does it give IEEE ``h / s``'s bits?

    python3 benchmarks/quotient_check.py [--pairs 20000000] [--seed 0]

``kernels.gluon_gate_up._e4m3_quotient`` (and ``kernels.fused_moe._quotient_rn``) compute ``h / s``
as ``y = rn(1 / s)``, ``q0 = rn(h y)``, ``r = rn(q0 s - h)`` by an FMA, ``q = rn(q0 - r y)`` by
another. Here numpy does the same in float32, each FMA as an exact product and one rounding (through
``longdouble``, whose 64-bit significand holds the 48-bit product; the one double rounding left, to
64 then 24 bits, could only matter at a tie of the wider format), and compares with numpy's float32
division (IEEE, correctly rounded) and with torch's e4m3 cast of both. Four input sets of
``--pairs`` each:

- ``recipe``: h normal over about 87 binary orders, s = max |h| / 448 per row of 128 (the kernels'
  scales), with zeros of both signs and subnormals;
- ``bits``: h and s random float32 bit patterns over 80 binary orders;
- ``near-one``: s with mantissas near all ones;
- ``arbitrary``: h as in ``recipe``, s arbitrary positive (so quotients clamp at 448).

Prints per set the pairs whose float32 quotient differs where h is normal (expected: 0), where h is
subnormal (can differ in the last bits), and whose e4m3 codes differ (expected: 0). Exit status 1
if an expected zero is not. The kernels' own check is on the GPU
(``suites/kernels/test_e4m3_quotient_gpu.py``); the Triton interpreter rounds an FMA twice.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

WIDE = np.longdouble
TINY = np.finfo(np.float32).tiny


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``rn32(a b + c)`` for float32 arrays: the product exact in ``longdouble``, one sum, float32."""
    return (a.astype(WIDE) * b.astype(WIDE) + c.astype(WIDE)).astype(np.float32)


def quotient(h: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The kernels' ``h / s``: one division for ``1 / s``, then Markstein's correction by two FMAs."""
    y = np.float32(1.0) / s
    q0 = h * y
    return fma32(fma32(q0, s, -h), -y, q0)


def codes(q: np.ndarray) -> np.ndarray:
    """The e4m3 codes (uint8) of ``q`` clamped to +-448, by torch's cast (RTNE)."""
    clamped = torch.from_numpy(np.clip(q, -448.0, 448.0))
    return clamped.to(torch.float8_e4m3fn).view(torch.uint8).numpy()


def random_bits(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    """float32 values with random sign and mantissa and exponents in ``[lo, hi)``."""
    mantissa = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    exponent = rng.integers(127 + lo, 127 + hi, n).astype(np.uint32) << 23
    sign = rng.integers(0, 2, n, dtype=np.uint32) << 31
    return (sign | exponent | mantissa).view(np.float32)


def input_sets(rng: np.random.Generator, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The named ``(h, s)`` sets of the module docstring, ``n`` pairs each (``n % 128 == 0``)."""
    h = (rng.standard_normal(n) * np.exp(rng.uniform(-30.0, 30.0, n))).astype(np.float32)
    h[:1024], h[1024:2048] = 0.0, -0.0
    sub = rng.integers(1, 1 << 23, 1024, dtype=np.uint32).view(np.float32)
    h[2048:3072], h[3072:4096] = sub, -sub
    amax = np.abs(h).reshape(-1, 128).max(axis=1)
    recipe = np.repeat(np.maximum(amax, np.float32(1e-10)) / np.float32(448.0), 128).astype(np.float32)
    near_one = ((127 + 3) << 23) | ((1 << 23) - 1 - rng.integers(0, 64, n, dtype=np.uint32))
    return {
        "recipe": (h, recipe),
        "bits": (random_bits(rng, n, -40, 40), np.abs(random_bits(rng, n, -40, 40))),
        "near-one": (random_bits(rng, n, -40, 40), near_one.astype(np.uint32).view(np.float32)),
        "arbitrary": (h, np.exp(rng.uniform(-20.0, 20.0, n)).astype(np.float32)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20_000_000, help="pairs per set, a multiple of 128")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.pairs < 4096 or args.pairs % 128:
        ap.error(f"--pairs must be a multiple of 128 and >= 4096, got {args.pairs}")
    failed = False
    for name, (h, s) in input_sets(np.random.default_rng(args.seed), args.pairs).items():
        got, want = quotient(h, s), h / s
        differ = got.view(np.uint32) != want.view(np.uint32)
        normal = np.abs(h) >= TINY
        bad_normal, bad_sub = int((differ & normal).sum()), int((differ & ~normal).sum())
        bad_codes = int((codes(got) != codes(want)).sum())
        print(f"{name:10s} {args.pairs} pairs: float32 differs at {bad_normal} normal h, "
              f"{bad_sub} subnormal h; e4m3 codes differ at {bad_codes}")
        failed |= bad_normal > 0 or bad_codes > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
