"""Test doubles for exercising the tuner and the gate without a GPU.

:class:`FakeRunner` is a complete runner over CPU tensors whose "kernel" is exact and whose cost
model is deterministic and topology-sensitive: a tactic is fastest when its ``block_m`` matches the
rows per local expert (mean over the experts the routing touches), so tuning on the wrong dummy routing
picks the wrong tactic, as with real tile-based kernels. :class:`FakeTimer` reads that cost model
instead of a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pytest_moetune.fingerprint import EnvironmentFingerprint
from pytest_moetune.problem import BucketProblem
from pytest_moetune.timing import Measurement


@dataclass(frozen=True)
class FakeTactic:
    """``block_m`` rows per tile; ``variant`` tells otherwise-equal tactics apart."""

    block_m: int
    variant: str = "a"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


H100_FINGERPRINT = EnvironmentFingerprint(
    gpu_name="NVIDIA H100 80GB HBM3",
    sm="9.0",
    driver="580.82.07",
    torch="2.11.0+cu130",
    triton="3.6.0",
    plugin="0.1.0",
)
"""A fixed H100 environment, for tests of caches and baselines that must not depend on this machine."""

COST_MODELS = ("mean-rows", "tiles")


class FakeRunner:
    """A runner over CPU tensors with an exact kernel and a deterministic cost model.

    Args:
        block_ms: the ``block_m`` values of the tactic space (each with variants ``a`` and ``b``).
        broken: tactics whose launch raises (like a tile that needs too much shared memory).
        wrong: tactics whose output is off (like a miscompiled tile); the tuner's check rejects them.
        source_hash: the "kernel source" hash (change it to simulate a kernel edit).
        space_hash: the hash of the code that builds the tactic space (change it to simulate an edit
            of the runner's space: caches re-tune, baselines stay unflagged).
        slowdown: multiplies every cost (simulate a slower kernel).
        variants: the tactic variants per block_m (``for_export`` keeps only ``b``, as a runner
            whose fastest kernels have no equivalent in the export format would).
        cost_model: ``"mean-rows"`` (default): time grows with the tile's mismatch to the mean rows
            per touched local expert; ``"tiles"``: time is the padded tiles the rows of every local
            expert occupy, ``sum_e ceil(rows_e / block_m) * (2 + 0.1 * block_m)`` microseconds on top
            of 10, so a tile boundary (experts with ``block_m + 1`` rows) costs a whole extra tile.
    """

    name = "fake_moe"

    def __init__(
        self,
        block_ms: Sequence[int] = (16, 32, 64, 128),
        *,
        broken: Sequence[FakeTactic] = (),
        wrong: Sequence[FakeTactic] = (),
        source_hash: str = "fake-source-1",
        space_hash: str = "fake-space-1",
        slowdown: float = 1.0,
        cost_model: str = "mean-rows",
        variants: Sequence[str] = ("a", "b"),
    ) -> None:
        if cost_model not in COST_MODELS:
            raise ValueError(f"unknown cost_model {cost_model!r}; valid: {', '.join(COST_MODELS)}")
        self.cost_model = cost_model
        self.block_ms = tuple(block_ms)
        self.variants = tuple(variants)
        self.broken = set(broken)
        self.wrong = set(wrong)
        self.source_hash = source_hash
        self.space_hash = space_hash
        self.slowdown = slowdown
        self.last_cost_us = math.nan
        self.calls: list[tuple[FakeTactic, int]] = []

    def supports(self, problem: BucketProblem) -> bool:
        return problem.dtype in ("bf16", "fp16")

    def tactics(self, problem: BucketProblem) -> list[FakeTactic]:
        return [FakeTactic(m, v) for m in self.block_ms for v in self.variants]

    def default_tactic(self, problem: BucketProblem) -> FakeTactic:
        return FakeTactic(self.block_ms[0], self.variants[0])

    def for_export(self, fmt: str) -> FakeRunner:
        """The runner tuned for ``moetune tune --export vllm``: variant ``b`` only (with its broken
        and wrong tactics), under its own name, so its tuning cache entries stay apart."""
        if fmt != "vllm":
            raise ValueError(f"no export format {fmt!r} for {self.name}; supported: vllm")
        restricted = FakeRunner(
            self.block_ms,
            broken=[t for t in self.broken if t.variant == "b"],
            wrong=[t for t in self.wrong if t.variant == "b"],
            source_hash=self.source_hash,
            space_hash=self.space_hash,
            slowdown=self.slowdown,
            cost_model=self.cost_model,
            variants=("b",),
        )
        restricted.name = f"{self.name}-{fmt}"
        return restricted

    def tactic_to_dict(self, tactic: FakeTactic) -> dict[str, Any]:
        return tactic.to_dict()

    def tactic_from_dict(self, data: dict[str, Any]) -> FakeTactic:
        if set(data) != {"block_m", "variant"}:
            raise ValueError(f"not a FakeTactic: {data!r}")
        return FakeTactic(int(data["block_m"]), str(data["variant"]))

    def make_inputs(self, problem: BucketProblem, topk_ids: Any, topk_weights: Any) -> dict[str, Any]:
        """``x (T, 4) fp32`` plus the rows of every local expert (``rows_per_expert``) and their mean
        over the experts this routing touches (``rows``)."""
        import torch

        topology = problem.topology
        offset, local = topology.local_expert_offset, topology.local_num_experts
        flat = topk_ids.reshape(-1).long()
        flat = flat[(flat >= offset) & (flat < offset + local)] - offset
        rows = torch.bincount(flat, minlength=local) if flat.numel() else torch.zeros(local)
        x = torch.arange(problem.num_tokens * 4, dtype=torch.float32).reshape(problem.num_tokens, 4)
        touched = rows[rows > 0]
        mean_rows = math.ceil(float(touched.float().mean())) if touched.numel() else 0
        return {
            "x": x,
            "rows": mean_rows,
            "rows_per_expert": [int(r) for r in rows.tolist()],
            "num_tokens": problem.num_tokens,
        }

    def cost_us(self, inputs: dict[str, Any], tactic: FakeTactic) -> float:
        """Deterministic time of ``tactic`` on ``inputs`` under this runner's ``cost_model``."""
        variant = 1.0 if tactic.variant == "a" else 1.02
        if self.cost_model == "tiles":
            bm = tactic.block_m
            tiles_us = sum(math.ceil(r / bm) * (2.0 + 0.1 * bm) for r in inputs["rows_per_expert"])
            return round((10.0 + tiles_us) * variant * self.slowdown, 6)
        rows = max(inputs["rows"], 1)
        mismatch = abs(math.log2(rows) - math.log2(tactic.block_m))
        return round((10.0 + rows * 0.01) * (1.0 + 0.25 * mismatch) * variant * self.slowdown, 6)

    def run(self, inputs: dict[str, Any], tactic: FakeTactic) -> Any:
        self.calls.append((tactic, inputs["num_tokens"]))
        if tactic in self.broken:
            raise RuntimeError(f"out of resource: shared memory, required: 300000 for {tactic}")
        self.last_cost_us = self.cost_us(inputs, tactic)
        out = inputs["x"] * 2.0
        return out + 1.0 if tactic in self.wrong else out

    def reference(self, inputs: dict[str, Any]) -> Any:
        return inputs["x"] * 2.0

    def peer(self, inputs: dict[str, Any]) -> Any:
        """The "what a user would run instead" layer: exact, and 1.5x the cost of the best tile."""
        self.last_cost_us = 1.5 * min(self.cost_us(inputs, FakeTactic(m)) for m in self.block_ms)
        return inputs["x"] * 2.0

    def max_relative_error(self, problem: BucketProblem) -> float:
        return 1e-6

    def vllm_config(self, tactic: FakeTactic) -> dict[str, int]:
        return {
            "BLOCK_SIZE_M": tactic.block_m,
            "BLOCK_SIZE_N": 64,
            "BLOCK_SIZE_K": 64,
            "GROUP_SIZE_M": 1 if tactic.variant == "a" else 8,
            "num_warps": 4,
            "num_stages": 3,
        }


class FakeTimer:
    """A timer that runs each launch once and reports the runner's cost model: the mean cost of
    the launches (a CUDA graph cycling through several input sets measures their mean, too).

    Any runner with a cost model works: after each launch it holds the modelled time of that launch
    in ``last_cost_us`` (µs), as :class:`FakeRunner` does. That makes a CPU gate deterministic
    (unchanged code reads ``ok``), where host clocks around CPU kernels spread too much to judge.

    ``noise`` spreads the rounds: round ``i`` of measurement ``n`` is ``cost * (1 + noise * u)``, ``u``
    uniform in [-1, 1] drawn from ``Random(seed, n, i)`` (deterministic, different every
    measurement). ``lucky`` scales the first measurement of a tactic on each row count by its factor
    (``{FakeTactic(128, "b"): 0.9}``): the one lucky measurement that can fool a sweep.
    """

    name = "fake-timer"

    def __init__(
        self,
        runner: Any,
        rounds: int = 5,
        noise: float = 0.0,
        seed: int = 0,
        lucky: Mapping[FakeTactic, float] | None = None,
    ) -> None:
        self.runner = runner
        self.rounds = rounds
        self.noise = noise
        self.seed = seed
        self.measurements = 0
        self.lucky = dict(lucky or {})
        self._lucky_seen: set[tuple[FakeTactic, int]] = set()

    def measure(self, launches: Sequence[Callable[[], object]]) -> Measurement:
        import random

        costs = []
        for launch in launches:
            launch()
            cost_us = getattr(self.runner, "last_cost_us", None)
            if cost_us is None:
                raise TypeError(
                    f"FakeTimer reports a runner's cost model, and runner "
                    f"{getattr(self.runner, 'name', self.runner)!r} has none: set self.last_cost_us (the "
                    "launch's modelled µs) in its run, or time it with HostClockTimer"
                )
            costs.append(cost_us)
        cost = sum(costs) / len(costs)
        calls = getattr(self.runner, "calls", None)  # FakeRunner's (tactic, rows) log: lucky draws
        last = calls[-1] if calls else None
        if last is not None and last[0] in self.lucky and last not in self._lucky_seen:
            self._lucky_seen.add(last)
            cost *= self.lucky[last[0]]
        self.measurements += 1
        rng = random.Random(f"{self.seed}/{self.measurements}")
        rounds = tuple(cost * (1 + self.noise * rng.uniform(-1, 1)) for _ in range(self.rounds))
        return Measurement(rounds, 1)


class HostClockTimer:
    """Times synchronous CPU work with ``time.perf_counter`` (median of rounds).

    Only for runners that compute on the CPU (tests, examples): GPU launches are asynchronous and
    must be timed with :class:`~pytest_moetune.timing.CudaGraphTimer`.
    """

    name = "host-clock"

    def __init__(self, rounds: int = 3) -> None:
        self.rounds = rounds

    def measure(self, launches: Sequence[Callable[[], object]]) -> Measurement:
        import time

        for launch in launches:
            launch()
        samples = []
        for _ in range(self.rounds):
            start = time.perf_counter()
            for launch in launches:
                launch()
            samples.append((time.perf_counter() - start) * 1e6 / len(launches))
        return Measurement(tuple(samples), len(launches))


FAKE_GPU_CONFTEST = """
import os

import pytest

from pytest_moetune.ceilings import Ceilings
from pytest_moetune.testing import FakeRunner, FakeTimer


def pytest_moetune_register_runners(registry):
    block_ms = [int(m) for m in os.environ.get("MOETUNE_FAKE_BLOCK_MS", "16,32,64,128").split(",")]
    slowdown = float(os.environ.get("MOETUNE_FAKE_SLOWDOWN", "1"))
    registry.add(FakeRunner(block_ms, slowdown=slowdown))


@pytest.fixture(scope="session")
def moetune_timer(moetune_runners):
    noise = float(os.environ.get("MOETUNE_FAKE_NOISE", "0.002"))
    return FakeTimer(moetune_runners.get("fake_moe"), rounds=7, noise=noise)


@pytest.fixture(scope="session")
def moetune_ceilings():
    return Ceilings(copy_bytes_per_s=3.0e12, matmul_flops_per_s=6.9e14)


@pytest.fixture(scope="session")
def moetune_device():
    return "cpu"
"""
"""A ``conftest.py`` that gates :class:`FakeRunner` on the CPU: the fake timer and fixed ceilings
replace the GPU's. ``$MOETUNE_FAKE_SLOWDOWN`` scales the kernel's cost, ``$MOETUNE_FAKE_NOISE`` the
spread of its rounds, ``$MOETUNE_FAKE_BLOCK_MS`` (e.g. ``16,32,64``) narrows the tactic space."""


class GateWorkflow:
    """Scripts the baseline life cycle of a gated suite in ``pytester`` runs.

    Give it the suite (test module source) and a conftest that registers your runner and overrides
    ``moetune_timer`` / ``moetune_ceilings`` / ``moetune_device`` where there is no GPU (see
    :data:`FAKE_GPU_CONFTEST`). Each :meth:`run` is a real ``pytest --moetune`` run in a fresh
    process; it returns the pytest result and the gate's results read back from its JSON report::

        flow = GateWorkflow(pytester, suite=SUITE, conftest=FAKE_GPU_CONFTEST)
        flow.assert_life_cycle(slow_env={"MOETUNE_FAKE_SLOWDOWN": "1.10"})
    """

    def __init__(self, pytester: Any, suite: str, conftest: str = FAKE_GPU_CONFTEST) -> None:
        self.pytester = pytester
        pytester.makeconftest(conftest)
        pytester.makepyfile(test_gate_suite=suite)
        self.report = pytester.path / "moetune-report"
        self.cache = pytester.path / "tuning-cache.json"

    def run(self, *args: str, env: dict[str, str] | None = None) -> tuple[Any, list[dict[str, Any]]]:
        """``pytest --moetune ARGS`` in a subprocess with ``env`` set; ``(result, gate results)``."""
        import json
        import os

        report_json = self.report.with_suffix(".json")
        report_json.unlink(missing_ok=True)
        # the inner run is not an xdist worker even when the outer one is (pytest-benchmark, for
        # one, switches itself off under a worker's environment)
        overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PYTEST_XDIST_")}
        overrides.update(env or {})
        saved = {k: os.environ.get(k) for k in overrides}
        for key, value in overrides.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            result = self.pytester.runpytest_subprocess(
                "--moetune", f"--moetune-cache={self.cache}", f"--moetune-report={self.report}", *args
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        results = json.loads(report_json.read_text())["results"] if report_json.exists() else []
        return result, results

    def baseline_files(self) -> list[Any]:
        return sorted((self.pytester.path / "baselines").rglob("*.json"))

    def assert_life_cycle(self, slow_env: dict[str, str], fast_env: dict[str, str] | None = None) -> None:
        """First run: every case new, nothing written. Update: baselines written. Unchanged rerun:
        passes with every case ok. ``slow_env``: the run fails with regressions. ``fast_env``
        (optional): passes with improvements. A failed step's message holds the run's output, stderr
        too (where an inner run's import errors land)."""
        result, results = self.run()
        assert result.ret == 0, _output(result)
        assert results and {r["verdict"] for r in results} == {"new"}, results
        assert self.baseline_files() == [], "a run without --moetune-update-baselines wrote baselines"
        result, _ = self.run("--moetune-update-baselines")
        assert result.ret == 0 and self.baseline_files(), _output(result)
        result, results = self.run()
        assert result.ret == 0, _output(result)
        assert {r["verdict"] for r in results} == {"ok"}, [(r["case"], r["verdict"]) for r in results]
        result, results = self.run(env=slow_env)
        assert result.ret == 1, _output(result)
        assert {r["verdict"] for r in results} == {"regressed"}, [(r["case"], r["verdict"]) for r in results]
        if fast_env is not None:
            result, results = self.run(env=fast_env)
            assert result.ret == 0, _output(result)
            assert {r["verdict"] for r in results} == {"improved"}, [
                (r["case"], r["verdict"]) for r in results
            ]


def _output(result: Any) -> str:
    """A pytester run's stdout, then its stderr."""
    return f"{result.stdout.str()}\n--- stderr ---\n{result.stderr.str()}"
