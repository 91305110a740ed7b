"""``moetune cache show|prune``: a tuning cache file's environments, their entries grouped by op and
hashes, pruned of the entries its runner can no longer read (old kernel or space hashes) or of whole
environments, atomically and nothing else."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from pytest_moetune.cache import MoetuneCacheWarning, TuningCache
from pytest_moetune.cli import main
from pytest_moetune.fingerprint import EnvironmentFingerprint
from pytest_moetune.models import get_model
from pytest_moetune.problem import TuningProblem
from pytest_moetune.testing import H100_FINGERPRINT, FakeRunner, FakeTimer
from pytest_moetune.topology import Topology
from pytest_moetune.tuner import Tuner

FAKE = "pytest_moetune.testing:FakeRunner"  # source "fake-source-1", space "fake-space-1"
PROBLEM = TuningProblem(get_model("deepseek-r1"), Topology.parse("dep8", 256, 8), tune_max_num_tokens=4)
A100 = dataclasses.replace(H100_FINGERPRINT, gpu_name="NVIDIA A100-SXM4-80GB", sm="8.0")


@pytest.fixture(autouse=True)
def this_machine_is_the_h100(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands compare each environment of the file with this machine's."""
    monkeypatch.setattr(EnvironmentFingerprint, "current", lambda: H100_FINGERPRINT)


def _tune(path: Path, runner: FakeRunner, fingerprint: EnvironmentFingerprint = H100_FINGERPRINT) -> int:
    result = Tuner(runner, timer=FakeTimer(runner), store=TuningCache(path, fingerprint), device="cpu",
                   progress=False).tune(PROBLEM)  # fmt: skip
    return len(result.buckets)


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    """Entries of three generations of the fake runner (kernels edited, then its space), an export
    runner's, another op's and a key of another form."""
    path = tmp_path / "tuning.json"
    buckets = _tune(path, FakeRunner(source_hash="fake-source-0", space_hash="fake-space-1"))
    _tune(path, FakeRunner(space_hash="fake-space-0"))
    _tune(path, FakeRunner())  # what FAKE is now
    _tune(path, FakeRunner(source_hash="old").for_export("vllm"))
    other = FakeRunner(source_hash="old")
    other.name = "someone_elses_moe"
    _tune(path, other)
    TuningCache(path, H100_FINGERPRINT).put("hand-written key", {"tactic": {}, "time_us": 1.0})
    assert len(TuningCache(path, H100_FINGERPRINT)) == 5 * buckets + 1
    return path


def test_show_groups_by_op_and_hashes_and_marks_what_the_runner_reads(
    cache_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cache", "show", "--cache", str(cache_file), "--runner", FAKE]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"tuning cache {cache_file}: 1 environment, 16 entries"
    assert out[1].startswith("environment 1: NVIDIA H100 80GB HBM3 (sm 9.0, driver 580.82.07, torch ")
    assert out[2] == "  this machine; 16 entries"
    rows = {tuple(line.split()[:3]): line for line in out[4:]}
    assert rows[("fake_moe", "fake-source-1", "fake-space-1")].endswith("3  current")
    assert rows[("fake_moe", "fake-source-0", "fake-space-1")].endswith("stale: `moetune cache prune`")
    assert rows[("fake_moe", "fake-source-1", "fake-space-0")].endswith("stale: `moetune cache prune`")
    assert rows[("fake_moe-vllm", "old", "fake-space-1")].endswith("stale: `moetune cache prune`")
    assert rows[("someone_elses_moe", "old", "fake-space-1")].endswith(" 3")  # not the runner's: no mark
    assert rows[("?", "?", "?")].endswith(" 1")


def test_show_lists_malformed_entries_and_does_not_crash_on_them(
    cache_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(cache_file.read_text())
    entries = document["environments"][0]["entries"]
    current = "source_hash=fake-source-1|space_hash=fake-space-1"
    key = sorted(k for k in entries if current in k)[0]
    del entries[key]["time_us"]  # a hand edit
    entries["hand-written key"]["tactic"] = "128x64"
    cache_file.write_text(json.dumps(document))
    before = cache_file.read_text()
    assert main(["cache", "show", "--cache", str(cache_file), "--runner", FAKE]) == 0
    out = capsys.readouterr().out
    assert "16 entries" in out
    assert "  2 malformed entries (treated as missing: re-tuned when next tuned):" in out
    assert f"    {key}: the entry has no 'time_us'" in out
    assert "    hand-written key: the entry has a 'tactic' that is a JSON string, not an object" in out
    assert cache_file.read_text() == before


def test_show_without_a_runner_still_shows_the_file(
    cache_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no pyproject with [tool.moetune] runner here
    monkeypatch.setattr("pytest_moetune.tune_command.entry_point_runners", lambda: iter(()))
    assert main(["cache", "show", "--cache", str(cache_file)]) == 0
    out = capsys.readouterr().out
    assert "16 entries" in out and "current" not in out and "stale" not in out
    assert "(no runner to compare with: ValueError: choose a runner with --runner" in out


def test_prune_deletes_only_the_runners_stale_entries(
    cache_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = json.loads(cache_file.read_text())
    assert main(["cache", "prune", "--cache", str(cache_file), "--runner", FAKE, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(f"would remove 9 of 16 entries from {cache_file}")
    assert json.loads(cache_file.read_text()) == before  # a dry run writes nothing
    assert main(["cache", "prune", "--cache", str(cache_file), "--runner", FAKE]) == 0
    assert capsys.readouterr().out == f"removed 9 entries from {cache_file}; 7 left\n"
    (after,), (old,) = json.loads(cache_file.read_text())["environments"], before["environments"]
    assert after["metadata"] == old["metadata"]  # the environment and its creation date kept
    assert set(after["entries"]) == {k for k in old["entries"]
                                     if "source_hash=fake-source-1|space_hash=fake-space-1" in k
                                     or "someone_elses_moe" in k or k == "hand-written key"}  # fmt: skip
    assert all(after["entries"][k] == old["entries"][k] for k in after["entries"])
    assert main(["cache", "prune", "--cache", str(cache_file), "--runner", FAKE]) == 0
    assert capsys.readouterr().out == f"removed 0 entries from {cache_file}; 7 left\n"


@pytest.mark.parametrize("command", ["show", "prune"])
def test_a_missing_or_corrupt_file_is_an_error_naming_it(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.json"
    assert main(["cache", command, "--cache", str(missing), "--runner", FAKE]) == 2
    assert f"no tuning cache at {missing}" in capsys.readouterr().err
    corrupt = tmp_path / "bad.json"
    corrupt.write_text("{not json")
    assert main(["cache", command, "--cache", str(corrupt), "--runner", FAKE]) == 2
    assert f"tuning cache {corrupt} is not valid: not valid JSON" in capsys.readouterr().err
    assert corrupt.read_text() == "{not json"  # left as it was, not moved aside
    assert main(["cache", command, "--cache", str(tmp_path), "--runner", FAKE]) == 2
    assert f"tuning cache {tmp_path} cannot be read: Is a directory" in capsys.readouterr().err


def _unwritable_file(monkeypatch: pytest.MonkeyPatch, cache_file: Path) -> str:
    def write(path: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied", str(path.parent / ".tuning.json.tmp"))

    monkeypatch.setattr("pytest_moetune.cache.atomic_write_text", write)
    return f"could not write the tuning cache {cache_file}: Permission denied ({cache_file.parent}/.tuning"


def _lock_times_out(monkeypatch: pytest.MonkeyPatch, cache_file: Path) -> str:
    def acquire(*args: object, **kwargs: object) -> None:
        raise Timeout(f"{cache_file}.lock")

    monkeypatch.setattr(FileLock, "acquire", acquire)
    return f"could not lock {cache_file}.lock within 60 s to update the tuning cache {cache_file}: another"


def _lock_unwritable(monkeypatch: pytest.MonkeyPatch, cache_file: Path) -> str:
    lock = f"{cache_file}.lock"
    real_access = os.access
    _lock_times_out(monkeypatch, cache_file)
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) != lock and real_access(p, mode))
    Path(lock).touch()
    return f"to update the tuning cache {cache_file}: {lock} is not writable by this user"


@pytest.mark.parametrize("sabotage", [_unwritable_file, _lock_times_out, _lock_unwritable])
def test_a_prune_that_cannot_write_is_a_one_line_error_and_the_file_stays(
    cache_file: Path, sabotage, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = cache_file.read_bytes()
    message = sabotage(monkeypatch, cache_file)
    assert main(["cache", "prune", "--cache", str(cache_file), "--runner", FAKE]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("moetune: error: ") and message in line
    assert cache_file.read_bytes() == before


def test_remove_many_of_an_environment_without_a_section_leaves_the_file(cache_file: Path) -> None:
    """It removes from its own section only, and the file has none for it: the H100's entries stay."""
    other = TuningCache(cache_file, dataclasses.replace(H100_FINGERPRINT, torch="9"))
    before = cache_file.read_text()
    assert other.remove_many(["hand-written key"]) == []
    assert cache_file.read_text() == before


class ExportSpaceRunner(FakeRunner):
    """A runner whose export runner builds its space in other code: its entries carry another hash."""

    def for_export(self, fmt: str) -> FakeRunner:
        restricted = super().for_export(fmt)
        restricted.space_hash = "fake-export-space-1"
        return restricted


def test_prune_keeps_the_export_runners_current_entries_under_its_own_hashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export runner's entries are current by its own hashes, not by those of the runner it
    restricts: prune removes only its entries of other hashes."""
    path = tmp_path / "tuning.json"
    buckets = _tune(path, ExportSpaceRunner().for_export("vllm"))  # current
    _tune(path, FakeRunner().for_export("vllm"))  # the export runner before its space moved
    spec = f"{__name__}:ExportSpaceRunner"
    assert main(["cache", "show", "--cache", str(path), "--runner", spec]) == 0
    rows = {tuple(line.split()[:3]): line for line in capsys.readouterr().out.splitlines()[4:]}
    assert rows[("fake_moe-vllm", "fake-source-1", "fake-export-space-1")].endswith("current")
    assert rows[("fake_moe-vllm", "fake-source-1", "fake-space-1")].endswith("stale: `moetune cache prune`")
    assert main(["cache", "prune", "--cache", str(path), "--runner", spec]) == 0
    assert capsys.readouterr().out == f"removed {buckets} entries from {path}; {buckets} left\n"
    assert all("space_hash=fake-export-space-1" in key for key in TuningCache(path, H100_FINGERPRINT))


# --- several environments in one file ------------------------------------------------------------------


@pytest.fixture
def on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine is a CPU laptop: no section of a GPU runner's cache is its own."""
    laptop = dataclasses.replace(H100_FINGERPRINT, gpu_name="cpu", sm="cpu", driver="none")
    monkeypatch.setattr(EnvironmentFingerprint, "current", lambda: laptop)


@pytest.fixture
def shared_file(cache_file: Path) -> Path:
    """``cache_file`` (the H100's, this machine's) and an A100's section: the runner's current entries
    and those of its kernels before an edit."""
    with pytest.warns(MoetuneCacheWarning, match="has no entries for this environment"):
        _tune(cache_file, FakeRunner(), A100)
    _tune(cache_file, FakeRunner(source_hash="fake-source-0", space_hash="fake-space-1"), A100)
    return cache_file


def _sections(path: Path) -> dict[str, dict]:
    return {s["metadata"]["gpu_name"]: s for s in json.loads(path.read_text())["environments"]}


def test_show_lists_every_environment_and_marks_this_machines(
    shared_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cache", "show", "--cache", str(shared_file), "--runner", FAKE]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"tuning cache {shared_file}: 2 environments, 22 entries"
    created = [s["metadata"]["created"] for s in _sections(shared_file).values()]
    a100 = out.index(
        "environment 2: NVIDIA A100-SXM4-80GB (sm 8.0, driver 580.82.07, torch 2.11.0+cu130, triton 3.6.0, "
        f"pytest-moetune {A100.plugin}), created {created[1]}"
    )
    assert out[1].startswith("environment 1: NVIDIA H100 80GB HBM3 (") and out[1].endswith(created[0])
    assert out[2] == "  this machine; 16 entries"
    assert out[a100 + 1] == (
        "  not this machine (gpu_name: NVIDIA A100-SXM4-80GB (cache) != NVIDIA H100 80GB HBM3 (here); "
        "sm: 8.0 (cache) != 9.0 (here)); 6 entries"
    )
    assert [line.split()[:5] for line in out[a100 + 3 :]] == [
        ["fake_moe", "fake-source-0", "fake-space-1", "3", "stale:"],
        ["fake_moe", "fake-source-1", "fake-space-1", "3", "current"],
    ]


def test_prune_removes_the_runners_old_entries_from_every_environment(
    shared_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _sections(shared_file)
    assert main(["cache", "prune", "--cache", str(shared_file), "--runner", FAKE, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"would remove 12 of 22 entries from {shared_file}"
    a100 = next(i for i, line in enumerate(out) if line.startswith("  NVIDIA A100-SXM4-80GB (sm 8.0, "))
    assert out[a100].endswith(": 3 of 6")
    assert all("source_hash=fake-source-0|" in line for line in out[a100 + 1 :])
    assert _sections(shared_file) == before
    assert main(["cache", "prune", "--cache", str(shared_file), "--runner", FAKE]) == 0
    assert capsys.readouterr().out == f"removed 12 entries from {shared_file}; 10 left\n"
    after = _sections(shared_file)
    assert [s["metadata"] for s in after.values()] == [s["metadata"] for s in before.values()]
    assert len(after["NVIDIA H100 80GB HBM3"]["entries"]) == 7
    assert after["NVIDIA A100-SXM4-80GB"]["entries"] == {
        k: v for k, v in before["NVIDIA A100-SXM4-80GB"]["entries"].items() if "fake-source-1" in k
    }


def test_a_prune_of_several_environments_is_one_write_so_a_failure_removes_nothing(
    shared_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both sections hold old entries. The prune is one atomic write, as ``remove_many`` is: where the
    file can be written once (then the disk is full) it removes them all, and where that write fails
    it removes none, never the H100's without the A100's."""
    from pytest_moetune import cache as cache_module

    before, real, calls = shared_file.read_bytes(), cache_module.atomic_write_text, []

    def write(path: Path, text: str) -> Path:
        calls.append(path)
        if len(calls) > 1:
            raise OSError(28, "No space left on device", str(path))
        return real(path, text)

    def full(path: Path, text: str) -> Path:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(cache_module, "atomic_write_text", write)
    assert main(["cache", "prune", "--cache", str(shared_file), "--runner", FAKE]) == 0
    assert capsys.readouterr().out == f"removed 12 entries from {shared_file}; 10 left\n"
    assert len(calls) == 1  # both sections pruned by one write
    shared_file.write_bytes(before)
    monkeypatch.setattr(cache_module, "atomic_write_text", full)
    assert main(["cache", "prune", "--cache", str(shared_file), "--runner", FAKE]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "No space left on device" in captured.err
    assert shared_file.read_bytes() == before


def test_prune_other_environments_drops_every_section_but_this_machines(
    shared_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _sections(shared_file)
    argv = ["cache", "prune", "--cache", str(shared_file), "--other-environments"]
    assert main([*argv, "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"would remove 1 environment of 2 (6 of 22 entries) from {shared_file}",
        f"  NVIDIA A100-SXM4-80GB (sm 8.0, driver 580.82.07, torch 2.11.0+cu130, triton 3.6.0, "
        f"pytest-moetune {A100.plugin}), created {before['NVIDIA A100-SXM4-80GB']['metadata']['created']}: "
        "6 entries",
    ]
    assert _sections(shared_file) == before
    assert main(argv) == 0
    assert capsys.readouterr().out == f"removed 1 environment (6 entries) from {shared_file}; 1 left\n"
    assert _sections(shared_file) == {"NVIDIA H100 80GB HBM3": before["NVIDIA H100 80GB HBM3"]}
    assert main(argv) == 0
    assert capsys.readouterr().out == f"removed 0 environments (0 entries) from {shared_file}; 1 left\n"


def test_prune_environment_drops_the_sections_that_match(
    shared_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _sections(shared_file)
    argv = ["cache", "prune", "--cache", str(shared_file), "--environment", "torch=2.11.0+cu130"]
    assert main([*argv, "--environment", "sm=9.0", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"would remove 1 environment of 2 (16 of 22 entries) from {shared_file}"
    assert out[1].startswith("  NVIDIA H100 80GB HBM3 (sm 9.0") and len(out) == 2
    assert main([*argv, "--environment", "gpu_name=NVIDIA A100-SXM4-80GB"]) == 0
    assert capsys.readouterr().out == f"removed 1 environment (6 entries) from {shared_file}; 1 left\n"
    assert _sections(shared_file) == {"NVIDIA H100 80GB HBM3": before["NVIDIA H100 80GB HBM3"]}


def test_prune_environment_that_matches_nothing_is_an_error_naming_what_the_file_has(
    shared_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = shared_file.read_bytes()
    argv = ["cache", "prune", "--cache", str(shared_file), "--environment", "torch=2.13.0"]
    assert main([*argv, "--environment", "sm=8.0"]) == 2
    assert capsys.readouterr().err == (
        f"moetune: error: no environment in {shared_file} has torch=2.13.0, sm=8.0 "
        f"(torch: 2.11.0+cu130; sm: 8.0, 9.0)\n"
    )
    assert shared_file.read_bytes() == before


def test_prune_other_environments_where_this_machine_has_no_section_deletes_nothing(
    shared_file: Path, on_a_laptop: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a laptop reading a GPU runner's cache, every environment is another one: that is refused."""
    before = shared_file.read_bytes()
    assert main(["cache", "prune", "--cache", str(shared_file), "--other-environments"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"moetune: error: {shared_file} has no section for this machine (cpu (sm cpu, ")
    assert err.endswith("so --other-environments would delete all 2: choose with --environment FIELD=VALUE\n")
    assert shared_file.read_bytes() == before


def test_prune_other_environments_beside_environment_where_this_machine_has_no_section_says_why(
    shared_file: Path, on_a_laptop: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal does not claim that every section would go, nor ask for the --environment given."""
    before = shared_file.read_bytes()
    argv = ["cache", "prune", "--cache", str(shared_file), "--other-environments", "--environment", "sm=8.0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"moetune: error: {shared_file} has no section for this machine (cpu (sm cpu, ")
    assert err.endswith(
        "so --other-environments spares none of the 1 section --environment chose: drop --other-environments "
        "to delete it\n"
    )
    assert shared_file.read_bytes() == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--environment", "torch"], "argument --environment: 'torch' is not FIELD=VALUE with FIELD one of"),
        (
            ["--environment", "gpu=H100"],
            "'gpu=H100' is not FIELD=VALUE with FIELD one of gpu_name, sm, driver",
        ),
        (["--other-environments", "--runner", FAKE], "--runner prunes the runner's old entries and"),
    ],
)
def test_bad_environment_options_are_usage_errors(
    shared_file: Path, options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = shared_file.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["cache", "prune", "--cache", str(shared_file), *options])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert shared_file.read_bytes() == before


def test_a_schema_1_file_is_shown_and_pruned_as_one_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tuning.json"
    _tune(path, FakeRunner(source_hash="fake-source-0"))
    _tune(path, FakeRunner())
    (section,) = json.loads(path.read_text())["environments"]
    path.write_text(json.dumps({"schema": 1, **section}))  # as pytest-moetune wrote it before schema 2
    assert main(["cache", "show", "--cache", str(path), "--runner", FAKE]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0] == f"tuning cache {path}: 1 environment, 6 entries" and out[2] == "  this machine; 6 entries"
    )
    assert main(["cache", "prune", "--cache", str(path), "--runner", FAKE]) == 0
    assert capsys.readouterr().out == f"removed 3 entries from {path}; 3 left\n"
    document = json.loads(path.read_text())
    assert document["schema"] == 2 and document["environments"][0]["metadata"] == section["metadata"]
