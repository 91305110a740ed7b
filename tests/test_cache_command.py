"""``moetune cache show|prune``: a tuning cache file grouped by op and hashes, and pruned of the
entries its runner can no longer read (old kernel or space hashes), atomically and nothing else."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from pytest_moetune.cache import TuningCache
from pytest_moetune.cli import main
from pytest_moetune.models import get_model
from pytest_moetune.problem import TuningProblem
from pytest_moetune.testing import H100_FINGERPRINT, FakeRunner, FakeTimer
from pytest_moetune.topology import Topology
from pytest_moetune.tuner import Tuner

FAKE = "pytest_moetune.testing:FakeRunner"  # source "fake-source-1", space "fake-space-1"
PROBLEM = TuningProblem(get_model("deepseek-r1"), Topology.parse("dep8", 256, 8), tune_max_num_tokens=4)


def _tune(path: Path, runner: FakeRunner) -> int:
    result = Tuner(runner, timer=FakeTimer(runner), store=TuningCache(path, H100_FINGERPRINT), device="cpu",
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
    assert out[0].startswith(f"tuning cache {cache_file}: NVIDIA H100 80GB HBM3 (sm 9.0, driver")
    assert out[1] == "16 entries"
    rows = {tuple(line.split()[:3]): line for line in out[3:]}
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
    current = "source_hash=fake-source-1|space_hash=fake-space-1"
    key = sorted(k for k in document["entries"] if current in k)[0]
    del document["entries"][key]["time_us"]  # a hand edit
    document["entries"]["hand-written key"]["tactic"] = "128x64"
    cache_file.write_text(json.dumps(document))
    before = cache_file.read_text()
    assert main(["cache", "show", "--cache", str(cache_file), "--runner", FAKE]) == 0
    out = capsys.readouterr().out
    assert "16 entries" in out
    assert "2 malformed entries (treated as missing: re-tuned when next tuned):" in out
    assert f"  {key}: the entry has no 'time_us'" in out
    assert "  hand-written key: the entry has a 'tactic' that is a JSON string, not an object" in out
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
    after = json.loads(cache_file.read_text())
    assert after["metadata"] == before["metadata"]  # the file's environment and creation date kept
    assert set(after["entries"]) == {k for k in before["entries"]
                                     if "source_hash=fake-source-1|space_hash=fake-space-1" in k
                                     or "someone_elses_moe" in k or k == "hand-written key"}  # fmt: skip
    assert all(after["entries"][k] == before["entries"][k] for k in after["entries"])
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


def test_remove_many_refuses_a_file_of_another_environment(cache_file: Path) -> None:
    other = TuningCache(cache_file, dataclasses.replace(H100_FINGERPRINT, torch="9"))
    before = cache_file.read_text()
    with pytest.raises(
        ValueError, match=r"another environment \(torch: .* \(cache\) != 9 \(now\)\): nothing removed"
    ):
        other.remove_many(["hand-written key"])
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
    rows = {tuple(line.split()[:3]): line for line in capsys.readouterr().out.splitlines()[3:]}
    assert rows[("fake_moe-vllm", "fake-source-1", "fake-export-space-1")].endswith("current")
    assert rows[("fake_moe-vllm", "fake-source-1", "fake-space-1")].endswith("stale: `moetune cache prune`")
    assert main(["cache", "prune", "--cache", str(path), "--runner", spec]) == 0
    assert capsys.readouterr().out == f"removed {buckets} entries from {path}; {buckets} left\n"
    assert all("space_hash=fake-export-space-1" in key for key in TuningCache(path, H100_FINGERPRINT))
