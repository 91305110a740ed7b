"""x in the alignment's row order (``GemmTile.sorted_x``) for the Triton gate/up, on the CPU.

``kernels.row_gather.gather_rows_sorted`` copies token rows into the padded row order; a gate/up
tile with ``sorted_x`` reads that copy by TMA instead of gathering rows. The dot operands are the
same values in the same order, so the layer's output must be the gathered twin's bit for bit
(checked here under the Triton interpreter in fp16/fp32 and, for the Triton fp8 tiles, on the fp8
path's codes; its numerics against the reference are in ``test_correctness_cpu.py``'s edge cases and
on the GPU). Speed is measured on the GPU only (BENCHMARKS.md).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import replace

import pytest
import torch

from kernels import GemmTile, Tactic, fused_moe, fused_moe_fp8, moe_align, quantize_fp8_block
from kernels.quant import quantize_fp8_groups
from kernels.row_gather import gather_rows_sorted

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _routing(t: int, k: int, pool: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(pool, generator=g)[:k] for _ in range(t)]).to(torch.int32)
    weights = torch.softmax(torch.randn(t, k, generator=g), dim=-1)
    return ids.to(DEV).contiguous(), weights.to(DEV).contiguous()


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.bfloat16], ids=["fp16", "fp32", "bf16"])  # noqa: E501
@pytest.mark.parametrize(("t", "k", "h", "block_m"), [(1, 2, 72, 16), (23, 3, 200, 32), (40, 4, 64, 64)])
def test_gather_rows_sorted_is_the_token_rows_in_row_order(
    dtype: torch.dtype, t: int, k: int, h: int, block_m: int
) -> None:
    """Row r is x[sorted_ids[r] // k]; padding rows are zeros. Experts 6 and 7 are not local, so
    some slots have no row at all."""
    g = torch.Generator().manual_seed(t * h)
    x = torch.randn(t, h, generator=g).to(dtype).to(DEV)
    ids, _ = _routing(t, k, 8, seed=t)
    al = moe_align(ids, block_m, 6, 0)
    rows, scales = gather_rows_sorted(x, al, k)
    assert scales is None and rows.dtype == dtype and rows.shape == (al.max_padded, h)
    padded = int(al.num_padded.item())
    slots = al.sorted_ids[:padded].long()
    real = slots < t * k
    assert not bool(real.all())  # padding rows are among the compared ones
    expected = torch.zeros((padded, h), dtype=dtype, device=DEV)
    expected[real] = x[slots[real] // k]
    assert torch.equal(rows[:padded].view(torch.uint8), expected.view(torch.uint8))


def test_gather_rows_sorted_carries_the_scales_of_fp8_rows() -> None:
    """The two-pass fp8 quantization's second pass: codes as bytes, scales alongside (padding rows
    get a zero group's scale)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 256, generator=g).to(torch.bfloat16).to(DEV)
    ids, _ = _routing(9, 2, 4, seed=9)
    al = moe_align(ids, 16, 4, 0)
    q, s = quantize_fp8_groups(x)
    rows, rows_s = gather_rows_sorted(q, al, 2, s)
    assert rows_s is not None and rows.dtype == q.dtype and rows_s.shape == (al.max_padded, 2)
    padded = int(al.num_padded.item())
    slots = al.sorted_ids[:padded].long()
    real = slots < 9 * 2
    assert not bool(real.all())  # 18 slots on 4 experts at block_m 16: padding rows exist
    assert torch.equal(rows[:padded][real].view(torch.uint8), q[slots[real] // 2].view(torch.uint8))
    assert torch.equal(rows_s[:padded][real], s[slots[real] // 2])
    assert not rows[:padded][~real].view(torch.uint8).any()
    zero_scale = torch.tensor(1e-10, dtype=torch.float32) / 448.0
    assert torch.equal(rows_s[:padded][~real].cpu(), zero_scale.expand(int((~real).sum()), 2))


def test_gather_rows_sorted_names_what_it_cannot_copy() -> None:
    x = torch.randn(4, 64).to(torch.float16).to(DEV)
    al = moe_align(_routing(4, 2, 4, seed=1)[0], 16, 4, 0)
    with pytest.raises(ValueError, match=r"does not fit T=4 x top_k=3"):
        gather_rows_sorted(x, al, 3)
    with pytest.raises(ValueError, match=r"unit stride in H"):
        gather_rows_sorted(torch.randn(4, 128).to(torch.float16).to(DEV)[:, ::2], al, 2)
    with pytest.raises(ValueError, match=r"scales must be \(4, G\) float32"):
        gather_rows_sorted(x, al, 2, torch.ones(4, 1, dtype=torch.float16, device=DEV))


TWINS = {
    "m64-fp16-ragged-H": (64, torch.float16, 72, 40, GemmTile(32, 32, 8, 4, 3, tma=True)),
    "m64-fp32": (64, torch.float32, 64, 48, GemmTile(32, 32, 8, 4, 3, tma=True)),
    "m128-fp16": (128, torch.float16, 128, 64, GemmTile(64, 64, 8, 4, 3, tma=True)),
}


@pytest.mark.parametrize("name", list(TWINS))
def test_sorted_x_gives_the_gathered_twins_bits(name: str) -> None:
    block_m, dtype, h, i, gate_up = TWINS[name]
    g = torch.Generator().manual_seed(len(name))
    t, k, num_local = 150, 2, 4
    x = torch.randn(t, h, generator=g).to(dtype).to(DEV)
    w1 = (torch.randn(num_local, 2 * i, h, generator=g) / math.sqrt(h)).to(dtype).to(DEV)
    w2 = (torch.randn(num_local, h, i, generator=g) / math.sqrt(i)).to(dtype).to(DEV)
    ids, weights = _routing(t, k, 6, seed=2)  # experts 4 and 5 belong to another shard
    gathered = Tactic(block_m, gate_up, GemmTile(32, 32, 8, 4, 3, tma=True))
    twin = replace(gathered, gate_up=replace(gate_up, sorted_x=True))
    out = fused_moe(x, w1, w2, ids, weights, tactic=gathered)
    out_sorted = fused_moe(x, w1, w2, ids, weights, tactic=twin)
    assert not torch.isnan(out_sorted).any()
    assert torch.equal(out_sorted, out), (out_sorted.float() - out.float()).abs().max().item()


def test_the_sorted_tile_reads_the_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The twins' equality above would also hold if the sorted tile ignored the copy: with the copy
    zeroed, h and so the output are zero."""
    layer = importlib.import_module("kernels.fused_moe")  # the module (kernels.fused_moe is the function)

    block_m, dtype, h, i, gate_up = TWINS["m64-fp32"]
    calls: list[int] = []

    def zeroed(x: torch.Tensor, al: object, top_k: int) -> tuple[torch.Tensor, None]:
        calls.append(top_k)
        rows, _ = gather_rows_sorted(x, al, top_k)  # type: ignore[arg-type]
        return rows.zero_(), None

    monkeypatch.setattr(layer, "gather_rows_sorted", zeroed)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, h, generator=g).to(dtype).to(DEV)
    w1 = torch.randn(4, 2 * i, h, generator=g).to(dtype).to(DEV)
    w2 = torch.randn(4, h, i, generator=g).to(dtype).to(DEV)
    ids, weights = _routing(20, 2, 4, seed=3)
    sorted_tile = Tactic(block_m, replace(gate_up, sorted_x=True), GemmTile(32, 32, 8, 4, 3, tma=True))
    out = fused_moe(x, w1, w2, ids, weights, tactic=sorted_tile)
    assert calls == [2] and not out.any()
    assert fused_moe(x, w1, w2, ids, weights, tactic=replace(sorted_tile, gate_up=gate_up)).any()
    assert calls == [2]  # the gathering tile makes no copy


def test_sorted_x_on_the_triton_fp8_gate_up_gives_the_gathered_twins_bits() -> None:
    """fp8: the layer quantizes x straight into the row order and the Triton gate/up reads codes and
    group scales by row (the interpreter's e4m3 cast is off, but both twins use it alike)."""
    g = torch.Generator().manual_seed(11)
    t, k, num_local, h, i = 40, 2, 4, 256, 128
    x = torch.randn(t, h, generator=g).to(torch.bfloat16).to(DEV)
    w1q, w1s = quantize_fp8_block((torch.randn(num_local, 2 * i, h, generator=g) / math.sqrt(h)).to(DEV))
    w2q, w2s = quantize_fp8_block((torch.randn(num_local, h, i, generator=g) / math.sqrt(i)).to(DEV))
    ids, weights = _routing(t, k, num_local, seed=4)
    gathered = Tactic(64, GemmTile(128, 128, 8, 4, 3, tma=True), GemmTile(128, 128, 8, 4, 3, tma=True))
    twin = replace(gathered, gate_up=replace(gathered.gate_up, sorted_x=True))
    out = fused_moe_fp8(x, w1q, w1s, w2q, w2s, ids, weights, tactic=gathered)
    out_sorted = fused_moe_fp8(x, w1q, w1s, w2q, w2s, ids, weights, tactic=twin)
    assert torch.equal(out_sorted, out)


def test_sorted_x_needs_rows_tma_can_read() -> None:
    """H = 36 fp16 rows are 72 bytes, not a multiple of 16: TMA cannot read them (w1's, checked
    first, nor x's copy, which has the same row stride), and the error says so."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 36, generator=g).to(torch.float16).to(DEV)
    w1 = torch.randn(2, 64, 36, generator=g).to(torch.float16).to(DEV)
    w2 = torch.randn(2, 36, 32, generator=g).to(torch.float16).to(DEV)
    ids, weights = _routing(8, 1, 2, seed=0)
    tactic = Tactic(64, GemmTile(32, 32, sorted_x=True, tma=True), GemmTile(32, 32))
    with pytest.raises(ValueError, match="TMA but w1"):
        fused_moe(x, w1, w2, ids, weights, tactic=tactic)


def test_the_sorted_launch_refuses_x_in_token_order() -> None:
    """Given the (T, H) x instead of its (max_padded, H) copy, TMA would read the missing rows as
    zeros: the launcher refuses, naming both shapes."""
    from kernels.fused_moe import _launch_gate_up

    x = torch.randn(8, 64).to(torch.float16).to(DEV)
    w1 = torch.randn(2, 64, 64).to(torch.float16).to(DEV)
    al = moe_align(_routing(8, 1, 2, seed=0)[0], 64, 2, 0)
    h = torch.empty((al.max_padded, 32), dtype=torch.float16, device=DEV)
    tile = GemmTile(32, 32, tma=True, sorted_x=True)
    with pytest.raises(ValueError, match=rf"\({al.max_padded}, H\) rows; got \(8, 64\)"):
        _launch_gate_up(x, w1, h, al, tile, 1, "ieee")


def test_the_combine_reads_y_in_either_row_order() -> None:
    """The Gluon down writes y in the alignment's row order (TMA stores whole tiles); the combine then
    finds slot s's row at ``slot_rows[s]``. Same values, same summation order: the same bits as from
    y with one row per slot, and non-local slots (experts 4 and 5 live on another shard) add nothing
    in either form."""
    from kernels.fused_moe import launch_combine

    g = torch.Generator().manual_seed(8)
    t, k, h = 37, 3, 96
    ids, _ = _routing(t, k, 6, seed=8)
    al = moe_align(ids, 16, 4, 0)
    by_slot = torch.randn(t * k, h, generator=g).to(torch.bfloat16).to(DEV)
    by_row = torch.full((al.max_padded, h), float("nan"), dtype=torch.bfloat16, device=DEV)
    local = al.slot_rows >= 0
    assert not bool(local.all())
    by_row[al.slot_rows[local].long()] = by_slot[local]  # padding rows stay NaN: never read
    out_slot = torch.empty((t, h), dtype=torch.bfloat16, device=DEV)
    out_row = torch.empty_like(out_slot)
    launch_combine(by_slot, ids, out_slot, 0, 4)
    launch_combine(by_row, ids, out_row, 0, 4, slot_rows=al.slot_rows)
    assert not torch.isnan(out_row).any()
    assert torch.equal(out_row, out_slot)
