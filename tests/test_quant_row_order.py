"""``benchmarks/quant_row_order.py``'s two-pass sorted quantization gives the same bits as
``kernels.quant.quantize_fp8_groups_sorted`` (CPU, Triton interpreter, small shapes), so the GPU
benchmark can time one against the other."""

from __future__ import annotations

import pytest
import torch

from benchmarks.quant_row_order import quantize_fp8_groups_sorted_two_pass
from kernels import moe_align
from kernels.quant import quantize_fp8_groups_sorted


@pytest.mark.parametrize(
    ("t", "k", "h", "block_m", "fused"),
    [(9, 3, 200, 16, True), (70, 4, 384, 32, False)],
    ids=["one-program-align", "four-launch-align"],
)
def test_two_pass_matches_the_token_major_kernel(t: int, k: int, h: int, block_m: int, fused: bool) -> None:
    gen = torch.Generator().manual_seed(t)
    x = (torch.randn(t, h, generator=gen) * 3).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(8, generator=gen)[:k] for _ in range(t)]).to(torch.int32)
    al = moe_align(ids.contiguous(), block_m, 6, 0, fused=fused)  # experts 6 and 7 are not local
    q, s = quantize_fp8_groups_sorted(x, al, k)
    q2, s2 = quantize_fp8_groups_sorted_two_pass(x, al, k, block_h=128)
    padded = int(al.num_padded.item())
    assert (al.sorted_ids[:padded] == t * k).any()  # padding rows are among the compared rows
    assert torch.equal(q2[:padded].view(torch.uint8), q[:padded].view(torch.uint8))
    assert torch.equal(s2[:padded], s[:padded])
    with pytest.raises(ValueError, match=f"does not fit T={t} x top_k={k + 1}"):
        quantize_fp8_groups_sorted_two_pass(x, al, k + 1)
