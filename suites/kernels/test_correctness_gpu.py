"""GPU correctness of the fused MoE layer: bf16 and fp8 block-scale on the ANCHORS.md shapes.

Error bounds (bf16, against the fp32 reference on the same bf16 inputs): the kernel accumulates in
fp32 (accumulation error ~ sqrt(K) * 2^-24, negligible) and rounds to bf16 three times: h, the
weighted per-slot rows, and out. bf16 has unit roundoff u = 2^-8; round-to-nearest errors are about
uniform, so each rounding adds a relative RMS error of at most u / sqrt(3) ~ 2.3e-3, and three
independent ones give ~4e-3. We require ``||out - ref|| / ||ref|| <= 1e-2`` (2.5x margin) and,
element-wise, ``|out - ref| <= 2^-6 * |ref| + 2^-6 * max|ref|`` (a per-element bound needs an absolute
term: slots of opposite sign cancel, so an element's error scales with its slot terms, not with
itself). The peer layer rounds its routing weights to bf16 as well, which fits the same bounds.

fp8 (e4m3 w8a8, 128x128 weight blocks, per-token 128-group activations): the reference runs in
fp32 on the *same quantized values* (dequantized x, w1, w2) and rounds h = silu(gate) * up to e4m3
by the same recipe (``act_quant="fp8_group"``). What is left differs from the bf16 case only in how
h's fp32 value is reached (per-K-block scaled fp8 dots vs one fp32 matmul: ~1e-6 relative), which
moves an element of h across an e4m3 rounding boundary with probability ~1e-6 / 2^-4 ~ 2e-5. That is
rare per element but not per layer: ~200 of qwen3-next-80b's 10M h elements at T=8192. Each such
flip moves one h element by one e4m3 step (up to 2^-3 of it) and, through its W2 column, a whole
output row by a little: the norm bound does not notice, but an element of that row can leave the
bf16 element bound (session 10 on the H200: 2 of 16.8M output elements at 1.1x the bound). So fp8
checks take the same norm bound, and the element bound with at most ``1e-6`` of the elements (16 at
T=8192, H=2048; none below 1M elements) beyond it, those within 4x of it.

Every run writes into an output poisoned with NaN; a NaN left (unwritten element) or produced fails.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import pytest
import torch
import triton

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: bf16 tl.dot is wrong under the Triton CPU interpreter",
)

# (model, E, top_k, H, I, ep_size, use_dp): ANCHORS.md shapes on the topologies the suites use.
MODELS = {
    "mixtral-8x7b-ep1": (8, 2, 4096, 14336, 1, True),
    "qwen3-30b-a3b-ep1": (128, 8, 2048, 768, 1, True),
    "qwen3-235b-a22b-dep2": (128, 8, 4096, 1536, 2, True),
    "deepseek-r1-dep8": (256, 8, 7168, 2048, 8, True),
    "gpt-oss-120b-ep2": (128, 4, 2880, 2880, 2, False),
    "qwen3-next-80b-ep4": (512, 10, 2048, 512, 4, False),
}
TOKENS = (1, 64, 1024, 8192)
REL_NORM_BOUND = 1e-2
ELEM_TOL = 2.0**-6


def _weights_f32(model: str) -> tuple[torch.Tensor, torch.Tensor]:
    e, _, h, i, ep, _ = MODELS[model]
    num_local = e // ep
    gen = torch.Generator(device="cuda").manual_seed(7)
    w1 = torch.randn(num_local, 2 * i, h, device="cuda", generator=gen) / math.sqrt(h)
    w2 = torch.randn(num_local, h, i, device="cuda", generator=gen) / math.sqrt(i)
    return w1, w2


@functools.lru_cache(maxsize=1)
def _weights(model: str) -> tuple[torch.Tensor, torch.Tensor]:
    w1, w2 = _weights_f32(model)
    return w1.to(torch.bfloat16), w2.to(torch.bfloat16)


@functools.lru_cache(maxsize=1)
def _weights_fp8(model: str) -> tuple[torch.Tensor, ...]:
    from kernels import quantize_fp8_block

    w1, w2 = _weights_f32(model)
    return (*quantize_fp8_block(w1), *quantize_fp8_block(w2))


def _routing(model: str, t: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Random top-k: under DEP all slots in the last rank's shard, under pure EP over all E."""
    e, k, _, _, ep, use_dp = MODELS[model]
    num_local = e // ep
    offset = (ep - 1) * num_local
    gen = torch.Generator(device="cuda").manual_seed(seed)
    pool = num_local if use_dp else e
    scores = torch.rand(t, pool, device="cuda", generator=gen)
    ids = scores.topk(k, dim=1).indices + (offset if use_dp else 0)
    weights = torch.softmax(torch.randn(t, k, device="cuda", generator=gen), dim=1)
    return ids.to(torch.int32).contiguous(), weights.float().contiguous(), offset


FP8_OUTLIER_FRACTION = 1e-6
"""Largest share of fp8 output elements allowed past the element bound (h code flips, see above)."""
FP8_OUTLIER_FACTOR = 4.0
"""How far past the element bound such an element may be."""


def _check(out: torch.Tensor, ref: torch.Tensor, *, fp8: bool = False) -> None:
    """The norm bound and the element bound; with ``fp8``, the element bound may be missed by at most
    ``FP8_OUTLIER_FRACTION`` of the elements, each within ``FP8_OUTLIER_FACTOR`` times it."""
    assert not torch.isnan(out).any(), "NaN in the output (unwritten or produced)"
    outf = out.float()
    rel = ((outf - ref).norm() / ref.norm().clamp_min(1e-30)).item()
    assert rel <= REL_NORM_BOUND, f"relative norm error {rel:.3e} > {REL_NORM_BOUND}"
    atol = ELEM_TOL * ref.abs().max().item()
    if not fp8:
        torch.testing.assert_close(outf, ref, rtol=ELEM_TOL, atol=atol)
        return
    bound = atol + ELEM_TOL * ref.abs()
    excess = (outf - ref).abs() / bound
    allowed = int(FP8_OUTLIER_FRACTION * ref.numel())
    past = int((excess > 1).sum().item())
    worst = excess.max().item()
    assert past <= allowed and worst <= FP8_OUTLIER_FACTOR, (
        f"{past} of {ref.numel()} elements past the element bound (at most {allowed} allowed), "
        f"worst at {worst:.2f}x the bound (at most {FP8_OUTLIER_FACTOR}x)"
    )


def _tokens(t: int, h: int, seed: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """``x (t, h)`` standard normal in ``dtype`` from a seeded generator: the same inputs whatever
    ran before (a failure reproduces when the test runs alone)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(t, h, device="cuda", generator=gen).to(dtype)


def _fp8_case(model: str, t: int, seed: int, dtype: torch.dtype = torch.bfloat16) -> tuple:
    """``(x, weights, routing, offset, reference)`` of one fp8 point, the reference on the same
    quantized inputs (as in ``test_fp8_block_scale_matches_reference``)."""
    from kernels import dequantize_fp8_block, dequantize_fp8_groups, fused_moe_reference, quantize_fp8_groups

    w1q, w1s, w2q, w2s = _weights_fp8(model)
    ids, weights, offset = _routing(model, t, seed=seed)
    x = _tokens(t, w1q.shape[2], seed + 1000, dtype)
    ref = fused_moe_reference(
        dequantize_fp8_groups(*quantize_fp8_groups(x)), dequantize_fp8_block(w1q, w1s),
        dequantize_fp8_block(w2q, w2s), ids, weights, local_expert_offset=offset, act_quant="fp8_group",
    )
    return x, (w1q, w1s, w2q, w2s), (ids, weights), offset, ref


@pytest.mark.parametrize("t", TOKENS, ids=[f"T{t}" for t in TOKENS])
@pytest.mark.parametrize("model", list(MODELS))
def test_bf16_matches_reference(model: str, t: int) -> None:
    from kernels import fused_moe, fused_moe_reference

    w1, w2 = _weights(model)
    ids, weights, offset = _routing(model, t, seed=t)
    x = _tokens(t, w1.shape[2], seed=t + 1000)
    out = torch.full((t, w1.shape[2]), math.nan, device="cuda", dtype=torch.bfloat16)
    fused_moe(x, w1, w2, ids, weights, local_expert_offset=offset, out=out)
    ref = fused_moe_reference(x, w1, w2, ids, weights, local_expert_offset=offset)
    _check(out, ref)
    again = torch.full_like(out, math.nan)
    fused_moe(x, w1, w2, ids, weights, local_expert_offset=offset, out=again)
    assert torch.equal(out, again), "two runs on the same inputs gave different bits"


@pytest.mark.parametrize(
    ("model", "t"), [("deepseek-r1-dep8", 1000), ("qwen3-30b-a3b-ep1", 2000), ("mixtral-8x7b-ep1", 700)],
    ids=["deepseek-r1-dep8-T1000", "qwen3-30b-a3b-ep1-T2000", "mixtral-8x7b-ep1-T700"],
)
def test_bf16_sorted_x_matches_its_gathered_twin(model: str, t: int) -> None:
    """bf16 at block_m 128 (the default's tiles): the gate/up reading x in the alignment's order by
    TMA (``sorted_x``) gives the gathering tile's bits, and both meet the reference's bounds."""
    from dataclasses import replace

    from kernels import default_tactic, fused_moe, fused_moe_reference
    from kernels.fused_moe import problem_of

    w1, w2 = _weights(model)
    ids, weights, offset = _routing(model, t, seed=t)
    x = _tokens(t, w1.shape[2], seed=t + 1000)
    dflt = default_tactic(problem_of(x, w1, ids))
    assert dflt.block_m == 128 and dflt.gate_up.tma, dflt.name
    gathered = replace(dflt, gate_up=replace(dflt.gate_up, sorted_x=False))
    twin = replace(dflt, gate_up=replace(dflt.gate_up, sorted_x=True))
    outs = []
    for tactic in (gathered, twin):
        out = torch.full((t, w1.shape[2]), math.nan, device="cuda", dtype=torch.bfloat16)
        fused_moe(x, w1, w2, ids, weights, local_expert_offset=offset, tactic=tactic, out=out)
        outs.append(out)
    _check(outs[1], fused_moe_reference(x, w1, w2, ids, weights, local_expert_offset=offset))
    assert torch.equal(outs[0], outs[1]), f"{twin.name} differs from {gathered.name}"


BF16_GLUON_POINTS = [("deepseek-r1-dep8", 1000), ("qwen3-235b-a22b-dep2", 700), ("qwen3-30b-a3b-ep1", 2000),
                     ("qwen3-next-80b-ep4", 3000)]  # fmt: skip


@pytest.mark.parametrize(("model", "t"), BF16_GLUON_POINTS, ids=[f"{m}-T{t}" for m, t in BF16_GLUON_POINTS])
def test_bf16_every_gluon_down_matches_reference(model: str, t: int) -> None:
    """Every 16-bit Gluon down tile of the point's bf16 space (beside the space's first gate/up at its
    block_m) meets the reference's bounds, y read back through ``slot_rows``; at block_m 128 the
    default takes one of them."""
    from kernels import MoEProblem, default_tactic, fused_moe, fused_moe_reference, tactics

    _skip_without_gluon()
    w1, w2 = _weights(model)
    ids, weights, offset = _routing(model, t, seed=t + 31)
    x = _tokens(t, w1.shape[2], seed=t + 1031)
    problem = MoEProblem(t, w1.shape[2], w2.shape[2], w1.shape[0], ids.shape[1], "bfloat16")
    space = tactics(problem, gluon=True)
    first_gate_up = {}
    for tac in space:
        first_gate_up.setdefault(tac.block_m, tac.gate_up)
    chosen = [tac for tac in space if tac.down.gluon and tac.gate_up == first_gate_up[tac.block_m]]
    assert chosen, f"no Gluon down in the bf16 space of {model} T={t}"
    ref = fused_moe_reference(x, w1, w2, ids, weights, local_expert_offset=offset)
    for tac in chosen:
        out = torch.full((t, w1.shape[2]), math.nan, device="cuda", dtype=torch.bfloat16)
        fused_moe(x, w1, w2, ids, weights, local_expert_offset=offset, tactic=tac, out=out)
        _check(out, ref)
    dflt = default_tactic(problem, gluon=True)
    assert dflt.down.gluon == (dflt.block_m == 128), dflt.name


BF16_GLUON_GATE_UP_POINTS = [("deepseek-r1-dep8", 1000), ("qwen3-235b-a22b-dep2", 1500),
                             ("qwen3-30b-a3b-ep1", 3000), ("qwen3-235b-a22b-dep2", 64),
                             ("mixtral-8x7b-ep1", 5)]  # fmt: skip
"""Prefill points above 128 rows per expert (250, 187.5, 187.5 rows), not multiples of 128, so every
expert has padding rows; then two where padding is most of each block (4 rows per expert with half
the slots on the other DEP rank; 1-2 rows per expert, 8 experts)."""


@pytest.mark.parametrize(("model", "t"), BF16_GLUON_GATE_UP_POINTS,
                         ids=[f"{m}-T{t}" for m, t in BF16_GLUON_GATE_UP_POINTS])  # fmt: skip
def test_bf16_persistent_gluon_gate_ups_give_their_triton_twins_bits(model: str, t: int) -> None:
    """The 16-bit persistent Gluon gate/ups of the space (block_m 128: gathering x's rows by
    ``cp.async``, and x in the alignment's order by TMA; 3 and 4 stages) beside the 128 x 256 Gluon
    down give the bits of the same tactic with Triton's sorted 128 x 64 gate/up: all add the same
    k16 products of each output element in the same K order and write ``silu(gate) * up`` with the
    same fp32 expression before one rounding; padding rows (zeros when gathered) reach no token."""
    from kernels import Tactic, fused_moe, fused_moe_reference
    from kernels.tactics import GemmTile

    _skip_without_gluon()
    w1, w2 = _weights(model)
    ids, weights, offset = _routing(model, t, seed=t + 41)
    x = _tokens(t, w1.shape[2], seed=t + 1041)
    gathering = GemmTile(128, 64, 8, 8, 3, tma=True, gluon=True, persistent=True)
    gate_ups = [replace(gathering, sorted_x=s, num_stages=n) for s in (False, True) for n in (3, 4)]
    base = Tactic(128, GemmTile(128, 64, 8, 8, 4, tma=True, sorted_x=True),
                  GemmTile(256, 64, 8, 8, 3, tma=True, gluon=True))  # fmt: skip
    outs = []
    for tac in (base, *(replace(base, gate_up=g) for g in gate_ups)):
        out = torch.full((t, w1.shape[2]), math.nan, device="cuda", dtype=torch.bfloat16)
        fused_moe(x, w1, w2, ids, weights, local_expert_offset=offset, tactic=tac, out=out)
        outs.append(out)
    _check(outs[0], fused_moe_reference(x, w1, w2, ids, weights, local_expert_offset=offset))
    for gate_up, out in zip(gate_ups, outs[1:], strict=True):
        assert torch.equal(outs[0], out), f"{gate_up.name} differs from {base.gate_up.name}"


def test_bf16_gluon_down_fp16() -> None:
    """fp16 x and weights through the 16-bit Gluon down (fp16 operands, y in fp16)."""
    from kernels import MoEProblem, default_tactic, fused_moe, fused_moe_reference

    _skip_without_gluon()
    model, t = "qwen3-235b-a22b-dep2", 1500
    w1, w2 = (w.half() for w in _weights(model))
    ids, weights, offset = _routing(model, t, seed=5)
    x = _tokens(t, w1.shape[2], seed=6, dtype=torch.float16)
    problem = MoEProblem(t, w1.shape[2], w2.shape[2], w1.shape[0], ids.shape[1], "float16")
    tac = default_tactic(problem, gluon=True)
    assert tac.down.gluon, tac.name
    out = torch.full_like(x, math.nan)
    fused_moe(x, w1, w2, ids, weights, local_expert_offset=offset, tactic=tac, out=out)
    _check(out, fused_moe_reference(x, w1, w2, ids, weights, local_expert_offset=offset))


@pytest.mark.parametrize("t", TOKENS, ids=[f"T{t}" for t in TOKENS])
@pytest.mark.parametrize("model", list(MODELS))
def test_fp8_block_scale_matches_reference(model: str, t: int) -> None:
    from kernels import fused_moe_fp8

    x, weights_fp8, routing, offset, ref = _fp8_case(model, t, seed=t + 11)
    out = torch.full_like(x, math.nan)
    fused_moe_fp8(x, *weights_fp8, *routing, local_expert_offset=offset, out=out)
    _check(out, ref, fp8=True)
    again = torch.full_like(out, math.nan)
    fused_moe_fp8(x, *weights_fp8, *routing, local_expert_offset=offset, out=again)
    assert torch.equal(out, again), "two runs on the same inputs gave different bits"


def test_fp8_activation_quantization_matches_torch() -> None:
    """The device group quantizer: scale = group amax / 448 (torch may differ by 1 ulp, as it
    divides by a scalar through its reciprocal), and x / scale rounded like torch's e4m3 cast
    (RTNE, saturating at 448)."""
    from kernels import quantize_fp8_groups

    x = (torch.randn(37, 1000, device="cuda") * 30).to(torch.bfloat16)
    q, s = quantize_fp8_groups(x)
    xf = torch.nn.functional.pad(x.float(), (0, 24)).view(37, 8, 128)
    amax = xf.abs().amax(dim=2).clamp_min(1e-10)
    torch.testing.assert_close(s, amax / 448.0, rtol=2.0**-23, atol=0)
    expect = (xf / s[:, :, None]).clamp(-448, 448).to(torch.float8_e4m3fn)
    assert torch.equal(q.float(), expect.view(37, 1024)[:, :1000].float())


@pytest.mark.parametrize("t", (64, 1024), ids=["T64", "T1024"])
@pytest.mark.parametrize("model", ["qwen3-235b-a22b-dep2", "gpt-oss-120b-ep2"])
def test_peer_matches_reference(model: str, t: int) -> None:
    """The benchmark's comparator must compute the same function."""
    from kernels import fused_moe_reference, grouped_mm_moe

    w1, w2 = _weights(model)
    ids, weights, offset = _routing(model, t, seed=100 + t)
    x = _tokens(t, w1.shape[2], seed=1100 + t)
    out = grouped_mm_moe(x, w1, w2, ids, weights, local_expert_offset=offset)
    _check(out, fused_moe_reference(x, w1, w2, ids, weights, local_expert_offset=offset))


@pytest.mark.parametrize("t", (16, 64, 1024), ids=["T16-fused-align", "T64-fused-align", "T1024"])
def test_cuda_graph_replay_follows_new_routing(t: int) -> None:
    """Captured once, replayed on new routing: alignment is on the device, no host sync."""
    from kernels import fused_moe, fused_moe_reference

    model = "gpt-oss-120b-ep2"
    w1, w2 = _weights(model)
    ids, weights, offset = _routing(model, t, seed=1)
    x = _tokens(t, w1.shape[2], seed=1001)
    fused_moe(x, w1, w2, ids, weights, local_expert_offset=offset)  # compile outside capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fused_moe(x, w1, w2, ids, weights, local_expert_offset=offset)
    for seed in (2, 3):
        new_ids, new_w, _ = _routing(model, t, seed=seed)
        ids.copy_(new_ids)
        weights.copy_(new_w)
        x.copy_(_tokens(t, w1.shape[2], seed=1000 + seed))
        out.fill_(math.nan)
        graph.replay()
        _check(out, fused_moe_reference(x, w1, w2, ids, weights, local_expert_offset=offset))


def test_every_tactic_of_a_small_space_on_gpu() -> None:
    """Every tactic of one problem's space compiles for the GPU and matches the reference."""
    from kernels import MoEProblem, fused_moe, fused_moe_reference, tactics

    model = "qwen3-30b-a3b-ep1"
    w1, w2 = _weights(model)
    t = 48
    ids, weights, offset = _routing(model, t, seed=5)
    x = _tokens(t, w1.shape[2], seed=1005)
    ref = fused_moe_reference(x, w1, w2, ids, weights, local_expert_offset=offset)
    problem = MoEProblem(t, w1.shape[2], w2.shape[2], w1.shape[0], ids.shape[1])
    space = tactics(problem)
    assert space
    for tac in space:
        out = torch.full((t, w1.shape[2]), math.nan, device="cuda", dtype=torch.bfloat16)
        fused_moe(x, w1, w2, ids, weights, local_expert_offset=offset, tactic=tac, out=out)
        _check(out, ref)


# Prefill points whose rows per expert (250, 87.5) are not multiples of 64: every Gluon block_m has
# padding rows. H and I are multiples of 128 on both, as the Gluon kernels need.
# (model, T, whether the default's down GEMM is Gluon: deepseek-r1's 250 rows per expert run block_m
# 128, all Gluon; qwen3-235b's I=1536 at 88 rows per expert block_m 64 with Triton's down;
# kernels.tactics._gluon_block_m_128_pays and _gluon_down_pays)
GLUON_POINTS = [("deepseek-r1-dep8", 1000, True), ("qwen3-235b-a22b-dep2", 700, False)]


def _skip_without_gluon() -> None:
    """Skip where Gluon cannot run, but fail where it should: on Hopper with the Triton 3.6 the
    kernels are written for, an import error of the Gluon modules is a bug (a removed helper, say),
    not a missing feature, and must not turn the Gluon tests into skips."""
    from kernels.gluon_support import GLUON_IMPORT_ERROR, HOPPER, gluon_unready

    why = gluon_unready()
    if why is None:
        return
    on_hopper = torch.cuda.is_available() and torch.cuda.get_device_capability() == HOPPER
    if GLUON_IMPORT_ERROR is not None and on_hopper and triton.__version__.startswith("3.6"):
        pytest.fail(f"the Gluon kernels do not import on Hopper with Triton {triton.__version__}: {why}")
    pytest.skip(f"the Gluon fp8 tiles run on Hopper only: {why}")


@pytest.mark.parametrize(
    ("model", "t", "gluon_down"), GLUON_POINTS, ids=[f"{m}-T{t}" for m, t, _ in GLUON_POINTS]
)
def test_fp8_every_gluon_tactic_matches_reference(model: str, t: int, gluon_down: bool) -> None:
    """Every tactic of the point's fp8 space with a Gluon tile (Gluon in both GEMMs, or beside a
    Triton tile: the kernels exchange h and its scales) matches the reference; a ``sorted_x``
    gate/up (x quantized into the alignment's order, read by TMA) gives its gathering twin's bits, a
    persistent one (``kernels.gluon_gate_up_ws``, and the ``dual`` one of
    ``kernels.gluon_gate_up_dual``) the non-persistent sorted tile's, a persistent one gathering x's
    rows itself the persistent sorted tile's; and the default gives the same bits twice."""
    from kernels import GemmTile, MoEProblem, default_tactic, fused_moe_fp8, tactics

    _skip_without_gluon()
    x, weights_fp8, routing, offset, ref = _fp8_case(model, t, seed=t + 23)
    w1q, w2q = weights_fp8[0], weights_fp8[2]
    problem = MoEProblem(t, w1q.shape[2], w2q.shape[2], w1q.shape[0], routing[0].shape[1], "float8_e4m3fn")
    chosen = [tac for tac in tactics(problem, gluon=True) if tac.gate_up.gluon or tac.down.gluon]
    assert {tac.block_m for tac in chosen} == {64, 128}
    outs = {}
    for tac in chosen:
        out = torch.full_like(x, math.nan)
        fused_moe_fp8(x, *weights_fp8, *routing, local_expert_offset=offset, tactic=tac, out=out)
        _check(out, ref, fp8=True)
        outs[tac] = out
    sorted_tiles = {tac.gate_up for tac in chosen if tac.gate_up.sorted_x and not tac.gate_up.persistent}

    def twin_of(gate_up: GemmTile) -> GemmTile:
        """A persistent gate/up's twin: with sorted x the space's non-persistent sorted tile, else
        the same persistent tile with sorted x; a sorted one's: the same tile gathering x."""
        if gate_up.persistent and gate_up.sorted_x:
            return next(t for t in sorted_tiles if t.block_n == gate_up.block_n)
        return replace(gate_up, sorted_x=not gate_up.sorted_x)

    twins = [(tac, replace(tac, gate_up=twin_of(tac.gate_up))) for tac in chosen
             if tac.gate_up.sorted_x or tac.gate_up.persistent]  # fmt: skip
    assert twins and all(twin in outs for _, twin in twins)
    kinds = {(tac.gate_up.persistent, tac.gate_up.sorted_x, tac.gate_up.dual) for tac, _ in twins}
    assert kinds >= {(True, True, False), (True, False, False), (True, True, True)}, kinds
    for tac, twin in twins:
        assert torch.equal(outs[tac], outs[twin]), f"{tac.name} differs from {twin.name}"
    dflt = default_tactic(problem, gluon=True)
    assert dflt.gate_up.gluon and dflt.down.gluon == gluon_down, dflt.name
    first = fused_moe_fp8(x, *weights_fp8, *routing, local_expert_offset=offset)
    again = fused_moe_fp8(x, *weights_fp8, *routing, local_expert_offset=offset)
    assert torch.equal(first, again), "two runs on the same inputs gave different bits"


@pytest.mark.parametrize("local", [True, False], ids=["fewer-tiles-than-programs", "no-local-slot"])
def test_fp8_dual_gate_up_programs_without_tiles_finish(local: bool) -> None:
    """The dual gate/up's second math partition waits for the first one's first promotion. A program
    with no tile (a launch sized for the alignment's bound, fewer tiles in use; or no local slot at
    all) must skip that wait, not hang. Its output is the two-pass persistent gate/up's, bit for bit,
    and the reference's (zeros without local slots). H = I = 256, 4 local experts, 8 tokens: at most
    8 tiles in use."""
    from kernels import (
        GemmTile,
        Tactic,
        dequantize_fp8_block,
        dequantize_fp8_groups,
        fused_moe_fp8,
        fused_moe_reference,
        quantize_fp8_block,
        quantize_fp8_groups,
    )

    _skip_without_gluon()
    gen = torch.Generator(device="cuda").manual_seed(11)
    num_local, hidden, inter, t, k = 4, 256, 256, 8, 2
    w1 = torch.randn(num_local, 2 * inter, hidden, device="cuda", generator=gen) / 16
    w1q, w1s = quantize_fp8_block(w1)
    w2q, w2s = quantize_fp8_block(torch.randn(num_local, hidden, inter, device="cuda", generator=gen) / 16)
    x = _tokens(t, hidden, seed=12)
    offset = 0 if local else num_local  # ids below num_local: all local, or all in the shard before
    first = torch.randint(0, num_local, (t,), device="cuda", generator=gen)
    ids = torch.stack([first, (first + 1) % num_local], dim=1).to(torch.int32).contiguous()  # k distinct
    weights = torch.softmax(torch.randn(t, k, device="cuda", generator=gen), dim=1).contiguous()
    ref = fused_moe_reference(
        dequantize_fp8_groups(*quantize_fp8_groups(x)), dequantize_fp8_block(w1q, w1s),
        dequantize_fp8_block(w2q, w2s), ids, weights, local_expert_offset=offset, act_quant="fp8_group",
    )  # fmt: skip
    dual = GemmTile(128, 128, 8, 8, 4, tma=True, gluon=True, sorted_x=True, persistent=True, dual=True)
    down = GemmTile(128, 128, 8, 8, 4, tma=True, gluon=True)
    outs = []
    for gate_up in (dual, replace(dual, dual=False, num_stages=5)):
        out = torch.full_like(x, math.nan)
        fused_moe_fp8(x, w1q, w1s, w2q, w2s, ids, weights, local_expert_offset=offset,
                      tactic=Tactic(128, gate_up, down), out=out)  # fmt: skip
        torch.cuda.synchronize()
        outs.append(out)
    assert torch.equal(outs[0], outs[1]), "the dual gate/up's bits differ from the two-pass kernel's"
    if local:
        _check(outs[0], ref, fp8=True)
    else:
        assert not ref.any() and not outs[0].any(), "no local slot: the output must be zeros"


def test_fp8_gluon_fp16_activations() -> None:
    """fp16 x: the Gluon down kernel rounds y to x's dtype (fp16 here, bf16 elsewhere)."""
    from kernels import fused_moe_fp8

    _skip_without_gluon()
    x, weights_fp8, routing, offset, ref = _fp8_case("deepseek-r1-dep8", 512, seed=5, dtype=torch.float16)
    out = torch.full_like(x, math.nan)
    fused_moe_fp8(x, *weights_fp8, *routing, local_expert_offset=offset, out=out)
    assert out.dtype == torch.float16
    _check(out, ref, fp8=True)


def test_fp8_gluon_cuda_graph_replay_follows_new_routing() -> None:
    """The Gluon tiles (host-built TMA descriptors, device alignment) capture in a CUDA graph, as the
    tuner times them, and a replay follows new routing written into the captured tensors."""
    from kernels import (
        dequantize_fp8_block,
        dequantize_fp8_groups,
        fused_moe_fp8,
        fused_moe_reference,
        quantize_fp8_groups,
    )

    _skip_without_gluon()
    model, t = "deepseek-r1-dep8", 512
    x, weights_fp8, (ids, weights), offset, _ = _fp8_case(model, t, seed=1)
    fused_moe_fp8(x, *weights_fp8, ids, weights, local_expert_offset=offset)  # compile outside capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fused_moe_fp8(x, *weights_fp8, ids, weights, local_expert_offset=offset)
    w1q, w1s, w2q, w2s = weights_fp8
    new_ids, new_w, _ = _routing(model, t, seed=2)
    ids.copy_(new_ids)
    weights.copy_(new_w)
    out.fill_(math.nan)
    graph.replay()
    ref = fused_moe_reference(
        dequantize_fp8_groups(*quantize_fp8_groups(x)), dequantize_fp8_block(w1q, w1s),
        dequantize_fp8_block(w2q, w2s), ids, weights, local_expert_offset=offset, act_quant="fp8_group",
    )
    _check(out, ref, fp8=True)


PDL_POINTS = [
    ("qwen3-30b-a3b-ep1", 1, "bf16"),  # the one-program alignment, Triton GEMMs and combine
    ("qwen3-30b-a3b-ep1", 1, "fp8"),  # + the per-token quantization of x
    ("deepseek-r1-dep8", 1000, "bf16"),  # the four-launch alignment, x's rows copied into its order
    ("deepseek-r1-dep8", 1000, "fp8"),  # the two-pass sorted quantization (top_k 8), Gluon GEMMs
    ("mixtral-8x7b-ep1", 700, "fp8"),  # the token-major sorted quantization (top_k 2)
    # plain launches of the persistent Gluon gate/ups (16-bit gathering; fp8 on sorted x) between PDL ones
    ("qwen3-30b-a3b-ep1", 4096, "bf16"),
    ("qwen3-30b-a3b-ep1", 4096, "fp8"),
]


@pytest.mark.parametrize(("model", "t", "dtype"), PDL_POINTS, ids=[f"{m}-T{t}-{d}" for m, t, d in PDL_POINTS])
def test_pdl_launches_give_the_bits_of_plain_ones_eager_and_replayed(model: str, t: int, dtype: str) -> None:
    """``kernels.pdl``: the default tactic's layer launched with programmatic dependent launch gives
    the bits of the same layer launched plainly, called eagerly and replayed from a CUDA graph
    (captured with PDL) after new routing is written into the captured tensors."""
    from kernels import fused_moe, fused_moe_fp8
    from kernels.pdl import pdl_forced

    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("programmatic dependent launch needs compute capability 9.0 or later")
    if dtype == "fp8":
        x, weights, (ids, wts), offset, _ = _fp8_case(model, t, seed=5)

        def layer() -> torch.Tensor:
            return fused_moe_fp8(x, *weights, ids, wts, local_expert_offset=offset)
    else:
        w1, w2 = _weights(model)
        ids, wts, offset = _routing(model, t, seed=5)
        x = _tokens(t, w1.shape[2], seed=1005)

        def layer() -> torch.Tensor:
            return fused_moe(x, w1, w2, ids, wts, local_expert_offset=offset)

    with pdl_forced(False):
        plain = layer()
    with pdl_forced(True):
        assert torch.equal(layer(), plain), "the PDL launches' bits differ from the plain launches'"
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = layer()
    new_ids, new_w, _ = _routing(model, t, seed=6)
    ids.copy_(new_ids)
    wts.copy_(new_w)
    with pdl_forced(False):
        plain = layer()
    out.fill_(math.nan)
    graph.replay()
    assert torch.equal(out, plain), "the PDL graph's replay on new routing differs from plain launches"
