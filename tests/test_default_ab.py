"""``benchmarks/default_ab.py`` without a GPU: variants, the case selection and ``--write-defaults``."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from benchmarks.default_ab import (
    chosen_cases,
    defaults,
    main,
    parse_variant,
    profile_cases,
    summary,
    timing_passes,
    with_tiles,
)
from kernels.tactics import GemmTile, Tactic
from suites.perf.cases import full_cases


def test_a_variant_replaces_its_gemms_tiles_and_keeps_their_flags() -> None:
    tactic = Tactic(64, GemmTile(64, 128, 8, 4, 4, tma=True), GemmTile(256, 64, 8, 8, 3, tma=True))
    down = parse_variant("down=128x128w4s3")
    assert down == (("down", 128, 128, 4, 3),)
    changed = with_tiles(tactic, down)
    assert changed.gate_up == tactic.gate_up
    assert changed.down == GemmTile(128, 128, 8, 4, 3, tma=True)
    both = with_tiles(tactic, parse_variant("gate_up=128x64w8s4+down=128x128w4s3"))
    assert both == Tactic(64, GemmTile(128, 64, 8, 8, 4, tma=True), changed.down)


@pytest.mark.parametrize(
    "text", ["down=128x128", "up=128x128w4s3", "down:128x128w4s3", "down=128x128w4s3x", "down=128x128w4s3+"]
)
def test_a_malformed_variant_is_named(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"--variant {text!r}")):
        parse_variant(text)


def test_tokens_put_each_balanced_case_at_each_count() -> None:
    cases = profile_cases([128, 192])
    balanced = {c.id.rsplit("/", 1)[0] for c in full_cases() if "/balanced/" in c.id}
    assert {c.id.rsplit("/", 1)[0] for c in cases} == balanced
    assert len(cases) == 2 * len(balanced) and {c.num_tokens for c in cases} == {128, 192}
    assert profile_cases([]) == full_cases()


def test_the_selection_takes_small_blocks_and_with_changed_only_the_changed_defaults() -> None:
    cases = profile_cases([64, 1024])
    old = defaults(cases)
    one = next(c for c in cases if old[c.id]["block_m"] == 16)
    new = {**old, one.id: {**old[one.id], "block_m": 32}}
    small = chosen_cases(cases, old, new, 32, {"bf16", "fp8_w8a8"}, changed_only=False)
    assert one in small and all(min(old[c.id]["block_m"], new[c.id]["block_m"]) <= 32 for c in small)
    assert chosen_cases(cases, old, new, 128, {one.dtype}, changed_only=True) == [one]
    model = one.id.split("/")[1]  # fused_moe/MODEL/...
    matched = chosen_cases(cases, old, new, 32, {"bf16", "fp8_w8a8"}, False, re.compile(f"/{model}/"))
    assert one in matched and {c.id.split("/")[1] for c in matched} == {model} and len(matched) < len(small)
    # a file from before a tile flag existed lacks its key (False, its default): not a change
    older = {key: {**tac, "gate_up": {f: v for f, v in tac["gate_up"].items() if f != "dual" or v}}
             for key, tac in old.items()}  # fmt: skip
    assert any("dual" not in tac["gate_up"] for tac in older.values())
    assert chosen_cases(cases, older, old, 128, {"bf16", "fp8_w8a8"}, changed_only=True) == []
    with pytest.raises(ValueError, match="--old lacks 1 of the cases"):
        chosen_cases(cases, {k: v for k, v in old.items() if k != one.id}, new, 32, {"bf16"}, False)


def test_write_defaults_records_this_trees_default_of_every_case(tmp_path: Path) -> None:
    out = tmp_path / "defaults.json"
    assert main(["--write-defaults", str(out), "--tokens", "1,40"]) == 0
    written = json.loads(out.read_text())
    cases = profile_cases([1, 40])
    assert set(written) == {c.id for c in cases}
    assert written == defaults(cases)  # the file round-trips what the tree computes


def test_the_summary_covers_every_variant_over_the_rows_that_have_it() -> None:
    rows = [
        {"median_us": {"old": 100.0, "new": 50.0}},
        {"median_us": {"old": 100.0, "new": 200.0, "tuned": 80.0}},
    ]
    assert summary(rows) == [
        "new/old over 2 cases: geomean 1.0000, min 0.500, max 2.000",
        "tuned/old over 1 cases: geomean 0.8000, min 0.800, max 0.800",
    ]


def test_one_untimed_pass_then_each_timed_pass_starts_one_variant_later() -> None:
    assert timing_passes(["old", "new", "tuned"], 3) == [
        (False, ["old", "new", "tuned"]),
        (True, ["new", "tuned", "old"]),
        (True, ["tuned", "old", "new"]),
        (True, ["old", "new", "tuned"]),
    ]
