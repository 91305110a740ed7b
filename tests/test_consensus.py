"""Rank consensus: one tactic per bucket for every rank, chosen for the slowest rank."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_moetune.consensus import agree


def test_divergent_choices_are_detected_and_resolved() -> None:
    # rank 0 alone would take A, rank 1 alone B; A is a disaster on rank 1, B is fine on both
    timings = {0: {"A": 100.0, "B": 101.0, "C": 130.0}, 1: {"A": 150.0, "B": 102.0, "C": 110.0}}
    consensus = agree(timings)
    assert consensus.own_choice == {0: "A", 1: "B"} and consensus.divergent
    assert consensus.tactic == "B" and consensus.slowest_rank_us == 102.0


def test_agreeing_ranks_are_not_divergent() -> None:
    consensus = agree({0: {"A": 10.0, "B": 12.0}, 1: {"A": 11.0, "B": 13.0}, 2: {"A": 10.5, "B": 11.0}})
    assert consensus.tactic == "A" and not consensus.divergent and consensus.slowest_rank_us == 11.0


def test_a_tactic_missing_on_a_rank_is_no_candidate() -> None:
    consensus = agree({0: {"A": 1.0, "B": 5.0}, 1: {"B": 6.0}})
    assert consensus.tactic == "B"


@pytest.mark.parametrize(
    ("timings", "message"),
    [({}, "at least one rank"), ({0: {"A": 1.0}, 1: {"B": 1.0}}, "no tactic ran on every rank")],
)
def test_bad_input(timings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        agree(timings)


ranks = st.dictionaries(
    st.integers(0, 7),
    st.fixed_dictionaries({t: st.floats(1.0, 1000.0) for t in ("A", "B", "C", "D")}),
    min_size=1,
    max_size=8,
)


@given(ranks)
def test_consensus_is_never_slower_than_any_common_tactic(timings: dict[int, dict[str, float]]) -> None:
    consensus = agree(timings)
    for label in ("A", "B", "C", "D"):
        assert consensus.slowest_rank_us <= max(t[label] for t in timings.values())
    assert consensus.slowest_rank_us == max(t[consensus.tactic] for t in timings.values())
