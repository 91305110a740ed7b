"""Triton MoE kernels of pytest-moetune (plain Triton + torch; never imports pytest).

Public API:

- :func:`fused_moe` - the fused MoE layer of one EP rank (bf16/fp16/fp32).
- :func:`moe_align` / :class:`Alignment` - device-side EP-local alignment.
- :class:`Tactic`, :class:`GemmTile`, :class:`MoEProblem`, :func:`tactics`, :func:`default_tactic`
  - the tactic space.
- :func:`fused_moe_reference` - the one fp32 torch reference.
- :func:`grouped_mm_moe` - the plain-PyTorch peer on ``torch._grouped_mm``.
"""

from kernels.align import Alignment, max_padded_rows, moe_align
from kernels.fused_moe import fused_moe, problem_of, validate_inputs
from kernels.peer import grouped_mm_moe
from kernels.reference import fused_moe_reference
from kernels.tactics import GemmTile, MoEProblem, Tactic, default_tactic, tactics

__all__ = [
    "Alignment",
    "GemmTile",
    "MoEProblem",
    "Tactic",
    "default_tactic",
    "fused_moe",
    "fused_moe_reference",
    "grouped_mm_moe",
    "max_padded_rows",
    "moe_align",
    "problem_of",
    "tactics",
    "validate_inputs",
]
