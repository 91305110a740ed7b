"""The README's examples run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pytest_moetune.cli import build_parser, main

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
    """Every `moetune` command of the README parses; those that need no GPU also run."""
    text = "\n".join(blocks("bash")).replace("\\\n", " ")
    commands = [line.split("#")[0].strip() for line in text.splitlines()]
    commands = [c for c in commands if c.startswith("moetune ")]
    assert {shlex.split(c)[1] for c in commands} == {"models", "routing", "tune", "baseline", "cache"}
    for command in commands:
        argv = shlex.split(command)[1:]
        args, unknown = build_parser().parse_known_args(argv)
        assert not unknown or getattr(args, "passes_pytest_args", False), command
        if argv[0] in ("models", "routing"):  # the others need a GPU or files of the reader's
            assert main(argv) == 0, command


def test_runner_example_registers_and_tunes(pytester: pytest.Pytester) -> None:
    conftest = next(b for b in blocks("python") if "pytest_moetune_register_runners" in b)
    test = next(b for b in blocks("python") if "test_tunes_every_bucket" in b)
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_tune_my_kernel=test)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_gating_example_runs_the_whole_life_cycle_on_the_cpu(pytester: pytest.Pytester) -> None:
    """The adopter's path: the runner's conftest, and a wiring test that gates it on the CPU through
    new, update, ok and regressed (GateWorkflow in a nested pytester)."""
    conftest = next(b for b in blocks("python") if "pytest_moetune_register_runners" in b)
    wiring = next(b for b in blocks("python") if "test_my_gate_life_cycle" in b)
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_gate_wiring=wiring)
    pytester.runpytest_subprocess("-p", "pytester", "-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_pytest_commands_parse_with_the_plugins_options(pytester: pytest.Pytester) -> None:
    """Every `pytest` command of the README's bash blocks names options that exist."""
    text = "\n".join(blocks("bash")).replace("\\\n", " ")
    commands = [line.split("#")[0].split(";")[0].split("&&")[-1].strip() for line in text.splitlines()]
    commands = [c for c in commands if " -m pytest" in c]
    assert any("--moetune-report" in c for c in commands)
    for command in commands:
        argv = shlex.split(command.split(" -m pytest", 1)[1])
        pytester.parseconfig(*argv)  # raises on an unknown option or a bad value
