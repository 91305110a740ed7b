"""The autotuner on CPU with the fake runner and fake timer (deterministic times)."""

from __future__ import annotations

import dataclasses
import json
import re
import time
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pytest_moetune.dispatch import dispatch_topk
from pytest_moetune.distributions import Distribution
from pytest_moetune.export import read_vllm_config, vllm_file_name, vllm_table, write_vllm_config
from pytest_moetune.models import ModelShape, get_model
from pytest_moetune.problem import BucketProblem, TuningProblem, token_buckets
from pytest_moetune.routing import dummy_topk, routing_stats
from pytest_moetune.testing import FakeRunner, FakeTactic, FakeTimer
from pytest_moetune.topology import Topology
from pytest_moetune.tuner import MoetuneTuningWarning, Tuner, TuningKey, finalists

DSR1 = get_model("deepseek-r1")


class CountingTimer(FakeTimer):
    """A fake timer that records how many launches each measurement cycles through."""

    def __init__(self, runner: FakeRunner) -> None:
        super().__init__(runner)
        self.launch_counts: list[int] = []

    def measure(self, launches):  # type: ignore[no-untyped-def]
        self.launch_counts.append(len(launches))
        return super().measure(launches)


def make_tuner(runner: FakeRunner | None = None, **kw: object) -> Tuner:
    runner = runner or FakeRunner()
    kw.setdefault("progress", False)
    return Tuner(runner, timer=FakeTimer(runner), device="cpu", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("max_tokens", "buckets"),
    [
        (1, (1,)),
        (8, (1, 2, 4, 8)),
        (100, (1, 2, 4, 8, 16, 32, 64, 100)),
        (8192, tuple(1 << i for i in range(14))),
    ],
)
def test_buckets_are_powers_of_two_plus_the_max(max_tokens: int, buckets: tuple[int, ...]) -> None:
    assert token_buckets(max_tokens) == buckets


@pytest.mark.parametrize("bad", [0, -8, 2.5, True])
def test_bad_tune_max_num_tokens(bad: object) -> None:
    with pytest.raises(ValueError, match=f"got {bad!r}"):
        token_buckets(bad)  # type: ignore[arg-type]


def test_problem_rejects_a_topology_of_another_model() -> None:
    with pytest.raises(ValueError, match="model 'deepseek-r1' has E=256, top_k=8"):
        TuningProblem(DSR1, Topology(128, 8, 2, use_dp=True))
    with pytest.raises(ValueError, match="dtype 'int4'"):
        TuningProblem(DSR1, Topology(256, 8), dtype="int4")


def test_routing_hook_gets_each_bucket_and_the_topology() -> None:
    seen: list[tuple[int, Topology, str, int]] = []

    def spy(num_tokens: int, topology: Topology, distribution: Distribution, seed: int):  # type: ignore[no-untyped-def]
        seen.append((num_tokens, topology, distribution.name, seed))
        return dummy_topk(num_tokens, topology, distribution, seed)

    p = TuningProblem(
        DSR1, Topology.parse("dep8", 256, 8, ep_rank=3), distribution="zipf:1.1", tune_max_num_tokens=100
    )
    make_tuner(routing=spy, seed=7).tune(p)
    assert seen == [(t, p.topology, "zipf:1.1", 7) for t in (1, 2, 4, 8, 16, 32, 64, 100)]


def test_routing_draws_time_every_tactic_on_several_seeds() -> None:
    seen: list[tuple[int, int]] = []

    def spy(num_tokens: int, topology: Topology, distribution: Distribution, seed: int):  # type: ignore[no-untyped-def]
        seen.append((num_tokens, seed))
        return dummy_topk(num_tokens, topology, distribution, seed)

    runner = FakeRunner()
    timer = CountingTimer(runner)
    tuner = Tuner(
        runner,
        timer=timer,
        device="cpu",
        progress=False,
        routing=spy,
        seed=5,
        routing_draws=3,
    )
    tuner.tune(TuningProblem(DSR1, Topology.parse("dep8", 256, 8), "bf16", "random", tune_max_num_tokens=2))
    assert seen == [(1, 5), (1, 6), (1, 7), (2, 5), (2, 6), (2, 7)]
    assert set(timer.launch_counts) == {3}  # each measurement cycles through the three draws
    assert tuner.key(TuningProblem(DSR1, Topology.parse("dep8", 256, 8)), 1).routing_draws == 3


def test_staggered_tuners_sweep_from_different_points_and_pick_the_same_winner() -> None:
    """Parallel tuners (stagger=(i, n)) time the same space in rotated order, so they compile
    different kernels at the same moment; the order changes no timing and no winner."""
    problem = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=512)
    winners, orders = [], []
    for index in range(3):
        runner = FakeRunner()
        tuner = make_tuner(runner, stagger=(index, 3), check=False)
        winners.append(tuner.tune(problem, buckets=[512]).tactic_for(512))
        orders.append([tactic for tactic, _ in runner.calls][:8])  # the sweep; re-timed finalists follow
    space = FakeRunner().tactics(problem.at(512))
    assert len(space) == 8
    assert orders[0] == space and orders[1] == space[2:] + space[:2] and orders[2] == space[5:] + space[:5]
    assert winners[0] == winners[1] == winners[2]


def test_finalists_are_the_fastest_within_the_margin() -> None:
    timings = {"a": 100.0, "b": 102.9, "c": 101.0, "d": 103.1, "e": 100.5, "f": 102.0}
    assert finalists(timings) == ["a", "e", "c", "f"]  # within 5%, at most 4, fastest first
    assert finalists(timings, margin=0.025) == ["a", "e", "c", "f"] and len(finalists(timings, limit=9)) == 6
    assert finalists(timings, margin=0.01, limit=10) == ["a", "e", "c"] and finalists({}) == []


@pytest.mark.parametrize("refine", [3, 0])
def test_a_lucky_sweep_measurement_does_not_name_the_winner(refine: int) -> None:
    """DEP8 at 512 tokens: block_m=128 variant a is 2% faster than variant b, but b's first
    measurement is 3% lucky. Re-timing the finalists (a and b, within 5%) finds a; without it b wins."""
    runner = FakeRunner()
    tuner = Tuner(
        runner,
        timer=FakeTimer(runner, lucky={FakeTactic(128, "b"): 0.97}),
        device="cpu",
        progress=False,
        refine=refine,
    )
    problem = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=512)
    (result,) = tuner.tune(problem, buckets=[512]).buckets
    assert min(result.timings_us, key=result.timings_us.__getitem__) == tuner.label(FakeTactic(128, "b"))
    if refine:
        assert (
            result.tactic == FakeTactic(128, "a")
            and result.time_us == result.refined_us[tuner.label(result.tactic)]
        )
        assert set(result.refined_us) == {tuner.label(FakeTactic(128, v)) for v in "ab"}
        assert tuner.cached(problem, 512).refined_us == result.refined_us  # type: ignore[union-attr]
    else:
        assert result.tactic == FakeTactic(128, "b") and result.refined_us == {}


def test_a_very_lucky_best_does_not_hide_the_real_one_from_the_finalists() -> None:
    """Variant b's first measurement is 10% lucky, so the 5% window around it leaves variant a (2%
    faster in truth) out of the finalists. Re-timing b alone shows the window was too low; the
    tactics the sweep put within 5% of b's re-timed time are re-timed too, and a wins."""
    runner = FakeRunner()
    tuner = Tuner(
        runner, timer=FakeTimer(runner, lucky={FakeTactic(128, "b"): 0.90}), device="cpu", progress=False
    )
    problem = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=512)
    (result,) = tuner.tune(problem, buckets=[512]).buckets
    a, b = (tuner.label(FakeTactic(128, v)) for v in "ab")
    assert finalists(result.timings_us) == [b]  # the sweep alone would have named b
    assert result.tactic == FakeTactic(128, "a") and set(result.refined_us) == {a, b}
    assert result.refined_us[a] < result.refined_us[b]


def test_every_tactic_is_compiled_and_checked_before_the_first_is_timed() -> None:
    """No timing follows an idle compile gap: the sweep runs each tactic once (compiling it and
    checking it against the reference), then times them back to back."""
    runner = FakeRunner()
    ran_before_timing: list[set[FakeTactic]] = []

    class Watching(FakeTimer):
        def measure(self, launches):  # type: ignore[no-untyped-def]
            ran_before_timing.append({call[0] for call in runner.calls})
            return super().measure(launches)

    tuner = Tuner(runner, timer=Watching(runner), device="cpu", progress=False)
    problem = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=512)
    tuner.tune(problem, buckets=[512])
    assert ran_before_timing[0] == set(runner.tactics(problem.at(512)))


class KernelPerBlockM(FakeRunner):
    """A runner whose tactics of one block_m share a kernel (both variants compile it)."""

    def compile_units(self, problem: object, tactic: FakeTactic) -> list[tuple[str, int]]:
        return [("kernel", tactic.block_m)]


def test_tactics_whose_kernel_another_tuner_claimed_are_compiled_last_and_change_nothing_else(
    tmp_path: Path,
) -> None:
    """A parallel tuner compiled the block_m=128 kernel (its space has only that block_m). This
    tuner compiles its other tactics first and both block_m=128 variants last, and still times
    every tactic and picks the same winner as a tuner alone."""
    from pytest_moetune.compile_claims import CompileClaims

    problem = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=512)
    alone = make_tuner(KernelPerBlockM()).tune(problem, buckets=[512]).buckets[0]
    claims = CompileClaims(tmp_path)
    make_tuner(KernelPerBlockM(block_ms=(128,)), claims=claims).tune(problem, buckets=[512])
    runner = KernelPerBlockM()
    (result,) = make_tuner(runner, claims=claims).tune(problem, buckets=[512]).buckets
    space = runner.tactics(problem.at(512))
    compiled = [tactic for tactic, _ in runner.calls][: len(space)]
    assert compiled == [t for t in space if t.block_m != 128] + [t for t in space if t.block_m == 128]
    assert result.tactic == alone.tactic and set(result.timings_us) == set(alone.timings_us)


def test_without_compile_units_each_tactic_is_its_own_unit(tmp_path: Path) -> None:
    """The same, for a runner that names no compile units: only the tactic the other tuner
    compiled waits (FakeRunner's spaces hold every block_m, so give the other tuner one block_m)."""
    from pytest_moetune.compile_claims import CompileClaims

    problem = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=512)
    claims = CompileClaims(tmp_path)
    make_tuner(FakeRunner(block_ms=(128,)), claims=claims).tune(problem, buckets=[512])
    runner = FakeRunner()
    make_tuner(runner, claims=claims).tune(problem, buckets=[512])
    space = runner.tactics(problem.at(512))
    compiled = [tactic for tactic, _ in runner.calls][: len(space)]
    assert compiled == [t for t in space if t.block_m != 128] + [t for t in space if t.block_m == 128]


@pytest.mark.parametrize("refine", [-1, 1.5, True])
def test_bad_refine_is_an_error(refine: object) -> None:
    with pytest.raises(ValueError, match=f"refine must be an integer >= 0, got {refine!r}"):
        make_tuner(refine=refine)


@pytest.mark.parametrize("stagger", [(1, 1), (-1, 2), (0, 0), (0.5, 2)])
def test_bad_stagger_is_an_error(stagger: tuple[int, int]) -> None:
    with pytest.raises(
        ValueError, match=rf"stagger must be \(index, count\).*got {re.escape(repr(stagger))}"
    ):
        make_tuner(stagger=stagger)


@pytest.mark.parametrize("draws", [0, -2, 1.5, True])
def test_bad_routing_draws_is_an_error(draws: object) -> None:
    with pytest.raises(ValueError, match=rf"routing_draws must be a positive integer, got {draws!r}"):
        make_tuner(routing_draws=draws)


def test_the_chosen_tactic_follows_the_topology() -> None:
    """DEP8 at 512 tokens: 128 rows per local expert; EP8: 16. The tuner must see the difference."""
    dep = make_tuner().tune(TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=512))
    ep = make_tuner().tune(TuningProblem(DSR1, Topology.parse("ep8", 256, 8), tune_max_num_tokens=512))
    assert dep.tactic_for(512) == FakeTactic(128, "a")
    assert ep.tactic_for(512) == FakeTactic(16, "a")


def test_lookup_maps_token_counts_to_buckets() -> None:
    p = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=100)
    tuner = make_tuner()
    result = tuner.tune(p)
    expected = {0: 1, 1: 1, 3: 2, 63: 32, 64: 64, 99: 64, 100: 100, 101: 100, 10**6: 100}
    for num_tokens, bucket in expected.items():
        assert p.bucket_for(num_tokens) == bucket
        assert tuner.lookup(p, num_tokens) == result.tactic_for(bucket)
    with pytest.raises(ValueError, match="got -1"):
        tuner.lookup(p, -1)


def test_lookup_miss_returns_the_default_and_warns_once_naming_the_key() -> None:
    p = TuningProblem(DSR1, Topology.parse("ep8", 256, 8), tune_max_num_tokens=64)
    tuner = make_tuner()
    with pytest.warns(MoetuneTuningWarning, match=r"no tuned tactic for op=fake_moe\|.*\|bucket=32\|"):
        assert tuner.lookup(p, 40) == FakeTactic(16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tuner.lookup(p, 33)  # same key: no second warning
    with pytest.warns(MoetuneTuningWarning, match=r"bucket=64\|"):
        tuner.lookup(p, 64)


def test_failed_tactics_are_recorded_and_never_chosen() -> None:
    best_dep = FakeTactic(128, "a")
    runner = FakeRunner(broken=[best_dep], wrong=[FakeTactic(128, "b"), FakeTactic(64, "a")])
    result = make_tuner(runner).tune(
        TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=512)
    )
    top = result.buckets[-1]
    assert top.tactic == FakeTactic(64, "b")
    assert top.failed == 3 and top.timed == len(runner.tactics(None)) - 3  # type: ignore[arg-type]
    reasons = sorted(top.failures.values())
    assert reasons[0].startswith("RuntimeError: out of resource: shared memory")
    assert all(r.startswith("mismatch: relative error") for r in reasons[1:])
    for bucket in result.buckets:
        assert bucket.tactic not in (best_dep, FakeTactic(128, "b"), FakeTactic(64, "a"))


class RaisingRunner(FakeRunner):
    """A fake runner whose tactic ``(64, "a")`` raises ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def run(self, inputs, tactic):  # type: ignore[no-untyped-def]
        if tactic == FakeTactic(64, "a"):
            raise self.error
        return super().run(inputs, tactic)


STICKY = [
    RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be ..."),
    RuntimeError("Triton Error [CUDA]: an illegal instruction was encountered"),
    RuntimeError("CUDA driver error: CUDA_ERROR_ILLEGAL_ADDRESS"),
    RuntimeError("cudaErrorIllegalAddress: an illegal memory access was encountered"),
    RuntimeError("launch failed (cudaErrorIllegalInstruction)"),
    RuntimeError("CUDA error: misaligned address\nCompile with `TORCH_USE_CUDA_DSA` to enable ..."),
    RuntimeError("Triton Error [CUDA]: unspecified launch failure"),
    RuntimeError("CUDA error: device-side assert triggered"),
    RuntimeError("CUDA driver error: CUDA_ERROR_LAUNCH_FAILED"),
    RuntimeError("cudaErrorMisalignedAddress"),
]
NOT_STICKY = [
    RuntimeError("CompilationError: at 14:8: illegal use of tl.dot with a 1-D operand"),
    RuntimeError("ptxas fatal   : Illegal operand type for instruction 'wgmma'"),
    ValueError("illegal tile: BLOCK_M=64 does not divide the rows"),
    ValueError("TMA descriptor: misaligned address of x (16-byte rows needed)"),
    RuntimeError("CUDA error: out of memory"),
]


@pytest.mark.parametrize("error", STICKY, ids=[str(e).splitlines()[0][:40] for e in STICKY])
def test_a_sticky_cuda_error_stops_tuning(error: Exception) -> None:
    p = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=4)
    with pytest.raises(RuntimeError, match=r'tactic \{"block_m":64,"variant":"a"\} .* corrupted the CUDA'):
        make_tuner(RaisingRunner(error)).tune(p)


@pytest.mark.parametrize("error", NOT_STICKY, ids=["compiler", "ptxas", "runner", "descriptor", "oom"])
def test_an_error_that_merely_says_illegal_fails_only_its_tactic(error: Exception) -> None:
    p = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=4)
    result = make_tuner(RaisingRunner(error)).tune(p)
    for bucket in result.buckets:
        assert bucket.failures == {'{"block_m":64,"variant":"a"}': f"{type(error).__name__}: {error}"}
        assert bucket.timed == len(FakeRunner().tactics(None)) - 1  # type: ignore[arg-type]


def test_every_tactic_failing_is_an_error_naming_the_bucket() -> None:
    runner = FakeRunner(block_ms=(16,), broken=[FakeTactic(16, "a"), FakeTactic(16, "b")])
    with pytest.raises(
        RuntimeError, match=r"every tactic failed for deepseek-r1 dep8 .* bucket 1: .*shared memory"
    ):
        make_tuner(runner).tune(TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=4))


def test_a_second_tune_reuses_the_store() -> None:
    runner = FakeRunner()
    tuner = make_tuner(runner)
    p = TuningProblem(DSR1, Topology.parse("dep2", 256, 8), tune_max_num_tokens=64)
    first = tuner.tune(p)
    calls = len(runner.calls)
    second = tuner.tune(p)
    assert len(runner.calls) == calls and all(b.from_cache for b in second.buckets)
    assert [b.tactic for b in second.buckets] == [b.tactic for b in first.buckets]
    assert tuner.tune(p, force=True).buckets[0].from_cache is False


def test_an_edit_of_the_runners_space_re_tunes_from_the_same_store() -> None:
    """A cache entry tuned over one tactic space is not reused over another (e.g. one sized by the
    routed slots): the runner's ``space_hash`` is in the key, so the same store re-tunes."""
    p = TuningProblem(DSR1, Topology.parse("ep8", 256, 8), tune_max_num_tokens=4)
    store = make_tuner(FakeRunner(space_hash="space-1")).store
    make_tuner(FakeRunner(space_hash="space-1"), store=store).tune(p)
    same, edited = FakeRunner(space_hash="space-1"), FakeRunner(space_hash="space-2")
    assert all(b.from_cache for b in make_tuner(same, store=store).tune(p).buckets) and same.calls == []
    assert not any(b.from_cache for b in make_tuner(edited, store=store).tune(p).buckets) and edited.calls


def test_a_runner_without_a_space_hash_still_keys() -> None:
    """``space_hash`` is optional (looked up with getattr): a runner without one keys on ``""``."""
    plain = FakeRunner()
    del plain.space_hash
    assert TuningKey.of(plain, BASE, 16, "t", 0).space_hash == ""


def test_the_tuning_wall_time_is_the_tune_calls_own() -> None:
    """``TuningResult.wall_s`` (``moetune tune``'s "total wall") spans the call and its buckets,
    not the time since the clock's epoch."""
    p = TuningProblem(DSR1, Topology.parse("dep2", 256, 8), tune_max_num_tokens=8)
    before = time.perf_counter()
    result = make_tuner().tune(p)
    elapsed = time.perf_counter() - before
    assert sum(b.wall_s for b in result.buckets) <= result.wall_s <= elapsed


def test_stats_per_bucket() -> None:
    result = make_tuner().tune(TuningProblem(DSR1, Topology.parse("dep2", 256, 8), tune_max_num_tokens=8))
    assert [b.bucket for b in result.buckets] == [1, 2, 4, 8]
    assert all(b.timed == 8 and b.failed == 0 and b.wall_s >= 0 for b in result.buckets)
    assert all(b.time_us == min(b.timings_us.values()) for b in result.buckets)


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    make_tuner(progress=True).tune(TuningProblem(DSR1, Topology.parse("ep1", 256, 8), tune_max_num_tokens=4))
    assert "tuning deepseek-r1 ep1" in capsys.readouterr().err


# --- key completeness -----------------------------------------------------------------------

BASE_MODEL = ModelShape("m", 64, 4, 256, 128)
BASE = TuningProblem(BASE_MODEL, Topology(64, 4, 4, 0, True), "bf16", Distribution("balanced"), 256)
RUNNER = FakeRunner()


def key_of(
    problem: TuningProblem,
    *,
    runner: FakeRunner = RUNNER,
    bucket: int = 16,
    timer: str = "t",
    seed: int = 0,
    routing_draws: int = 1,
) -> str:
    return TuningKey.of(runner, problem, bucket, timer, seed, routing_draws).id


VARIATIONS = {
    "use_dp": lambda: dataclasses.replace(BASE, topology=dataclasses.replace(BASE.topology, use_dp=False)),
    "ep_size": lambda: dataclasses.replace(BASE, topology=Topology(64, 4, 8, 0, True)),
    "local_num_experts": lambda: dataclasses.replace(
        BASE, model=dataclasses.replace(BASE_MODEL, num_experts=128), topology=Topology(128, 4, 4, 0, True)
    ),
    "tune_max_num_tokens": lambda: dataclasses.replace(BASE, tune_max_num_tokens=512),
    "distribution": lambda: dataclasses.replace(BASE, distribution=Distribution("random")),
    "zipf_alpha": lambda: dataclasses.replace(BASE, distribution=Distribution("zipf", alpha=1.3)),
    "dtype": lambda: dataclasses.replace(BASE, dtype="fp8_w8a8"),
    "hidden": lambda: dataclasses.replace(BASE, model=dataclasses.replace(BASE_MODEL, hidden=512)),
    "intermediate": lambda: dataclasses.replace(
        BASE, model=dataclasses.replace(BASE_MODEL, intermediate=256)
    ),
    "top_k": lambda: dataclasses.replace(
        BASE, model=dataclasses.replace(BASE_MODEL, top_k=2), topology=Topology(64, 2, 4, 0, True)
    ),
}


@given(st.sampled_from(sorted(VARIATIONS)))
def test_changing_any_problem_field_changes_the_key(field: str) -> None:
    assert key_of(VARIATIONS[field]()) != key_of(BASE)


@given(
    st.sampled_from(["source_hash", "space_hash", "bucket", "timer", "seed", "routing_draws"]),
    st.integers(1, 1000),
)
def test_changing_the_kernel_space_bucket_timer_seed_or_draws_changes_the_key(what: str, value: int) -> None:
    base = key_of(BASE)
    if what == "routing_draws":
        assert key_of(BASE, routing_draws=1 + value) != base
    elif what == "source_hash":
        assert key_of(BASE, runner=FakeRunner(source_hash=f"other-{value}")) != base
    elif what == "space_hash":
        assert key_of(BASE, runner=FakeRunner(space_hash=f"other-{value}")) != base
    elif what == "bucket":
        assert key_of(BASE, bucket=16 + value) != base
    elif what == "timer":
        assert key_of(BASE, timer=f"t{value}") != base
    else:
        assert key_of(BASE, seed=value) != base


def test_the_routing_hook_is_in_the_key_and_with_routing_keeps_the_rest() -> None:
    tuner = make_tuner(seed=3, routing_draws=2)
    dispatching = tuner.with_routing(dispatch_topk)
    assert tuner.key(BASE, 16).routing == "dummy_topk" and tuner.routing is dummy_topk
    assert dispatching.key(BASE, 16) == dataclasses.replace(tuner.key(BASE, 16), routing="dispatch_topk")
    assert dispatching.store is tuner.store and dispatching.timer is tuner.timer


def test_dispatched_input_sets_have_the_delivered_rows_of_each_draw() -> None:
    """DEP4 at 32 tokens per rank: the rank computes the rows of all 4 ranks that touch its shard,
    a different count per draw; dummy routing gives it exactly 32."""
    problem = dataclasses.replace(BASE, distribution=Distribution("zipf", alpha=1.2))
    tuner = make_tuner(routing_draws=3)
    sets = tuner.with_routing(dispatch_topk).input_sets_for(problem.at(32), problem)
    expected = [
        dispatch_topk(32, problem.topology, problem.distribution, seed)[0].shape[0] for seed in range(3)
    ]
    assert [s["num_tokens"] for s in sets] == expected and all(32 < rows <= 128 for rows in expected)
    assert [s["num_tokens"] for s in tuner.input_sets_for(problem.at(32), problem)] == [32, 32, 32]


def test_the_rank_is_not_in_the_key() -> None:
    """Routing is the same on every rank up to the offset, so ranks share tuned tactics."""
    other_rank = dataclasses.replace(BASE, topology=dataclasses.replace(BASE.topology, ep_rank=3))
    assert key_of(other_rank) == key_of(BASE)


def test_a_replay_trace_keys_by_its_contents_and_the_rank(tmp_path: Path) -> None:
    """A trace holds global expert ids, so each rank's shard gets its own load from it: ranks tune
    apart. A trace re-recorded at the same path re-tunes instead of reusing the old trace's tactics."""
    trace = tmp_path / "trace.pt"
    torch.save(torch.arange(64, dtype=torch.int64).reshape(16, 4), trace)  # every expert once
    problem = dataclasses.replace(BASE, distribution=f"replay:{trace}", tune_max_num_tokens=4)
    tuner = make_tuner()
    assert not any(b.from_cache for b in tuner.tune(problem).buckets)
    assert all(b.from_cache for b in tuner.tune(problem).buckets)
    rank3 = dataclasses.replace(problem, topology=dataclasses.replace(BASE.topology, ep_rank=3))
    assert not any(b.from_cache for b in tuner.tune(rank3).buckets)
    torch.save(torch.arange(64, dtype=torch.int64).reshape(16, 4) % 16, trace)  # all on rank 0's shard
    assert not any(b.from_cache for b in tuner.tune(problem).buckets)


# --- export ---------------------------------------------------------------------------------


def test_vllm_file_names() -> None:
    assert vllm_file_name(64, 1536, "NVIDIA H100 80GB HBM3", "bf16") == (
        "E=64,N=1536,device_name=NVIDIA_H100_80GB_HBM3.json"
    )
    assert vllm_file_name(32, 2048, "NVIDIA H100 80GB HBM3", "fp8_w8a8") == (
        "E=32,N=2048,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[128,128].json"
    )


def test_vllm_export_round_trip(tmp_path: Path) -> None:
    runner = FakeRunner()
    result = make_tuner(runner).tune(
        TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=256)
    )
    table = vllm_table(runner, {b.bucket: b.tactic for b in result.buckets})
    path = write_vllm_config(tmp_path / "configs", "E=32,N=2048,device_name=X.json", table)
    back = read_vllm_config(path)
    assert sorted(back) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    for bucket in result.buckets:
        assert back[bucket.bucket] == runner.vllm_config(bucket.tactic)
    assert json.loads(path.read_text())["256"]["BLOCK_SIZE_M"] == 64


def test_vllm_export_needs_the_runner_mapping() -> None:
    class NoExport(FakeRunner):
        vllm_config = None  # type: ignore[assignment]

    with pytest.raises(ValueError, match="has no vllm_config"):
        vllm_table(NoExport(), {1: FakeTactic(16)})


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", '{"x": {}}', '{"1": {"BLOCK_SIZE_M": 16}}', "not json"],
    ids=["list", "key", "fields", "json"],
)
def test_reading_a_bad_vllm_config_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.json"):
        read_vllm_config(path)


def test_tuning_only_some_buckets() -> None:
    runner = FakeRunner()
    tuner = make_tuner(runner)
    p = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=64)
    result = tuner.tune(p, buckets=[8, 64, 8])
    assert [b.bucket for b in result.buckets] == [8, 64]
    assert {t for _, t in runner.calls} == {8, 64}
    with pytest.raises(ValueError, match=r"\[3\] are not buckets of"):
        tuner.tune(p, buckets=[3])


def test_a_cache_file_of_another_environment_re_tunes_into_its_own_section(tmp_path: Path) -> None:
    """Two environments sharing one file (a shared home, a CI cache served to two runner kinds), tuning
    in turns: each tunes once, then finds its own entries, whatever the other wrote in between."""
    from pytest_moetune.cache import MoetuneCacheWarning, TuningCache
    from pytest_moetune.fingerprint import EnvironmentFingerprint

    then = EnvironmentFingerprint("NVIDIA H100 80GB HBM3", "9.0", "580", "2.11.0", "3.6.0", "0.1.0")
    now = dataclasses.replace(then, torch="2.12.0")
    p = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=4)
    path = tmp_path / "tuning.json"
    make_tuner(store=TuningCache(path, then)).tune(p)
    runner = FakeRunner()
    reused = make_tuner(runner, store=TuningCache(path, then)).tune(p)
    assert all(b.from_cache for b in reused.buckets) and runner.calls == []
    with pytest.warns(MoetuneCacheWarning, match=r"torch: 2\.11\.0 \(cache\) != 2\.12\.0 \(now\)"):
        fresh = make_tuner(runner, store=TuningCache(path, now)).tune(p)
    assert not any(b.from_cache for b in fresh.buckets) and runner.calls
    for fingerprint in (then, now, then, now):  # in turns: nothing re-tunes, nothing warns
        runner = FakeRunner()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = make_tuner(runner, store=TuningCache(path, fingerprint)).tune(p)
        assert all(b.from_cache for b in again.buckets) and runner.calls == []
    assert [s.fingerprint for s in TuningCache.of_file(path).environments()] == [then, now]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["tuning.json", "tuning.json.lock"]


MALFORMED = {
    "no-tactic": (lambda e: e.pop("tactic"), "has no 'tactic'"),
    "no-time": (lambda e: e.pop("time_us"), "has no 'time_us'"),
    "time-a-string": (lambda e: e.update(time_us="fast"), "has 'time_us' 'fast', not a positive number"),
    "tactic-a-list": (
        lambda e: e.update(tactic=[128, "a"]),
        "has a 'tactic' that is a JSON array, not an object",
    ),
    "tactic-unreadable": (lambda e: e.update(tactic={"block_m": 128}), "has a tactic fake_moe cannot read"),
    "timings-a-list": (lambda e: e.update(timings_us=[1.0]), "has 'timings_us' [1.0], not an object of"),
}


@pytest.mark.parametrize(("edit", "why"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_cache_entry_is_re_tuned_with_a_warning_and_nothing_else_changes(
    tmp_path: Path, edit, why: str
) -> None:
    from pytest_moetune.cache import MoetuneCacheWarning, TuningCache
    from pytest_moetune.testing import H100_FINGERPRINT

    p = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), tune_max_num_tokens=4)
    path = tmp_path / "tuning.json"
    tuner = make_tuner(store=TuningCache(path, H100_FINGERPRINT))
    tuner.tune(p)
    document = json.loads(path.read_text())
    (section,) = document["environments"]
    bad_key = tuner.key(p, 2).id
    tuned = {name: section["entries"][bad_key][name] for name in ("tactic", "time_us")}
    edit(section["entries"][bad_key])  # a hand edit
    path.write_text(json.dumps(document))
    warned = re.escape(f"tuning cache {path}: the entry for {bad_key} {why}")
    runner = FakeRunner()
    with pytest.warns(MoetuneCacheWarning, match=warned):
        result = make_tuner(runner, store=TuningCache(path, H100_FINGERPRINT)).tune(p)
    assert [b.from_cache for b in result.buckets] == [True, False, True]
    assert {tokens for _, tokens in runner.calls} == {2}  # only the bad bucket re-tuned
    (after,) = json.loads(path.read_text())["environments"]
    assert after["metadata"] == section["metadata"] and after["entries"].keys() == section["entries"].keys()
    assert all(after["entries"][k] == v for k, v in section["entries"].items() if k != bad_key)
    assert {name: after["entries"][bad_key][name] for name in tuned} == tuned  # re-tuned and replaced
    path.write_text(json.dumps(document))
    lookup = make_tuner(store=TuningCache(path, H100_FINGERPRINT))
    with pytest.warns(MoetuneCacheWarning, match=warned), pytest.warns(MoetuneTuningWarning):
        assert lookup.lookup(p, 2) == FakeTactic(16)  # the default, as for a miss
    assert path.read_text() == json.dumps(document)  # a lookup writes nothing


# --- cold L2: rotating input sets -----------------------------------------------------------


def test_rotation_count_covers_twice_the_l2() -> None:
    from pytest_moetune.timing import rotation_count

    l2 = 50 * 2**20
    assert rotation_count(2 * 2**30, l2) == 2  # weights alone are 40x L2: one other set suffices
    assert rotation_count(10 * 2**20, l2) == 11  # 2 x 50 MiB / 10 MiB + 1
    assert rotation_count(1, l2, max_sets=64) == 64 and rotation_count(0, l2) == 1


def test_cold_l2_input_sets_rotate_by_one_input_sets_bytes() -> None:
    import torch

    from pytest_moetune.timing import cold_l2_input_sets

    rule = cold_l2_input_sets(l2_bytes=50 * 2**20)
    assert rule({"w": torch.zeros(10 * 2**20, dtype=torch.uint8)}) == 11  # as rotation_count
    assert rule({"w": torch.zeros(2**30, dtype=torch.uint8)}) == 2


def test_tensor_bytes_walks_containers() -> None:
    import torch

    from pytest_moetune.timing import tensor_bytes

    shared = torch.zeros(10, dtype=torch.float32)
    inputs = {
        "x": torch.zeros(4, 8, dtype=torch.bfloat16),
        "w": [shared, shared],
        "k": 3,
        "nested": {"y": shared},
    }
    assert tensor_bytes(inputs) == 4 * 8 * 2 + 10 * 4  # a tensor reached twice counts once


def test_input_sets_rotate_through_distinct_inputs() -> None:
    runner = FakeRunner()
    made: list[int] = []
    original = runner.make_inputs

    def counting(problem, ids, weights):  # type: ignore[no-untyped-def]
        made.append(problem.num_tokens)
        return original(problem, ids, weights)

    runner.make_inputs = counting  # type: ignore[method-assign]
    timer = CountingTimer(runner)
    tuner = Tuner(runner, timer=timer, device="cpu", progress=False, input_sets=lambda _: 3)
    tuner.tune(TuningProblem(DSR1, Topology.parse("ep8", 256, 8), tune_max_num_tokens=2))
    assert made == [1, 1, 1, 2, 2, 2]  # three input sets per bucket
    assert set(timer.launch_counts) == {3}  # every measurement cycles through all three


class SpaceSpy(FakeRunner):
    """A fake runner that records the bucket problems its tactic space is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[BucketProblem] = []

    def tactics(self, problem: BucketProblem) -> list[FakeTactic]:
        self.asked.append(problem)
        return super().tactics(problem)


@pytest.mark.parametrize(
    ("layout", "distribution", "even_share"),
    [("ep8", "zipf:1.2", False), ("ep8", "balanced", True), ("dep8", "zipf:1.2", True)],
    ids=["ep8-zipf", "ep8-balanced", "dep8-zipf"],
)
def test_the_tactic_space_sees_the_slots_the_tuning_routing_sends_to_the_rank(
    layout: str, distribution: str, even_share: bool
) -> None:
    """The space and the default are sized by the rank's (token, slot) pairs. Under pure EP a skewed
    distribution puts its hottest shard on the measured rank (DESIGN.md), so the rank computes
    several times its even share; the tuner counts them in its own routing draws (session 16: the
    deepseek-r1 ep8 zipf:1.2 case was tuned among block_m 16-32 tiles for ~180 rows per expert)."""
    runner = SpaceSpy()
    problem = TuningProblem(
        DSR1, Topology.parse(layout, 256, 8), "bf16", distribution, tune_max_num_tokens=64
    )
    tuner = make_tuner(runner, routing_draws=2, seed=3)
    tuner.tune(problem, buckets=[64])
    (asked,) = runner.asked
    draws = [dummy_topk(64, problem.topology, problem.distribution, seed)[0] for seed in (3, 4)]
    counted = [sum(routing_stats(ids, problem.topology).rows_per_local_expert) for ids in draws]
    assert asked.routed_local_slots == pytest.approx(sum(counted) / 2)
    even = 64 * problem.topology.local_slots_per_row
    if even_share:
        assert asked.expected_local_slots == pytest.approx(even)
    else:
        assert asked.expected_local_slots > 3 * even
    assert asked.expected_rows_per_local_expert == pytest.approx(asked.expected_local_slots / 32)


def test_dispatched_traffic_can_bring_the_rank_more_slots_than_its_rows() -> None:
    """Under DEP with skew the all-to-all delivers the measured rank more rows than its own ``T``
    (README: 5.7x the slots at deepseek-r1 dep8 zipf:1.2); the space is sized by those slots."""
    runner = SpaceSpy()
    problem = TuningProblem(DSR1, Topology.parse("dep8", 256, 8), "bf16", "zipf:1.2", tune_max_num_tokens=64)
    make_tuner(runner).with_routing(dispatch_topk).tune(problem, buckets=[64])
    (asked,) = runner.asked
    ids, _ = dispatch_topk(64, problem.topology, problem.distribution, 0)
    assert asked.routed_local_slots == sum(routing_stats(ids, problem.topology).rows_per_local_expert)
    assert asked.expected_local_slots > 3 * 64 * 8


@pytest.mark.parametrize("slots", [-1.0, float("nan"), float("inf")])
def test_routed_local_slots_must_be_a_finite_count(slots: float) -> None:
    problem = TuningProblem(DSR1, Topology.parse("ep8", 256, 8))
    with pytest.raises(ValueError, match=rf"routed_local_slots={slots!r} must be a finite number >= 0"):
        dataclasses.replace(problem.at(64), routed_local_slots=slots)


def test_the_fake_timer_needs_a_cost_model_and_says_so() -> None:
    class Unmodelled:
        name = "mine"

    with pytest.raises(TypeError, match=r"runner 'mine' has none: set self\.last_cost_us"):
        FakeTimer(Unmodelled()).measure([lambda: None])
