"""``moetune baseline update|prune|show|diff``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_moetune.baseline import read_baseline, write_baseline
from pytest_moetune.cli import main
from pytest_moetune.testing import GateWorkflow

FINGERPRINT = {
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "sm": "9.0",
    "driver": "580",
    "torch": "2.11.0",
    "triton": "3.6.0",
    "plugin": "0.1.0",
}
SUITE = """
from pytest_moetune.harness import MoECase

def test_one(moetune):
    moetune.check(MoECase("qwen3-30b-a3b", "ep2", 64, runner="fake_moe", tune_max_num_tokens=64))
"""


def entry(
    median: float, *, copy_rate: float = 3e12, tactic: int = 16, fp8_rate: float | None = None
) -> dict:
    """A baseline entry; with ``fp8_rate`` an fp8 case bound by its matmul rate (10 TFLOP, 1 GB)."""
    rounds = [median * f for f in (0.998, 1.0, 1.001, 0.999, 1.002)]
    if fp8_rate is not None:
        return {
            **entry(median, copy_rate=copy_rate, tactic=tactic),
            "ceilings": {
                "copy_bytes_per_s": copy_rate,
                "matmul_flops_per_s": 7e14,
                "fp8_matmul_flops_per_s": fp8_rate,
            },
            "dtype": "fp8_w8a8",
            "flops": 10**13,
            "bytes": 10**9,
        }
    return {
        "rounds_us": rounds,
        "summary": {"median_us": median, "spread": 0.001},
        "throughput": {"tflops": 1.0, "tbytes_per_s": 2.0},
        "fraction_of_ceilings": {"copy": 0.9, "matmul": 0.1, "roofline": 0.9},
        "ceilings": {"copy_bytes_per_s": copy_rate, "matmul_flops_per_s": 7e14},
        "flops": 10**9,
        "bytes": 10**10,
        "tactic": {"block_m": tactic},
        "source_hash": "abc123def",
        "fingerprint": FINGERPRINT,
    }


def test_show_prints_every_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "baselines"
    write_baseline(
        root / "nvidia-h100-80gb-hbm3" / "suites.perf.x.json", {"k/a/T=1": entry(100.0)}, FINGERPRINT
    )
    write_baseline(root / "nvidia-h200" / "suites.perf.x.json", {"k/a/T=1": entry(80.0)}, FINGERPRINT)
    assert main(["baseline", "show", "--root", str(root), "--device", "nvidia-h200", "--tactics"]) == 0
    out = capsys.readouterr().out
    assert "nvidia-h200/suites.perf.x.json  (NVIDIA H100 80GB HBM3, torch 2.11.0, triton 3.6.0)" in out
    assert "k/a/T=1" in out and "80.00" in out and '{"block_m":16}' in out and "100.00" not in out
    assert main(["baseline", "show", "--root", str(root), "--device", "nvidia-a100"]) == 1
    assert "no baselines under" in capsys.readouterr().err


def test_show_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """``moetune baseline show | head``: the reader leaves early; no traceback, exit status 0."""
    import os
    import subprocess
    import sys

    root = tmp_path / "baselines"
    path = root / "nvidia-h100-80gb-hbm3" / "suites.perf.x.json"
    write_baseline(path, {"k/a/T=1": entry(1.0)}, FINGERPRINT)
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest_moetune.cli", "baseline", "show", "--root", str(root)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def diff_rows(a: Path, b: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, list[str]]:
    """``moetune baseline diff A B``'s case rows, split into words, by case."""
    assert main(["baseline", "diff", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {line.split()[0]: line.split() for line in lines if line.startswith("  ")}


def test_diff_normalizes_by_each_files_ceilings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_baseline(a, {"same": entry(100.0), "slower": entry(100.0), "gone": entry(1.0)}, FINGERPRINT)
    # "slower" is 10% slower; "same" is 10% slower too, but on a card whose copy rate was 10% lower
    write_baseline(
        b,
        {"same": entry(110.0, copy_rate=3e12 / 1.1), "slower": entry(110.0, tactic=32), "new": entry(5.0)},
        FINGERPRINT,
    )
    rows = diff_rows(a, b, capsys)
    assert rows["same"][3:7] == ["1.100", "1.000", "ok", "same"]
    assert rows["slower"][3:7] == ["1.100", "1.100", "regressed", "changed"]
    assert rows["gone"][1:] == ["only", "in", "A"] and rows["new"][1:] == ["only", "in", "B"]


def test_diff_normalizes_fp8_cases_by_the_fp8_matmul_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both files 10% slower on a card whose fp8 rate was 10% lower: ok when both measured it; an
    entry without an fp8 rate (an older file) falls back to the bf16 rate, unchanged here."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    old_style = {k: v for k, v in entry(100.0, fp8_rate=1.2e15).items() if k != "ceilings"}
    write_baseline(
        a,
        {"fp8": entry(100.0, fp8_rate=1.2e15),
         "no-fp8-rate": {**old_style, "ceilings": {"copy_bytes_per_s": 3e12, "matmul_flops_per_s": 7e14}}},
        FINGERPRINT,
    )  # fmt: skip
    write_baseline(
        b, {"fp8": entry(110.0, fp8_rate=1.2e15 / 1.1), "no-fp8-rate": entry(110.0, fp8_rate=1.2e15 / 1.1)},
        FINGERPRINT,
    )  # fmt: skip
    rows = diff_rows(a, b, capsys)
    assert rows["fp8"][3:6] == ["1.100", "1.000", "ok"]
    assert rows["no-fp8-rate"][3:6] == ["1.100", "1.100", "regressed"]


def test_diff_leaves_matmul_bound_cases_raw_across_matmul_warm_ups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """B's fp8 rate was timed after the sustained warm-up and A's (no warm-up recorded) after the old
    burst: the matmul-bound case is compared raw, and its row says so."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_baseline(a, {"fp8": entry(100.0, fp8_rate=1.2e15)}, FINGERPRINT)
    sustained = entry(110.0, fp8_rate=1.2e15 / 1.1)
    sustained["ceilings"]["matmul_warmup_s"] = 2.0
    write_baseline(b, {"fp8": sustained}, FINGERPRINT)
    rows = diff_rows(a, b, capsys)
    assert rows["fp8"][3:6] == ["1.100", "1.100", "regressed"]
    assert " ".join(rows["fp8"][7:]) == "(norm = raw: other matmul warm-ups)"


def test_diff_of_a_corrupt_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["baseline", "diff", str(bad), str(bad)]) == 2
    assert "bad.json" in capsys.readouterr().err and bad.read_text() == "{"


@pytest.mark.parametrize(
    ("field", "value", "must_be"),
    [
        ("ceilings", {}, "an object of positive rates"),
        (
            "ceilings",
            {"copy_bytes_per_s": 3e12, "matmul_flops_per_s": 7e14, "matmul_warmup_s": -1},
            "an object of positive rates (and a matmul_warmup_s >= 0)",
        ),
        ("summary", {}, "an object with a positive median_us"),
        ("fraction_of_ceilings", None, "an object of numbers"),
        ("flops", "abc", "a count >= 0"),
        ("bytes", -1, "a count >= 0"),
        ("throughput", {"tflops": "fast"}, "an object of numbers"),
        ("fingerprint", {"gpu_name": 1}, "an object of strings"),
        ("rounds_us", [1.0], "a list of >= 2 positive times"),
        ("card", 7, "a string"),
        ("peer_median_us", 0, "a positive time"),
    ],
)
@pytest.mark.parametrize("command", ["show", "diff"])
def test_a_malformed_field_is_an_error_naming_the_file_case_and_field(
    tmp_path: Path, command: str, field: str, value: object, must_be: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file is read strictly: each field the gate or these commands read is checked, so a hand
    edit cannot surface later as a KeyError somewhere else."""
    path = tmp_path / "baselines" / "nvidia-h200" / "suites.perf.x.json"
    write_baseline(path, {"k/a/T=1": entry(80.0)}, FINGERPRINT)
    document = json.loads(path.read_text())
    document["entries"]["k/a/T=1"][field] = value
    path.write_text(json.dumps(document))
    before = path.read_text()
    argv = (
        ["show", "--root", str(tmp_path / "baselines")]
        if command == "show"
        else ["diff", str(path), str(path)]
    )
    assert main(["baseline", *argv]) == 2
    assert f"baseline '{path}': entry 'k/a/T=1': {field} must be {must_be}" in capsys.readouterr().err
    assert path.read_text() == before


def test_update_and_prune_run_the_gate(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = GateWorkflow(pytester, SUITE)
    monkeypatch.chdir(pytester.path)
    cache = f"--moetune-cache={pytester.path / 'cache.json'}"
    assert main(["baseline", "update", "-p", "no:cacheprovider", cache]) == 0
    (path,) = flow.baseline_files()
    document = read_baseline(path)
    assert document is not None and list(document["entries"]) == [
        "fake_moe/qwen3-30b-a3b/bf16/ep2/balanced/T=64"
    ]
    document["entries"]["fake_moe/removed/bf16/ep1/balanced/T=1"] = next(iter(document["entries"].values()))
    path.write_text(json.dumps(document))
    assert main(["baseline", "prune", cache]) == 0
    assert list(json.loads(path.read_text())["entries"]) == ["fake_moe/qwen3-30b-a3b/bf16/ep2/balanced/T=64"]


PROFILE_SUITE = """
from pytest_moetune.gate import selected_profile
from pytest_moetune.harness import MoECase


def pytest_generate_tests(metafunc):
    full = selected_profile(metafunc.config) == "full"
    metafunc.parametrize("topology", ["ep2", "dep2"] if full else ["ep2"])


def test_profiled(moetune, topology):
    moetune.check(MoECase("qwen3-30b-a3b", topology, 64, runner="fake_moe", tune_max_num_tokens=64))
"""


def test_prune_runs_the_full_profile(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`moetune baseline prune` alone keeps the entries only the full profile checks and drops the
    stale one (the quick profile, pytest's default, would drop the former or refuse to prune)."""
    flow = GateWorkflow(pytester, PROFILE_SUITE)
    monkeypatch.chdir(pytester.path)
    cache = f"--moetune-cache={pytester.path / 'cache.json'}"
    assert main(["baseline", "update", "-p", "no:cacheprovider", "--moetune-profile=full", cache]) == 0
    (path,) = flow.baseline_files()
    full = {f"fake_moe/qwen3-30b-a3b/bf16/{t}/balanced/T=64" for t in ("ep2", "dep2")}
    document = json.loads(path.read_text())
    assert set(document["entries"]) == full
    document["entries"]["fake_moe/removed/bf16/ep1/balanced/T=1"] = next(iter(document["entries"].values()))
    path.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["baseline", "prune", "-p", "no:cacheprovider", cache]) == 0
    assert (
        "--moetune-update-baselines=prune --moetune-profile=full -p no:cacheprovider"
        in capsys.readouterr().err
    )
    assert set(json.loads(path.read_text())["entries"]) == full
