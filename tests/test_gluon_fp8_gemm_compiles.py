"""The block-scaled fp8 GEMMs of benchmarks/gluon_fp8_gemm.py compile for sm_90a on a CPU, and their wgmma
waits are what the Gluon kernel exists for: one wgmma outstanding in the Gluon loop, none in Triton's.

Compile only (no GPU, nothing is executed); about 10 s, served from Triton's cache on a rerun. The
compile runs in a child Python without ``TRITON_INTERPRET``: the repo's conftest sets it on GPU-less
machines, and once ``triton`` is imported under it every ``@triton.jit`` function (Triton's own
``cdiv``, which Gluon imports, included) is an interpreter object that can neither be compiled nor
imported into Gluon.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("triton")

TILE = (128, 128, 8, 3)  # block_m, block_n, num_warps, num_stages: the register-feasible 128x128 tile
CHILD = f"""
import dataclasses, json
from benchmarks import gluon_fp8_gemm as gemm
reports = gemm.offline_reports([{TILE!r}]) if gemm.HAS_GLUON else []
print(json.dumps({{"has_gluon": gemm.HAS_GLUON, "reports": [dataclasses.asdict(r) for r in reports]}}))
"""


@pytest.fixture(scope="module")
def reports(gluon_child: Callable[[str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["kernel"]: r for r in gluon_child(CHILD)["reports"]}


def test_both_kernels_compile_for_sm90a_without_spills(reports: dict[str, dict[str, Any]]) -> None:
    for name, report in reports.items():
        assert report["ok"], f"{name}: {report['error']}"
        assert 0 < report["registers"] <= 255, (name, report["registers"])
        assert report["spill_stores"] == 0 and report["spill_loads"] == 0, (name, report)


def test_gluon_loop_keeps_one_wgmma_in_flight(reports: dict[str, dict[str, Any]]) -> None:
    gluon = reports["gluon"]
    assert 1 in gluon["ptx_waits"], gluon["ptx_waits"]
    in_loop = [pendings for pendings, inside in gluon["ttgir_waits"] if inside]
    assert in_loop and set(in_loop) == {1}, gluon["ttgir_waits"]
    # ptxas must not have fallen back to serialized wgmmas (C7512/C7514/C7515: "... are serialized").
    assert not [w for w in gluon["ptxas_warnings"] if "serialized" in w], gluon["ptxas_warnings"]


def test_triton_baseline_waits_for_every_fp8_dot(reports: dict[str, dict[str, Any]]) -> None:
    triton_report = reports["triton"]
    assert triton_report["ptx_waits"] and set(triton_report["ptx_waits"]) == {0}, triton_report["ptx_waits"]
    assert [p for p, inside in triton_report["ttgir_waits"] if inside] == [0], triton_report["ttgir_waits"]


@pytest.mark.parametrize(
    ("text", "sticky"),
    [
        ("CUDA error: an illegal memory access was encountered", True),
        ("Triton Error [CUDA]: misaligned address", True),
        ("Triton Error [CUDA]: unspecified launch failure", True),
        ("CUDA error: out of memory", False),
        ("ptxas fatal   : illegal memory space for instruction 'ld'", False),
    ],
)
def test_the_gpu_modes_stop_at_a_sticky_cuda_error_only(text: str, sticky: bool) -> None:
    """The GPU modes (here and in the fp8 MoE scripts that import it) stop at an error after which
    every launch fails, as the tuner does, and report any other as one variant's failure."""
    pytest.importorskip("torch")
    from benchmarks import gluon_fp8_gemm as gemm

    assert gemm.is_cuda_fault(RuntimeError(text)) is sticky
