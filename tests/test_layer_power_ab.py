"""``benchmarks/layer_power_ab.py``: reading ``nvidia-smi``'s samples (no GPU)."""

from __future__ import annotations

import datetime
import math

from benchmarks.layer_power_ab import parse_samples, summarize

OUTPUT = """\
2026/11/28 17:20:01.100, 1980, 80.50, 40, 0x0000000000000000
2026/11/28 17:20:01.120, 1500, 690.25, 54, 0x0000000000000004
Field "power.draw.instant" is not a valid field to query.
2026/11/28 17:20:01.140, 1470, 699.75, 55, 0x0000000000000004
2026/11/28 17:20:01.160, 14"""


def at(ms: int) -> datetime.datetime:
    return datetime.datetime(2026, 11, 28, 17, 20, 1, ms * 1000)


def test_samples_are_parsed_and_other_lines_skipped() -> None:
    samples = parse_samples(OUTPUT)
    assert [s[0] for s in samples] == [at(100), at(120), at(140)]
    assert samples[1][1:] == (1500.0, 690.25, 54.0, 4)


def test_a_window_averages_its_samples_and_ors_their_reasons() -> None:
    samples = parse_samples(OUTPUT)
    window = summarize(samples, at(110), at(140))
    assert window == {"samples": 2, "sm_mhz": 1485.0, "watts": 695.0, "temp_c": 54.5, "reasons": "0x4"}
    assert summarize(samples, at(100), at(140))["reasons"] == "0x4"
    assert summarize(samples, at(100), at(100))["reasons"] == "0x0"


def test_an_empty_window_is_nan_not_zero() -> None:
    window = summarize(parse_samples(OUTPUT), at(141), at(150))
    assert window["samples"] == 0 and math.isnan(window["sm_mhz"]) and math.isnan(window["watts"])
