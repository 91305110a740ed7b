"""The ``moetune`` console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_moetune.cli import main


def test_models_lists_the_anchor_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "deepseek-r1" in out and "256" in out and "7168" in out


def test_routing_table_per_rank(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routing", "--model", "deepseek-r1", "--topology", "dep8", "--tokens", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("deepseek-r1 dep8: E=256 top_k=8 L=32 T=64")
    ranks = [line.split() for line in lines[2:]]
    assert [int(r[0]) for r in ranks] == list(range(8))
    assert all(r[2] == "64" and r[3] == "16.00" and r[4] == "16" and r[6] == "16" for r in ranks)  # balance


def test_routing_through_dispatch_shows_the_hot_ranks_load(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["routing", "--model", "deepseek-r1", "--topology", "dep8", "--tokens", "64", "--rank", "0"]
    assert main([*argv, "--distribution", "zipf:1.2", "--routing", "dispatch", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["num_tokens"] > 4 * 64  # rows of all 8 ranks reach the hottest shard
    assert sum(row["rows_per_local_expert"]) > 4 * 64 * 8  # vs T * top_k slots under the dummy rule


def test_routing_names_the_distribution_it_used_and_where_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["routing", "--model", "deepseek-r1", "--topology", "dep8", "--tokens", "64", "--rank", "0"]
    monkeypatch.setenv("MOETUNE_DUMMY_DISTRIBUTION", "zipf:1.2")
    assert main(argv) == 0
    assert "distribution=zipf:1.2 (from $MOETUNE_DUMMY_DISTRIBUTION)" in capsys.readouterr().out
    assert main([*argv, "--json"]) == 0
    assert [row["distribution"] for row in json.loads(capsys.readouterr().out)] == ["zipf:1.2"]
    assert main([*argv, "--distribution", "random"]) == 0
    assert "distribution=random routing=" in capsys.readouterr().out
    monkeypatch.setenv("MOETUNE_DUMMY_DISTRIBUTION", "zipf")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "$MOETUNE_DUMMY_DISTRIBUTION" in capsys.readouterr().err
    monkeypatch.delenv("MOETUNE_DUMMY_DISTRIBUTION")
    assert main(argv) == 0
    assert "distribution=balanced routing=" in capsys.readouterr().out


def test_routing_json_for_one_rank(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["routing", "--experts", "16", "--top-k", "4", "--topology", "ep4", "--tokens", "32"]
    assert main([*argv, "--rank", "2", "--json", "--distribution", "random", "--seed", "5"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["rank"] == 2 and row["local_expert_offset"] == 8
    assert row["expected_rows_per_local_expert"] == 8.0
    assert len(row["rows_per_local_expert"]) == 4


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["routing", "--model", "gpt-5", "--topology", "ep1", "--tokens", "1"], "unknown model 'gpt-5'"),
        (["routing", "--model", "mixtral-8x7b", "--topology", "xp2", "--tokens", "1"], "'xp2'"),
        (["routing", "--model", "mixtral-8x7b", "--topology", "ep3", "--tokens", "1"], "not divisible"),
        (["routing", "--model", "mixtral-8x7b", "--topology", "ep1", "--tokens", "-4"], "got -4"),
        (
            ["routing", "--model", "mixtral-8x7b", "--topology", "ep2", "--tokens", "1", "--rank", "2"],
            "--rank 2",
        ),
        (["routing", "--topology", "ep1", "--tokens", "1"], "give --model NAME"),
        (["routing", "--experts", "4", "--top-k", "5", "--topology", "ep1", "--tokens", "1"], "top_k=5"),
        (
            [
                "routing",
                "--model",
                "mixtral-8x7b",
                "--topology",
                "ep1",
                "--tokens",
                "1",
                "--distribution",
                "zipf:0",
            ],
            "bad zipf alpha '0'",
        ),
    ],
)
def test_bad_arguments_are_usage_errors_naming_the_value(
    capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    beside_python = Path(sys.executable).with_name("moetune")
    script = str(beside_python) if beside_python.exists() else shutil.which("moetune")
    if script is None:
        pytest.skip("the moetune console script is not on PATH (package not installed)")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("pytest-moetune ")
