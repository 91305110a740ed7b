"""The fp8 gate/ups' division of h by its row scales, on the GPU: the same bits as torch's IEEE division.

The gate/up epilogues quantize ``h (rows, 128)`` fp32 by its per-row group scale ``s`` before the
e4m3 cast. They divide once per row (``1 / s``) and correct each ``h * (1 / s)`` with two FMAs
(``kernels.fused_moe._quotient_rn`` in Triton, ``kernels.gluon_gate_up._e4m3_quotient`` in Gluon),
which must give torch's ``h / s`` (``div.rn``) bit for bit wherever h is a normal number, and the
same e4m3 codes everywhere (zeros of either sign, subnormal h, values clamped at +-448). The FMAs
need the GPU: the Triton interpreter rounds an FMA twice.

Inputs span about 58 binary orders of magnitude, with the layer's scales (``max |h| / 448``) on half the
rows and arbitrary ones on the rest (so some quotients clamp), plus rows of +-0 and of subnormals.
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from kernels.fused_moe import _quotient_rn
from kernels.gluon_support import HAS_GLUON, HOPPER, gluon_unready

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: the interpreter does not fuse an FMA"
)

ROWS, COLS = 4096, 128
BLOCK_ROWS = 32


@triton.jit
def _triton_quotient_kernel(h_ptr, s_ptr, q_ptr, BLOCK_ROWS: tl.constexpr, COLS: tl.constexpr):
    """``q = clamp(h / s[:, None], -448, 448)`` by ``kernels.fused_moe._quotient_rn``."""
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    offs = rows[:, None] * COLS + tl.arange(0, COLS)[None, :]
    q = _quotient_rn(tl.load(h_ptr + offs), tl.load(s_ptr + rows)[:, None])
    tl.store(q_ptr + offs, tl.clamp(q, -448.0, 448.0))


if HAS_GLUON:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl

    from kernels.gluon_gate_up import _e4m3_quotient

    @gluon.jit
    def _gluon_quotient_kernel(h_ptr, s_ptr, q_ptr, BLOCK_ROWS: gl.constexpr, COLS: gl.constexpr):
        """``q = _e4m3_quotient(h, s)`` on ``BLOCK_ROWS`` rows per program."""
        layout: gl.constexpr = gl.BlockedLayout([1, 4], [1, 32], [gl.num_warps(), 1], [1, 0])
        rows = gl.program_id(0) * BLOCK_ROWS + gl.arange(0, BLOCK_ROWS, layout=gl.SliceLayout(1, layout))
        cols = gl.arange(0, COLS, layout=gl.SliceLayout(0, layout))
        offs = gl.expand_dims(rows, 1) * COLS + gl.expand_dims(cols, 0)
        gl.store(q_ptr + offs, _e4m3_quotient(gl.load(h_ptr + offs), gl.load(s_ptr + rows)))


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """``h (ROWS, COLS)`` fp32 and its row scales ``s (ROWS,)`` fp32, as the module docstring says."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    h = torch.randn(ROWS, COLS, device="cuda", generator=gen)
    h *= torch.exp(torch.empty(ROWS, COLS, device="cuda").uniform_(-20.0, 20.0, generator=gen))
    h[:8] = 0.0
    h[8:16] = -0.0
    bits = torch.randint(1, 1 << 23, (16, COLS), device="cuda", generator=gen, dtype=torch.int32)
    h[16:32] = bits.view(torch.float32) * torch.where(torch.arange(16, device="cuda") < 8, 1.0, -1.0)[:, None]
    recipe = h.abs().amax(dim=1).clamp_min(1e-10) / 448.0
    arbitrary = torch.exp(torch.empty(ROWS, device="cuda").uniform_(-20.0, 20.0, generator=gen))
    s = torch.where(torch.arange(ROWS, device="cuda") % 2 == 0, recipe, arbitrary)
    return h, s


def _check(q: torch.Tensor, h: torch.Tensor, s: torch.Tensor) -> None:
    want = (h / s[:, None]).clamp(-448.0, 448.0)
    normal = h.abs() >= torch.finfo(torch.float32).tiny
    assert normal.sum() > 0.9 * h.numel()
    differ = (q.view(torch.int32) != want.view(torch.int32)) & normal
    assert not differ.any(), f"{int(differ.sum())} quotients differ from h / s, at {differ.nonzero()[:3]}"
    codes = q.to(torch.float8_e4m3fn).view(torch.uint8)
    want_codes = want.to(torch.float8_e4m3fn).view(torch.uint8)
    assert torch.equal(codes, want_codes), "the e4m3 codes differ from torch's"
    assert (codes[8:16] == 0x80).all() and (codes[:8] == 0).all(), "a zero lost its sign"


def test_triton_quotient_is_torchs_division() -> None:
    h, s = _inputs()
    q = torch.full_like(h, float("nan"))
    _triton_quotient_kernel[(ROWS // BLOCK_ROWS,)](h, s, q, BLOCK_ROWS, COLS)
    _check(q, h, s)


def test_gluon_quotient_is_torchs_division() -> None:
    why = gluon_unready()
    if why is not None or torch.cuda.get_device_capability() != HOPPER:
        pytest.skip(f"the Gluon kernels run on Hopper only: {why or torch.cuda.get_device_name()}")
    h, s = _inputs()
    q = torch.full_like(h, float("nan"))
    _gluon_quotient_kernel[(ROWS // BLOCK_ROWS,)](h, s, q, BLOCK_ROWS, COLS, num_warps=4)
    _check(q, h, s)
