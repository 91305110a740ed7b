"""This repo's fused MoE layer as a runner for pytest-moetune's tuner and gate.

Duck-typed to ``pytest_moetune.runner.MoERunner`` (kernels never import pytest or the plugin): the
``problem`` it receives has ``model`` (``num_experts``, ``top_k``, ``hidden``, ``intermediate``),
``topology`` (``local_num_experts``, ``local_expert_offset``), ``expected_local_slots``, ``dtype``
(``"bf16"``, ``"fp16"``, ``"fp8_w8a8"``) and ``num_tokens``.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import astuple, replace
from typing import Any

import torch
import triton
import triton.language as tl

from kernels.fused_moe import fused_moe
from kernels.gluon_support import gluon_unready
from kernels.pdl import pdl_turned_off
from kernels.peer import grouped_mm_moe
from kernels.quant import (
    dequantize_fp8_block,
    dequantize_fp8_groups,
    fused_moe_fp8,
    quantize_fp8_block,
    quantize_fp8_groups,
)
from kernels.reference import fused_moe_reference
from kernels.source_hash import source_hash, space_hash
from kernels.tactics import GemmTile, MoEProblem, Tactic, default_tactic, tactics

_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8_w8a8": torch.bfloat16}
_KERNEL_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp8_w8a8": "float8_e4m3fn"}
SLOWDOWN_ENV = "MOETUNE_TEST_SLOWDOWN"
"""Test-only: a fraction (e.g. ``0.05``) by which every launch is made slower, to measure whether the
gate catches a slowdown of that size (BENCHMARKS.md, gate quality). Unset in real use."""
# ||out - ref|| / ||ref|| a correct tactic stays under (16-bit outputs; fp8 rounds h once more).
_MAX_RELATIVE_ERROR = {"bf16": 1e-2, "fp16": 2e-3, "fp8_w8a8": 2e-2}


def kernel_problem(problem: Any) -> MoEProblem:
    """The kernels' static problem for a tuner bucket: its expected local slots (the tuner's count of
    what its routing sends to the rank, else the topology's expectation). Where dispatched traffic
    brings more slots than the bucket's ``T * top_k``, the problem has the rows that carry them."""
    topology, model = problem.topology, problem.model
    slots = round(problem.expected_local_slots)
    return MoEProblem(
        num_tokens=max(problem.num_tokens, math.ceil(slots / model.top_k)),
        hidden_size=model.hidden,
        intermediate_size=model.intermediate,
        num_local_experts=topology.local_num_experts,
        top_k=model.top_k,
        dtype=_KERNEL_DTYPES[problem.dtype],
        num_local_slots=slots,
    )


@triton.jit
def _spin_kernel(duration_ns):
    """Busy-wait ``duration_ns`` on the global timer (one program): the test-only slowdown."""
    start = tl.extra.cuda.globaltimer()
    now = start
    while now - start < duration_ns:
        now = tl.extra.cuda.globaltimer()


def slowdown_from_env() -> float:
    """``$MOETUNE_TEST_SLOWDOWN`` as a fraction in [0, 1); 0 when unset."""
    raw = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise ValueError(f"${SLOWDOWN_ENV}={raw!r} must be a fraction in [0, 1), e.g. 0.05")
    return value


class FusedMoERunner:
    """``kernels.fused_moe`` (bf16/fp16) and ``kernels.fused_moe_fp8`` (w8a8 block-scale)."""

    name = "fused_moe"

    def __init__(self, *, allow_gluon: bool = True) -> None:
        self.source_hash = source_hash() + ("+pdl-off" if pdl_turned_off(torch.device("cuda")) else "")
        """The kernels' code hash; ``+pdl-off`` where this GPU could launch them with PDL but it was
        turned off (``MOETUNE_PDL=0``, or a ``kernels.pdl.pdl_forced(False)`` block around this
        constructor; decided here, once): they run slower at decode, so the tuner re-tunes and the
        gate says the kernel changed."""
        self.space_hash = space_hash()
        """Keys the tuning cache beside ``source_hash``: this module decides the tactic space."""
        self.slowdown = slowdown_from_env()
        self._spin_ns: dict[tuple[int, Tactic], int] = {}
        self.gluon = allow_gluon and gluon_unready() is None
        """Whether the Gluon fp8 tiles join the fp8 tactic space and default: allowed, and this
        process's CUDA device runs them (Hopper)."""
        self.vllm_kernels_only = not allow_gluon
        """The export runner's space: only what vLLM's Triton MoE kernel runs, so no Gluon tiles and
        no ``sorted_x`` gate/up (vLLM gathers x's rows; a sorted tile's time includes a copy it
        does not make)."""
        if not allow_gluon:
            self.name = f"{type(self).name}-triton"  # its own tuning cache entries

    def for_export(self, fmt: str) -> FusedMoERunner:
        """The runner ``moetune tune --export vllm`` tunes with: vLLM runs Triton kernels that gather
        x's rows, so the Gluon tiles (this repo's own kernels) and the ``sorted_x`` gate/up tiles are
        left out, under the name ``fused_moe-triton``."""
        if fmt != "vllm":
            raise ValueError(f"no export format {fmt!r} for {self.name}; supported: vllm")
        return type(self)(allow_gluon=False)

    def supports(self, problem: Any) -> bool:
        return problem.dtype in _KERNEL_DTYPES

    def tactics(self, problem: Any) -> list[Tactic]:
        space = tactics(kernel_problem(problem), gluon=self.gluon)
        if self.vllm_kernels_only:
            space = [t for t in space if not t.gate_up.sorted_x]
        return space

    def default_tactic(self, problem: Any) -> Tactic:
        tactic = default_tactic(kernel_problem(problem), gluon=self.gluon)
        if self.vllm_kernels_only and tactic.gate_up.sorted_x:  # vLLM gathers x's rows
            tactic = replace(tactic, gate_up=replace(tactic.gate_up, sorted_x=False))
        return tactic

    def tactic_to_dict(self, tactic: Tactic) -> dict[str, Any]:
        return tactic.to_dict()

    def tactic_from_dict(self, data: dict[str, Any]) -> Tactic:
        return Tactic.from_dict(data)

    def make_inputs(self, problem: Any, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> dict[str, Any]:
        """Random activations and weights on ``topk_ids``' device.

        ``x (T, H)``, ``w1 (L, 2I, H)``, ``w2 (L, H, I)`` in bf16/fp16, scaled so activations stay
        O(1); for fp8 the weights are quantized to e4m3 with 128x128 block scales (``w1_scale``,
        ``w2_scale``), and ``w1``/``w2`` hold their bf16 dequantization for the reference.
        """
        model, topology = problem.model, problem.topology
        dev, dtype = topk_ids.device, _TORCH_DTYPES[problem.dtype]
        num_local, hidden, inter = topology.local_num_experts, model.hidden, model.intermediate
        x = torch.randn(problem.num_tokens, hidden, device=dev, dtype=dtype)
        w1 = torch.randn(num_local, 2 * inter, hidden, device=dev, dtype=dtype) / math.sqrt(hidden)
        w2 = torch.randn(num_local, hidden, inter, device=dev, dtype=dtype) / math.sqrt(inter)
        inputs: dict[str, Any] = {
            "x": x,
            "topk_ids": topk_ids,
            "topk_weights": topk_weights,
            "offset": topology.local_expert_offset,
            "fp8": problem.dtype == "fp8_w8a8",
        }
        if inputs["fp8"]:
            q1, s1 = quantize_fp8_block(w1)
            q2, s2 = quantize_fp8_block(w2)
            inputs.update(w1_q=q1, w1_scale=s1, w2_q=q2, w2_scale=s2)
            inputs.update(
                w1=dequantize_fp8_block(q1, s1).to(dtype), w2=dequantize_fp8_block(q2, s2).to(dtype)
            )
        else:
            inputs.update(w1=w1, w2=w2)
        inputs["out"] = torch.empty_like(x)
        return inputs

    def run(self, inputs: dict[str, Any], tactic: Tactic) -> torch.Tensor:
        out = self._launch(inputs, tactic)
        if self.slowdown:
            _spin_kernel[(1,)](self._spin_for(inputs, tactic))
        return out

    def _spin_for(self, inputs: dict[str, Any], tactic: Tactic) -> int:
        """Nanoseconds of extra work: ``slowdown`` x this launch's own time, measured on first use
        (outside any graph capture: the timers launch once before) the way the gate times it: a
        CUDA graph of back-to-back launches replayed between CUDA events, so that eager launch gaps
        do not inflate the injected slowdown; one untimed replay first, then the median of 9. (Session
        15's run 53 once injected 7.4% for a 5% slowdown, calibrated on the median of 5 replays with
        no untimed one first; the cause is not known, and this is a hardening, not a fix of it.)"""
        key = (id(inputs), tactic)
        if key not in self._spin_ns:
            if torch.cuda.is_current_stream_capturing():
                raise RuntimeError(f"${SLOWDOWN_ENV}: launch once outside graph capture to calibrate")
            calls = 20
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.stream(stream):
                self._launch(inputs, tactic)
                with torch.cuda.graph(graph, stream=stream):
                    for _ in range(calls):
                        self._launch(inputs, tactic)
            torch.cuda.current_stream().wait_stream(stream)
            graph.replay()  # untimed: the first replay uploads the graph
            times = []
            for _ in range(9):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                graph.replay()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) * 1e6 / calls)
            self._spin_ns[key] = int(self.slowdown * statistics.median(times))
        return self._spin_ns[key]

    def _launch(self, inputs: dict[str, Any], tactic: Tactic) -> torch.Tensor:
        routing = (inputs["topk_ids"], inputs["topk_weights"])
        options = {"local_expert_offset": inputs["offset"], "tactic": tactic, "out": inputs["out"]}
        if inputs["fp8"]:
            weights = (inputs["w1_q"], inputs["w1_scale"], inputs["w2_q"], inputs["w2_scale"])
            return fused_moe_fp8(inputs["x"], *weights, *routing, **options)
        return fused_moe(inputs["x"], inputs["w1"], inputs["w2"], *routing, **options)

    def _dense_layer_args(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """``(w1, w2, topk_ids, topk_weights)`` of the 16-bit layer (dequantized weights for fp8)."""
        return inputs["w1"], inputs["w2"], inputs["topk_ids"], inputs["topk_weights"]

    def reference(self, inputs: dict[str, Any]) -> torch.Tensor:
        """fp32 reference on the same (quantized) inputs: for fp8, x as the layer quantizes it."""
        x = inputs["x"]
        if inputs["fp8"]:
            x = dequantize_fp8_groups(*quantize_fp8_groups(x))
        return fused_moe_reference(
            x,
            *self._dense_layer_args(inputs),
            local_expert_offset=inputs["offset"],
            act_quant="fp8_group" if inputs["fp8"] else None,
        )

    def max_relative_error(self, problem: Any) -> float:
        return _MAX_RELATIVE_ERROR[problem.dtype]

    def peer(self, inputs: dict[str, Any]) -> torch.Tensor:
        """The plain-PyTorch layer on ``torch._grouped_mm`` a user would run instead (bf16/fp16;
        for fp8 cases the bf16 layer on the dequantized weights)."""
        return grouped_mm_moe(
            inputs["x"], *self._dense_layer_args(inputs), local_expert_offset=inputs["offset"]
        )

    def compile_units(self, problem: Any, tactic: Tactic) -> list[tuple[Any, ...]]:
        """The GEMM kernels ``tactic`` compiles on ``problem``: what their compile-time constants
        depend on (dtype, block_m, the tile, whether K divides into whole K blocks). Tactics that
        share a tile share its kernel; so do models whose sizes divide alike."""
        p = kernel_problem(problem)
        gemms = (("gate_up", tactic.gate_up, p.hidden_size), ("down", tactic.down, p.intermediate_size))
        return [
            (gemm, p.dtype, tactic.block_m, astuple(tile), k % tile.block_k == 0) for gemm, tile, k in gemms
        ]

    def vllm_config(self, tactic: Tactic) -> dict[str, int]:
        """vLLM runs one tile config for both GEMMs: the gate/up GEMM's (the larger one). A tactic
        with Gluon tiles or a ``sorted_x`` gate/up has no vLLM equivalent (``ValueError``; tune
        with :meth:`for_export`)."""
        if tactic.gate_up.gluon or tactic.down.gluon:
            raise ValueError(f"tactic {tactic.name} runs this repo's Gluon fp8 kernels, which vLLM does "
                             f"not have; tune for export with for_export('vllm')")  # fmt: skip
        if tactic.gate_up.sorted_x:
            raise ValueError(f"tactic {tactic.name} reads x copied into the alignment's order, which "
                             f"vLLM's kernel does not; tune for export with for_export('vllm')")  # fmt: skip
        tile: GemmTile = tactic.gate_up
        return {
            "BLOCK_SIZE_M": tactic.block_m,
            "BLOCK_SIZE_N": tile.block_n,
            "BLOCK_SIZE_K": tile.block_k,
            "GROUP_SIZE_M": tile.group_m,
            "num_warps": tile.num_warps,
            "num_stages": tile.num_stages,
        }
