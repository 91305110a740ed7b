"""The plugin in real pytest runs (``pytester``): options, ini keys, fixtures, markers, header."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pytest_moetune.distributions import ENV_VAR

SHOW_TOPOLOGY = """
    def test_show(moe_topology):
        print("\\nTOPOLOGY", moe_topology.name, type(moe_topology).__name__)
"""
SHOW_DISTRIBUTION = """
    def test_show(dummy_distribution):
        print("\\nDISTRIBUTION", dummy_distribution.name)
"""


def printed(result: pytest.RunResult, tag: str) -> list[str]:
    return sorted(line.split(tag, 1)[1].strip() for line in result.outlines if line.startswith(tag))


@pytest.fixture(autouse=True)
def _no_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_moetune_tests_skip_without_the_flag_and_say_how_to_enable(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.moetune
        def test_gpu():
            pass

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*runs only with `pytest --moetune`*"])
    import torch

    gpu = torch.cuda.is_available()  # without one, --moetune skips it for that (the next test)
    pytester.runpytest("--moetune").assert_outcomes(passed=2 if gpu else 1, skipped=0 if gpu else 1)


MARKED_WITH_AND_WITHOUT_THE_FIXTURE = """
import pytest


@pytest.mark.moetune
def test_marked_only():
    print("RAN marked_only")


def test_gated(moetune):
    print("RAN gated")


def test_plain():
    print("RAN plain")
"""
GPU_CONFTEST = """
import os

import torch


def pytest_collection_finish(session):  # after the report header, which probes the real device
    gpu = os.environ["FAKE_GPU"] == "1"
    torch.cuda.is_available = lambda: gpu
"""


@pytest.mark.parametrize("strict", [False, True], ids=["skip", "strict"])
def test_a_marked_test_without_the_gate_fixture_needs_a_gpu_like_the_gated_ones(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, strict: bool
) -> None:
    """``@pytest.mark.moetune`` alone means the test needs the GPU gate: under ``--moetune`` on a
    machine without a GPU it is skipped (errors under ``--moetune-strict``) with the reason the tests
    that use the ``moetune`` fixture get, not run."""
    pytester.makeconftest(GPU_CONFTEST)
    pytester.makepyfile(MARKED_WITH_AND_WITHOUT_THE_FIXTURE)
    monkeypatch.setenv("FAKE_GPU", "0")
    args = ["--moetune", "-rsE", "-s", "-p", "no:cacheprovider"] + (["--moetune-strict"] if strict else [])
    result = pytester.runpytest_subprocess(*args)
    ran = result.stdout.str()
    assert "RAN plain" in ran and "RAN marked_only" not in ran and "RAN gated" not in ran
    if strict:
        result.assert_outcomes(passed=1, errors=2)
        result.stdout.fnmatch_lines(
            [
                "*ERROR at setup of test_marked_only*",
                "no CUDA GPU: the moetune gate runs tests marked moetune on a GPU (--moetune-strict*",
            ]
        )
    else:
        result.assert_outcomes(passed=1, skipped=2)
        result.stdout.fnmatch_lines(
            [
                "moetune: no case was judged: 2 gated tests skipped, no CUDA GPU*",
                "SKIPPED [[]1[]] test_*.py:*: no CUDA GPU: the moetune gate runs tests marked moetune "
                "on a GPU",
            ]
        )
    monkeypatch.setenv("FAKE_GPU", "1")
    pytester.makepyfile(MARKED_WITH_AND_WITHOUT_THE_FIXTURE.split("def test_gated")[0])
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)  # with a GPU it runs
    assert "RAN marked_only" in result.stdout.str()


def test_default_topology_is_ep1(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SHOW_TOPOLOGY)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    assert printed(result, "TOPOLOGY") == ["ep1 TopologySpec"]


def test_option_parametrizes_the_topology_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SHOW_TOPOLOGY)
    result = pytester.runpytest("-s", "--moetune-topology", "dep2, ep8")
    result.assert_outcomes(passed=2)
    assert printed(result, "TOPOLOGY") == ["dep2 TopologySpec", "ep8 TopologySpec"]
    collected = pytester.runpytest("--collect-only", "-q", "--moetune-topology=dep2,ep8")
    collected.stdout.fnmatch_lines(["*::test_show[[]dep2[]]", "*::test_show[[]ep8[]]"])


def test_ini_gives_the_default_and_the_option_overrides_it(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmoetune_topology = dep8,ep4\nmoetune_distribution = random\n")
    pytester.makepyfile(SHOW_TOPOLOGY + SHOW_DISTRIBUTION.replace("test_show", "test_dist"))
    result = pytester.runpytest("-s")
    assert printed(result, "TOPOLOGY") == ["dep8 TopologySpec", "ep4 TopologySpec"]
    assert printed(result, "DISTRIBUTION") == ["random"]
    result = pytester.runpytest("-s", "--moetune-topology=ep2", "--moetune-distribution=zipf:1.5")
    assert printed(result, "TOPOLOGY") == ["ep2 TopologySpec"]
    assert printed(result, "DISTRIBUTION") == ["zipf:1.5"]


def test_marker_parametrizes_and_an_explicit_selection_narrows_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.moetune_topology("dep2", "ep8")
        def test_show(moe_topology):
            print("\\nTOPOLOGY", moe_topology.name)
        """
    )
    assert printed(pytester.runpytest("-s"), "TOPOLOGY") == ["dep2", "ep8"]
    assert printed(pytester.runpytest("-s", "--moetune-topology=ep8,dep16"), "TOPOLOGY") == ["ep8"]
    result = pytester.runpytest("-rs", "--moetune-topology=ep1")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*runs under dep2,ep8, none of which --moetune-topology=ep1 selects*"])


def test_distribution_default_comes_from_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(SHOW_DISTRIBUTION)
    assert printed(pytester.runpytest("-s"), "DISTRIBUTION") == ["balanced"]
    monkeypatch.setenv(ENV_VAR, "zipf:0.8")
    assert printed(pytester.runpytest("-s"), "DISTRIBUTION") == ["zipf:0.8"]
    assert printed(pytester.runpytest("-s", "--moetune-distribution=random"), "DISTRIBUTION") == ["random"]


def test_bad_env_distribution_fails_only_the_tests_that_use_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "hot")
    pytester.makepyfile(test_uses=SHOW_DISTRIBUTION, test_other="def test_other():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*$MOETUNE_DUMMY_DISTRIBUTION: unknown dummy routing distribution 'hot'*"])


def test_distribution_marker_with_replay(pytester: pytest.Pytester) -> None:
    import numpy as np

    np.save(pytester.path / "trace.npy", np.array([[0, 1], [2, 3]], dtype=np.int32))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.moetune_distribution("balanced", "zipf:1.2", "replay:trace.npy")
        def test_show(dummy_distribution):
            print("\\nDISTRIBUTION", dummy_distribution.kind)
        """
    )
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=3)
    assert printed(result, "DISTRIBUTION") == ["balanced", "replay", "zipf"]
    collected = pytester.runpytest("--collect-only", "-q")
    collected.stdout.fnmatch_lines(["*::test_show[[]replay-trace[]]"])


@pytest.mark.parametrize(
    ("args", "named"),
    [
        pytest.param(["--moetune-topology=tp4"], "unknown topology short name 'tp4'", id="topology"),
        pytest.param(["--moetune-topology=dep2,ep0"], "'ep0'", id="topology-zero"),
        pytest.param(["--moetune-topology=,"], "empty topology list", id="topology-empty"),
        pytest.param(["--moetune-distribution=skewed"], "'skewed'", id="distribution"),
        pytest.param(["--moetune-distribution=zipf:-1"], "bad zipf alpha '-1'", id="alpha"),
        pytest.param(["--moetune-distribution=replay:nowhere.npy"], "'nowhere.npy'", id="replay"),
    ],
)
def test_bad_option_values_are_usage_errors_naming_the_value(
    pytester: pytest.Pytester, args: list[str], named: str
) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    option = args[0].split("=")[0]
    assert any(option in line and named in line for line in result.errlines), result.errlines


def test_bad_ini_value_is_a_usage_error_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmoetune_topology = dep2,mp8\n")
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini option moetune_topology = 'dep2,mp8'*unknown topology short name 'mp8'*"]
    )


@pytest.mark.parametrize(
    ("marker", "named"),
    [
        ("moetune_topology('dep3x')", "unknown topology short name 'dep3x'"),
        ("moetune_topology()", "takes one or more names"),
        ("moetune_distribution('zipf:abc')", "bad zipf alpha 'abc'"),
    ],
)
def test_bad_marker_values_fail_collection_naming_them(
    pytester: pytest.Pytester, marker: str, named: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_show(moe_topology, dummy_distribution):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{named}*"])


def test_markers_are_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.moetune
        @pytest.mark.moetune_topology("dep2")
        @pytest.mark.moetune_distribution("random")
        def test_ok(moe_topology, dummy_distribution):
            pass
        """
    )
    import torch

    gpu = torch.cuda.is_available()  # without one, --moetune skips the marked test (at setup)
    pytester.runpytest("--strict-markers", "--moetune").assert_outcomes(passed=int(gpu), skipped=int(not gpu))


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(["moe_topology*", "*EP/DP layout under test*", "dummy_distribution*"])


def test_report_header_without_moetune_does_not_probe_the_gpu(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest("--moetune-topology=dep2")
    result.stdout.fnmatch_lines(
        [
            "moetune: pytest-moetune *, torch *, triton *; device: not probed (--moetune is off)",
            "moetune: --moetune off*; selection: --moetune-topology=dep2 --moetune-distribution=balanced",
        ]
    )


def test_report_header_with_moetune_names_the_device(pytester: pytest.Pytester) -> None:
    import torch

    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest("--moetune")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    result.stdout.fnmatch_lines([f"moetune: *; device: {device}*", "moetune: --moetune on; selection: *"])


def test_the_device_line_names_the_card(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import torch

    from pytest_moetune import plugin

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "NVIDIA H200")
    # the module in sys.modules, which _device_line imports from: an earlier pytester run may have
    # left the package's attribute pointing at a copy that sys.modules no longer holds
    fingerprint = importlib.import_module("pytest_moetune.fingerprint")
    monkeypatch.setattr(fingerprint, "card_id", lambda: "GPU-1234")
    monkeypatch.setattr(fingerprint, "card_of", lambda index: f"GPU-{index}")
    assert plugin._device_line() == (
        "NVIDIA H200 x2 (card GPU-1234; -n 2 gates on all 2, one xdist worker per GPU)"
    )
    assert plugin._device_line(workers=2) == (
        "NVIDIA H200 x2 (cards GPU-0, GPU-1; 2 xdist workers, one GPU each: results name theirs)"
    )
    assert plugin._device_line(workers=1) == (
        "NVIDIA H200 x2 (cards GPU-0; 1 xdist worker, one GPU each: results name theirs)"
    )
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert plugin._device_line(workers=1) == "NVIDIA H200 (card GPU-1234)"


def run_python_without_torch(code: str, cwd: object) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which ``import torch`` / ``import triton`` fail."""
    blocker = "import sys; sys.modules['torch'] = None; sys.modules['triton'] = None\n"
    return subprocess.run(
        [sys.executable, "-c", blocker + textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_and_help_work_without_torch(pytester: pytest.Pytester) -> None:
    done = run_python_without_torch(
        """
        import pytest_moetune
        from pytest_moetune import Topology, parse_distribution
        assert Topology.parse("dep8", 256, 8).local_num_experts == 32
        raise SystemExit(pytest_moetune_main := __import__("pytest").main(["--help"]))
        """,
        pytester.path,
    )
    assert done.returncode == 0, done.stderr
    assert "--moetune-topology=NAMES" in done.stdout and "--moetune-distribution=SPECS" in done.stdout


def test_plugin_imports_nothing_heavy_and_changes_no_outcome(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_no_heavy_imports():
            assert "torch" not in sys.modules and "triton" not in sys.modules
            assert "pytest_moetune.plugin" in sys.modules

        def test_fails():
            assert False
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)


# --- runner registration --------------------------------------------------------------------

REGISTERING_CONFTEST = """
    from pathlib import Path

    def pytest_moetune_register_runners(registry, config):
        Path("hook-called").write_text("yes")
        from pytest_moetune.testing import FakeRunner
        registry.add(FakeRunner(source_hash="from-conftest"))
"""


def test_conftest_hook_registers_runners_lazily(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(REGISTERING_CONFTEST)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.runpytest("test_plain.py").assert_outcomes(passed=1)
    assert not (pytester.path / "hook-called").exists(), "the hook ran in a run that never tunes"
    pytester.makepyfile(
        test_uses="""
        def test_runner(moetune_runners):
            runner = moetune_runners.get("fake_moe")
            assert runner.source_hash == "from-conftest"
            assert moetune_runners.names() == ["fake_moe"]
        """
    )
    pytester.runpytest("test_uses.py").assert_outcomes(passed=1)
    assert (pytester.path / "hook-called").exists()


def test_two_runners_with_one_name_are_an_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_moetune.testing import FakeRunner

        def pytest_moetune_register_runners(registry):
            registry.add(FakeRunner())
            registry.add(FakeRunner())
        """
    )
    pytester.makepyfile("def test_runner(moetune_runners):\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*register: a runner named 'fake_moe' is already registered, by register;*"])


def test_a_runner_registered_by_entry_point_and_hook_names_both(pytester: pytest.Pytester) -> None:
    """The adopter who installs a package with the entry point and keeps the conftest hook is told
    where the first registration came from (a subprocess: the conftest patches the entry points)."""
    pytester.makeconftest(
        """
        from pytest_moetune import runner
        from pytest_moetune.testing import FakeRunner

        ORIGIN = "entry point 'fake' (mypkg:R)"
        runner.entry_point_runners_with_origin = lambda: iter([(ORIGIN, FakeRunner())])

        def pytest_moetune_register_runners(registry):
            registry.add(FakeRunner())
        """
    )
    pytester.makepyfile("def test_runner(moetune_runners):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*register: a runner named 'fake_moe' is already registered, by entry point 'fake' (mypkg:R);"
            " register each runner once*not both)"
        ]
    )


def test_unknown_runner_name_lists_the_registered_ones(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(REGISTERING_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        def test_runner(moetune_runners):
            with pytest.raises(ValueError, match="no MoE runner named 'mine'; registered: fake_moe .a case"):
                moetune_runners.get("mine")
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_distributed_tests_run_only_under_a_launcher(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    pytester.makepyfile("import pytest\n\n@pytest.mark.moetune_distributed\ndef test_rank():\n    pass\n")
    result = pytester.runpytest("-rs", "--strict-markers")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*launch it on every rank, e.g. `torchrun --nproc-per-node 2 -m pytest*"])
    monkeypatch.setenv("WORLD_SIZE", "1")
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_fidelity_studies_run_only_when_asked_for(pytester: pytest.Pytester) -> None:
    """A fidelity study takes minutes per case: neither profile runs it, ``--moetune-fidelity`` does."""
    pytester.makepyfile("import pytest\n\n@pytest.mark.moetune_fidelity\ndef test_study():\n    pass\n")
    result = pytester.runpytest("-rs", "--strict-markers", "--moetune-profile", "full")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*moetune_fidelity study (minutes per case): runs with --moetune-fidelity*"])
    pytester.runpytest("--strict-markers", "--moetune-fidelity").assert_outcomes(passed=1)
