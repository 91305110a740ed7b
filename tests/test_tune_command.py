"""``moetune tune`` on CPU: the fake runner and timer stand in for the GPU."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_moetune import tune_command
from pytest_moetune.cli import main
from pytest_moetune.export import read_vllm_config
from pytest_moetune.models import get_model
from pytest_moetune.problem import TuningProblem
from pytest_moetune.runner import MoERunner
from pytest_moetune.testing import FakeRunner, FakeTimer
from pytest_moetune.topology import Topology
from pytest_moetune.tuner import Tuner

FAKE = "pytest_moetune.testing:FakeRunner"


@pytest.fixture(autouse=True)
def cpu_tuner(monkeypatch: pytest.MonkeyPatch) -> list[Tuner]:
    """``moetune tune`` builds a CPU tuner from its arguments; the list collects the tuners built."""
    built: list[Tuner] = []

    def build(args: argparse.Namespace, runner: MoERunner) -> Tuner:
        assert isinstance(runner, FakeRunner)
        options = tune_command.tuner_options(args) | {"progress": False}
        tuner = Tuner(runner, timer=FakeTimer(runner), device="cpu", **options)
        built.append(tuner)
        return tuner

    monkeypatch.setattr(tune_command, "build_tuner", build)
    return built


def test_routing_draws_reach_the_tuner(tmp_path: Path, cpu_tuner: list[Tuner]) -> None:
    argv = ["tune", "--model", "deepseek-r1", "--topology", "dep8", "--distribution", "random"]
    argv += ["--tune-max-num-tokens", "64", "--runner", FAKE, "--routing-draws", "3", "--no-cache"]
    assert main(argv) == 0
    (tuner,) = cpu_tuner
    assert tuner.routing_draws == 3


def test_dispatch_routing_tunes_on_the_rows_the_all_to_all_delivers(
    tmp_path: Path, cpu_tuner: list[Tuner]
) -> None:
    argv = ["tune", "--model", "deepseek-r1", "--topology", "dep8", "--distribution", "zipf:1.2"]
    argv += ["--tune-max-num-tokens", "16", "--runner", FAKE, "--routing", "dispatch", "--no-cache"]
    assert main(argv) == 0
    (tuner,) = cpu_tuner
    problem = TuningProblem(get_model("deepseek-r1"), Topology.parse("dep8", 256, 8), "bf16", "zipf:1.2", 16)
    assert tuner.key(problem, 16).routing == "dispatch_topk"
    (inputs,) = tuner.input_sets_for(problem.at(16), problem)
    assert inputs["num_tokens"] > 16  # the rows of all 8 ranks that reach the hot shard


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--routing", "alltoall"], "argument --routing: invalid choice: 'alltoall'"),
        (["--routing-draws", "0"], "argument --routing-draws: must be >= 1, got 0"),
    ],
)
def test_bad_routing_option_is_a_usage_error(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--model", "deepseek-r1", "--topology", "dep8", "--runner", FAKE, *option])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_tune_prints_every_bucket_and_exports_vllm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tune", "--model", "qwen3-235b-a22b", "--topology", "dep2", "--dtype", "bf16"]
    argv += ["--tune-max-num-tokens", "512", "--runner", FAKE, "--export", "vllm", str(tmp_path)]
    argv += ["--json", str(tmp_path / "result.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    # --export tunes with the runner's for_export("vllm"): the fake keeps variant "b" only, which
    # the full space never picks (it is 2% slower)
    assert out[0] == "fake_moe-vllm qwen3-235b-a22b dep2 bf16 balanced max=512 rank 0"
    assert [int(line.split()[0]) for line in out[2:-1]] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    rows = json.loads((tmp_path / "result.json").read_text())
    assert rows[-1]["rows_per_local_expert"] == 64.0 and rows[-1]["tactic"] == {"block_m": 64, "variant": "b"}
    exported = read_vllm_config(tmp_path / "E=64,N=1536,device_name=cpu.json")
    assert exported[512]["BLOCK_SIZE_M"] == 64 and sorted(exported) == [r["bucket"] for r in rows]
    assert {config["GROUP_SIZE_M"] for config in exported.values()} == {8}  # variant b's


def test_tune_without_export_keeps_the_full_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["tune", "--model", "qwen3-235b-a22b", "--topology", "dep2", "--tune-max-num-tokens", "512"]
    argv += ["--runner", FAKE, "--json", str(tmp_path / "result.json")]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("fake_moe qwen3-235b-a22b")
    rows = json.loads((tmp_path / "result.json").read_text())
    assert {row["tactic"]["variant"] for row in rows} == {"a"}


def test_unsupported_dtype_is_an_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tune", "--experts", "64", "--top-k", "4", "--hidden", "256", "--intermediate", "128"]
    argv += ["--topology", "ep4", "--dtype", "fp8", "--runner", FAKE, "--export", "vllm", str(tmp_path)]
    assert main(argv) == 2  # the fake runner has no fp8: the error says so, nothing is written
    assert "does not support custom ep4 fp8_w8a8" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "extra"),
    [
        ("--json", lambda f: ["--json", str(f / "out.json"), "--no-cache"]),  # a file as its folder
        ("--export", lambda f: ["--export", "vllm", str(f), "--no-cache"]),  # a file as the folder
        ("--cache", lambda f: ["--cache", str(f.parent)]),  # a folder as the cache file
    ],
)
def test_an_output_it_could_not_write_is_a_usage_error_before_any_tuning(
    tmp_path: Path,
    option: str,
    extra: Callable[[Path], list[str]],
    cpu_tuner: list[Tuner],
    capsys: pytest.CaptureFixture[str],
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("kept")
    argv = ["tune", "--model", "qwen3-30b-a3b", "--topology", "ep2", "--runner", FAKE, *extra(a_file)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and cpu_tuner == []  # nothing tuned
    assert f"{option}: {tmp_path}" in capsys.readouterr().err
    assert a_file.read_text() == "kept"


def test_runner_comes_from_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.moetune]\nrunner = "{FAKE}"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--model", "mixtral-8x7b", "--topology", "ep1", "--tune-max-num-tokens", "4"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runner", "nosuchmodule:Runner"], "cannot import 'nosuchmodule'"),
        (["--runner", "pytest_moetune.testing:Nope"], "has no attribute 'Nope'"),
        (["--runner", "pytest_moetune.testing"], "must be written MODULE:ATTR"),
        (["--runner", "pytest_moetune.testing:FakeTimer"], "FakeTimer"),
    ],
)
def test_bad_runner_names_it(
    extra: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--model", "mixtral-8x7b", "--topology", "ep1", *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dtype", "int4"], "unknown dtype 'int4'"),
        (["--tune-max-num-tokens", "0"], "must be >= 1, got 0"),
        (["--export", "sglang", "out"], "--export format 'sglang'"),
        (["--topology", "dep3"], "not divisible by ep_size=3"),
    ],
)
def test_bad_arguments_are_usage_errors(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tune", "--model", "qwen3-30b-a3b", "--topology", "ep2", "--runner", FAKE, *extra]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (["--experts", "64", "--top-k", "6"], "(missing --hidden, --intermediate)"),
        (["--experts", "64", "--top-k", "6", "--hidden", "256"], "(missing --intermediate)"),
        (["--model", "deepseek-r1", "--hidden", "512"], "not both (got --hidden)"),
    ],
)
def test_a_layer_shape_left_out_or_given_twice_is_a_usage_error_before_any_tuning(
    shape: list[str], message: str, tmp_path: Path, cpu_tuner: list[Tuner], capsys: pytest.CaptureFixture[str]
) -> None:
    """A custom shape without H and I would tune (and export) a layer of H = I = 1; a shape option
    beside --model would be ignored."""
    argv = ["tune", *shape, "--topology", "ep8", "--runner", FAKE, "--export", "vllm", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--no-cache", "--tune-max-num-tokens", "4"])
    assert exit_info.value.code == 2 and cpu_tuner == []
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--cache", "tuning.json"], "--cache and --no-cache contradict each other"),
        (["--force"], "--force and --no-cache contradict each other"),
    ],
    ids=["cache", "force"],
)
def test_no_cache_beside_cache_or_force_is_a_usage_error_before_any_tuning(
    options: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cpu_tuner: list[Tuner],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--no-cache`` tunes in memory: a ``--cache`` file beside it would be silently ignored, and
    ``--force`` would mean nothing."""
    monkeypatch.chdir(tmp_path)
    argv = ["tune", "--model", "qwen3-30b-a3b", "--topology", "ep2", "--runner", FAKE, "--no-cache"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *options, "--tune-max-num-tokens", "2"])
    assert exit_info.value.code == 2 and cpu_tuner == []  # nothing tuned
    assert f"moetune: error: {message}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


class NoExportRunner(FakeRunner):
    """A runner that cannot say its tactics in vLLM's terms (and has no export runner that can)."""

    vllm_config = None
    for_export = None


def test_export_with_a_runner_that_cannot_export_is_a_usage_error_before_any_tuning(
    tmp_path: Path, cpu_tuner: list[Tuner], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tune", "--model", "qwen3-30b-a3b", "--topology", "ep2", "--runner", f"{__name__}:NoExportRunner"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--no-cache", "--export", "vllm", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and cpu_tuner == []  # nothing tuned
    assert "--export vllm: runner 'fake_moe' has no vllm_config(tactic)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


class BrokenRunner(FakeRunner):
    """A runner none of whose tactics runs (as a layer shape the kernel cannot tile)."""

    def __init__(self) -> None:
        super().__init__(block_ms=(16,))
        self.broken = set(self.tactics(None))  # type: ignore[arg-type]


def test_every_tactic_failing_is_an_error_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["tune", "--model", "qwen3-30b-a3b", "--topology", "ep2", "--runner", f"{__name__}:BrokenRunner"]
    assert main([*argv, "--no-cache", "--tune-max-num-tokens", "2"]) == 1  # returned, not raised
    err = capsys.readouterr().err
    assert err.startswith("moetune: error: every tactic failed for qwen3-30b-a3b ep2 bf16 balanced max=2 ")
    assert "bucket 1: RuntimeError: out of resource: shared memory" in err


def test_a_tilde_in_the_output_paths_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As ``--moetune-cache`` reads it: ``--cache=~/...`` (which no shell expands) is the cache the
    gate uses, not a folder named ``~`` in the current one."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    argv = ["tune", "--model", "qwen3-30b-a3b", "--topology", "ep2", "--runner", FAKE]
    argv += ["--tune-max-num-tokens", "2"]
    argv += ["--cache=~/tuning.json", "--json=~/rows.json", "--export", "vllm", "~/vllm"]
    monkeypatch.setattr(tune_command, "build_tuner", _cpu_tuner_with_cache)
    assert main(argv) == 0
    assert list(work.iterdir()) == []
    assert (home / "tuning.json").is_file() and (home / "rows.json").is_file()
    assert len(list((home / "vllm").iterdir())) == 1
    assert main(["cache", "show", "--cache=~/tuning.json", "--runner", FAKE]) == 0
    assert "2 entries" in capsys.readouterr().out


def _cpu_tuner_with_cache(args: argparse.Namespace, runner: MoERunner) -> Tuner:
    """The command's tuner on the CPU, with its tuning cache (a fixed environment)."""
    from pytest_moetune.cache import TuningCache
    from pytest_moetune.testing import H100_FINGERPRINT

    store = TuningCache(args.cache, H100_FINGERPRINT)
    options = tune_command.tuner_options(args) | {"progress": False}
    return Tuner(runner, store, FakeTimer(runner), device="cpu", **options)


def test_a_cache_write_that_fails_is_a_one_line_error_and_the_file_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "tuning.json"
    argv = ["tune", "--model", "qwen3-30b-a3b", "--topology", "ep2", "--runner", FAKE]
    argv += ["--tune-max-num-tokens", "2", "--cache", str(cache)]
    monkeypatch.setattr(tune_command, "build_tuner", _cpu_tuner_with_cache)
    assert main(argv) == 0
    before = cache.read_bytes()
    capsys.readouterr()

    def write(path: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / ".tuning.json.tmp"))

    monkeypatch.setattr("pytest_moetune.cache.atomic_write_text", write)
    assert main([*argv, "--force"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    why = f"Permission denied ({tmp_path}/.tuning.json.tmp)"
    assert line == (
        f"moetune: error: could not write the tuning cache {cache}: {why}; "
        f"bucket(s) 1, 2 tuned but not cached (the table above: every bucket)"
    )
    assert cache.read_bytes() == before


def _write_fails_after_the_first(monkeypatch: pytest.MonkeyPatch, cache: Path) -> str:
    """The first cache write succeeds, the later ones cannot write the file."""
    from pytest_moetune import cache as cache_module

    real, calls = cache_module.atomic_write_text, []

    def write(path: Path, text: str) -> Path:
        calls.append(path)
        if len(calls) > 1:
            raise OSError(28, "No space left on device", str(cache.parent / ".tuning.json.tmp"))
        return real(path, text)

    monkeypatch.setattr(cache_module, "atomic_write_text", write)
    why = f"No space left on device ({cache.parent}/.tuning.json.tmp)"
    return f"could not write the tuning cache {cache}: {why}"


def _lock_times_out_after_the_first(monkeypatch: pytest.MonkeyPatch, cache: Path) -> str:
    """The first cache write takes the lock, the later ones time out waiting for it."""
    from filelock import FileLock, Timeout

    real, calls = FileLock.acquire, []

    def acquire(self: FileLock, *args: object, **kwargs: object) -> object:
        calls.append(self)
        if len(calls) > 1:
            raise Timeout(self.lock_file)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FileLock, "acquire", acquire)
    held = f"could not lock {cache}.lock within 60 s to update the tuning cache {cache}: "
    return held + "another process holds it"


@pytest.mark.parametrize("sabotage", [_write_fails_after_the_first, _lock_times_out_after_the_first])
def test_a_cache_write_that_fails_midway_still_writes_every_bucket_to_json_and_export(
    tmp_path: Path, sabotage, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bucket 1 is cached, bucket 2's write fails: tuning goes on in memory, so --json and --export
    get all of buckets 1, 2 and 4, the cache keeps bucket 1, and one line names the file and cause."""
    cache, out = tmp_path / "tuning.json", tmp_path / "out"
    argv = ["tune", "--model", "qwen3-30b-a3b", "--topology", "ep2", "--runner", FAKE]
    argv += ["--tune-max-num-tokens", "4", "--cache", str(cache)]
    argv += ["--json", str(out / "rows.json"), "--export", "vllm", str(out)]
    monkeypatch.setattr(tune_command, "build_tuner", _cpu_tuner_with_cache)
    message = sabotage(monkeypatch, cache)
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert [int(line.split()[0]) for line in captured.out.splitlines()[2:-1]] == [1, 2, 4]
    (line,) = [line for line in captured.err.splitlines() if not line.startswith("wrote ")]
    assert line == (
        f"moetune: error: {message}; bucket(s) 2, 4 tuned but not cached "
        f"(the table above, --json and --export: every bucket)"
    )
    rows = json.loads((out / "rows.json").read_text())
    assert [row["bucket"] for row in rows] == [1, 2, 4] and not any(row["from_cache"] for row in rows)
    (exported,) = out.glob("E=*.json")
    assert sorted(read_vllm_config(exported)) == [1, 2, 4]
    monkeypatch.undo()
    from pytest_moetune.cache import TuningCache
    from pytest_moetune.testing import H100_FINGERPRINT

    (key,) = TuningCache(cache, H100_FINGERPRINT).keys()
    assert "|bucket=1|" in key


def test_a_cache_write_that_failed_is_still_reported_when_tuning_then_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bucket 2's cache write fails, then bucket 4's tuning fails: the tuning error ends the command
    (no table, --json or --export), and the cache's failure and the buckets it lacks are said too."""
    from pytest_moetune.problem import BucketProblem
    from pytest_moetune.tuner import BucketResult, TuningError

    cache, out = tmp_path / "tuning.json", tmp_path / "out"
    argv = ["tune", "--model", "qwen3-30b-a3b", "--topology", "ep2", "--runner", FAKE]
    argv += ["--tune-max-num-tokens", "4", "--cache", str(cache), "--json", str(out / "rows.json")]
    monkeypatch.setattr(tune_command, "build_tuner", _cpu_tuner_with_cache)
    message = _write_fails_after_the_first(monkeypatch, cache)
    tune_bucket = Tuner._tune_bucket

    def fails_at_4(
        self: Tuner, problem: TuningProblem, bucket_problem: BucketProblem, *args: object, **kwargs: object
    ) -> BucketResult:
        if bucket_problem.num_tokens == 4:
            raise TuningError("no tactic of bucket 4 ran")
        return tune_bucket(self, problem, bucket_problem, *args, **kwargs)

    monkeypatch.setattr(Tuner, "_tune_bucket", fails_at_4)
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err.splitlines() == [
        f"moetune: error: {message}; bucket(s) 2 tuned but not cached (tuning stopped: see the next line)",
        "moetune: error: no tactic of bucket 4 ran",
    ]
