"""``benchmarks/peer_table.py``: the peer table's rows from gate reports (no GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.peer_table import load


def report(path: Path, **cases: float) -> Path:
    """A gate report with one result per case: ``median_us`` as given, the peer at 100 us."""
    results = [{"case": case, "median_us": us, "peer_median_us": 100.0, "roofline_us": 50.0}
               for case, us in cases.items()]  # fmt: skip
    path.write_text(json.dumps({"results": results}))
    return path


def test_a_case_in_several_reports_takes_the_last_one(tmp_path: Path) -> None:
    full = report(tmp_path / "full.json", b=90.0, a=80.0)
    rerun = report(tmp_path / "rerun.json", a=40.0)
    rows = load([full, rerun])
    assert [(r["case"], r["median_us"]) for r in rows] == [("a", 40.0), ("b", 90.0)]
    assert [r["median_us"] for r in load([rerun, full])] == [80.0, 90.0]


def test_a_report_without_peer_timings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"results": [{"case": "a", "median_us": 1.0, "peer_median_us": None}]}))
    with pytest.raises(SystemExit, match=r"no peer timing for 1 cases \(run with --moetune-peer\): \['a'\]"):
        load([path])
