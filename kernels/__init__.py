"""Triton MoE kernels of pytest-moetune (plain Triton + torch; never imports pytest).

Public API:

- :func:`fused_moe` - the fused MoE layer of one EP rank (bf16/fp16/fp32).
- :func:`moe_align` / :class:`Alignment` - device-side EP-local alignment.
- :class:`Tactic`, :class:`GemmTile`, :class:`MoEProblem`, :func:`tactics`, :func:`default_tactic`
  - the tactic space.
- :func:`fused_moe_reference` - the one fp32 torch reference.
- :func:`grouped_mm_moe` - the plain-PyTorch peer on ``torch._grouped_mm``.
- :func:`fused_moe_fp8` and the fp8 helpers (:func:`quantize_fp8_block`,
  :func:`dequantize_fp8_block`, :func:`quantize_fp8_groups`, :func:`dequantize_fp8_groups`) -
  e4m3 w8a8 with 128x128 weight block scales and per-token 128-group activation scales. On Hopper
  its GEMMs can run as Gluon kernels (``GemmTile(gluon=True)``; :mod:`kernels.gluon_gate_up`,
  :mod:`kernels.gluon_down`), which :func:`tactics` and :func:`default_tactic` offer with
  ``gluon=True`` and :func:`gluon_unready` says whether this device runs.
"""

from kernels.align import Alignment, max_padded_rows, moe_align
from kernels.fused_moe import fused_moe, problem_of, validate_inputs
from kernels.gluon_support import gluon_unready
from kernels.peer import grouped_mm_moe
from kernels.quant import (
    dequantize_fp8_block,
    dequantize_fp8_groups,
    fused_moe_fp8,
    quantize_fp8_block,
    quantize_fp8_groups,
)
from kernels.reference import fused_moe_reference
from kernels.tactics import GemmTile, MoEProblem, Tactic, default_tactic, tactics

__all__ = [
    "Alignment",
    "GemmTile",
    "MoEProblem",
    "Tactic",
    "default_tactic",
    "dequantize_fp8_block",
    "dequantize_fp8_groups",
    "fused_moe",
    "fused_moe_fp8",
    "fused_moe_reference",
    "gluon_unready",
    "grouped_mm_moe",
    "max_padded_rows",
    "moe_align",
    "problem_of",
    "quantize_fp8_block",
    "quantize_fp8_groups",
    "tactics",
    "validate_inputs",
]
