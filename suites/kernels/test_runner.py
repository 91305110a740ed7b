"""This repo's runner through the plugin's interface: registered by conftest.py, tuned end to end.

On the CPU the kernels run in Triton's interpreter (fp16: the interpreter's bf16 dot is wrong), timed
by the host clock; the GPU test tunes a real model with CUDA-graph timing.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pytest_moetune import Topology, get_model
from pytest_moetune.dispatch import dispatch_topk
from pytest_moetune.models import ModelShape
from pytest_moetune.problem import TuningProblem
from pytest_moetune.routing import dummy_topk, routing_stats
from pytest_moetune.runner import RunnerRegistry
from pytest_moetune.testing import HostClockTimer
from pytest_moetune.tuner import Tuner

TINY = ModelShape("tiny", num_experts=8, top_k=2, hidden=64, intermediate=32)


def test_the_runner_is_registered_by_the_repo_conftest(moetune_runners: RunnerRegistry) -> None:
    runner = moetune_runners.get("fused_moe")
    code_hash, *settings = runner.source_hash.split("+")  # "+pdl-off" under MOETUNE_PDL=0 on sm_90+
    assert len(code_hash) == 16 and settings in ([], ["pdl-off"])


def test_compile_units_name_each_gemm_kernel_so_tactics_and_models_share_them(
    moetune_runners: RunnerRegistry,
) -> None:
    """Parallel tuners split the compiling by these units: one per GEMM kernel, named by what its
    compile-time constants depend on, alike wherever the kernel is the same."""
    runner = moetune_runners.get("fused_moe")
    qwen, dsr1 = get_model("qwen3-235b-a22b"), get_model("deepseek-r1")
    at = {
        name: TuningProblem(model, Topology.parse(topo, model.num_experts, model.top_k), dtype).at(1024)
        for name, model, topo, dtype in (
            ("qwen", qwen, "dep2", "bf16"),
            ("dsr1", dsr1, "dep8", "bf16"),
            ("dsr1-fp8", dsr1, "dep8", "fp8_w8a8"),
        )
    }
    space = runner.tactics(at["qwen"])
    units = {repr(u) for t in space for u in runner.compile_units(at["qwen"], t)}
    assert len(units) < 2 * len(space)  # tactics share kernels: gate/up tiles x down tiles
    shared = [t for t in space if t in runner.tactics(at["dsr1"])]
    assert shared and all(
        runner.compile_units(at["qwen"], t) == runner.compile_units(at["dsr1"], t) for t in shared
    )
    fp8 = runner.tactics(at["dsr1-fp8"])[0]
    assert runner.compile_units(at["dsr1-fp8"], fp8)[0][1] == "float8_e4m3fn"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU variant; the GPU variant runs instead")
def test_tune_tiny_model_in_the_interpreter(moetune_runners: RunnerRegistry) -> None:
    runner = moetune_runners.get("fused_moe")
    problem = TuningProblem(TINY, Topology.parse("dep2", 8, 2, ep_rank=1), "fp16", tune_max_num_tokens=16)
    tuner = Tuner(runner, timer=HostClockTimer(rounds=1), device="cpu", progress=False)
    result = tuner.tune(problem, buckets=[16])
    (bucket,) = result.buckets
    assert bucket.failed == 0, bucket.failures
    assert bucket.timed == len(runner.tactics(problem.at(16)))
    assert tuner.lookup(problem, 20) == bucket.tactic


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU variant; the GPU variant runs instead")
def test_tune_tiny_model_on_dispatched_traffic_in_the_interpreter(moetune_runners: RunnerRegistry) -> None:
    """Dispatched routing gives every draw its own row count (rows of both ranks that reach the
    shard); the kernel's inputs and every tactic must follow it."""
    runner = moetune_runners.get("fused_moe")
    problem = TuningProblem(TINY, Topology.parse("dep2", 8, 2), "fp16", "zipf:1.2", tune_max_num_tokens=8)
    tuner = Tuner(runner, timer=HostClockTimer(rounds=1), device="cpu", progress=False, routing_draws=2)
    dispatching = tuner.with_routing(dispatch_topk)
    rows = [dispatch_topk(8, problem.topology, problem.distribution, seed)[0].shape[0] for seed in (0, 1)]
    sets = dispatching.input_sets_for(problem.at(8), problem)
    assert [s["x"].shape[0] for s in sets] == rows and min(rows) > 8
    (bucket,) = dispatching.tune(problem, buckets=[8]).buckets
    assert bucket.failed == 0, bucket.failures


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["bf16", "fp8_w8a8"])
def test_tune_qwen3_235b_dep2_on_the_gpu(moetune_runners: RunnerRegistry, dtype: str) -> None:
    runner = moetune_runners.get("fused_moe")
    model = get_model("qwen3-235b-a22b")
    problem = TuningProblem(
        model, Topology.parse("dep2", model.num_experts, model.top_k), dtype, tune_max_num_tokens=256
    )
    tuner = Tuner(runner, progress=False)
    result = tuner.tune(problem)
    assert [b.bucket for b in result.buckets] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    for bucket in result.buckets:
        assert bucket.timed >= 1 and bucket.time_us > 0, bucket.failures
    assert tuner.lookup(problem, 300) == result.tactic_for(256)


@pytest.mark.parametrize("value", ["fast", "-0.1", "1.5"])
def test_test_slowdown_env_is_validated(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from kernels.runner import SLOWDOWN_ENV, FusedMoERunner

    monkeypatch.setenv(SLOWDOWN_ENV, value)
    with pytest.raises(ValueError, match=rf"\$MOETUNE_TEST_SLOWDOWN='{value}' must be a fraction"):
        FusedMoERunner()


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (the slowdown spins on the GPU clock)"
)
@pytest.mark.parametrize("slowdown", [0.05, 0.10])
def test_test_slowdown_slows_a_launch_by_that_fraction(
    monkeypatch: pytest.MonkeyPatch, slowdown: float
) -> None:
    from kernels.runner import SLOWDOWN_ENV, FusedMoERunner
    from pytest_moetune.routing import dummy_topk
    from pytest_moetune.timing import CudaGraphTimer

    model = get_model("qwen3-235b-a22b")
    problem = TuningProblem(model, Topology.parse("dep2", model.num_experts, model.top_k), "bf16").at(64)
    plain = FusedMoERunner()
    monkeypatch.setenv(SLOWDOWN_ENV, str(slowdown))
    slowed = FusedMoERunner()
    ids, weights = dummy_topk(64, problem.topology, "balanced", device="cuda")
    inputs = plain.make_inputs(problem, ids, weights)
    tactic = plain.default_tactic(problem)
    timer = CudaGraphTimer(rounds=7, warmup_us=50_000)
    base = timer.measure([lambda: plain.run(inputs, tactic)]).median_us
    slow = timer.measure([lambda: slowed.run(inputs, tactic)]).median_us
    assert slow / base == pytest.approx(1 + slowdown, abs=0.02)


L2_SIZED = ModelShape("l2-sized", num_experts=8, top_k=2, hidden=1024, intermediate=512)
"""bf16 weights of 24 MiB: they fit an H100's 50 MiB L2, so warm-L2 timing reads them from L2."""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (times L2 against HBM)")
def test_cold_l2_tuning_rotates_inputs_past_l2(moetune_runners: RunnerRegistry) -> None:
    from pytest_moetune.timing import CudaGraphTimer, cold_l2_input_sets, l2_cache_bytes

    runner = moetune_runners.get("fused_moe")
    problem = TuningProblem(L2_SIZED, Topology.parse("ep1", 8, 2), "bf16", tune_max_num_tokens=64)
    l2 = l2_cache_bytes()
    rule = cold_l2_input_sets(l2)  # what `moetune tune --cold-l2` uses
    sets_used: list[int] = []

    def cold_sets(inputs: object) -> int:
        sets_used.append(rule(inputs))
        return sets_used[-1]

    warm = Tuner(runner, timer=CudaGraphTimer(rounds=7, warmup_us=50_000), progress=False)
    cold = Tuner(
        runner,
        timer=CudaGraphTimer(rounds=7, cold_l2=True, warmup_us=50_000),
        input_sets=cold_sets,
        progress=False,
    )
    assert warm.key(problem, 64) != cold.key(problem, 64)  # the timer is part of the cache key
    cold_result = cold.tune(problem, buckets=[64])
    assert sets_used and sets_used[0] * 24 * 2**20 > 2 * l2, sets_used
    (bucket,) = cold_result.buckets
    assert bucket.failed == 0, bucket.failures
    tactic = runner.default_tactic(problem.at(64))
    warm_us, _ = warm.try_time(warm.input_sets_for(problem.at(64), problem), tactic)
    cold_us, _ = cold.try_time(cold.input_sets_for(problem.at(64), problem), tactic)
    print(f"default tactic at T=64: warm L2 {warm_us:.2f} us, cold L2 {cold_us:.2f} us")
    assert warm_us is not None and cold_us is not None
    assert cold_us > 1.03 * warm_us, "weights read from HBM must be slower than from L2"


def test_export_tunes_without_gluon_tiles_and_a_gluon_tactic_has_no_vllm_config() -> None:
    """vLLM runs Triton kernels: ``for_export("vllm")`` leaves the Gluon fp8 tiles out (even where
    the device runs them) under its own name, and ``vllm_config`` refuses a Gluon tactic."""
    from kernels import GemmTile, Tactic
    from kernels.runner import FusedMoERunner

    model = get_model("deepseek-r1")
    topology = Topology.parse("dep8", model.num_experts, model.top_k)
    problem = TuningProblem(model, topology, "fp8_w8a8").at(4096)
    full = FusedMoERunner()
    full.gluon = True  # as on an H100, whatever this machine is
    assert any(t.gate_up.gluon for t in full.tactics(problem))
    export = full.for_export("vllm")
    assert export.name == "fused_moe-triton" != full.name
    assert not any(t.gate_up.gluon or t.down.gluon for t in export.tactics(problem))
    assert not export.default_tactic(problem).gate_up.gluon
    gluon = GemmTile(128, 128, 8, 8, 4, tma=True, gluon=True)
    with pytest.raises(ValueError, match="Gluon fp8 kernels, which vLLM does not have"):
        full.vllm_config(Tactic(64, gluon, gluon))
    with pytest.raises(ValueError, match="no export format 'sglang'"):
        full.for_export("sglang")


def test_export_tunes_without_sorted_x_tiles() -> None:
    """A bf16 prefill bucket's space holds sorted-x gate/up twins at block_m 128; vLLM's kernel
    gathers x's rows, so the export runner leaves them out and ``vllm_config`` refuses one; it has
    no Gluon tiles either (on Hopper the full runner's space has 16-bit Gluon tiles, its default the
    Gluon down)."""
    from dataclasses import replace

    from kernels.runner import FusedMoERunner, kernel_problem
    from kernels.tactics import default_tactic

    model = get_model("deepseek-r1")
    problem = TuningProblem(model, Topology.parse("dep8", model.num_experts, model.top_k), "bf16").at(4096)
    full = FusedMoERunner()
    sorted_tactics = [t for t in full.tactics(problem) if t.gate_up.sorted_x]
    assert sorted_tactics and {t.block_m for t in sorted_tactics} == {128}
    export = full.for_export("vllm")
    space = export.tactics(problem)
    assert space and not any(t.gate_up.sorted_x or t.gate_up.gluon or t.down.gluon for t in space)
    # on Hopper the full space also has 16-bit Gluon tiles (downs, the persistent gate/up)
    triton_only = {t for t in sorted_tactics if not (t.down.gluon or t.gate_up.gluon)}
    assert {replace(t, gate_up=replace(t.gate_up, sorted_x=False)) for t in triton_only} <= set(space)
    with pytest.raises(ValueError, match="copied into the alignment's order"):
        full.vllm_config(sorted_tactics[0])
    # the default reads sorted x at this bucket's 1024 rows per expert (on Hopper with the Gluon
    # gate/up reading x's copy); the export's default is Triton's default, gathering x's rows
    dflt, export_dflt = full.default_tactic(problem), export.default_tactic(problem)
    assert dflt.gate_up.sorted_x and not export_dflt.gate_up.sorted_x
    assert export_dflt.block_m == dflt.block_m and not (export_dflt.down.gluon or export_dflt.gate_up.gluon)
    triton_default = default_tactic(kernel_problem(problem))
    assert export_dflt.gate_up == replace(triton_default.gate_up, sorted_x=False)
    if not dflt.gate_up.gluon:  # off Hopper the full runner's default is Triton's too
        assert export_dflt.gate_up == replace(dflt.gate_up, sorted_x=False)
    assert export_dflt in space
    export.vllm_config(export_dflt)


def test_a_rank_that_skewed_routing_loads_gets_the_row_blocks_of_its_load() -> None:
    """deepseek-r1 under pure EP8 with zipf:1.2 at T = 1024: the measured rank holds the hottest shard
    and computes ~5.7x its even share of slots (~180 rows per expert, not 32). Sized by the even
    share the space stopped at block_m 32, and the tuned layer lost to the torch._grouped_mm peer
    (0.90x, H200 runs 61-62); sized by the tuner's counted slots it reaches block_m 128."""
    from kernels.runner import FusedMoERunner

    model = get_model("deepseek-r1")
    problem = TuningProblem(model, Topology.parse("ep8", model.num_experts, model.top_k), "bf16", "zipf:1.2")
    runner = FusedMoERunner()
    ids, _ = dummy_topk(1024, problem.topology, problem.distribution, 0)
    slots = sum(routing_stats(ids, problem.topology).rows_per_local_expert)
    assert slots > 4 * 1024 * problem.topology.local_slots_per_row
    even = {t.block_m for t in runner.tactics(problem.at(1024))}
    loaded = replace(problem.at(1024), routed_local_slots=float(slots))
    assert max(even) == 32
    assert max(t.block_m for t in runner.tactics(loaded)) == 128
    assert runner.default_tactic(loaded).block_m == 128
    # dispatched traffic: more slots than the bucket's T * top_k, carried by more rows
    dispatched = replace(problem.at(64), routed_local_slots=5.7 * 64 * model.top_k)
    assert max(t.block_m for t in runner.tactics(dispatched)) > max(
        t.block_m for t in runner.tactics(problem.at(64))
    )
