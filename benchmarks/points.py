"""The loop of the per-point GPU benchmarks: each case at each token count, one JSON row per line.

Shared by ``benchmarks/ab_gluon_gemms.py``, ``benchmarks/ab_bf16_down.py``,
``benchmarks/ab_bf16_gate_up.py`` and ``benchmarks/combine_bench.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.bench_fused_moe import CASES, Case

ISSUE_CASES = "deepseek-r1-dep8,qwen3-235b-a22b-dep2,mixtral-8x7b-ep1,qwen3-30b-a3b-ep1"
"""Issue 3's four performance cases, as a ``--cases`` value."""


def each_point(cases: str, tokens: str, measure: Callable[[Case, int], list[dict[str, Any]]],
               json_path: str | None) -> list[dict[str, Any]]:  # fmt: skip
    """``measure(case, T)`` for every case of the comma list ``cases`` (names of
    ``benchmarks.bench_fused_moe.CASES``) at every token count of the comma list ``tokens``; each row
    printed as one JSON line as it comes, the CUDA cache emptied between points, and all rows written
    to ``json_path`` (if given) at the end. An unknown case name stops before any GPU work."""
    names = cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown cases {unknown}: choose from {sorted(CASES)}")
    rows: list[dict[str, Any]] = []
    for name in names:
        for t in (int(v) for v in tokens.split(",")):
            for row in measure(CASES[name], t):
                print(json.dumps(row), flush=True)
                rows.append(row)
            torch.cuda.empty_cache()
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rows, f, indent=1)
    return rows
