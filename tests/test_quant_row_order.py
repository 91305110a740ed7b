"""The two ways of ``kernels.quant.quantize_fp8_groups_sorted`` (token-major, and two passes: per-token
quantization then a row gather) give the same bits (CPU, Triton interpreter, small shapes), and
``two_pass=None`` picks by ``top_k``."""

from __future__ import annotations

import pytest
import torch

from kernels import moe_align
from kernels.quant import TWO_PASS_TOP_K, quantize_fp8_groups_sorted


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
    q, s = quantize_fp8_groups_sorted(x, al, k, two_pass=False)
    q2, s2 = quantize_fp8_groups_sorted(x, al, k, two_pass=True)
    padded = int(al.num_padded.item())
    assert (al.sorted_ids[:padded] == t * k).any()  # padding rows are among the compared rows
    assert torch.equal(q2[:padded].view(torch.uint8), q[:padded].view(torch.uint8))
    assert torch.equal(s2[:padded], s[:padded])
    with pytest.raises(ValueError, match=f"does not fit T={t} x top_k={k + 1}"):
        quantize_fp8_groups_sorted(x, al, k + 1, two_pass=True)


def test_the_default_takes_two_passes_from_top_k_8(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which path runs is seen through what it launches (the two-pass one calls the row gather)."""
    import kernels.quant as quant

    launched: list[str] = []

    class Spy:
        def __init__(self, name: str, kernel: object) -> None:
            self.name, self.kernel = name, kernel

        def __getitem__(self, grid: object) -> object:
            launched.append(self.name)
            return self.kernel[grid]

    def gather(*args: object) -> object:
        launched.append("gather")
        return real_gather(*args)

    real_gather = quant.gather_rows_sorted
    monkeypatch.setattr(quant, "gather_rows_sorted", gather)
    token_major = Spy("token-major", quant._quant_groups_sorted_kernel)
    monkeypatch.setattr(quant, "_quant_groups_sorted_kernel", token_major)
    assert TWO_PASS_TOP_K == 8
    for k, expected in ((2, "token-major"), (8, "gather")):
        ids = torch.stack([torch.randperm(8)[:k] for _ in range(5)]).to(torch.int32).contiguous()
        al = moe_align(ids, 16, 8, 0)
        launched.clear()
        quantize_fp8_groups_sorted(torch.randn(5, 128).to(torch.bfloat16), al, k)
        assert launched == [expected]
