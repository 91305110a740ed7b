"""The Gluon tiles in the tactic space (fp8 GEMMs, the 16-bit down), their size rules and the errors
for tiles that cannot run.

CPU only (no kernel runs): the Gluon kernels' numerics and speed are checked on an H100
(``suites/kernels/test_correctness_gpu.py``, BENCHMARKS.md), their compile for sm_90a by
``tests/test_gluon_fp8_{moe,down}_compiles.py``.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from kernels import GemmTile, MoEProblem, Tactic, default_tactic, fused_moe, fused_moe_fp8, moe_align, tactics
from kernels.gluon_support import gluon_unready
from kernels.quant import quantize_fp8_block
from kernels.tactics import gluon_misfit

DSR1_PREFILL = MoEProblem(4000, 7168, 2048, 32, 8, "float8_e4m3fn")
"""deepseek-r1 DEP8 at 4000 tokens per rank: 1000 rows per local expert."""
GLUON_TILE = GemmTile(128, 128, 8, 8, 4, tma=True, gluon=True)
ALIGN_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
"""Where the launcher tests build their alignment: the GPU where there is one (the alignment kernel
then compiles for it), else the CPU under the interpreter."""


def test_without_gluon_the_space_has_no_gluon_tile_and_fp8_stops_at_block_m_64() -> None:
    space = tactics(DSR1_PREFILL)
    assert space == tactics(DSR1_PREFILL, gluon=False)
    assert not any(t.gate_up.gluon or t.down.gluon for t in space)
    assert max(t.block_m for t in space) == 64
    assert not default_tactic(DSR1_PREFILL).gate_up.gluon


def test_gluon_adds_its_tiles_at_block_m_64_and_128_only() -> None:
    plain = tactics(DSR1_PREFILL)
    space = tactics(DSR1_PREFILL, gluon=True)
    assert len(space) == len(set(space))
    gluon = [t for t in space if t.gate_up.gluon or t.down.gluon]
    assert gluon and {t.block_m for t in gluon} == {64, 128}
    # the Triton tactics of the shared block_m choices stay, so the tuner can still pick them
    assert {t for t in plain if t.block_m in (32, 64)} <= set(space)
    # Triton's fp8 gate/up spills at block_m 128: only Gluon tiles there, in both GEMMs
    assert all(t.gate_up.gluon and t.down.gluon for t in space if t.block_m == 128)
    for t in gluon:
        for gemm, tile in (("gate_up", t.gate_up), ("down", t.down)):
            if tile.gluon:
                assert tile.tma
                assert gluon_misfit(gemm, t.block_m, tile, 7168, 2048) is None, (t.name, gemm)


def test_gluon_default_below_128_rows_takes_the_wide_gate_up_and_the_256_wide_down_for_long_k() -> None:
    for problem in (MoEProblem(384, 7168, 2048, 32, 8, "float8_e4m3fn"),  # 96 rows per expert
                    MoEProblem(480, 7168, 2048, 32, 8, "float8_e4m3fn")):  # 120 rows; fmt: skip
        d = default_tactic(problem, gluon=True)
        assert (d.block_m, d.gate_up.gluon, d.down.gluon, d.down.block_n) == (64, True, True, 256), d.name
        assert d.gate_up.num_warps == 8
        assert d in tactics(problem, gluon=True)
    h_not_256 = MoEProblem(480, 49 * 128, 2048, 32, 8, "float8_e4m3fn")  # H = 6272, odd multiple of 128
    d = default_tactic(h_not_256, gluon=True)
    assert (d.block_m, d.down.gluon, d.down.block_n) == (64, True, 128), d.name
    assert default_tactic(DSR1_PREFILL).block_m == 64  # Triton's fp8 tiles stop at 64
    decode = MoEProblem(64, 7168, 2048, 32, 8, "float8_e4m3fn")  # 16 rows per expert: block_m 16
    assert default_tactic(decode, gluon=True) == default_tactic(decode)


FP8 = "float8_e4m3fn"
GU, GU_SORTED = "gu_n128k128g8w8s4tG", "gu_n128k128g8w8s4tGS"  # wide at block_m 64, halves at 128
GU_PERSISTENT = "gu_n128k128g8w8s5tGSP"  # halves, persistent and warp-specialized (block_m 128)
GU_DUAL = "gu_n128k128g8w8s4tGSPD"  # persistent, x once per tile, a partition per warpgroup
WS_DOWN_S4, WS_DOWN_S5 = "dn_n128k128g8w8s4tG", "dn_n128k128g8w8s5tG"
TRITON_DOWN, GLUON_DOWN_256 = "dn_n128k128g8w4s3t", "dn_n256k128g8w8s4tG"


@pytest.mark.parametrize(
    ("problem", "name"),
    [
        # block_m 128 from 128 rows per expert with I >= 768, the down with 5 stages up to I = 2048
        (MoEProblem(4096, 7168, 2048, 32, 8, FP8), f"m128-{GU_PERSISTENT}-{WS_DOWN_S5}"),  # dsr1 1024 rows
        (MoEProblem(1024, 7168, 2048, 32, 8, FP8), f"m128-{GU_PERSISTENT}-{WS_DOWN_S5}"),  # dsr1 256 rows
        (MoEProblem(4096, 4096, 14336, 8, 2, FP8), f"m128-{GU_DUAL}-{WS_DOWN_S4}"),  # mixtral: I >= 8192
        (MoEProblem(1024, 4096, 14336, 8, 2, FP8), f"m128-{GU_DUAL}-{WS_DOWN_S4}"),  # mixtral 256 rows
        (MoEProblem(4096, 4096, 8192, 8, 2, FP8), f"m128-{GU_DUAL}-{WS_DOWN_S4}"),  # the dual rule's edge
        (MoEProblem(4096, 4096, 8064, 8, 2, FP8), f"m128-{GU_PERSISTENT}-{WS_DOWN_S4}"),  # below it
        (MoEProblem(16384, 4096, 1536, 64, 8, FP8), f"m128-{GU_PERSISTENT}-{WS_DOWN_S5}"),  # 2048 rows
        (MoEProblem(4096, 4096, 1536, 64, 8, FP8), f"m128-{GU_PERSISTENT}-{WS_DOWN_S5}"),  # q235b 512 rows
        (MoEProblem(1024, 4096, 1536, 64, 8, FP8), f"m128-{GU}-{WS_DOWN_S5}"),  # 128 rows: gathered x
        (MoEProblem(4096, 2048, 768, 128, 8, FP8), f"m128-{GU_PERSISTENT}-{WS_DOWN_S5}"),  # q30b I=768
        (MoEProblem(16384, 2048, 768, 128, 8, FP8), f"m128-{GU_PERSISTENT}-{WS_DOWN_S5}"),  # 1024 rows
        # block_m 64 below 128 rows or with I < 768; the Gluon down there only from I = 2048
        (MoEProblem(768, 4096, 1536, 64, 8, FP8), f"m64-{GU}-{TRITON_DOWN}"),  # q235b 96 rows
        (MoEProblem(1024, 2048, 768, 128, 8, FP8), f"m64-{GU}-{TRITON_DOWN}"),  # q30b 64 rows
        (MoEProblem(1024, 7168, 2048, 128, 8, FP8), f"m64-{GU}-{GLUON_DOWN_256}"),  # dsr1 DEP2 64 rows
        (MoEProblem(1024, 2048, 512, 64, 10, FP8), f"m64-{GU}-{TRITON_DOWN}"),  # qnext I=512, 160 rows
        (MoEProblem(6554, 2048, 512, 64, 10, FP8), f"m64-{GU_SORTED}-{TRITON_DOWN}"),  # 1024 rows
    ],
    ids=["dsr1-1024rows", "dsr1-256rows", "mixtral-1024rows", "mixtral-256rows", "I8192", "I8064",
         "q235b-2048rows",
         "q235b-512rows", "q235b-128rows", "q30b-256rows", "q30b-1024rows", "q235b-96rows", "q30b-64rows",
         "dsr1-64rows", "qnext-160rows", "qnext-1024rows"],
)
def test_gluon_default_follows_the_tuners_winners(problem: MoEProblem, name: str) -> None:
    """The Gluon fp8 default (``kernels.tactics.default_tactic``): block_m 128 (halves gate/up, the
    warp-specialized down) where the H200's tuner chose it (BENCHMARKS.md, session 11, runs 11 and
    12), else block_m 64 (wide gate/up, the 256-wide Gluon down for I >= 2048, Triton's TMA down
    below: the H100 winners); from 256 rows per expert the gate/up reads x quantized into the
    alignment's order (``sorted_x``, H100 runs 64 and 66), at block_m 128 by the persistent
    warp-specialized gate/up (H200 runs 23 and 29; at mixtral's I = 14336 runs 106 and 107), from
    I = 8192 the one reading x once per tile (``dual``, H200 runs 111-112)."""
    d = default_tactic(problem, gluon=True)
    assert d.name == name
    assert d in tactics(problem, gluon=True)


@pytest.mark.parametrize(
    "problem",
    [
        MoEProblem(4000, 7168, 2048, 32, 8, "float32"),  # no fp32 Gluon kernel
        MoEProblem(4000, 2880, 2880, 64, 4, "float8_e4m3fn"),  # gpt-oss: H, I not multiples of 128
        MoEProblem(64, 7168, 2048, 32, 8, "float8_e4m3fn"),  # decode: block_m 16, no wgmma tile
        MoEProblem(64, 7168, 2048, 32, 8, "bfloat16"),  # decode: block_m 16
        MoEProblem(4000, 7168, 2000, 32, 8, "bfloat16"),  # I % 64 != 0: the 16-bit down has no K tail
    ],
    ids=["fp32", "H2880-fp8", "decode-fp8", "decode-bf16", "I2000-bf16"],
)
def test_gluon_changes_nothing_where_its_kernels_do_not_apply(problem: MoEProblem) -> None:
    assert tactics(problem, gluon=True) == tactics(problem)
    assert default_tactic(problem, gluon=True) == default_tactic(problem)


def test_down_block_n_256_needs_hidden_a_multiple_of_256() -> None:
    odd = MoEProblem(4000, 7168 - 128, 2048, 32, 8, "float8_e4m3fn")  # H = 7040 = 55 * 128
    widths = {t.down.block_n for t in tactics(odd, gluon=True) if t.down.gluon}
    assert widths and 256 not in widths
    assert 256 in {t.down.block_n for t in tactics(DSR1_PREFILL, gluon=True) if t.down.gluon}


@pytest.mark.parametrize(
    ("gemm", "block_m", "tile", "sizes", "message"),
    [
        ("gate_up", 64, GLUON_TILE, (2880, 2048), "H=2880"),
        ("gate_up", 32, GLUON_TILE, (7168, 2048), "block_m=32"),
        ("gate_up", 64, GemmTile(64, 128, 8, 8, 4, True, True), (7168, 2048), "n64k128g8w8s4tG"),
        ("down", 64, GemmTile(256, 128, 8, 8, 4, True, True), (7040, 2048), "H=7040 .* block_n=256"),
        ("down", 64, GemmTile(128, 128, 8, 2, 2, True, True), (7168, 2048), "num_warps=2"),
        ("gate_up", 64, GemmTile(128, 128, 8, 4, 4, True, True), (7168, 2048), "num_warps=8 .* got 4"),
        ("gate_up", 64, GemmTile(128, 128, 8, 8, 2, True, True), (7168, 2048), "num_stages >= 3"),
        ("gate_up", 128, GemmTile(128, 128, 8, 8, 6, True, True), (7168, 2048), "6 stages needs 229376 B"),
        ("down", 64, GemmTile(256, 128, 8, 8, 8, True, True), (7168, 2048), "8 stages needs 360448 B"),
        # both 6 x 32 KB of ring plus 32 KB: the gate/up's fp32 stash of pass 0, the down's y layout change
        ("down", 128, GemmTile(128, 128, 8, 8, 6, True, True), (7168, 2048), "6 stages needs 229376 B"),
    ],
    ids=["hidden", "block_m", "gate-up-width", "down-256-width", "warps", "wide-warps", "stages",
         "smem-gate-up", "smem-down", "smem-down-6-stages"],
)
def test_gluon_misfit_names_the_bad_value(
    gemm: str, block_m: int, tile: GemmTile, sizes: tuple[int, int], message: str
) -> None:
    why = gluon_misfit(gemm, block_m, tile, *sizes)
    assert why is not None and re.search(message, why), why
    with pytest.raises(ValueError, match="gemm must be"):
        gluon_misfit("up", block_m, tile, *sizes)


def test_gluon_tile_round_trips_and_old_dicts_load_as_triton() -> None:
    t = Tactic(64, GLUON_TILE, GemmTile(128, 128, 8, 4, 3, tma=True, gluon=True))
    assert Tactic.from_dict(t.to_dict()) == t
    assert t.name == "m64-gu_n128k128g8w8s4tG-dn_n128k128g8w4s3tG"
    old = {"block_m": 64, "gate_up": {"block_n": 128, "block_k": 128, "tma": True},
           "down": {"block_n": 128, "block_k": 128}}  # fmt: skip
    assert not Tactic.from_dict(old).gate_up.gluon  # baselines written before the field existed
    with pytest.raises(ValueError, match="tma=True"):
        GemmTile(128, 128, gluon=True)
    with pytest.raises(ValueError, match="gluon must be a bool"):
        GemmTile(128, 128, tma=True, gluon=1)  # type: ignore[arg-type]


def test_sorted_x_is_a_tma_gate_up_option_with_its_own_name() -> None:
    sorted_tile = GemmTile(128, 128, 8, 8, 4, tma=True, gluon=True, sorted_x=True)
    t = Tactic(128, sorted_tile, GLUON_TILE)
    assert t.name == "m128-gu_n128k128g8w8s4tGS-dn_n128k128g8w8s4tG"
    assert Tactic.from_dict(t.to_dict()) == t
    assert GLUON_TILE.name.endswith("tG")  # names of tiles without it do not change (baselines)
    with pytest.raises(ValueError, match=r"sorted_x .* needs tma=True"):
        GemmTile(128, 64, sorted_x=True)
    assert GemmTile(128, 64, 8, 8, 4, tma=True, sorted_x=True).name == "n128k64g8w8s4tS"  # Triton's
    with pytest.raises(ValueError, match="sorted_x is a gate_up option"):
        Tactic(128, sorted_tile, dataclasses.replace(GLUON_TILE, sorted_x=True))
    with pytest.raises(ValueError, match="sorted_x must be a bool"):
        GemmTile(128, 128, tma=True, gluon=True, sorted_x="yes")  # type: ignore[arg-type]
    assert gluon_misfit("gate_up", 128, sorted_tile, 7168, 2048) is None
    why = gluon_misfit("down", 128, sorted_tile, 7168, 2048)
    assert why is not None and "sorted_x is a gate_up option" in why


@pytest.mark.parametrize("block_m", [64, 128])
def test_the_space_has_a_sorted_x_twin_of_the_first_gluon_gate_up_tile(block_m: int) -> None:
    gate_ups = list(dict.fromkeys(t.gate_up for t in tactics(DSR1_PREFILL, gluon=True)
                                  if t.block_m == block_m and t.gate_up.gluon))  # fmt: skip
    flags = [(g.sorted_x, g.persistent, g.dual) for g in gate_ups]
    persistent = [(True, True, False), (False, True, False), (True, True, True)] if block_m == 128 else []
    assert flags == [(False, False, False), (True, False, False), (False, False, False), *persistent], flags
    assert gate_ups[1] == dataclasses.replace(gate_ups[0], sorted_x=True)
    if block_m == 128:  # the sorted twin and the first tile again, persistent with a 5-stage ring
        assert gate_ups[3] == dataclasses.replace(gate_ups[1], persistent=True, num_stages=5)
        assert gate_ups[4] == dataclasses.replace(gate_ups[0], persistent=True, num_stages=5)
        assert gate_ups[5] == dataclasses.replace(gate_ups[3], dual=True, num_stages=4)  # 48 KB slots
    assert not any(t.down.sorted_x or t.down.persistent for t in tactics(DSR1_PREFILL, gluon=True))


def test_persistent_is_the_sorted_block_m_128_gluon_gate_ups_option() -> None:
    """``persistent`` (``kernels.gluon_gate_up_ws``) runs only Gluon gate/ups at block_m 128 (for fp8
    the halves one, sorted or gathering x's rows): other tiles and block sizes are refused with the
    reason, and the flag survives the JSON round trip."""
    tile = GemmTile(128, 128, 8, 8, 5, tma=True, gluon=True, sorted_x=True, persistent=True)
    assert tile.name == "n128k128g8w8s5tGSP"
    tactic = Tactic(128, tile, dataclasses.replace(GLUON_TILE, num_stages=5))
    assert Tactic.from_dict(tactic.to_dict()) == tactic
    assert gluon_misfit("gate_up", 128, tile, 7168, 2048) is None
    with pytest.raises(ValueError, match="persistent is a Gluon gate/up option: it needs gluon=True"):
        GemmTile(128, 128, 8, 8, 5, tma=True, sorted_x=True, persistent=True)
    assert gluon_misfit("gate_up", 128, dataclasses.replace(tile, sorted_x=False), 7168, 2048) is None
    with pytest.raises(ValueError, match="persistent must be a bool"):
        GemmTile(128, 128, tma=True, gluon=True, sorted_x=True, persistent=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is a gate_up option"):  # sorted_x is checked first
        Tactic(128, tile, tile)
    why = gluon_misfit("gate_up", 64, tile, 7168, 2048)
    assert why is not None and "block_m=64: persistent is a block_m 128 gate_up option" in why
    # its ring stays live beside the two hq staging tiles: 6 stages do not fit
    why = gluon_misfit("gate_up", 128, dataclasses.replace(tile, num_stages=6), 7168, 2048)
    assert why is not None and "6 stages needs 245760 B" in why


def test_dual_is_the_fp8_persistent_sorted_gate_ups_option() -> None:
    """``dual`` (``kernels.gluon_gate_up_dual``) needs a persistent ``sorted_x`` tile, runs fp8 gate/ups
    only, fits 4 stages of its 48 KB slots (not 5), and survives the JSON round trip."""
    tile = GemmTile(128, 128, 8, 8, 4, tma=True, gluon=True, sorted_x=True, persistent=True, dual=True)
    assert tile.name == "n128k128g8w8s4tGSPD"
    tactic = Tactic(128, tile, GLUON_TILE)
    assert Tactic.from_dict(tactic.to_dict()) == tactic
    assert gluon_misfit("gate_up", 128, tile, 4096, 14336) is None
    for flags in ({"persistent": False}, {"sorted_x": False}):
        with pytest.raises(ValueError, match="dual is an option of the persistent sorted_x gate/up"):
            dataclasses.replace(tile, **flags)
    with pytest.raises(ValueError, match="dual must be a bool"):
        dataclasses.replace(tile, dual=1)  # type: ignore[arg-type]
    why = gluon_misfit("gate_up", 128, dataclasses.replace(tile, num_stages=5), 4096, 14336)
    assert why is not None and "5 stages needs 262144 B" in why, why
    why = gluon_misfit("gate_up", 128, dataclasses.replace(tile, block_k=64), 4096, 14336, "bfloat16")
    assert why is not None and "dual is an fp8 gate/up option" in why, why
    assert dataclasses.replace(tile, dual=False).name == "n128k128g8w8s4tGSP"  # old names stay


def test_the_gate_up_launcher_refuses_a_persistent_tile_it_cannot_run() -> None:
    """A direct caller (the benchmarks) gets the reason before any launch: the persistent kernel
    reads x in the alignment's order by TMA boxes of 128 rows."""
    pytest.importorskip("triton.experimental.gluon")
    from kernels.gluon_gate_up import launch_gluon_gate_up

    tile = GemmTile(128, 128, 8, 8, 5, tma=True, gluon=True, sorted_x=True, persistent=True)
    for block_m, sorted_x in ((64, True), (128, False)):
        al = moe_align(torch.zeros(4, 1, dtype=torch.int32, device=ALIGN_DEVICE), block_m, 2, 0)
        with pytest.raises(ValueError, match=rf"sorted_x={sorted_x}, block_m={block_m}"):
            launch_gluon_gate_up(*[torch.empty(0)] * 6, al, tile, 1, sorted_x=sorted_x)


def _fp8_layer(h: int, i: int, t: int = 4, num_local: int = 4, k: int = 2) -> tuple:
    """Small fp8 layer inputs on the CPU: ``(x, w1q, w1s, w2q, w2s, topk_ids, topk_weights)``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(t, h, generator=g).to(torch.bfloat16)
    w1q, w1s = quantize_fp8_block(torch.randn(num_local, 2 * i, h, generator=g) / math.sqrt(h))
    w2q, w2s = quantize_fp8_block(torch.randn(num_local, h, i, generator=g) / math.sqrt(i))
    ids = torch.stack([torch.randperm(num_local, generator=g)[:k] for _ in range(t)]).to(torch.int32)
    weights = torch.softmax(torch.randn(t, k, generator=g), dim=-1)
    return x, w1q, w1s, w2q, w2s, ids.contiguous(), weights.contiguous()


def test_a_gluon_tile_that_cannot_run_is_a_value_error_naming_why() -> None:
    triton_down = GemmTile(128, 128, 8, 4, 3)
    layer = _fp8_layer(64, 128)  # H=64: not a multiple of 128
    with pytest.raises(ValueError, match="gate_up tile is a Gluon tile, but H=64"):
        fused_moe_fp8(*layer, tactic=Tactic(64, GLUON_TILE, triton_down))
    layer = _fp8_layer(128, 128)  # sizes fit: only the device (the CPU) is in the way
    why = gluon_unready(layer[1].device)
    assert why is not None  # CPU tensors: never a Hopper GPU
    with pytest.raises(ValueError, match=re.escape(f"Gluon tile, but {why}")):
        fused_moe_fp8(*layer, tactic=Tactic(64, GLUON_TILE, triton_down))


BF16_DOWN = GemmTile(256, 64, 8, 8, 3, tma=True, gluon=True)
"""The 16-bit Gluon down's default tile at block_m 128."""


def test_the_16_bit_layer_refuses_gluon_tiles_it_cannot_run() -> None:
    x = torch.zeros(4, 128, dtype=torch.bfloat16)
    w1 = torch.zeros(4, 256, 128, dtype=torch.bfloat16)
    w2 = torch.zeros(4, 128, 128, dtype=torch.bfloat16)
    ids = torch.zeros(4, 2, dtype=torch.int32)
    triton_down = GemmTile(128, 64, 8, 8, 4)
    with pytest.raises(ValueError, match="gate_up tile is a Gluon tile, but the 16-bit Gluon gate/up is a "
                       "persistent tile at block_m 128"):  # fmt: skip
        fused_moe(x, w1, w2, ids, torch.ones(4, 2), tactic=Tactic(64, GLUON_TILE, triton_down))
    with pytest.raises(ValueError, match=r"down tile is a Gluon tile, but H=128 .* block_n=256"):
        fused_moe(x, w1, w2, ids, torch.ones(4, 2), tactic=Tactic(128, GemmTile(64, 64), BF16_DOWN))
    fits = dataclasses.replace(BF16_DOWN, block_n=128)  # sizes fit: only the device (the CPU) is in the way
    with pytest.raises(ValueError, match=re.escape(f"Gluon tile, but {gluon_unready(x.device)}")):
        fused_moe(x, w1, w2, ids, torch.ones(4, 2), tactic=Tactic(128, GemmTile(64, 64), fits))
    with pytest.raises(ValueError, match="not float32"):
        fused_moe(x.float(), w1.float(), w2.float(), ids, torch.ones(4, 2),
                  tactic=Tactic(128, GemmTile(64, 64), fits))  # fmt: skip


QWEN3_235B_BF16 = MoEProblem(16384, 4096, 1536, 64, 8, "bfloat16")
"""qwen3-235b DEP2 at 16384 tokens per rank, bf16: 2048 rows per local expert."""


BF16_GATE_UP = GemmTile(128, 64, 8, 8, 3, tma=True, gluon=True, sorted_x=True, persistent=True)
"""The 16-bit persistent Gluon gate/up's tile (block_m 128) reading x in the alignment's order."""
BF16_GATHERING_GATE_UP = dataclasses.replace(BF16_GATE_UP, sorted_x=False)
"""The same kernel gathering x's rows by ``cp.async`` in its loader warps."""


def test_16_bit_space_gains_gluon_downs_and_the_persistent_gate_ups() -> None:
    plain = tactics(QWEN3_235B_BF16)
    space = tactics(QWEN3_235B_BF16, gluon=True)
    assert set(plain) < set(space) and len(space) == len(set(space))
    gluon = [t for t in space if t.down.gluon]
    assert {t.block_m for t in gluon} == {64, 128}
    for t in gluon:
        assert t.down.block_k == 64 and t.down.tma
        assert gluon_misfit("down", t.block_m, t.down, 4096, 1536, "bfloat16") is None
    gate_ups = {t.gate_up for t in space if t.gate_up.gluon}
    kinds = (BF16_GATE_UP, BF16_GATHERING_GATE_UP)
    assert gate_ups == {dataclasses.replace(tile, num_stages=s) for tile in kinds for s in (3, 4)}
    assert BF16_GATHERING_GATE_UP.name == "n128k64g8w8s3tGP"
    assert {t.block_m for t in space if t.gate_up.gluon} == {128}
    for tile in gate_ups:
        assert gluon_misfit("gate_up", 128, tile, 4096, 1536, "bfloat16") is None
    # the default at I = 1536 reads x's copy (run 60, session 16; gathering: 1.01-1.06x, run 47)
    assert default_tactic(QWEN3_235B_BF16, gluon=True).gate_up == BF16_GATE_UP


@pytest.mark.parametrize(
    ("problem", "down"),
    [
        (QWEN3_235B_BF16, "n256k64g8w8s3tG"),  # block_m 128: the Gluon down, 128 x 256 with 3 stages
        (MoEProblem(4096, 7168, 2048, 32, 8, "bfloat16"), "n256k64g8w8s3tG"),  # deepseek-r1 DEP8
        (MoEProblem(4096, 2048, 768, 128, 8, "float16"), "n256k64g8w8s3tG"),  # qwen3-30b EP1, fp16
        (MoEProblem(512, 4096, 1536, 64, 8, "bfloat16"), "n256k64g8w8s3t"),  # block_m 64: Triton's
        (MoEProblem(4096, 49 * 128, 2048, 32, 8, "bfloat16"), "n128k64g8w8s5tG"),  # H % 256 != 0: 128 x 128
        (MoEProblem(4096, 2880, 2880, 64, 4, "bfloat16"), "n256k64g8w8s4t"),  # gpt-oss H=2880 % 128: Triton's
    ],
    ids=["q235b-2048rows", "dsr1-1024rows", "q30b-fp16", "q235b-64rows", "H6272", "gpt-oss-H2880"],
)
def test_16_bit_default_takes_the_gluon_down_at_block_m_128(problem: MoEProblem, down: str) -> None:
    """H200 runs 39 and 41 (BENCHMARKS.md, session 14): the 128 x 256 Gluon down gave Triton's bits in
    0.81-0.99x its time at the issue's four cases, T = 4096 and 16384, and the bf16 layer ran
    1.04-1.08x faster with it; the tuner took it at 21 of 46 bf16 cases at T = 1024."""
    d = default_tactic(problem, gluon=True)
    assert d.down.name == down, d.name
    assert d.down.gluon == (d.block_m == 128 and problem.hidden_size % 128 == 0)
    assert d in tactics(problem, gluon=True)
    plain = default_tactic(problem)
    gate_up = plain.gate_up if d.gate_up.gluon else d.gate_up
    assert dataclasses.replace(d, down=plain.down, gate_up=gate_up) == plain


@pytest.mark.parametrize(
    ("problem", "gate_up"),
    [
        (MoEProblem(4096, 2048, 768, 128, 8, "bfloat16"), "n128k64g8w8s4tGP"),  # qwen3-30b EP1, 256 rows
        (MoEProblem(16384, 2048, 768, 128, 8, "float16"), "n128k64g8w8s4tGP"),  # 1024 rows, fp16
        (MoEProblem(16384, 2048, 512, 512, 10, "bfloat16"), "n128k64g8w8s4tGP"),  # qwen3-next I=512, 320 rows
        (MoEProblem(512, 2048, 768, 128, 8, "bfloat16"), "n128k128g8w4s3"),  # 32 rows: block_m 32
        (MoEProblem(1600, 2048, 768, 128, 8, "bfloat16"), "n128k64g8w8s4t"),  # 100 rows: x not sorted
        (QWEN3_235B_BF16, "n128k64g8w8s3tGSP"),  # I = 1536: the Gluon gate/up reading x's copy
        (MoEProblem(4096, 7168, 2048, 32, 8, "bfloat16"), "n128k64g8w8s3tGSP"),  # deepseek-r1 I = 2048
        (MoEProblem(4096, 4096, 14336, 8, 2, "bfloat16"), "n128k64g8w8s3tGSP"),  # mixtral I = 14336
        (MoEProblem(4096, 2880, 2880, 64, 4, "bfloat16"), "n128k64g8w8s4tS"),  # H % 128 != 0: Triton's
    ],
    ids=["q30b-256rows", "q30b-1024rows-fp16", "qnext-320rows", "q30b-32rows", "q30b-100rows", "q235b",
         "dsr1", "mixtral", "gpt-oss-H2880"],
)
def test_16_bit_default_takes_the_gluon_gate_up_where_it_sorts_x(problem: MoEProblem,
                                                                  gate_up: str) -> None:  # fmt: skip
    """Where the 16-bit default would copy x into the alignment's order (block_m 128, over 128 rows
    per expert) its gate/up is the persistent Gluon one. Up to I = 1024 it gathers x's rows itself
    (session 15's H200 run 47: 0.92-0.97x the layer's time at qwen3-30b, I = 768, but 1.01-1.06x at
    I >= 1536); above, it reads the copy (session 16's run 60: 0.97-1.00x interleaved, 0.96-0.98x
    sustained at qwen3-235b, deepseek-r1 and mixtral, T = 4096)."""
    d = default_tactic(problem, gluon=True)
    assert d.gate_up.name == gate_up, d.name
    assert d in tactics(problem, gluon=True)
    assert not default_tactic(problem).gate_up.gluon


@pytest.mark.parametrize(
    ("gemm", "block_m", "tile", "sizes", "message"),
    [
        ("down", 128, dataclasses.replace(BF16_DOWN, block_k=128), (4096, 1536), "needs block_k 64"),
        ("down", 128, BF16_DOWN, (4096 + 128, 1536), "not a multiple of the down tile's block_n=256"),
        ("down", 128, BF16_DOWN, (4096, 1536 + 32), "I=1568 must be a multiple of 64"),
        ("down", 32, BF16_DOWN, (4096, 1536), "block_m=32"),
        ("down", 128, dataclasses.replace(BF16_DOWN, num_stages=4), (4096, 1536), "shared memory"),
        ("down", 128, dataclasses.replace(BF16_DOWN, num_warps=2), (4096, 1536), "num_warps=2"),
        ("down", 128, dataclasses.replace(BF16_DOWN, num_stages=1), (4096, 1536), "num_stages >= 2"),
        ("gate_up", 128, dataclasses.replace(BF16_GATE_UP, persistent=False), (4096, 1536),
         "is a persistent tile at block_m 128"),
        ("gate_up", 64, BF16_GATHERING_GATE_UP, (4096, 1536), "at block_m=64"),
        ("gate_up", 128, dataclasses.replace(BF16_GATE_UP, block_n=64), (4096, 1536),
         "needs block_n 128, block_k 64"),
        ("gate_up", 128, BF16_GATHERING_GATE_UP, (4096, 1536 + 64), "must be multiples of 64 and 128"),
        ("gate_up", 128, dataclasses.replace(BF16_GATHERING_GATE_UP, num_stages=5), (4096, 1536),
         "shared memory"),
    ],
    ids=["block_k-128", "H-not-256", "I-not-64", "block_m-32", "4-stages-256-wide", "2-warps", "1-stage",
         "gate-up-not-persistent", "gate-up-block_m-64", "gate-up-block_n-64", "gate-up-I-not-128",
         "gate-up-5-stages"],
)  # fmt: skip
def test_16_bit_gluon_misfits_name_the_rule(gemm: str, block_m: int, tile: GemmTile, sizes: tuple[int, int],
                                            message: str) -> None:  # fmt: skip
    assert message in (gluon_misfit(gemm, block_m, tile, *sizes, "bfloat16") or "")
    assert gluon_misfit("down", 128, BF16_DOWN, 4096, 1536, "float16") is None
    assert gluon_misfit("gate_up", 128, BF16_GATE_UP, 4096, 1536, "float16") is None
    with pytest.raises(ValueError, match="dtype 'int8'"):
        gluon_misfit("down", 128, BF16_DOWN, 4096, 1536, "int8")


def test_gluon_unready_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from kernels import gluon_support

    monkeypatch.setattr(gluon_support, "HAS_GLUON", True)  # the later checks, on any Triton build
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "TRITON_INTERPRET" in (gluon_unready() or "")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert gluon_unready("cpu") == "device cpu is not a CUDA GPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gluon_unready() == "no CUDA device is available"


def test_kernels_import_without_gluon_and_say_why() -> None:
    """A Triton without Gluon (or whose Gluon lacks what the kernels use): ``import kernels`` works,
    the Gluon tiles are off, and ``gluon_unready`` names the import error."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import importlib.abc, sys
class NoGluon(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.startswith("triton.experimental.gluon"):
            raise ImportError(f"no module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, NoGluon())
import kernels
from kernels.gluon_support import HAS_GLUON
print(HAS_GLUON, kernels.gluon_unready())
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("False this Triton cannot import the Gluon kernels (ImportError: no module")


def test_gluon_down_launcher_takes_both_scales_or_neither() -> None:
    from kernels.gluon_support import HAS_GLUON

    if not HAS_GLUON:
        pytest.skip("this Triton has no Gluon: the launcher is not importable")
    from kernels.gluon_down import launch_gluon_down

    h = torch.zeros(128, 128, dtype=torch.float8_e4m3fn)
    al = moe_align(torch.zeros(4, 2, dtype=torch.int32, device=ALIGN_DEVICE), 128, 4, 0)
    with pytest.raises(ValueError, match="hs and w2s come together"):
        launch_gluon_down(h, torch.ones(128, 1), h.view(1, 128, 128), None, torch.zeros(128, 128),
                          torch.ones(4, 2), al, GLUON_TILE)  # fmt: skip
