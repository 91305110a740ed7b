"""``bench_fused_moe.py --from-json``: saved reports' tables reprinted, merged and ordered, without a
GPU (a later report's point replaces an earlier one's; every report's run is named first)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_fused_moe import main
from kernels import MoEProblem, default_tactic

CEILINGS = {"copy_bytes_per_s": 4.27e12, "matmul_flops_per_s": 7.88e14, "fp8_matmul_flops_per_s": 1.265e15}


def _point(case: str, tokens: int, best_us: float, best_block_m: int | None = None) -> dict[str, object]:
    dflt = default_tactic(MoEProblem(tokens, 4096, 1536, 64, 8, "bfloat16"))
    best = default_tactic(MoEProblem(best_block_m or tokens, 4096, 1536, 64, 8, "bfloat16"))
    return {
        "case": case, "tokens": tokens, "rows": tokens * 8, "mem_us": 500.0, "mm_us": 400.0,
        "roofline_us": 500.0, "default_tactic": dflt.to_dict(), "best_tactic": best.to_dict(),
        "results": {"default": {"median_us": 700.0}, "best": {"median_us": best_us},
                    "peer": {"median_us": 1000.0}},
    }  # fmt: skip


def _report(path: Path, date: str, points: list[dict[str, object]]) -> str:
    path.write_text(json.dumps({"env": {"device": "NVIDIA H200", "date": date}, "ceilings": CEILINGS,
                                "points": points}))  # fmt: skip
    return str(path)


def test_reports_merge_later_wins_in_case_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _report(tmp_path / "a.json", "day-1", [
        _point("mixtral-8x7b-ep1", 16, 600.0, 1024), _point("qwen3-235b-a22b-dep2", 4096, 800.0),
        {"case": "deepseek-r1-dep8", "tokens": 1, "error": "RuntimeError('no')"},
    ])  # fmt: skip
    second = _report(tmp_path / "b.json", "day-2", [_point("qwen3-235b-a22b-dep2", 4096, 625.0, 4096)])
    assert main(["--from-json", first, second]) == 0
    out = capsys.readouterr().out
    assert f"# {first}: NVIDIA H200, day-1; copy 4.27 TB/s, bf16 788 TFLOP/s, fp8 1265 TFLOP/s" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "µs" not in line]
    assert [row.split(" | ")[:2] for row in rows] == [["| qwen3-235b-a22b-dep2", "4096"],
                                                      ["| mixtral-8x7b-ep1", "16"]]  # fmt: skip
    assert " 625.0 | 1000.0 | 500.0 (mem) | 1.60x | 80% | 50% |" in rows[0]
    assert rows[0].endswith("| = default |") and not rows[1].endswith("| = default |")
    assert "deepseek" not in "".join(rows)  # a failed point has no row


def test_rows_give_the_sustained_roofline_where_the_report_measured_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report with the sustained matmul rates names them in its header line, and each of its rows
    gives the best tactic's fraction of the sustained roofline; an older report's rows say ``-``."""
    new = tmp_path / "new.json"
    point = {**_point("qwen3-30b-a3b-ep1", 4096, 557.3), "roofline_sustained_us": 460.0}
    sustained = {"matmul_flops_per_s": 6.66e14, "fp8_matmul_flops_per_s": 1.21e15, "matmul_warmup_s": 2.0}
    ceilings = {**CEILINGS, "sustained": sustained}
    new.write_text(json.dumps({"env": {"device": "NVIDIA H200", "date": "day-3"}, "ceilings": ceilings,
                               "points": [point]}))  # fmt: skip
    old = _report(tmp_path / "old.json", "day-1", [_point("mixtral-8x7b-ep1", 16, 600.0)])
    assert main(["--from-json", str(new), old]) == 0
    out = capsys.readouterr().out
    assert "fp8 1265 TFLOP/s (sustained: bf16 666, fp8 1210); points: qwen3-30b-a3b-ep1 T=4096" in out
    lines = [line for line in out.splitlines() if line.startswith("| ") and "µs" not in line]
    rows = {row.split(" | ")[0][2:]: row for row in lines}
    assert "| 90% | 50% | 83% | - | `" in rows["qwen3-30b-a3b-ep1"]  # 500 / 557.3, 500 / 1000, 460 / 557.3
    assert "| 83% | 50% | - | - | `" in rows["mixtral-8x7b-ep1"]


def test_rows_give_the_in_round_roofline_from_the_points_own_dense_matmuls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A point's ``dense_mm`` median (the 8192^3 matmul in its own rounds) gives its in-round matmul
    rate; its rows give the best tactic's fraction of the roofline at that rate."""
    from benchmarks.bench_fused_moe import DENSE_SIZE, in_round_ceilings

    flops = 2 * DENSE_SIZE**3
    res = {"dense_mm": {"median_us": flops / 6.5e14 * 1e6},
           "dense_mm_fp8": {"median_us": flops / 1.2e15 * 1e6}}  # fmt: skip
    rates = in_round_ceilings(CEILINGS, res)
    assert rates is not None
    assert rates["matmul_flops_per_s"] == pytest.approx(6.5e14)
    assert rates["fp8_matmul_flops_per_s"] == pytest.approx(1.2e15)
    assert rates["copy_bytes_per_s"] == CEILINGS["copy_bytes_per_s"]
    bf16_only = in_round_ceilings(CEILINGS, {"dense_mm": res["dense_mm"]})
    assert bf16_only is not None and "fp8_matmul_flops_per_s" not in bf16_only  # never the start's rate
    assert in_round_ceilings(CEILINGS, {"default": {"median_us": 500.0}}) is None  # without --in-round
    point = {**_point("qwen3-30b-a3b-ep1", 4096, 557.3), "roofline_in_round_us": 480.0}
    assert main(["--from-json", _report(tmp_path / "r.json", "day-4", [point])]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| qwen3"))
    assert "| 90% | 50% | - | 86% | `" in row  # 480 / 557.3
