"""The gate's decision rule (DESIGN.md section 4): noise-aware verdicts on round medians.

A *round* is one short timing run summarised by its median; rounds are the unit of a sample. With
``ratio = now / baseline`` of (normalized) per-launch time and ``noise`` the larger coefficient of
variation of the two sets of rounds:

- **regressed** when ``ratio - 1 > max(threshold, 3 * noise)`` and a one-sided Mann-Whitney U test
  on the rounds says "now is slower" with ``p < alpha``;
- **improved**, symmetrically, when ``1 - ratio > max(threshold, 3 * noise)`` and the test agrees;
- **inconclusive** when neither holds and ``3 * noise > threshold``: the run is too noisy to rule out
  a change of the threshold's size;
- **ok** otherwise.

``new`` (no baseline) and ``changed-kernel`` (the kernel's source hash differs from the baseline's,
compared anyway) are decided by the harness around this rule.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

OK = "ok"
REGRESSED = "regressed"
IMPROVED = "improved"
INCONCLUSIVE = "inconclusive"
NEW = "new"
CHANGED_KERNEL = "changed-kernel"
VERDICTS = (OK, REGRESSED, IMPROVED, INCONCLUSIVE, NEW, CHANGED_KERNEL)

DEFAULT_THRESHOLD = 0.05
NOISE_MULTIPLE = 3.0
DEFAULT_ALPHA = 0.05
MIN_ROUNDS = 5


def coefficient_of_variation(rounds: Sequence[float]) -> float:
    """Sample standard deviation over mean (0 for fewer than two rounds)."""
    if len(rounds) < 2:
        return 0.0
    mean = statistics.fmean(rounds)
    return statistics.stdev(rounds) / mean if mean else math.inf


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing two sets of rounds (per-launch times; lower is faster)."""

    verdict: str
    ratio: float
    noise: float
    p_slower: float
    p_faster: float
    threshold: float

    @property
    def bound(self) -> float:
        """The change a verdict needs: ``max(threshold, 3 * noise)``."""
        return max(self.threshold, NOISE_MULTIPLE * self.noise)


def compare_rounds(
    baseline: Sequence[float],
    now: Sequence[float],
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> Comparison:
    """Judge ``now`` against ``baseline`` (round times, same unit; lower is better).

    Raises:
        ValueError: fewer than 2 rounds on a side, a non-positive or non-finite time, or a threshold
            outside ``(0, 1)``.
    """
    for name, rounds in (("baseline", baseline), ("now", now)):
        if len(rounds) < 2:
            raise ValueError(f"{name} needs at least 2 rounds, got {len(rounds)}")
        bad = [r for r in rounds if not (math.isfinite(r) and r > 0)]
        if bad:
            raise ValueError(f"{name} rounds must be finite and > 0, got {bad[0]!r}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    from scipy.stats import mannwhitneyu

    ratio = statistics.median(now) / statistics.median(baseline)
    noise = max(coefficient_of_variation(baseline), coefficient_of_variation(now))
    p_slower = float(mannwhitneyu(now, baseline, alternative="greater").pvalue)
    p_faster = float(mannwhitneyu(now, baseline, alternative="less").pvalue)
    verdict = decide(ratio, noise, p_slower, p_faster, threshold, alpha)
    return Comparison(verdict, ratio, noise, p_slower, p_faster, threshold)


def decide(
    ratio: float,
    noise: float,
    p_slower: float,
    p_faster: float,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> str:
    """The verdict for a measured ``ratio`` (now / baseline time), ``noise`` (coefficient of
    variation) and the one-sided p-values, by the rule of this module's docstring. Also used to
    re-judge stored results at another threshold (``benchmarks/summarize_gate_quality.py``)."""
    bound = max(threshold, NOISE_MULTIPLE * noise)
    if ratio - 1 > bound and p_slower < alpha:
        return REGRESSED
    if 1 - ratio > bound and p_faster < alpha:
        return IMPROVED
    if NOISE_MULTIPLE * noise > threshold:
        return INCONCLUSIVE
    return OK
