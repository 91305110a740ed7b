"""The README's examples run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pytest_moetune.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_fixture_example_runs(pytester: pytest.Pytester) -> None:
    example = next(b for b in blocks("python") if "moe_topology" in b)
    pytester.makepyfile(test_readme_example=example)
    pytester.runpytest().assert_outcomes(passed=6, skipped=1)  # 3 topologies x 2 distributions


def test_strategies_example_collects(pytester: pytest.Pytester) -> None:
    example = next(b for b in blocks("python") if "strategies import" in b)
    pytester.makepyfile(test_readme_strategies=example)
    pytester.runpytest().assert_outcomes(passed=1)


def test_console_example_output(capsys: pytest.CaptureFixture[str]) -> None:
    (console,) = blocks("console")
    command, *expected = console.strip().splitlines()
    argv = shlex.split(command.removeprefix("$ "))
    assert argv[0] == "moetune" and main(argv[1:]) == 0
    assert capsys.readouterr().out.splitlines() == expected


def test_moetune_commands_parse_and_run(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [line.split("#")[0] for b in blocks("bash") for line in b.splitlines()]
    commands = [c for c in commands if c.startswith("moetune ")]
    assert len(commands) >= 3
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, command
