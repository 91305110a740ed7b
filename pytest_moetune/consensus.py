"""Rank consensus on tactics (issue 7): every EP rank must run the same tactic per bucket.

Ranks that tune alone can pick different tactics (their routing and timing noise differ); a step
then waits for the slowest rank. The consensus objective is that wait: the tactic whose slowest
rank is fastest. Inputs are per-rank timings (``{rank: {tactic label: microseconds}}``, e.g.
gathered with ``torch.distributed.all_gather_object``); tactics a rank could not run are absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Consensus:
    """The agreed tactic and what the ranks would have picked alone."""

    tactic: str
    slowest_rank_us: float
    own_choice: dict[int, str]

    @property
    def divergent(self) -> bool:
        """Whether the ranks, tuning alone, would not have agreed."""
        return len(set(self.own_choice.values())) > 1


def agree(timings: Mapping[int, Mapping[str, float]]) -> Consensus:
    """Pick the tactic that minimizes the slowest rank's time, among tactics every rank ran;
    ``own_choice`` records what each rank would have picked alone (``divergent`` if they differ).

    Raises:
        ValueError: no ranks, or no tactic that every rank ran.
    """
    if not timings:
        raise ValueError("consensus needs the timings of at least one rank")
    common = set.intersection(*(set(t) for t in timings.values()))
    if not common:
        raise ValueError(f"no tactic ran on every rank {sorted(timings)}")
    slowest = {label: max(t[label] for t in timings.values()) for label in sorted(common)}
    tactic = min(slowest, key=slowest.__getitem__)
    own = {rank: min(t, key=t.__getitem__) for rank, t in sorted(timings.items())}
    return Consensus(tactic, slowest[tactic], own)
