"""``benchmarks/tuned_tiles.py`` on the committed H200 baselines (no GPU): each small-block_m case's
tuned tiles against the default's, counted per GEMM."""

from __future__ import annotations

import re

import pytest

from benchmarks.tuned_tiles import compare, main


def _ints(pattern: str, text: str) -> list[int]:
    found = re.match(pattern, text)
    assert found, (pattern, text)
    return [int(g) for g in found.groups()]


def test_counts_add_up_over_the_h200_baselines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dtype", "bf16", "--max-block-m", "32"]) == 0
    head, *gemms = capsys.readouterr().out.split("\n\n")
    (cases,) = _ints(r".*: (\d+) bf16 cases tuned at block_m <= 32", head)
    assert cases > 0 and len(gemms) == 2
    for gemm, block in zip(("gate_up", "down"), gemms, strict=True):
        first, *tiles = block.strip().splitlines()
        same, total = _ints(rf"{gemm}: the tuner took the default's tile at (\d+) of (\d+)", first)
        assert total == cases and 0 <= same <= total
        assert sum(int(line.split()[0]) for line in tiles) == cases


def test_only_cases_of_the_dtype_and_block_m_asked() -> None:
    entries = {"fused_moe/deepseek-r1/bf16/dep8/balanced/T=1": {"dtype": "bf16", "tactic": {
        "block_m": 64,
        "gate_up": {"block_n": 64, "block_k": 128, "group_m": 8, "num_warps": 4, "num_stages": 4},
        "down": {"block_n": 64, "block_k": 128, "group_m": 8, "num_warps": 4, "num_stages": 4},
    }}}  # fmt: skip
    assert compare(entries, "bf16", 32) == [] and compare(entries, "fp8_w8a8", 128) == []
    ((case, tuned, dflt),) = compare(entries, "bf16", 64)
    assert case.endswith("T=1") and tuned.block_m == 64 and dflt.block_m == 16


def test_a_dtype_the_file_lacks_is_named_with_the_ones_it_has(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--dtype", "fp8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--dtype 'fp8'" in err and "entries of bf16, fp8_w8a8" in err
