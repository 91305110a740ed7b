"""The case matrix itself (CPU): what each profile gates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suites.perf.cases import cases_for, quick_cases

BASELINES = Path(__file__).resolve().parents[2] / "baselines"
CARDS = ("nvidia-h100-80gb-hbm3", "nvidia-h200")
"""The cards with committed baselines of the whole full profile."""


def test_the_committed_cards_are_the_listed_ones() -> None:
    assert sorted(p.name for p in BASELINES.iterdir() if p.is_dir()) == sorted(CARDS)


@pytest.mark.parametrize("card", CARDS)
def test_every_full_profile_case_has_a_baseline_and_no_entry_is_stale(card: str) -> None:
    path = BASELINES / card / "suites.perf.test_tuned_throughput.json"
    entries = json.loads(path.read_text())["entries"]
    assert {case.id for case in cases_for("full")} == set(entries)
    assert len({entry["source_hash"] for entry in entries.values()}) == 1, "one kernel source per card"


def test_full_covers_the_issue_matrix() -> None:
    cases = cases_for("full")
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert {case.id for case in quick_cases()} <= set(ids)
    topologies = {case.topology.name for case in cases}
    assert {"ep1", "dep2", "dep8", "ep8", "dep64"} <= topologies
    assert {str(case.distribution) for case in cases} == {"balanced", "random", "zipf:1.2"}
    assert {case.dtype for case in cases} == {"bf16", "fp8_w8a8"}
    small_shard = [c for c in cases if c.topology.name == "dep64"]
    assert small_shard and all(c.model.num_experts // 64 < c.model.top_k for c in small_shard)
