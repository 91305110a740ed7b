"""Programmatic dependent launch (``kernels.pdl``): when it applies, and that every kernel launched
with it waits for its predecessor before it touches memory.

The second part compiles each Triton kernel of the layer for sm_90a with ``PDL`` on, in a child
Python without ``TRITON_INTERPRET`` (``benchmarks.offline_child``; compile only, nothing runs), and
reads the PTX: ``griddepcontrol.wait`` must come before the first global load, store or atomic and
before the first TMA or ``cp.async`` copy, and ``griddepcontrol.launch_dependents`` after the wait:
in the GEMMs (also their Hopper fp8 TMA versions) after their K loop's last MMA, in the small kernels
before any access. A kernel that read its predecessor's output first would race with it; one that
never waited could finish before it and break the order of the chain.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from benchmarks.offline_child import run_offline
from kernels import pdl


def test_the_interpreter_the_cpu_and_rocm_never_launch_with_pdl(monkeypatch: pytest.MonkeyPatch) -> None:
    # the environment, not triton.knobs: setting a knob would outlive monkeypatch's undo
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "TRITON_INTERPRET" in (pdl.pdl_unready(torch.device("cpu")) or "")
    assert pdl.pdl_args(torch.device("cpu")) == {"PDL": False}
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "not an NVIDIA CUDA GPU" in (pdl.pdl_unready(torch.device("cpu")) or "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pdl, "_capability", lambda index: (9, 4))  # an MI300's, as a ROCm build reports it
    assert pdl.pdl_unready(torch.device("cuda", 0)) is None  # what an NVIDIA sm_90 GPU would get
    monkeypatch.setattr(torch.version, "hip", "6.2")  # a ROCm build: its "cuda" devices run no PTX
    assert "not an NVIDIA CUDA GPU" in (pdl.pdl_unready(torch.device("cuda", 0)) or "")


def test_the_environment_turns_it_off_and_forcing_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pdl, "_capability", lambda index: (9, 0))
    monkeypatch.setenv(pdl.ENV, "0")
    assert pdl.pdl_unready(torch.device("cuda", 0)) == f"{pdl.ENV}=0 is set"
    with pdl.pdl_forced(True):
        assert pdl.pdl_args(torch.device("cuda", 0)) == {"PDL": True, "launch_pdl": True}
        with pdl.pdl_forced(False):
            assert "pdl_forced(False)" in (pdl.pdl_unready(torch.device("cuda", 0)) or "")
        assert pdl.pdl_unready(torch.device("cuda", 0)) is None  # the outer block's setting is back
    assert pdl.pdl_unready(torch.device("cuda", 0)) == f"{pdl.ENV}=0 is set"


def test_forcing_it_on_does_not_reach_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pdl.pdl_forced(True):
        assert pdl.pdl_args(torch.device("cuda", 0)) == {"PDL": False}
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pdl, "_capability", lambda index: (8, 0))
    with pdl.pdl_forced(True):
        assert pdl.pdl_args(torch.device("cuda", 0)) == {"PDL": False}


def test_forcing_holds_in_its_own_thread_only() -> None:
    import threading

    seen: list[bool | None] = []
    with pdl.pdl_forced(False):
        worker = threading.Thread(target=lambda: seen.append(pdl._forced.get()))
        worker.start()
        worker.join()
        assert pdl._forced.get() is False
    assert seen == [None] and pdl._forced.get() is None


def test_turning_it_off_on_a_gpu_that_has_it_marks_the_runners_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    from kernels.runner import FusedMoERunner
    from kernels.source_hash import source_hash

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pdl, "_capability", lambda index: (9, 0))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr("kernels.runner.gluon_unready", lambda *a: "not in this test")
    monkeypatch.delenv(pdl.ENV, raising=False)
    assert not pdl.pdl_turned_off(torch.device("cuda"))
    assert FusedMoERunner().source_hash == source_hash()
    monkeypatch.setenv(pdl.ENV, "0")
    assert pdl.pdl_turned_off(torch.device("cuda"))
    assert FusedMoERunner().source_hash == source_hash() + "+pdl-off"
    monkeypatch.setattr(pdl, "_capability", lambda index: (8, 0))  # it never had PDL: nothing turned off
    assert not pdl.pdl_turned_off(torch.device("cuda"))


def test_an_old_gpu_launches_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pdl.ENV, raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(pdl, "_capability", lambda index: (8, 0))
    assert pdl.pdl_unready(torch.device("cuda", 0)) == "compute capability 8.0 is below 9.0"
    monkeypatch.setattr(pdl, "_capability", lambda index: (9, 0))
    assert pdl.pdl_unready(torch.device("cuda", 0)) is None
    assert pdl.pdl_args(torch.device("cuda", 0)) == {"PDL": True, "launch_pdl": True}


CHILD = """
import json
import re
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kernels import align, quant, row_gather
from kernels.fused_moe import _combine_kernel, _down_kernel, _gate_up_kernel

TYPES = {"x_ptr": "*bf16", "w1_ptr": "*bf16", "h_ptr": "*bf16", "w2_ptr": "*bf16", "y_ptr": "*bf16",
         "out_ptr": "*bf16", "q_ptr": "*fp8e4nv", "topk_weights_ptr": "*fp32", "xs_ptr": "*fp32",
         "w1s_ptr": "*fp32", "hs_ptr": "*fp32", "w2s_ptr": "*fp32", "s_ptr": "*fp32", "out_s_ptr": "*fp32"}
def gemm(block_m, block_n, block_k, fp8, **more):
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8, "EVEN_K": True,
            "DOT_PRECISION": "tf32", "USE_TMA": fp8, "BLOCK_SCALE": fp8, **more}
KERNELS = {
    "align_fused": (align._align_fused_kernel, {"BLOCK_M": 16, "LANES": 32, "CHUNK_": 128, "BB": 64}),
    "align_count": (align._align_count_kernel, {"CHUNK_": 128, "LANES": 32}),
    "align_scan_chunks": (align._align_scan_chunks_kernel, {"EB": 8, "CB": 256}),
    "align_scan_experts": (align._align_scan_experts_kernel, {"BLOCK_M": 16, "LANES": 32}),
    "align_scatter": (align._align_scatter_kernel, {"CHUNK_": 128, "LANES": 32, "BB": 64}),
    "quant": (quant._quant_groups_kernel, {"BLOCK_T": 16, "GROUP_": 128}),
    "quant_sorted": (quant._quant_groups_sorted_kernel, {"TOP_K": 8, "BLOCK_T": 16, "PAD_ROWS": 64,
                                                         "GROUP_": 128}),
    "gather_rows": (row_gather._gather_rows_kernel, {"TOP_K": 8, "BLOCK_R": 16, "BLOCK_B": 512,
                                                      "BLOCK_G": 64, "HAS_SCALES": True}),
    "gate_up": (_gate_up_kernel, gemm(16, 64, 64, fp8=False, SORTED_X=False)),
    "down": (_down_kernel, gemm(16, 64, 64, fp8=False)),
    "combine": (_combine_kernel, {"TOP_K": 8, "BLOCK_T": 2, "BLOCK_N": 1024, "BY_ROWS": True}),
    # the Hopper fp8 defaults' Triton GEMMs: TMA descriptors, block scales, x in the alignment's order
    "gate_up_fp8_tma": (_gate_up_kernel, gemm(64, 128, 128, fp8=True, SORTED_X=True)),
    "down_fp8_tma": (_down_kernel, gemm(64, 128, 128, fp8=True)),
}
ROWS, WEIGHTS = "tensordesc<fp8e4nv[64,128]>", "tensordesc<fp8e4nv[128,128]>"
DESCRIPTORS = {"gate_up_fp8_tma": {"x_ptr": ROWS, "w1_ptr": WEIGHTS, "h_ptr": "*fp8e4nv"},
               "down_fp8_tma": {"h_ptr": ROWS, "w2_ptr": WEIGHTS}}
MEMORY = re.compile(r"\\b(ld\\.global|st\\.global|atom\\.global|red\\.global|cp\\.async|cp\\.reduce\\.async)")
out = {}
for name, (fn, constexprs) in KERNELS.items():
    constexprs = {**constexprs, "PDL": True}
    bytes_view = {"x_ptr": "*u8", "out_ptr": "*u8"} if name == "gather_rows" else {}
    types = {n: bytes_view.get(n, TYPES.get(n, "*i32")) for n in fn.arg_names if n.endswith("_ptr")}
    types.update(DESCRIPTORS.get(name, {}))
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in fn.arg_names}
    ptx = triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 90, 32),
                         options={"num_warps": 4}).asm["ptx"]
    wait = ptx.find("griddepcontrol.wait")
    first = MEMORY.search(ptx)
    out[name] = {"wait": wait, "launch": ptx.find("griddepcontrol.launch_dependents"),
                 "first_memory": first.start() if first else -1, "first_op": first.group(1) if first else "",
                 "last_mma": max(ptx.rfind("mma.sync"), ptx.rfind("wgmma.mma_async"))}
print(json.dumps(out))
"""


def test_every_pdl_kernel_waits_before_it_touches_memory() -> None:
    found = run_offline(CHILD)
    assert len(found) == 13
    for name, at in found.items():
        assert at["wait"] >= 0 and at["launch"] > at["wait"], f"{name}: {at}"
        assert 0 <= at["wait"] < at["first_memory"], f"{name}: its first {at['first_op']} precedes the wait"
    for gemm in ("gate_up", "down", "gate_up_fp8_tma", "down_fp8_tma"):  # only after their K loop's MMAs
        assert 0 < found[gemm]["last_mma"] < found[gemm]["launch"], f"{gemm}: {found[gemm]}"
    for small in ("align_fused", "quant", "gather_rows", "combine"):  # these at once, after the wait
        assert found[small]["launch"] < found[small]["first_memory"], f"{small}: {found[small]}"


def test_the_ab_scripts_paired_ratio_is_not_moved_by_a_clock_step_between_rounds() -> None:
    from benchmarks.pdl_ab import paired_ratio

    # run 97's qwen3-235b fp8 T = 1024 shape: both variants step from ~456 to ~500 µs mid-run
    base = [456.0, 456.0, 457.0, 457.0, 458.0, 498.0, 500.0, 507.0, 507.0]
    pdl_rounds = [454.0, 454.0, 455.0, 455.0, 494.0, 499.0, 506.0, 506.0, 500.0]
    assert sorted(pdl_rounds)[4] / sorted(base)[4] > 1.07  # the medians straddle the step
    assert paired_ratio(base, pdl_rounds) == pytest.approx(455.0 / 457.0)
    with pytest.raises(ValueError):
        paired_ratio(base, pdl_rounds[:-1])
