"""The regression gate end to end in real pytest runs (pytester), on the CPU with the fake runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_moetune.testing import FAKE_GPU_CONFTEST, GateWorkflow

SUITE = """
import pytest

from pytest_moetune.harness import MoECase


@pytest.mark.parametrize("tokens", [64, 512])
@pytest.mark.parametrize("topology", ["dep8", "ep8"])
def test_tuned_throughput(moetune, topology, tokens):
    moetune.check(MoECase("deepseek-r1", topology, tokens, runner="fake_moe", tune_max_num_tokens=512))
"""
CASES = {f"fake_moe/deepseek-r1/bf16/{t}/balanced/T={n}" for t in ("dep8", "ep8") for n in (64, 512)}


@pytest.fixture
def flow(pytester: pytest.Pytester) -> GateWorkflow:
    return GateWorkflow(pytester, SUITE)


def baseline(flow: GateWorkflow) -> Path:
    (path,) = flow.baseline_files()
    return path


def test_life_cycle_new_update_ok_slower_faster(flow: GateWorkflow) -> None:
    flow.assert_life_cycle(
        slow_env={"MOETUNE_FAKE_SLOWDOWN": "1.10"}, fast_env={"MOETUNE_FAKE_SLOWDOWN": "0.90"}
    )
    path = baseline(flow)
    assert path.relative_to(flow.pytester.path).as_posix() == "baselines/cpu/test_gate_suite.json"
    document = json.loads(path.read_text())
    assert set(document["entries"]) == CASES
    entry = document["entries"]["fake_moe/deepseek-r1/bf16/dep8/balanced/T=512"]
    assert entry["tactic"] == {"block_m": 128, "variant": "a"} and len(entry["rounds_us"]) == 7
    ceilings = {"copy_bytes_per_s": 3.0e12, "matmul_flops_per_s": 6.9e14, "matmul_warmup_s": 0.05}
    assert entry["ceilings"] == ceilings
    assert entry["dtype"] == "bf16"
    assert document["fingerprint"]["gpu_name"] == "cpu"


def test_a_regression_message_names_the_evidence(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    result, _ = flow.run(env={"MOETUNE_FAKE_SLOWDOWN": "1.10"})
    result.stdout.fnmatch_lines(
        [
            "*moetune: fake_moe/deepseek-r1/bf16/dep8/balanced/T=512 REGRESSED",
            "*baseline * us -> now * us: 1.100x time (ceiling-normalized), raw 1.100x; noise *%, "
            "Mann-Whitney p=*(re-measured once)",
            "*diagnosis: kernel got slower (same tactic as the baseline)",
        ]
    )


def test_tuner_picking_worse_is_told_apart_from_a_slower_kernel(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    # The best tile for 128 rows per expert vanishes from the tactic space: the tuner picks 64.
    result, results = flow.run("--moetune-cache=other-cache.json", env={"MOETUNE_FAKE_BLOCK_MS": "16,32,64"})
    assert result.ret == 1
    regressed = {r["case"]: r for r in results if r["verdict"] == "regressed"}
    assert set(regressed) == {"fake_moe/deepseek-r1/bf16/dep8/balanced/T=512"}
    (only,) = regressed.values()
    assert only["tactic_changed"] and only["explanation"].startswith("tuner picked worse")


def test_noise_above_threshold_is_inconclusive_and_strict_fails_it(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    noisy = {"MOETUNE_FAKE_NOISE": "0.08"}
    result, results = flow.run(env=noisy)
    assert result.ret == 0 and {r["verdict"] for r in results} == {"inconclusive"}
    result.stdout.fnmatch_lines(["*MoetuneGateWarning*inconclusive (too noisy to judge)*"])
    assert flow.run("--moetune-strict", env=noisy)[0].ret == 1


def test_strict_fails_new_cases(flow: GateWorkflow) -> None:
    result, _ = flow.run("--moetune-strict")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*(no baseline; --moetune-strict)*"])


NO_GPU_CONFTEST = """
import torch

from pytest_moetune.testing import FakeRunner

torch.cuda.is_available = lambda: False  # as on a runner that lost its GPU, whatever this machine has


def pytest_moetune_register_runners(registry):
    registry.add(FakeRunner([16, 32, 64, 128]))
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_without_a_gpu_the_gate_says_it_judged_nothing_and_strict_fails(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    pytester.makeconftest(NO_GPU_CONFTEST)
    pytester.makepyfile(test_gate_suite=SUITE)
    args = ["--moetune", "-p", "no:cacheprovider", *workers]
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == 0
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["moetune: no case was judged: 4 gated tests skipped, no CUDA GPU*"])
    result = pytester.runpytest_subprocess(*args, "--moetune-strict")
    assert result.ret == 1
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(["*no CUDA GPU: the moetune gate times kernels on a GPU (--moetune-strict*"])


UPDATE_ALL = "--moetune-update-baselines=all"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--moetune-report=a-file/run", UPDATE_ALL],
            "--moetune-report: a-file is a file, so a-file/run.json *",
        ),
        (["--moetune-plot=gate.txt", UPDATE_ALL], "--moetune-plot: gate.txt: matplotlib writes *, not .txt"),
        (["--moetune-cache=.", UPDATE_ALL], "--moetune-cache: . is a folder, not a file"),
        (["--moetune-baselines=a-file"], "--moetune-baselines: */a-file is a file, not a folder"),
        (
            ["--moetune-baselines=a-file/b", UPDATE_ALL],
            "--moetune-baselines: */a-file is a file, so */a-file/b *",
        ),
    ],
    ids=["report", "plot", "cache", "baselines-read", "baselines-update"],
)
def test_an_output_the_run_could_not_write_is_a_usage_error_before_any_tuning(
    flow: GateWorkflow, args: list[str], message: str
) -> None:
    """Checked when the options are read, not at the end of the run (which would lose the summary)."""
    flow.run("--moetune-update-baselines")
    before = baseline(flow).read_text()
    (flow.pytester.path / "a-file").write_text("kept")
    result, _ = flow.run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert baseline(flow).read_text() == before and (flow.pytester.path / "a-file").read_text() == "kept"


def test_a_gpu_baseline_folder_the_update_could_not_write_stops_the_run_before_tuning(
    flow: GateWorkflow,
) -> None:
    """The GPU's folder under the baseline root is known only once the GPU is: a file in its place
    stops the run as a usage error then, before any case is tuned, and is left as it was."""
    root = flow.pytester.mkdir("elsewhere")
    (root / "cpu").write_text("kept")
    result, results = flow.run("--moetune-baselines=elsewhere", "--moetune-update-baselines")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and results == []
    result.stdout.fnmatch_lines(["*--moetune-baselines: *elsewhere/cpu is a file, not a folder*"])
    assert (root / "cpu").read_text() == "kept" and not flow.cache.exists()


REFUSING_WRITES_CONFTEST = (
    FAKE_GPU_CONFTEST
    + """

import pytest_moetune.baseline_update as baseline_update


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session):
    def refuse(path, entries, fingerprint):
        raise PermissionError(13, "Permission denied", str(path))

    real, baseline_update.write_baseline = baseline_update.write_baseline, refuse
    try:
        yield
    finally:
        baseline_update.write_baseline = real
"""
)


def test_a_baseline_file_that_cannot_be_written_fails_the_run_and_keeps_the_report(
    pytester: pytest.Pytester,
) -> None:
    """A write that fails at the end (a disk or permission error) is reported without a traceback,
    fails the run and leaves the stored file as it was; the report, written first, has every case."""
    GateWorkflow(pytester, SUITE).run("--moetune-update-baselines")
    flow = GateWorkflow(pytester, SUITE, conftest=REFUSING_WRITES_CONFTEST)
    before = baseline(flow).read_bytes()
    result, results = flow.run(UPDATE_ALL)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert {r["case"] for r in results} == CASES
    result.stdout.fnmatch_lines(
        ["moetune: not updated: *test_gate_suite.json could not be written (*Permission denied*); it was*"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert baseline(flow).read_bytes() == before


def test_baselines_option_is_relative_to_the_current_folder_and_the_header_says_where(
    flow: GateWorkflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = flow.pytester.mkdir("sub")
    monkeypatch.chdir(sub)
    result, _ = flow.run(str(flow.pytester.path), "--moetune-baselines=mine", "--moetune-update-baselines")
    assert result.ret == 0
    assert [p.relative_to(sub).as_posix() for p in sub.rglob("*.json")] == ["mine/cpu/test_gate_suite.json"]
    result.stdout.fnmatch_lines([f"moetune: baselines {sub / 'mine'}; tuning cache {flow.cache}"])


def test_an_interrupted_update_writes_no_baselines(flow: GateWorkflow) -> None:
    """Ctrl-C during ``--moetune-update-baselines`` leaves every baseline as it was (no mix of old and
    new entries) and says so; the report keeps the cases measured."""
    flow.run("--moetune-update-baselines")
    before = baseline(flow).read_bytes()
    flow.pytester.makepyfile(test_zz_interrupt="def test_stop():\n    raise KeyboardInterrupt\n")
    result, results = flow.run(UPDATE_ALL, env={"MOETUNE_FAKE_SLOWDOWN": "1.5"})
    assert result.ret == pytest.ExitCode.INTERRUPTED and {r["case"] for r in results} == CASES
    result.stdout.fnmatch_lines(
        ["moetune: baselines not updated: the run was interrupted (4 cases measured, in*"]
    )
    assert baseline(flow).read_bytes() == before


def test_a_home_relative_cache_or_baselines_option_is_expanded(
    flow: GateWorkflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--moetune-cache=~/...`` (the shell leaves ``~`` after ``=`` alone) is the home folder's, as
    ``$MOETUNE_CACHE`` is, not a folder named ``~``."""
    home = flow.pytester.mkdir("home")
    result, _ = flow.run(
        "--moetune-cache=~/c.json",
        "--moetune-baselines=~/b",
        "--moetune-update-baselines",
        env={"HOME": str(home)},
    )
    assert result.ret == 0
    assert (home / "c.json").is_file() and list((home / "b").rglob("*.json"))
    assert not (flow.pytester.path / "~").exists()


def test_a_life_cycle_failure_shows_the_inner_runs_stderr(pytester: pytest.Pytester) -> None:
    """An inner run's conftest that cannot import lands on stderr: the assertion message has it."""
    flow = GateWorkflow(pytester, SUITE, conftest="import not_a_module_of_yours\n")
    with pytest.raises(AssertionError, match="No module named 'not_a_module_of_yours'"):
        flow.assert_life_cycle(slow_env={})


def test_xdist_run_writes_once_with_every_entry(flow: GateWorkflow) -> None:
    result, results = flow.run("-n", "2", "--moetune-update-baselines")
    assert result.ret == 0 and {r["case"] for r in results} == CASES
    assert set(json.loads(baseline(flow).read_text())["entries"]) == CASES
    result.stdout.fnmatch_lines(["*moetune: wrote *test_gate_suite.json: 4 updated, 0 pruned, 4 entries"])


RECORD_CLAIMS = """
import os

from pytest_moetune import compile_claims

_claim, _taken = compile_claims.CompileClaims.claim, compile_claims.CompileClaims.taken


def _log(what, answer, key):
    with open(f"claims-{os.environ['PYTEST_XDIST_WORKER']}.txt", "a") as out:
        out.write(f"{what} {answer} {key}\\n")
    return answer


compile_claims.CompileClaims.claim = lambda self, key: _log("claim", _claim(self, key), key)
compile_claims.CompileClaims.taken = lambda self, key: _log("taken", _taken(self, key), key)
"""


def claim_log(folder: Path, worker: str) -> list[list[str]]:
    return [line.split(" ", 2) for line in (folder / f"claims-{worker}.txt").read_text().splitlines()]


def test_xdist_workers_split_the_compiling_and_the_controller_cleans_up(pytester: pytest.Pytester) -> None:
    """Both workers tune tactics of one space and consult the run's claims: each tactic is claimed
    (compiled first) by exactly one of them, a worker that finds a tactic taken does not claim it,
    and the claims folder is gone afterwards. (Which worker claims what depends on timing.)"""
    flow = GateWorkflow(pytester, SUITE, conftest=FAKE_GPU_CONFTEST + RECORD_CLAIMS)
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    result, results = flow.run("-n", "2", env={"TMPDIR": str(tmp)})
    assert result.ret == 0 and {r["case"] for r in results} == CASES
    logs = {worker: claim_log(pytester.path, worker) for worker in ("gw0", "gw1")}
    assert all(logs.values())  # both workers consulted the claims
    calls = [line for log in logs.values() for line in log]
    won = [key for what, answer, key in calls if what == "claim" and answer == "True"]
    assert len(won) == len(set(won)) > 1  # no key won twice
    assert {key for what, _, key in calls if what == "claim"} == set(won)  # every claim tried was won once
    assert {key for what, answer, key in calls if what == "taken" and answer == "True"} <= set(won)
    assert not list(tmp.glob("pytest-moetune-claims-*"))


def test_update_rewrites_only_what_moved(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    before = baseline(flow).read_bytes()
    result, _ = flow.run("--moetune-update-baselines")
    result.stdout.fnmatch_lines(["*test_gate_suite.json: unchanged (4 cases within noise)"])
    assert baseline(flow).read_bytes() == before
    flow.run("--moetune-update-baselines", env={"MOETUNE_FAKE_SLOWDOWN": "1.2"})
    after = json.loads(baseline(flow).read_text())["entries"]
    assert all(
        e["summary"]["median_us"] > 1.15 * json.loads(before)["entries"][c]["summary"]["median_us"]
        for c, e in after.items()
    )
    result, _ = flow.run("--moetune-update-baselines=all")
    result.stdout.fnmatch_lines(["*test_gate_suite.json: 4 updated, 0 pruned, 4 entries"])


def test_prune_drops_cases_that_no_longer_exist_but_not_on_a_filtered_run(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    path = baseline(flow)
    document = json.loads(path.read_text())
    document["entries"]["fake_moe/gone/bf16/ep1/balanced/T=1"] = next(iter(document["entries"].values()))
    path.write_text(json.dumps(document))
    result, _ = flow.run("--moetune-profile=full", "--moetune-update-baselines=prune", "-k", "ep8")
    result.stdout.fnmatch_lines(["*not pruning: the run was filtered*"])
    assert "fake_moe/gone/bf16/ep1/balanced/T=1" in json.loads(path.read_text())["entries"]
    flow.run("--moetune-profile=full", "--moetune-update-baselines=prune")
    assert set(json.loads(path.read_text())["entries"]) == CASES


PROFILE_SUITE = """
from pytest_moetune.gate import selected_profile
from pytest_moetune.harness import MoECase


def pytest_generate_tests(metafunc):
    full = selected_profile(metafunc.config) == "full"
    metafunc.parametrize("topology", ["ep8", "dep8", "dep2"] if full else ["ep8"])


def test_profiled(moetune, topology):
    moetune.check(MoECase("deepseek-r1", topology, 64, runner="fake_moe", tune_max_num_tokens=64))
"""
PROFILE_CASES = {f"fake_moe/deepseek-r1/bf16/{t}/balanced/T=64" for t in ("ep8", "dep8", "dep2")}
STALE = "fake_moe/gone/bf16/ep1/balanced/T=1"


def add_stale_entry(path: Path) -> bytes:
    """Add a case no test checks any more to the baseline file; return the file's new bytes."""
    document = json.loads(path.read_text())
    document["entries"][STALE] = next(iter(document["entries"].values()))
    path.write_text(json.dumps(document))
    return path.read_bytes()


def test_prune_is_refused_on_the_quick_profile_and_prunes_on_the_full_one(pytester: pytest.Pytester) -> None:
    """The quick profile (the default) runs a part of the full one's cases: pruning on it would drop
    the rest of the stored entries."""
    flow = GateWorkflow(pytester, PROFILE_SUITE)
    flow.run("--moetune-profile=full", "--moetune-update-baselines")
    path = baseline(flow)
    assert set(json.loads(path.read_text())["entries"]) == PROFILE_CASES
    before = add_stale_entry(path)
    result, results = flow.run("--moetune-update-baselines=prune")
    assert result.ret == 0 and len(results) == 1
    result.stdout.fnmatch_lines(
        [
            "moetune: not pruning: --moetune-profile=quick runs a part of the suite's cases*"
            "prune on --moetune-profile=full*"
        ]
    )
    assert path.read_bytes() == before
    result, _ = flow.run("--moetune-profile=full", "--moetune-update-baselines=prune")
    result.stdout.fnmatch_lines(["*test_gate_suite.json: 0 updated, 1 pruned, 3 entries"])
    assert set(json.loads(path.read_text())["entries"]) == PROFILE_CASES


SELECTION_SUITE = """
import pytest

from pytest_moetune.harness import MoECase


@pytest.mark.moetune_topology("dep8", "ep8")
@pytest.mark.moetune_distribution("balanced", "random")
def test_selected(moetune, moe_topology, dummy_distribution):
    moetune.check(
        MoECase(
            "deepseek-r1", moe_topology, 64, distribution=dummy_distribution, runner="fake_moe",
            tune_max_num_tokens=64,
        )
    )
"""


@pytest.mark.parametrize(
    "narrowing", ["--moetune-topology=ep8", "--moetune-distribution=random"], ids=["topology", "distribution"]
)
def test_prune_is_refused_when_a_topology_or_distribution_option_narrows_the_cases(
    pytester: pytest.Pytester, narrowing: str
) -> None:
    flow = GateWorkflow(pytester, SELECTION_SUITE)
    flow.run("--moetune-profile=full", "--moetune-update-baselines")
    path = baseline(flow)
    assert len(json.loads(path.read_text())["entries"]) == 4
    before = add_stale_entry(path)
    result, results = flow.run("--moetune-profile=full", "--moetune-update-baselines=prune", narrowing)
    assert result.ret == 0 and len(results) == 2
    option = narrowing.split("=")[0]
    result.stdout.fnmatch_lines(
        [f"moetune: not pruning: {narrowing} narrows the cases *; prune without {option}"]
    )
    assert path.read_bytes() == before
    result, _ = flow.run("--moetune-profile=full", "--moetune-update-baselines=prune")
    result.stdout.fnmatch_lines(["*test_gate_suite.json: 0 updated, 1 pruned, 4 entries"])


def test_an_exception_during_update_leaves_the_old_file(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    path = baseline(flow)
    before = path.read_bytes()
    flow.pytester.makeconftest(
        FAKE_GPU_CONFTEST
        + """

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    os.fsync = lambda fd: (_ for _ in ()).throw(OSError("disk full"))
"""
    )
    result, _ = flow.run("--moetune-update-baselines=all", env={"MOETUNE_FAKE_SLOWDOWN": "1.3"})
    assert result.ret != 0
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a temp file was left behind"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": 1, "fingerprint": {}, "entr', "is not readable JSON"),
        ('{"schema": 2, "fingerprint": {}, "entries": {}}', "has schema 2, newer than this pytest-moetune"),
        ('{"schema": 1, "fingerprint": {}, "entries": {"x": {"rounds_us": [1]}}}', "entry 'x' lacks"),
    ],
    ids=["truncated", "newer-schema", "bad-entry"],
)
def test_bad_baseline_files_are_errors_naming_the_file_and_left_alone(
    flow: GateWorkflow, content: str, message: str
) -> None:
    path = flow.pytester.path / "baselines" / "cpu" / "test_gate_suite.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    result, _ = flow.run("--moetune-update-baselines")
    assert result.ret == 1
    result.stdout.fnmatch_lines([f"*baseline '*test_gate_suite.json'*{message}*"])
    assert "pytest_moetune/" not in result.stdout.str(), "the plugin's traceback, not just the file's fault"
    assert path.read_text() == content


UNWRITABLE_CACHE = """

import pytest_moetune.cache


def _refuse(path, text):
    raise PermissionError(13, "Permission denied", str(path.parent / ".tuning-cache.json.tmp"))


pytest_moetune.cache.atomic_write_text = _refuse
"""


def test_a_tuning_cache_that_cannot_be_written_fails_its_tests_without_a_traceback(
    pytester: pytest.Pytester,
) -> None:
    flow = GateWorkflow(pytester, SUITE, conftest=FAKE_GPU_CONFTEST + UNWRITABLE_CACHE)
    result, results = flow.run()
    assert result.ret == 1 and results == []
    result.assert_outcomes(failed=4)
    why = f"Permission denied ({flow.cache.parent}/.tuning-cache.json.tmp)"
    result.stdout.fnmatch_lines([f"*could not write the tuning cache {flow.cache}: {why}"])
    assert "pytest_moetune/" not in result.stdout.str(), "the plugin's traceback, not just the file's fault"
    assert not flow.cache.exists()


def test_a_baseline_of_another_gpu_is_never_compared(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    (flow.pytester.path / "baselines" / "cpu").rename(
        flow.pytester.path / "baselines" / "nvidia-h100-80gb-hbm3"
    )
    result, results = flow.run(env={"MOETUNE_FAKE_SLOWDOWN": "2.0"})
    assert result.ret == 0 and {r["verdict"] for r in results} == {"new"}
    assert all(
        "no baseline for this GPU (cpu); baselines exist for: nvidia-h100-80gb-hbm3" in r["notes"]
        for r in results
    )


CARD_FROM_ENV = """

@pytest.fixture(scope="session")
def moetune_card():
    return os.environ.get("MOETUNE_TEST_CARD", "GPU-aaaa")
"""


def test_a_baseline_of_another_card_is_compared_with_a_note(pytester: pytest.Pytester) -> None:
    """Entries record the card (its UUID); a baseline from another card of the same model is still
    compared, with a note, and a low-churn update rewrites it; one from before cards were recorded
    gets no note."""
    flow = GateWorkflow(pytester, SUITE, conftest=FAKE_GPU_CONFTEST + CARD_FROM_ENV)
    flow.run("--moetune-update-baselines")
    entries = json.loads(baseline(flow).read_text())["entries"]
    assert {e["card"] for e in entries.values()} == {"GPU-aaaa"}
    note = "baseline measured on another card (GPU-aaaa; this one is GPU-bbbb)"
    result, results = flow.run(env={"MOETUNE_TEST_CARD": "GPU-bbbb"})
    assert result.ret == 0 and {r["verdict"] for r in results} == {"ok"}
    assert all(any(n.startswith(note) for n in r["notes"]) for r in results), results
    assert {r["baseline_card"] for r in results} == {"GPU-aaaa"}
    result.stdout.fnmatch_lines(["4 of 4 cases were judged against baselines from another card (GPU-aaaa)*"])
    markdown = flow.report.with_name(flow.report.name + ".md").read_text()
    assert "geometric-mean ratio over 4 compared cases" in markdown and "from another card" in markdown
    result, results = flow.run()  # the same card
    assert not any("another card" in n for r in results for n in r["notes"])
    assert "another card" not in result.stdout.str()
    # a low-churn update on another card rewrites every entry measured elsewhere, in noise or not
    flow.run("--moetune-update-baselines", env={"MOETUNE_TEST_CARD": "GPU-bbbb"})
    entries = json.loads(baseline(flow).read_text())["entries"]
    assert {e["card"] for e in entries.values()} == {"GPU-bbbb"}
    _, results = flow.run(env={"MOETUNE_TEST_CARD": "GPU-bbbb"})
    assert not any(r["baseline_card"] for r in results)
    _, results = flow.run(env={"MOETUNE_TEST_CARD": "unknown"})  # torch reported no UUID: no claim
    assert not any(r["baseline_card"] for r in results)
    document = json.loads(baseline(flow).read_text())
    for entry in document["entries"].values():
        del entry["card"]
    baseline(flow).write_text(json.dumps(document))
    _, results = flow.run(env={"MOETUNE_TEST_CARD": "GPU-bbbb"})
    assert {r["verdict"] for r in results} == {"ok"}
    assert not any("another card" in n for r in results for n in r["notes"])


def test_changed_kernel_is_compared_and_flagged(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    path = baseline(flow)
    document = json.loads(path.read_text())
    for entry in document["entries"].values():
        entry["source_hash"] = "older-kernel"
    path.write_text(json.dumps(document))
    result, results = flow.run()
    assert result.ret == 0 and {r["verdict"] for r in results} == {"changed-kernel"}


def test_terminal_summary_and_reports(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    result, _ = flow.run()
    result.stdout.fnmatch_lines(
        [
            "*= moetune gate =*",
            "case*baseline us*now us*ratio*raw*verdict*tactic changed*roofline*vs peer",
            "fake_moe/deepseek-r1/bf16/dep8/balanced/T=512 * ok * no * -",
            "geometric-mean ratio over 4 compared cases: 1.000x time; 4 ok",
        ]
    )
    markdown = flow.report.with_suffix(".md").read_text()
    assert (
        markdown.startswith("## moetune gate") and "`fake_moe/deepseek-r1/bf16/ep8/balanced/T=64`" in markdown
    )


@pytest.mark.parametrize(
    ("given", "json_name", "md_name"),
    [
        ("report", "report.json", "report.md"),
        ("report.json", "report.json", "report.md"),
        ("report.md", "report.json", "report.md"),
        ("slow0.05-1", "slow0.05-1.json", "slow0.05-1.md"),  # a dot in the name is not a suffix
    ],
)
def test_report_paths_keep_dotted_names(given: str, json_name: str, md_name: str) -> None:
    from pytest_moetune.report import report_paths

    json_path, md_path = report_paths(Path("out") / given)
    assert (json_path, md_path) == (Path("out") / json_name, Path("out") / md_name)


def test_gate_tests_skip_without_moetune(flow: GateWorkflow) -> None:
    result = flow.pytester.runpytest("-rs")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines(["*runs only with `pytest --moetune`*"])


@pytest.mark.parametrize("value", ["0", "1.5", "five"])
def test_bad_threshold_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest(f"--moetune-threshold={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(
        ("--moetune-threshold" in line and repr(value) in line) or value in line for line in result.errlines
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--moetune-rounds", "x", "the gate needs a whole number of rounds, at least 5; got 'x'"),
        ("--moetune-rounds", "3", "the gate needs a whole number of rounds, at least 5; got '3'"),
        ("--moetune-threshold", "abc", "threshold must be a fraction in (0, 1), e.g. 0.05 for 5%; got 'abc'"),
        ("--moetune-update-baselines", "suites/perf", "a path right after the option is read as its mode"),
    ],
)
def test_bad_option_values_say_what_is_wanted(
    pytester: pytest.Pytester, option: str, value: str, message: str
) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest(f"{option}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("moetune_threshold()", "takes one fraction, e.g. moetune_threshold(0.1), got ()"),
        ("moetune_threshold(0.1, 0.2)", "takes one fraction, e.g. moetune_threshold(0.1), got (0.1, 0.2)"),
        ("moetune_threshold('lots')", "threshold must be a fraction in (0, 1), e.g. 0.05 for 5%; got 'lots'"),
    ],
    ids=["no-value", "two-values", "not-a-number"],
)
def test_a_bad_threshold_marker_fails_its_tests_naming_the_marker(
    flow: GateWorkflow, marker: str, message: str
) -> None:
    marked = f"@pytest.mark.{marker}\ndef test_tuned_throughput"
    flow.pytester.makepyfile(test_gate_suite=SUITE.replace("def test_tuned_throughput", marked))
    result, _ = flow.run()
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([f"*@pytest.mark.moetune_threshold: {message}"])
    assert "During handling" not in result.stdout.str()


@pytest.mark.parametrize(
    "args",
    [["--moetune-update-baselines"], ["--moetune-strict", "--moetune-report=r"]],
    ids=["update", "two"],
)
def test_gate_options_without_moetune_warn_that_they_do_nothing(
    pytester: pytest.Pytester, args: list[str]
) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == 0
    named = ", ".join(a.split("=")[0] for a in args)
    result.stdout.fnmatch_lines([f"*PytestConfigWarning: {named} act only on the moetune gate*do nothing"])
    assert pytester.runpytest("--moetune-peer", "-p", "no:warnings").ret == 0  # a warning, not an error


def test_threshold_marker_loosens_one_test(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    flow.pytester.makepyfile(
        test_gate_suite=SUITE.replace(
            "def test_tuned_throughput", "@pytest.mark.moetune_threshold(0.5)\ndef test_tuned_throughput"
        )
    )
    result, results = flow.run(env={"MOETUNE_FAKE_SLOWDOWN": "1.2"})
    assert result.ret == 0 and {r["verdict"] for r in results} == {"ok"}


def test_plot_draws_baseline_and_now(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    plot = flow.pytester.path / "plots" / "gate.png"
    result, _ = flow.run(f"--moetune-plot={plot}", env={"MOETUNE_FAKE_SLOWDOWN": "1.5"})
    result.stdout.fnmatch_lines([f"moetune: plot written to {plot}"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_rounds_land_in_pytest_benchmark(flow: GateWorkflow) -> None:
    saved = flow.pytester.path / "bench.json"
    result, results = flow.run(f"--benchmark-json={saved}")
    assert result.ret == 0
    benchmarks = {b["extra_info"]["moetune_case"]: b for b in json.loads(saved.read_text())["benchmarks"]}
    assert set(benchmarks) == CASES
    ours = {r["case"]: r for r in results}
    bench = benchmarks["fake_moe/deepseek-r1/bf16/dep8/balanced/T=512"]
    assert bench["group"] == "moetune" and bench["extra_info"]["tactic"] == {"block_m": 128, "variant": "a"}
    assert bench["extra_info"]["topology"] == {
        "name": "dep8",
        "ep_size": 8,
        "use_dp": True,
        "local_num_experts": 32,
    }
    expected = [r * 1e-6 for r in ours["fake_moe/deepseek-r1/bf16/dep8/balanced/T=512"]["rounds_us"]]
    assert bench["stats"]["data"] == pytest.approx(expected)


def test_profile_option_ini_and_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_profile(moetune_profile):\n    print('\\nPROFILE', moetune_profile)\n")
    assert "PROFILE quick" in pytester.runpytest("-s").stdout.str()
    assert "PROFILE full" in pytester.runpytest("-s", "--moetune-profile=full").stdout.str()
    pytester.makeini("[pytest]\nmoetune_profile = full\n")
    assert "PROFILE full" in pytester.runpytest("-s").stdout.str()
    result = pytester.runpytest("--moetune-profile=medium")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "invalid choice: 'medium'" in result.stderr.str()
    pytester.makeini("[pytest]\nmoetune_profile = huge\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "moetune_profile = 'huge'" in result.stderr.str()


def test_peer_and_roofline_columns(flow: GateWorkflow) -> None:
    flow.run("--moetune-update-baselines")
    result, results = flow.run("--moetune-peer")
    assert result.ret == 0
    for r in results:
        assert r["speedup_vs_peer"] == pytest.approx(r["peer_median_us"] / r["median_us"])
        assert r["speedup_vs_peer"] >= 1.4  # the fake peer costs 1.5x the best tile
        assert r["fraction_of_roofline"] > 0
    result.stdout.fnmatch_lines(["case*verdict*tactic changed*roofline*vs peer", "fake_moe/*ok*no*%*x"])
    _, without = flow.run()
    assert all(r["peer_median_us"] is None for r in without)


def test_matmul_ceilings_of_another_warm_up_leave_matmul_bound_times_raw(flow: GateWorkflow) -> None:
    """Baselines whose matmul rate was timed after another warm-up (here: half this session's rate, and
    a copy rate that makes every case matmul-bound) do not normalize this session's times: the cases
    are judged on raw times, with a note, and a plain update rewrites them. The same rates from the
    same warm-up do normalize, and then the halved rate reads as a 2x regression."""
    flow.run("--moetune-update-baselines")
    document = json.loads(baseline(flow).read_text())

    def rewrite(warmup_s: float) -> None:
        for entry in document["entries"].values():
            rates = {"copy_bytes_per_s": 3.0e15, "matmul_flops_per_s": 3.45e14, "matmul_warmup_s": warmup_s}
            entry["ceilings"].update(rates)
        baseline(flow).write_text(json.dumps(document))

    rewrite(2.0)
    result, results = flow.run()
    assert result.ret == 0 and {r["verdict"] for r in results} == {"ok"}
    note = "matmul ceilings timed after different warm-ups (2 s in the baseline, 0.05 s now)"
    assert all(any(n.startswith(note) for n in r["notes"]) for r in results), results
    assert all(r["raw_compared"] for r in results)
    # a low-churn update rewrites those entries, in noise or not, so they are normalized from then on
    flow.run("--moetune-update-baselines")
    rewritten = json.loads(baseline(flow).read_text())["entries"]
    assert {e["ceilings"]["matmul_warmup_s"] for e in rewritten.values()} == {0.05}
    _, results = flow.run()
    assert not any("warm-ups" in n for r in results for n in r["notes"])
    rewrite(0.05)
    result, results = flow.run()
    assert result.ret == 1 and {r["verdict"] for r in results} == {"regressed"}
    assert not any("warm-ups" in n for r in results for n in r["notes"])
