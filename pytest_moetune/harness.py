"""The regression gate's harness: tune a case through the cache, measure it, judge it against the
stored baseline, record the result (behind the ``moetune`` fixture)."""

from __future__ import annotations

import statistics
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from pytest_moetune.ceilings import COPY, Ceilings, case_roofline, normalize_rounds, normalizes
from pytest_moetune.distributions import Distribution, parse_distribution
from pytest_moetune.fingerprint import UNKNOWN_CARD
from pytest_moetune.models import ModelShape, get_model
from pytest_moetune.problem import DEFAULT_TUNE_MAX_NUM_TOKENS, TuningProblem
from pytest_moetune.runner import MoERunner
from pytest_moetune.timing import Measurement, Timer
from pytest_moetune.topology import TopologySpec
from pytest_moetune.tuner import Tuner
from pytest_moetune.verdict import (
    CHANGED_KERNEL,
    INCONCLUSIVE,
    NEW,
    OK,
    REGRESSED,
    coefficient_of_variation,
    compare_rounds,
)


@dataclass(frozen=True)
class MoECase:
    """One gated point: a kernel on a model's layer, dtype, topology, routing and token count.

    ``num_tokens`` is the rows per rank; it is served by the tactic of its bucket.
    """

    model: ModelShape | str
    topology: TopologySpec | str
    num_tokens: int
    dtype: str = "bf16"
    distribution: Distribution | str = "balanced"
    runner: str = "fused_moe"
    tune_max_num_tokens: int = DEFAULT_TUNE_MAX_NUM_TOKENS
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            object.__setattr__(self, "model", get_model(self.model))
        if isinstance(self.topology, str):
            object.__setattr__(self, "topology", TopologySpec.parse(self.topology))
        object.__setattr__(self, "distribution", parse_distribution(self.distribution))
        if isinstance(self.num_tokens, bool) or not isinstance(self.num_tokens, int) or self.num_tokens < 1:
            raise ValueError(f"num_tokens must be an int >= 1, got {self.num_tokens!r}")

    @property
    def id(self) -> str:
        """Stable, readable id: ``runner/model/dtype/topology/distribution/T=<tokens>``."""
        assert isinstance(self.model, ModelShape) and isinstance(self.topology, TopologySpec)
        dist = self.distribution.name if isinstance(self.distribution, Distribution) else self.distribution
        return f"{self.runner}/{self.model.name}/{self.dtype}/{self.topology.name}/{dist}/T={self.num_tokens}"

    def problem(self) -> TuningProblem:
        assert isinstance(self.model, ModelShape) and isinstance(self.topology, TopologySpec)
        topology = self.topology.bind(self.model.num_experts, self.model.top_k, ep_rank=0)
        return TuningProblem(self.model, topology, self.dtype, self.distribution, self.tune_max_num_tokens)


UNKNOWN_CARDS = ("", UNKNOWN_CARD)
"""Card identities that say nothing (no ``card`` recorded, or none reported): never "another card"."""


@dataclass
class CheckResult:
    """What ``moetune.check(case)`` found. Times in microseconds per launch; ratios are now/baseline
    of time (above 1 is slower), ``ratio`` normalized by the same-session ceilings, ``raw_ratio`` not."""

    case: str
    module: str
    verdict: str
    tactic: dict[str, Any]
    rounds_us: list[float]
    median_us: float
    entry: dict[str, Any]
    baseline_median_us: float | None = None
    baseline_tactic: dict[str, Any] | None = None
    ratio: float | None = None
    raw_ratio: float | None = None
    noise: float | None = None
    p_value: float | None = None
    kernel_changed: bool = False
    explanation: str = ""
    remeasured: bool = False
    notes: list[str] = field(default_factory=list)
    baseline_card: str = ""
    """The card the baseline was measured on, where it is known and not this one."""
    raw_compared: bool = False
    """A matmul-bound case whose baseline timed its matmul ceiling after another warm-up: compared on
    raw times (:func:`pytest_moetune.ceilings.normalizes`)."""
    roofline_us: float | None = None
    peer_median_us: float | None = None

    @property
    def tactic_changed(self) -> bool:
        return self.baseline_tactic is not None and self.baseline_tactic != self.tactic

    @property
    def fraction_of_roofline(self) -> float | None:
        return None if self.roofline_us is None else self.roofline_us / self.median_us

    @property
    def speedup_vs_peer(self) -> float | None:
        """Peer time over this kernel's (above 1: faster than the peer), when the peer was timed."""
        return None if self.peer_median_us is None else self.peer_median_us / self.median_us

    @property
    def moved(self) -> bool:
        """New, or beyond the noise either way, or a changed kernel, or a baseline from another card
        or with a matmul ceiling of another warm-up: what a low-churn update rewrites."""
        return self.verdict not in (OK, INCONCLUSIVE) or bool(self.baseline_card) or self.raw_compared

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tactic_changed"] = self.tactic_changed
        data["fraction_of_roofline"] = self.fraction_of_roofline
        data["speedup_vs_peer"] = self.speedup_vs_peer
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        data = dict(data)
        for derived in ("tactic_changed", "fraction_of_roofline", "speedup_vs_peer"):
            data.pop(derived, None)
        return cls(**data)

    def message(self) -> str:
        """A failure message a person can act on."""
        lines = [f"moetune: {self.case} {self.verdict.upper()}"]
        if self.baseline_median_us is not None and self.ratio is not None:
            lines.append(
                f"  baseline {self.baseline_median_us:.2f} us -> now {self.median_us:.2f} us: "
                f"{self.ratio:.3f}x time (ceiling-normalized), raw {self.raw_ratio:.3f}x; "
                f"noise {100 * (self.noise or 0):.2f}%, Mann-Whitney p={self.p_value:.3g}"
                + (" (re-measured once)" if self.remeasured else "")
            )
            lines.append(f"  tactic now: {self.tactic}")
            lines.append(f"  baseline tactic: {self.baseline_tactic}")
        if self.explanation:
            lines.append(f"  diagnosis: {self.explanation}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


class Gate:
    """Per-session state of the gate: runners' tuners, the timer, the ceilings, the baselines.

    ``baseline_for(module, case_id)`` gives this GPU's baseline entry or None;
    ``baselines_elsewhere(module, case_id)`` the GPU slugs that have one (never compared).
    """

    def __init__(
        self,
        tuner_for: Any,
        timer: Timer,
        ceilings: Ceilings,
        baseline_for: Any,
        baselines_elsewhere: Any,
        fingerprint: dict[str, str],
        device: Any,
        threshold: float,
        time_peer: bool = False,
        card: str = "",
    ) -> None:
        self.time_peer = time_peer
        self.card = card
        """This card's identity (:func:`~pytest_moetune.fingerprint.card_id`): entries record it, and a
        baseline recorded on another card gets a note; empty: neither."""
        self._tuner_for = tuner_for
        self.timer = timer
        self.ceilings = ceilings
        self._baseline_for = baseline_for
        self._baselines_elsewhere = baselines_elsewhere
        self.fingerprint = fingerprint
        self.device = device
        self.threshold = threshold

    def measure(self, runner: MoERunner, inputs: Any, tactic: Hashable) -> Measurement:
        return self.timer.measure([partial(runner.run, inputs, tactic)])

    def check(
        self, runner: MoERunner, case: MoECase, module: str, threshold: float | None = None
    ) -> CheckResult:
        from pytest_moetune.routing import dummy_topk, routing_stats

        threshold = self.threshold if threshold is None else threshold
        problem = case.problem()
        tuner: Tuner = self._tuner_for(runner)
        bucket = problem.bucket_for(case.num_tokens)
        tuner.tune(problem, buckets=[bucket])
        tactic = tuner.lookup(problem, case.num_tokens)
        ids, weights = dummy_topk(case.num_tokens, problem.topology, problem.distribution, case.seed)
        inputs = runner.make_inputs(problem.at(case.num_tokens), ids.to(self.device), weights.to(self.device))
        stats = routing_stats(ids, problem.topology)
        roof = case_roofline(
            problem.model,
            problem.dtype,
            case.num_tokens,
            sum(stats.rows_per_local_expert),
            stats.local_experts_touched,
        )
        rounds = list(self.measure(runner, inputs, tactic).rounds_us)
        result = CheckResult(
            case=case.id,
            module=module,
            verdict=NEW,
            tactic=runner.tactic_to_dict(tactic),
            rounds_us=rounds,
            median_us=statistics.median(rounds),
            entry={},
        )
        baseline = self._baseline_for(module, case.id)
        if baseline is None:
            note = f"no baseline for this GPU ({self.fingerprint.get('gpu_name', '?')})"
            elsewhere = self._baselines_elsewhere(module, case.id)
            if elsewhere:
                note += f"; baselines exist for: {', '.join(elsewhere)}"
            result.notes.append(note)
        else:
            then = Ceilings.from_dict(baseline["ceilings"])
            regime = roof.regime(then)
            result.baseline_median_us = float(baseline["summary"]["median_us"])
            result.baseline_tactic = baseline["tactic"]
            result.kernel_changed = baseline["source_hash"] != runner.source_hash
            self._judge(result, baseline, then, regime, threshold)
            if result.verdict in (REGRESSED, INCONCLUSIVE):  # provisional: re-measure once
                result.rounds_us = list(self.measure(runner, inputs, tactic).rounds_us)
                result.median_us = statistics.median(result.rounds_us)
                result.remeasured = True
                self._judge(result, baseline, then, regime, threshold)
            if result.verdict == REGRESSED:
                result.explanation = self._diagnose(runner, inputs, result, baseline, then, regime, threshold)
            then_card = baseline.get("card", "")
            if then_card != self.card and {then_card, self.card}.isdisjoint(UNKNOWN_CARDS):
                result.baseline_card = then_card
                result.notes.append(
                    f"baseline measured on another card ({then_card}; this one is {self.card}): cards of "
                    "one model differ by a few percent, so re-baseline on the card that gates (README)"
                )
            if not normalizes(self.ceilings, then, regime):
                result.raw_compared = True
                result.notes.append(
                    "matmul ceilings timed after different warm-ups "
                    f"({then.matmul_warmup_s:g} s in the baseline, {self.ceilings.matmul_warmup_s:g} s now): "
                    "this matmul-bound case is compared on raw times until its entry is rewritten (any "
                    "--moetune-update-baselines run does)"
                )
            if result.kernel_changed:
                before, now = baseline["source_hash"], runner.source_hash
                result.notes.append(f"kernel changed (its source hash, or a setting the runner adds to it): "
                                    f"{before} (baseline) != {now} (now)")  # fmt: skip
                if result.verdict == OK:
                    result.verdict = CHANGED_KERNEL
        result.roofline_us = roof.floor_us(self.ceilings)
        peer = getattr(runner, "peer", None)
        if self.time_peer and peer is not None:
            result.peer_median_us = statistics.median(self.timer.measure([partial(peer, inputs)]).rounds_us)
        result.entry = self._entry(runner, result, roof, stats.to_dict(), problem.dtype)
        return result

    def _judge(
        self, result: CheckResult, baseline: dict[str, Any], then: Ceilings, regime: str, threshold: float
    ) -> None:
        base_rounds = [float(r) for r in baseline["rounds_us"]]
        normalized = normalize_rounds(result.rounds_us, self.ceilings, then, regime)
        comparison = compare_rounds(base_rounds, normalized, threshold)
        result.verdict = comparison.verdict
        result.ratio = comparison.ratio
        result.raw_ratio = result.median_us / statistics.median(base_rounds)
        result.noise = comparison.noise
        result.p_value = comparison.p_slower if comparison.ratio >= 1 else comparison.p_faster

    def _diagnose(
        self,
        runner: MoERunner,
        inputs: Any,
        result: CheckResult,
        baseline: dict[str, Any],
        then: Ceilings,
        regime: str,
        threshold: float,
    ) -> str:
        """Re-time the baseline's tactic now: fast as before means the tuner picked worse."""
        if not result.tactic_changed:
            return "kernel got slower (same tactic as the baseline)"
        try:
            old = runner.tactic_from_dict(baseline["tactic"])
            rounds = self.measure(runner, inputs, old).rounds_us
        except Exception as err:  # the old tactic may no longer exist or compile
            return (
                f"kernel got slower? the baseline's tactic could not be re-timed: {type(err).__name__}: {err}"
            )
        normalized = normalize_rounds(rounds, self.ceilings, then, regime)
        old_now = compare_rounds([float(r) for r in baseline["rounds_us"]], normalized, threshold)
        median = statistics.median(rounds)
        if old_now.verdict == REGRESSED:
            return f"kernel got slower (the baseline's tactic is slower too: {median:.2f} us now)"
        return f"tuner picked worse (the baseline's tactic still runs in {median:.2f} us)"

    def _entry(
        self, runner: MoERunner, result: CheckResult, roof: Any, routing: dict[str, Any], dtype: str
    ) -> dict[str, Any]:
        median_s = result.median_us * 1e-6
        return {
            "rounds_us": result.rounds_us,
            "summary": {"median_us": result.median_us, "spread": coefficient_of_variation(result.rounds_us)},
            "throughput": {
                "tflops": roof.flops / median_s / 1e12,
                "tbytes_per_s": roof.bytes / median_s / 1e12,
            },
            "fraction_of_ceilings": {
                "copy": roof.bytes / median_s / self.ceilings.rate(COPY),
                "matmul": roof.flops / median_s / self.ceilings.rate(roof.mma_regime),
                "roofline": roof.floor_us(self.ceilings) / result.median_us,
            },
            "ceilings": self.ceilings.rates(),
            "dtype": dtype,
            "flops": roof.flops,
            "bytes": roof.bytes,
            "tactic": result.tactic,
            "source_hash": runner.source_hash,
            "fingerprint": self.fingerprint,
            **({"card": self.card} if self.card else {}),
            "routing": {k: v for k, v in routing.items() if k != "rows_per_local_expert"},
            **({"peer_median_us": result.peer_median_us} if result.peer_median_us is not None else {}),
        }
