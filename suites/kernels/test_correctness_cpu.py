"""Correctness of the Triton MoE kernels on the CPU (Triton interpreter), small shapes, fp16/fp32.

Runs wherever pytest runs: ``suites/kernels/conftest.py`` sets ``TRITON_INTERPRET=1`` when no CUDA
GPU is present (on a GPU machine the same tests compile for the device). bf16 is not tested here:
``tl.dot`` on bf16 is wrong under the interpreter (DESIGN.md section 5), and so is its fp32->e4m3
cast (it drops the carry when rounding up to the next power of two), so fp8 kernel numerics are
tested on the GPU only; the torch-side fp8 helpers are tested here.

Error bounds against the fp32 reference (``kernels.fused_moe_reference``):

- fp32 inputs: the kernels use IEEE fp32 dots; only summation order differs: ``<= 1e-5``.
- fp16 inputs: fp32 accumulation, then three roundings to fp16 (h, weighted per-slot rows, out),
  unit roundoff 2^-11, each <= 2^-11 / sqrt(3) ~ 2.8e-4 relative RMS: ``||err|| / ||ref|| <= 2e-3``
  and elementwise ``|err| <= 2^-8 (|ref| + max|ref|)``.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

import kernels
from kernels import (
    GemmTile,
    MoEProblem,
    Tactic,
    default_tactic,
    dequantize_fp8_block,
    fused_moe,
    fused_moe_fp8,
    fused_moe_reference,
    grouped_mm_moe,
    moe_align,
    quantize_fp8_block,
    tactics,
)

ON_CPU = not torch.cuda.is_available()
DEV = "cuda" if not ON_CPU else "cpu"
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2.0**-8)}


def test_interpreter_is_active_without_cuda() -> None:
    if not ON_CPU:
        pytest.skip("CUDA present: kernels compile for the GPU")
    assert os.environ.get("TRITON_INTERPRET") == "1"
    from triton.runtime.interpreter import InterpretedFunction

    assert isinstance(kernels.fused_moe.__globals__["_gate_up_kernel"], InterpretedFunction)


# ---------------------------------------------------------------------------------------------
# helpers


def _make(t: int, h: int, i: int, num_local: int, dtype: torch.dtype, seed: int = 0
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, h, generator=g).to(dtype)
    w1 = (torch.randn(num_local, 2 * i, h, generator=g) / math.sqrt(h)).to(dtype)
    w2 = (torch.randn(num_local, h, i, generator=g) / math.sqrt(i)).to(dtype)
    return x.to(DEV), w1.to(DEV), w2.to(DEV)


def _random_ids(t: int, k: int, pool: int, base: int = 0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(pool, generator=g)[:k] for _ in range(t)]) if t else (
        torch.empty((0, k), dtype=torch.int64))
    return (ids + base).to(torch.int32).to(DEV).contiguous()


def _weights(t: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.softmax(torch.randn(t, k, generator=g), dim=-1).to(DEV).contiguous()


def _assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    assert not torch.isnan(out).any(), "NaN in the output (unwritten or produced)"
    rel_bound, elem = TOL[dtype]
    outf = out.float()
    denom = ref.norm().item()
    if denom == 0:
        assert torch.equal(outf, ref), "reference is all zeros, output is not"
        return
    rel = (outf - ref).norm().item() / denom
    assert rel <= rel_bound, f"relative norm error {rel:.3e} > {rel_bound}"
    torch.testing.assert_close(outf, ref, rtol=elem, atol=elem * ref.abs().max().item())


def _run(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, ids: torch.Tensor,
         wts: torch.Tensor, offset: int = 0, tactic: Tactic | None = None) -> torch.Tensor:
    out = torch.full((x.shape[0], x.shape[1]), math.nan, dtype=x.dtype, device=x.device)
    res = fused_moe(x, w1, w2, ids, wts, local_expert_offset=offset, tactic=tactic, out=out)
    assert res is out
    return out


# ---------------------------------------------------------------------------------------------
# tactic space


def test_tactic_json_round_trip_and_hash() -> None:
    t = Tactic(32, GemmTile(64, 128, 8, 4, 4), GemmTile(128, 64, 4, 8, 3, tma=True))
    back = Tactic.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t and hash(back) == hash(t)
    assert len({t, back}) == 1
    assert t.name == "m32-gu_n64k128g8w4s4-dn_n128k64g4w8s3t"


@pytest.mark.parametrize(
    "bad",
    [
        {"block_m": 24, "gate_up": {"block_n": 64, "block_k": 64}, "down": {"block_n": 64,
                                                                         "block_k": 64}},
        {"block_m": 16, "gate_up": {"block_n": 8, "block_k": 64}, "down": {"block_n": 64,
                                                                        "block_k": 64}},
        {"block_m": 16, "gate_up": {"block_n": 64, "block_k": 64, "warps": 4},
         "down": {"block_n": 64, "block_k": 64}},
        {"block_m": 16, "gate_up": {"block_n": 64, "block_k": 64}},
        {"block_m": 16, "gate_up": {"block_n": 64, "block_k": 64}, "down": {"block_n": 64,
                                                                         "block_k": 64,
                                                                         "tma": 1}},
    ],
    ids=["block_m-not-pow2", "block_n-too-small", "unknown-key", "missing-down", "tma-not-bool"],
)
def test_tactic_from_dict_rejects(bad: dict) -> None:
    with pytest.raises(ValueError):
        Tactic.from_dict(bad)


@pytest.mark.parametrize(
    "problem",
    [
        MoEProblem(1, 4096, 1536, 64, 8),
        MoEProblem(256, 2048, 768, 128, 8),
        MoEProblem(4096, 7168, 2048, 32, 8),
        MoEProblem(16384, 4096, 14336, 8, 2),
        MoEProblem(64, 2880, 2880, 64, 4, num_local_slots=128),
        MoEProblem(4096, 4096, 1536, 64, 8, "float8_e4m3fn"),
        MoEProblem(8, 64, 48, 4, 2, "float16"),
    ],
    ids=lambda p: f"T{p.num_tokens}-H{p.hidden_size}-I{p.intermediate_size}-L"
    f"{p.num_local_experts}-{p.dtype}",
)
def test_tactics_are_pruned_valid_and_contain_the_default(problem: MoEProblem) -> None:
    space = tactics(problem)
    assert space and len(space) == len(set(space))
    cap = max(16, 1 << math.ceil(math.log2(max(1.0, problem.rows_per_expert))))
    for t in space:
        assert 16 <= t.block_m <= min(128, cap)
        if problem.dtype == "float8_e4m3fn":
            assert (t.gate_up.block_n, t.gate_up.block_k, t.down.block_k) == (128, 128, 128)
        if t.gate_up.tma or t.down.tma:
            assert t.block_m >= 64
    d = default_tactic(problem)
    assert isinstance(d, Tactic)
    assert d in space, d.name


@pytest.mark.parametrize(
    ("problem", "sorted_x"),
    [
        (MoEProblem(1024, 4096, 1536, 64, 8), False),  # qwen3-235b DEP2: 128 rows per expert
        (MoEProblem(1536, 4096, 1536, 64, 8), True),  # 192 rows
        (MoEProblem(1040, 4096, 1536, 64, 8), True),  # 130 rows
        (MoEProblem(1024, 7168, 2048, 32, 8), True),  # deepseek-r1 DEP8: 256 rows
        (MoEProblem(16384, 4096, 14336, 8, 2, "float16"), True),  # mixtral: 4096 rows, fp16
        (MoEProblem(4096, 2880, 2880, 64, 4), True),  # gpt-oss: H, I not multiples of the block
        (MoEProblem(1024, 2048, 768, 128, 8), False),  # qwen3-30b: 64 rows, block_m 64
        (MoEProblem(4096, 4096, 1536, 64, 8, "float8_e4m3fn"), False),  # Triton's fp8 tiles gather
    ],
    ids=["q235b-128rows", "q235b-192rows", "q235b-130rows", "dsr1-256rows", "mixtral-fp16", "gpt-oss",
         "q30b-64rows", "fp8"],
)
def test_16bit_default_reads_sorted_x_above_128_rows_per_expert(problem: MoEProblem, sorted_x: bool) -> None:
    """The 16-bit default's gate/up reads x copied into the alignment's order at block_m 128 above
    128 rows per expert (H200 runs 17 and 18: 6-14% faster from 192 rows at I >= 1536, 3-9% slower
    at 128 rows but at mixtral)."""
    d = default_tactic(problem)
    assert d.gate_up.sorted_x is sorted_x, d.name
    assert d in tactics(problem)


@pytest.mark.parametrize(
    ("rows", "block_m"),
    [(1, 16), (16, 16), (17, 32), (32, 32), (33, 64), (48, 64), (96, 64), (97, 128), (512, 128)],
)
def test_default_block_m_thresholds(rows: int, block_m: int) -> None:
    """block_m 16 or 32 only where one block holds an expert's expected rows: at 33-48 rows block_m 32
    took two blocks, so read each expert's weights twice (H200 run 74: block_m 64 was 0.59-0.90x the
    time at all 34 such cases tried). 64 then serves up to 96 rows, as before."""
    for dtype in ("bfloat16", "float8_e4m3fn"):
        problem = MoEProblem(16 * rows, 2048, 768, 128, 8, dtype)  # qwen3-30b EP1: T / 16 rows per expert
        assert problem.rows_per_expert == rows
        assert default_tactic(problem).block_m == min(block_m, 64 if dtype == "float8_e4m3fn" else 128)


@pytest.mark.parametrize(
    ("problem", "gate_up", "down"),
    [
        # qwen3-235b DEP2 T=1: 8 experts x 12 column tiles of 128 = 96 programs; I = 1536
        (MoEProblem(1, 4096, 1536, 64, 8), "n128k128g8w4s3", "n128k128g8w4s3"),
        # qwen3-30b EP1 T=1: 8 x 6 = 48 gate/up programs, under 64: the narrow tile
        (MoEProblem(1, 2048, 768, 128, 8), "n64k128g8w4s4", "n64k128g8w4s4"),
        # deepseek-r1 DEP8 T=1: I = 2048 > 1536 at block_m 16: the down keeps 64 x 256
        (MoEProblem(1, 7168, 2048, 32, 8), "n128k128g8w4s3", "n64k256g8w4s3"),
        # deepseek-r1 EP8 T=1024: 32 rows, block_m 32: the wide down at any I
        (MoEProblem(1024, 7168, 2048, 32, 8, num_local_slots=1024), "n128k128g8w4s3", "n128k128g8w4s3"),
        # mixtral EP8 T=1: one expert, 64 down programs 64 wide (under two per SM): 64 x 128
        (MoEProblem(1, 4096, 14336, 1, 2, num_local_slots=1), "n128k128g8w4s3", "n64k128g8w4s4"),
    ],
    ids=["q235b-T1", "q30b-T1", "dsr1-T1", "dsr1-ep8-32rows", "mixtral-ep8-T1"],
)
def test_16bit_decode_default_tiles(problem: MoEProblem, gate_up: str, down: str) -> None:
    """At block_m <= 32 the 16-bit default takes the 128 x 128 gate/up from 64 programs, and the
    128 x 128 down at I <= 1536 (any I at block_m 32) where a 64-wide down would launch two programs
    per SM (H200 runs 73-74: 0.952x the old default's time over the full profile's 44 changed bf16
    cases)."""
    d = default_tactic(problem)
    assert d.block_m <= 32
    assert (d.gate_up.name, d.down.name) == (gate_up, down), d.name
    assert d in tactics(problem)


@pytest.mark.parametrize(
    ("problem", "gate_up"),
    [
        (MoEProblem(1, 4096, 1024, 64, 8), "n128k128g8w4s3"),  # 8 experts x 8 column tiles = 64 programs
        (MoEProblem(1, 4096, 1152, 64, 7), "n64k128g8w4s4"),  # 7 x 9 = 63: one short
    ],
    ids=["64-programs", "63-programs"],
)
def test_16bit_decode_gate_up_widens_from_64_programs(problem: MoEProblem, gate_up: str) -> None:
    assert default_tactic(problem).gate_up.name == gate_up


@pytest.mark.parametrize(
    ("problem", "stages"),
    [
        (MoEProblem(64, 7168, 2048, 32, 8, "float8_e4m3fn"), 4),  # deepseek-r1 DEP8, 16 rows
        (MoEProblem(64, 4096, 14336, 8, 2, "float8_e4m3fn"), 4),  # mixtral EP1, 16 rows
        (MoEProblem(64, 2880, 2880, 32, 4, "float8_e4m3fn"), 3),  # gpt-oss-120b DEP8: H < 4096
        (MoEProblem(64, 2048, 768, 128, 8, "float8_e4m3fn"), 3),  # qwen3-30b EP1
        (MoEProblem(1024, 7168, 2048, 32, 8, "float8_e4m3fn"), 3),  # 256 rows: block_m 64, unchanged
    ],
    ids=["dsr1", "mixtral", "gpt-oss", "q30b", "dsr1-block_m-64"],
)
def test_fp8_decode_gate_up_has_4_stages_from_h_4096(problem: MoEProblem, stages: int) -> None:
    """At block_m <= 32 the fp8 default's 128 x 128 gate/up takes 4 stages where H >= 4096 (H200 runs
    80-81: 0.97x the layer's time there, 1.01x below)."""
    d = default_tactic(problem)
    assert (d.gate_up.block_n, d.gate_up.block_k, d.gate_up.num_stages) == (128, 128, stages), d.name
    assert d in tactics(problem)


def test_problem_validation() -> None:
    with pytest.raises(ValueError, match="dtype"):
        MoEProblem(1, 64, 64, 4, 2, "int8")
    with pytest.raises(ValueError, match="num_local_slots"):
        MoEProblem(4, 64, 64, 4, 2, num_local_slots=9)
    assert MoEProblem(10, 64, 64, 2, 4).local_slots == 20  # DEP with L < top_k
    assert MoEProblem(10, 64, 64, 4, 2, num_local_slots=5).rows_per_expert == 1.25


# ---------------------------------------------------------------------------------------------
# alignment


def _host_align(ids: torch.Tensor, block_m: int, num_local: int, offset: int
                ) -> tuple[list[int], list[int]]:
    flat = ids.reshape(-1).long().cpu() - offset
    sorted_ids: list[int] = []
    expert_ids: list[int] = []
    for e in range(num_local):
        slots = torch.nonzero(flat == e).flatten().tolist()
        if not slots:
            continue
        padded = -(-len(slots) // block_m) * block_m
        sorted_ids += slots + [ids.numel()] * (padded - len(slots))
        expert_ids += [e] * (padded // block_m)
    return sorted_ids, expert_ids


ALIGN_CASES = [
    # (T, k, E, L, offset, block_m)
    (1, 2, 8, 4, 0, 16),
    (5, 3, 16, 8, 8, 16),
    (100, 2, 16, 8, 4, 32),
    (300, 4, 40, 40, 0, 16),
    (700, 2, 16, 8, 4, 16),
    (64, 8, 128, 128, 0, 16),
    (33, 2, 8, 8, 0, 64),
    (129, 1, 8, 2, 6, 128),
]


@pytest.mark.parametrize("fused", [True, False], ids=["one-program", "four-launch"])
@pytest.mark.parametrize("case", ALIGN_CASES, ids=[f"T{c[0]}-k{c[1]}-E{c[2]}-L{c[3]}-off{c[4]}-"
                                                   f"bm{c[5]}" for c in ALIGN_CASES])
def test_alignment_matches_host_reference(case: tuple[int, ...], fused: bool) -> None:
    t, k, e, num_local, offset, bm = case
    ids = _random_ids(t, k, e, seed=t)
    al = moe_align(ids, bm, num_local, offset, fused=fused)
    sorted_ids, expert_ids = _host_align(ids, bm, num_local, offset)
    total = int(al.num_padded.item())
    assert total == len(sorted_ids) <= al.max_padded
    assert al.sorted_ids[:total].tolist() == sorted_ids  # stable: ascending slot per expert
    assert al.expert_ids[: total // bm].tolist() == expert_ids
    assert (al.expert_ids[total // bm:] == -1).all()
    # slot_rows inverts sorted_ids: each local slot's padded row, -1 for the others
    rows = [-1] * (t * k)
    for row, slot in enumerate(sorted_ids):
        if slot < t * k:
            rows[slot] = row
    assert al.slot_rows.tolist() == rows


def test_alignment_rejects_bad_input() -> None:
    ids = _random_ids(4, 2, 8)
    with pytest.raises(ValueError, match="int32"):
        moe_align(ids.long(), 16, 8)
    with pytest.raises(ValueError, match="block_m"):
        moe_align(ids, 24, 8)
    with pytest.raises(ValueError, match="contiguous"):
        moe_align(ids.t(), 16, 8)


# ---------------------------------------------------------------------------------------------
# every tactic of small-shape spaces

SMALL_PROBLEMS = [
    # (T, H, I, L, E, k): rows per expert 4, 32 and 128 -> block_m {16}, {16, 32}, {32, 64, 128}
    (8, 64, 48, 4, 4, 2),
    (64, 64, 64, 4, 4, 2),
    (128, 64, 32, 2, 2, 2),
]


def _interp_key(t: Tactic) -> tuple:
    """Fields that change what the interpreter executes (warps and stages do not)."""
    def tile(g: GemmTile) -> tuple:
        return (g.block_n, g.block_k, g.group_m, g.tma)
    return (t.block_m, tile(t.gate_up), tile(t.down))


def _small_space() -> list[tuple[tuple[int, ...], Tactic]]:
    out = []
    for p in SMALL_PROBLEMS:
        t, h, i, num_local, _, k = p
        seen: set[tuple] = set()
        for tac in tactics(MoEProblem(t, h, i, num_local, k, "float16")):
            key = _interp_key(tac) if ON_CPU else (tac,)
            if key not in seen:
                seen.add(key)
                out.append((p, tac))
    return out


@pytest.mark.parametrize("problem,tactic", _small_space(),
                         ids=[f"T{p[0]}-H{p[1]}-I{p[2]}-L{p[3]}-{t.name}"
                              for p, t in _small_space()])
def test_every_tactic_of_small_spaces_fp16(problem: tuple[int, ...], tactic: Tactic) -> None:
    t, h, i, num_local, e, k = problem
    x, w1, w2 = _make(t, h, i, num_local, torch.float16, seed=t + h)
    ids = _random_ids(t, k, e, seed=3)
    wts = _weights(t, k)
    out = _run(x, w1, w2, ids, wts, tactic=tactic)
    _assert_close(out, fused_moe_reference(x, w1, w2, ids, wts), torch.float16)


@pytest.mark.parametrize("tma", [False, True], ids=["pointer", "tma"])
def test_fp32_tight(tma: bool) -> None:
    x, w1, w2 = _make(40, 64, 48, 4, torch.float32)
    ids, wts = _random_ids(40, 2, 8, seed=1), _weights(40, 2)
    tac = Tactic(64, GemmTile(32, 32, tma=tma), GemmTile(32, 16, tma=tma))
    out = _run(x, w1, w2, ids, wts, offset=4, tactic=tac)
    _assert_close(out, fused_moe_reference(x, w1, w2, ids, wts, local_expert_offset=4),
                  torch.float32)


# ---------------------------------------------------------------------------------------------
# edge cases (each on the default tactic and on a block_m=64 TMA tactic with ragged tiles, with
# x gathered per row and with x copied into the alignment's order, ``sorted_x``)

EDGE_TACTICS = {
    "default": None,
    "m64-tma": Tactic(64, GemmTile(32, 32, tma=True), GemmTile(32, 32, tma=True)),
    "m64-tma-sorted-x": Tactic(64, GemmTile(32, 32, tma=True, sorted_x=True), GemmTile(32, 32, tma=True)),
}


def _edge(name: str, t: int) -> tuple[torch.Tensor, int, int, int, int, int]:
    """(topk_ids, H, I, L, offset, E) for edge case ``name``."""
    h, i, num_local, offset = 64, 48, 4, 0
    if name == "T1":
        ids = _random_ids(1, 2, 4)
    elif name == "T-below-block_m":
        ids = _random_ids(5, 2, 4)
    elif name == "experts-with-zero-rows":
        ids = _random_ids(t, 2, 2) * 2  # only experts 0 and 2 of 4
    elif name == "all-rows-on-one-expert":
        ids = torch.full((t, 1), 3, dtype=torch.int32, device=DEV)
    elif name == "L-below-top_k":
        # DEP with L=2 < k=4: both local experts in every row, the rest from other shards
        num_local, offset = 2, 2
        local = torch.tensor([2, 3], dtype=torch.int32).repeat(t, 1)
        other = torch.tensor([0, 6], dtype=torch.int32).repeat(t, 1)
        ids = torch.cat([other[:, :1], local, other[:, 1:]], dim=1).to(DEV).contiguous()
    elif name == "all-slots-non-local":
        offset = 4
        ids = _random_ids(t, 2, 4)  # ids 0..3, shard is 4..7
    elif name == "H-I-not-multiples-of-block":
        h, i = 72, 40
        ids = _random_ids(t, 2, 4)
    elif name == "top_k-1":
        ids = _random_ids(t, 1, 4)
    elif name == "negative-and-out-of-range-ids":
        ids = _random_ids(t, 2, 4)
        ids[::3, 0] = -1
        ids[1::3, 1] = 99
    else:
        raise AssertionError(name)
    return ids.contiguous(), h, i, num_local, offset, 0


EDGE_CASES = ["T1", "T-below-block_m", "experts-with-zero-rows", "all-rows-on-one-expert",
              "L-below-top_k", "all-slots-non-local", "H-I-not-multiples-of-block", "top_k-1",
              "negative-and-out-of-range-ids"]


@pytest.mark.parametrize("tactic_name", list(EDGE_TACTICS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_case(name: str, dtype: torch.dtype, tactic_name: str) -> None:
    ids, h, i, num_local, offset, _ = _edge(name, 20)
    t, k = ids.shape
    x, w1, w2 = _make(t, h, i, num_local, dtype, seed=len(name))
    wts = _weights(t, k)
    out = _run(x, w1, w2, ids, wts, offset=offset, tactic=EDGE_TACTICS[tactic_name])
    ref = fused_moe_reference(x, w1, w2, ids, wts, local_expert_offset=offset)
    if name == "all-slots-non-local":
        assert torch.equal(out, torch.zeros_like(out)), "non-local slots must contribute nothing"
    _assert_close(out, ref, dtype)


def test_zero_tokens_returns_empty() -> None:
    x, w1, w2 = _make(0, 64, 48, 4, torch.float16)
    out = fused_moe(x, w1, w2, _random_ids(0, 2, 4), _weights(0, 2))
    assert out.shape == (0, 64)


# ---------------------------------------------------------------------------------------------
# validation


def _valid() -> dict:
    x, w1, w2 = _make(6, 64, 48, 4, torch.float16)
    return {"x": x, "w1": w1, "w2": w2, "topk_ids": _random_ids(6, 2, 4),
            "topk_weights": _weights(6, 2)}


BAD_INPUTS = {
    "x-3d": (lambda a: a.update(x=a["x"][None]), "x must be 2-D"),
    "w1-hidden-mismatch": (lambda a: a.update(w1=a["w1"][:, :, :32]), "w1 is"),
    "w1-odd-rows": (lambda a: a.update(w1=a["w1"][:, :95]), "2\\*I"),
    "w2-shape": (lambda a: a.update(w2=a["w2"][:, :, :40]), "w2 must be"),
    "ids-int64": (lambda a: a.update(topk_ids=a["topk_ids"].long()), "topk_ids dtype"),
    "ids-rows": (lambda a: a.update(topk_ids=a["topk_ids"][:5]), "topk_ids must be"),
    "weights-fp16": (lambda a: a.update(topk_weights=a["topk_weights"].half()), "topk_weights"),
    "weights-shape": (lambda a: a.update(topk_weights=a["topk_weights"][:, :1]), "topk_weights"),
    "w-dtype-mismatch": (lambda a: a.update(w2=a["w2"].float()), "dtypes"),
    "x-int": (lambda a: a.update(x=a["x"].to(torch.int32)), "x dtype"),
    "x-strided": (lambda a: a.update(x=torch.cat([a["x"], a["x"]], 1)[:, ::2]), "unit stride"),
    "ids-not-contiguous": (lambda a: a.update(
        topk_ids=a["topk_ids"].t().contiguous().t()), "contiguous"),
    "device-mismatch": (lambda a: a.update(topk_weights=a["topk_weights"].to("meta")),
                        "one device"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_validation_names_the_mismatch(name: str) -> None:
    args = _valid()
    mutate, pattern = BAD_INPUTS[name]
    mutate(args)
    with pytest.raises(ValueError, match=pattern):
        fused_moe(**args)


def test_validation_of_keywords() -> None:
    a = _valid()
    with pytest.raises(ValueError, match="local_expert_offset"):
        fused_moe(**a, local_expert_offset=-1)
    with pytest.raises(ValueError, match="activation"):
        fused_moe(**a, activation="gelu")
    with pytest.raises(ValueError, match="tactic"):
        fused_moe(**a, tactic={"block_m": 16})
    with pytest.raises(ValueError, match="out must be"):
        fused_moe(**a, out=torch.empty(6, 63, dtype=torch.float16, device=DEV))
    bad_ids = a["topk_ids"].clone()
    bad_ids[0, 0] = 9
    with pytest.raises(ValueError, match="must lie in"):
        fused_moe(**{**a, "topk_ids": bad_ids}, validate=True, num_experts=8)
    fused_moe(**a, validate=True, num_experts=8)  # in range: passes


def test_fp8_validation() -> None:
    a = _valid()
    w1q, w1s = quantize_fp8_block(a["w1"].float())
    w2q, w2s = quantize_fp8_block(a["w2"].float())
    args = (a["x"], w1q, w1s, w2q, w2s, a["topk_ids"], a["topk_weights"])
    with pytest.raises(ValueError, match="w1_scale"):
        fused_moe_fp8(a["x"], w1q, w1s[:, :, :0], w2q, w2s, a["topk_ids"], a["topk_weights"])
    with pytest.raises(ValueError, match="128"):
        fused_moe_fp8(*args, tactic=Tactic(16, GemmTile(64, 128), GemmTile(64, 128)))
    with pytest.raises(ValueError, match="dtypes"):
        fused_moe_fp8(a["x"], a["w1"], w1s, w2q, w2s, a["topk_ids"], a["topk_weights"])


# ---------------------------------------------------------------------------------------------
# reference, peer, fp8 helpers


def _naive(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, ids: torch.Tensor,
           wts: torch.Tensor, offset: int) -> torch.Tensor:
    """Token by token, slot by slot, in float64: checks the reference itself."""
    i = w2.shape[2]
    out = torch.zeros(x.shape, dtype=torch.float64)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j]) - offset
            if 0 <= e < w1.shape[0]:
                xt = x[t].double()
                g = w1[e, :i].double() @ xt
                u = w1[e, i:].double() @ xt
                out[t] += float(wts[t, j]) * (w2[e].double() @ (g * torch.sigmoid(g) * u))
    return out


def test_reference_matches_naive_loop() -> None:
    x, w1, w2 = (v.cpu() for v in _make(7, 32, 24, 4, torch.float32))
    ids = _random_ids(7, 3, 8, seed=2).cpu()
    wts = _weights(7, 3).cpu()
    ref = fused_moe_reference(x, w1, w2, ids, wts, local_expert_offset=2)
    torch.testing.assert_close(ref.double(), _naive(x, w1, w2, ids, wts, 2), rtol=1e-5, atol=1e-6)


def test_peer_matches_reference_fp32() -> None:
    x, w1, w2 = _make(30, 64, 48, 4, torch.float32)
    ids, wts = _random_ids(30, 2, 8, seed=4), _weights(30, 2)
    peer = grouped_mm_moe(x, w1, w2, ids, wts, local_expert_offset=4)
    ref = fused_moe_reference(x, w1, w2, ids, wts, local_expert_offset=4)
    torch.testing.assert_close(peer.float(), ref, rtol=1e-4, atol=1e-5)


def test_fp8_block_quantization_round_trip() -> None:
    w = torch.randn(3, 200, 300) * torch.rand(3, 200, 1) * 10
    q, s = quantize_fp8_block(w)
    assert q.dtype == torch.float8_e4m3fn and q.shape == w.shape and s.shape == (3, 2, 3)
    back = dequantize_fp8_block(q, s)
    # e4m3 has 3 mantissa bits: RTNE error <= 2^-4 of the value, plus half the smallest
    # subnormal step (2^-10 of the scale) for tiny values
    scale = s.repeat_interleave(128, 1).repeat_interleave(128, 2)[:, :200, :300]
    assert ((back - w).abs() <= w.abs() * 2.0**-4 + scale * 2.0**-10).all()
    assert (s * 448.0 >= w.abs().amax()).any()  # some block uses the full range


@pytest.mark.parametrize(
    ("h", "block_m", "base", "fused"),
    [(256, 16, 0, True), (200, 32, 2, False)],
    ids=["h256-local-one-program-align", "h200-ep-four-launch-align"],
)
def test_sorted_fp8_quantization_gives_each_routed_row_its_tokens_bits(
    h: int, block_m: int, base: int, fused: bool
) -> None:
    """``quantize_fp8_groups_sorted`` (the ``sorted_x`` gate/up's input) writes row r of the
    alignment with the bits ``quantize_fp8_groups`` gives token ``sorted_ids[r] // top_k``, and
    zeros (scale 1e-10 / 448, in fp32) on padding rows. ``base`` 2 routes some
    slots to experts that are not local (experts 2..7 of which 2 and 3 are local at offset 0).
    The rows come from ``slot_rows`` of either alignment path; an alignment of other routing is a
    ``ValueError``."""
    from kernels.quant import quantize_fp8_groups, quantize_fp8_groups_sorted

    t, k, num_local = 9, 3, 4
    x = (torch.randn(t, h, generator=torch.Generator().manual_seed(3)) * 4).to(torch.bfloat16).to(DEV)
    ids = _random_ids(t, k, 6, base=base, seed=5)
    al = moe_align(ids, block_m, num_local, 0, fused=fused)
    q, s = quantize_fp8_groups_sorted(x, al, k)
    with pytest.raises(ValueError, match="does not fit T=9 x top_k=2"):
        quantize_fp8_groups_sorted(x, al, 2)
    q0, s0 = quantize_fp8_groups(x)
    padded = int(al.num_padded.item())
    assert q.shape == (al.max_padded, h) and s.shape == (al.max_padded, math.ceil(h / 128))
    slots = al.sorted_ids[:padded].long()
    real = slots < t * k
    assert real.any() and (~real).any()  # both kinds of row are checked
    tok = slots[real] // k
    assert torch.equal(q[:padded][real].view(torch.uint8), q0[tok].view(torch.uint8))
    assert torch.equal(s[:padded][real], s0[tok])
    assert not q[:padded][~real].view(torch.uint8).any()
    zero_scale = torch.tensor(1e-10, dtype=torch.float32) / 448.0
    assert torch.equal(s[:padded][~real].cpu(), zero_scale.expand(int((~real).sum()), s.shape[1]))
