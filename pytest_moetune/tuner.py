"""The topology-aware autotuner: per token bucket, dummy routing for exactly that bucket and topology,
every tactic of the runner's pruned space checked and timed, the winner cached under a full key.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import re
import statistics
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Protocol

from pytest_moetune.cache import MoetuneCacheWarning
from pytest_moetune.compile_claims import CompileClaims
from pytest_moetune.distributions import Distribution
from pytest_moetune.problem import BucketProblem, TuningProblem
from pytest_moetune.runner import MoERunner
from pytest_moetune.timing import Timer
from pytest_moetune.topology import Topology

RoutingHook = Callable[[int, Topology, Distribution, int], tuple[Any, Any]]
"""``(num_tokens, topology, distribution, seed) -> (topk_ids (R, k) int32, topk_weights (R, k) fp32)``,
called once per bucket and draw (the pre-hook of the source design). ``R`` is the rows the rank
computes: ``T`` for :func:`~pytest_moetune.routing.dummy_topk` (the default), the rows the all-to-all
delivers for :func:`~pytest_moetune.dispatch.dispatch_topk`. The hook's ``__name__`` is part of the
tuning key."""


ROUTINGS = ("dummy", "dispatch")
"""Routing hooks by name, for command lines: see :func:`routing_hook`."""


def routing_hook(name: str) -> RoutingHook:
    """``dummy``: :func:`~pytest_moetune.routing.dummy_topk` (this rank's ``T`` rows, DESIGN.md rules);
    ``dispatch``: :func:`~pytest_moetune.dispatch.dispatch_topk` (every rank routes ``T`` rows, the rank
    gets what the all-to-all delivers)."""
    if name == "dummy":
        from pytest_moetune.routing import dummy_topk

        return dummy_topk
    if name == "dispatch":
        from pytest_moetune.dispatch import dispatch_topk

        return dispatch_topk
    raise ValueError(f"unknown routing {name!r}; valid: {', '.join(ROUTINGS)}")


def routing_name(hook: RoutingHook) -> str:
    """How a routing hook is named in tuning keys: its ``__name__`` (``dummy_topk``, ``dispatch_topk``)."""
    return getattr(hook, "__name__", type(hook).__name__)


FINALIST_MARGIN = 0.05
"""Tactics within this fraction of a sweep's best are finalists, re-timed before a winner is named."""
MAX_FINALISTS = 4
MAX_REFINED = 2 * MAX_FINALISTS
"""At most this many tactics of one sweep are re-timed: the finalists, then those within
``FINALIST_MARGIN`` of the re-timed best (when the sweep's best was lucky, its window was too low)."""


def finalists(
    timings_us: Mapping[str, float], margin: float = FINALIST_MARGIN, limit: int = MAX_FINALISTS
) -> list[str]:
    """Labels of the fastest ``limit`` tactics within ``margin`` of the best time, fastest first."""
    if not timings_us:
        return []
    best = min(timings_us.values())
    close = [label for label, us in timings_us.items() if us <= best * (1 + margin)]
    return sorted(close, key=timings_us.__getitem__)[:limit]


class MoetuneTuningWarning(UserWarning):
    """A tuned tactic was missing and the default was used."""


class TuningError(RuntimeError):
    """No tactic of a bucket's space ran (each failed to compile, to launch or to match the reference):
    the message names the problem, the bucket and the distinct reasons."""


class TacticStore(Protocol):
    """Where tuned entries live: :class:`~pytest_moetune.cache.TuningCache` or :class:`MemoryStore`."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put_many(self, entries: Mapping[str, dict[str, Any]]) -> None: ...


class MemoryStore:
    """A tactic store that lives only as long as the process."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def put_many(self, entries: Mapping[str, dict[str, Any]]) -> None:
        self._entries.update({k: json.loads(json.dumps(v)) for k, v in entries.items()})


def distribution_key(problem: TuningProblem) -> str:
    """The tuning key's ``distribution``: the distribution's name. A ``replay:`` trace adds what decides
    its routing beyond its path: the file's contents (a trace re-recorded in place re-tunes) and the
    rank (a trace holds global expert ids, so it loads each rank's shard differently; the other
    distributions are rank-relative).

    Raises:
        ValueError: the replay file cannot be read (names it).
    """
    dist = problem.distribution
    if dist.kind != "replay":
        return dist.name
    assert dist.path is not None  # a replay distribution always has one
    return f"{dist.name}#sha256={_file_digest(dist.path)},rank={problem.topology.ep_rank}"


def _file_digest(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of ``path``'s bytes (hashed once per file version)."""
    try:
        info = path.stat()
    except OSError as err:
        raise ValueError(f"replay file {str(path)!r} cannot be read: {err.strerror}") from None
    return _digest_of_version(str(path.resolve()), info.st_mtime_ns, info.st_size)


@lru_cache(maxsize=64)
def _digest_of_version(path: str, mtime_ns: int, size: int) -> str:
    """:func:`_file_digest` of one version of a file (``mtime_ns`` and ``size`` key the cache)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"replay file {path!r} cannot be read: {err.strerror}") from None
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True)
class TuningKey:
    """Everything that can change which tactic wins (DESIGN.md section 3). ``id`` is the cache key."""

    op: str
    source_hash: str
    space_hash: str
    dtype: str
    hidden: int
    intermediate: int
    num_experts: int
    top_k: int
    local_num_experts: int
    ep_size: int
    use_dp: bool
    tune_max_num_tokens: int
    distribution: str
    routing: str
    seed: int
    routing_draws: int
    bucket: int
    timer: str

    @classmethod
    def of(
        cls,
        runner: MoERunner,
        problem: TuningProblem,
        bucket: int,
        timer: str,
        seed: int,
        routing_draws: int = 1,
        routing: str = "dummy_topk",
    ) -> TuningKey:
        m, t = problem.model, problem.topology
        return cls(
            op=runner.name,
            source_hash=runner.source_hash,
            space_hash=getattr(runner, "space_hash", ""),
            dtype=problem.dtype,
            hidden=m.hidden,
            intermediate=m.intermediate,
            num_experts=m.num_experts,
            top_k=m.top_k,
            local_num_experts=t.local_num_experts,
            ep_size=t.ep_size,
            use_dp=t.use_dp,
            tune_max_num_tokens=problem.tune_max_num_tokens,
            distribution=distribution_key(problem),
            routing=routing,
            seed=seed,
            routing_draws=routing_draws,
            bucket=bucket,
            timer=timer,
        )

    @property
    def id(self) -> str:
        return "|".join(f"{name}={value}" for name, value in asdict(self).items())

    @staticmethod
    def fields_of(key_id: str) -> dict[str, str] | None:
        """The ``name: value`` text fields of a key :attr:`id`, or ``None`` for a key of another form
        (a cache written by other code, or before a field existed: such keys lack ``space_hash``)."""
        parts = [part.partition("=") for part in key_id.split("|")]
        if not all(sep for _, sep, _ in parts):
            return None
        fields = {name: value for name, _, value in parts}
        return fields if "op" in fields and "source_hash" in fields else None


@dataclass
class BucketResult:
    """Outcome of one bucket. Times are microseconds per launch (median of rounds); a failed tactic
    is absent from ``timings_us`` (the sweep) and has its reason in ``failures``. ``refined_us``
    holds the finalists' re-timed medians, which name the winner (empty when refinement is off)."""

    bucket: int
    tactic: Hashable
    time_us: float
    timings_us: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    from_cache: bool = False
    refined_us: dict[str, float] = field(default_factory=dict)

    @property
    def timed(self) -> int:
        return len(self.timings_us)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def measured_us(self, label: str) -> float | None:
        """The tuning's time for the tactic ``label``: re-timed if it was a finalist, else its sweep
        time; ``None`` when it was not timed (outside the space, or failed)."""
        return self.refined_us.get(label, self.timings_us.get(label))


@dataclass
class TuningResult:
    problem: TuningProblem
    buckets: list[BucketResult]
    wall_s: float

    def bucket(self, bucket: int) -> BucketResult:
        for result in self.buckets:
            if result.bucket == bucket:
                return result
        raise KeyError(bucket)

    def tactic_for(self, bucket: int) -> Hashable:
        return self.bucket(bucket).tactic


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def entry_problem(entry: Mapping[str, Any]) -> str | None:
    """What is wrong with a stored tuning entry (as :meth:`Tuner._entry` writes it), or ``None``.

    Read back from a file a person may have edited: ``tactic`` must be a JSON object and ``time_us`` a
    positive finite number; ``timings_us`` and ``refined_us``, where present, objects of numbers,
    ``failures`` an object of strings, ``wall_s`` a number. The text completes "the entry ...".
    """
    if "tactic" not in entry:
        return "has no 'tactic'"
    if not isinstance(entry["tactic"], dict):
        return f"has a 'tactic' that is a JSON {_json_type(entry['tactic'])}, not an object"
    if "time_us" not in entry:
        return "has no 'time_us'"
    time_us = entry["time_us"]
    if not (_is_number(time_us) and time_us > 0):
        return f"has 'time_us' {time_us!r}, not a positive number"
    for name, want, ok in (
        ("timings_us", "numbers", _is_number),
        ("refined_us", "numbers", _is_number),
        ("failures", "strings", lambda v: isinstance(v, str)),
    ):
        value = entry.get(name, {})
        if not (isinstance(value, dict) and all(ok(v) for v in value.values())):
            return f"has '{name}' {value!r}, not an object of {want}"
    if not _is_number(entry.get("wall_s", 0.0)):
        return f"has 'wall_s' {entry['wall_s']!r}, not a number"
    return None


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type (``array``, ``string``, ...)."""
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def medians(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each label's median over its measurements; labels without any are left out."""
    return {label: statistics.median(values) for label, values in samples.items() if values}


def relative_error(out: Any, ref: Any) -> float:
    """``||out - ref|| / ||ref||`` in fp32 (``inf`` for NaN/inf in ``out``; 0 when both are zero)."""
    diff = (out.float() - ref.float()).norm().item()
    scale = ref.float().norm().item()
    if not math.isfinite(diff):
        return math.inf
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


_STICKY_CUDA_ERROR = re.compile(
    r"an illegal (?:memory access|instruction) was encountered"
    r"|(?:CUDA error|\[CUDA\]):\s*(?:misaligned address|unspecified launch failure"
    r"|device-side assert triggered|hardware stack error|invalid program counter"
    r"|the launch timed out and was terminated"
    r"|operation not supported on global/shared address space)"
    r"|\b(?:cuda|hip)Error(?:IllegalAddress|IllegalInstruction|MisalignedAddress|LaunchFailure|Assert"
    r"|HardwareStackError|InvalidPc|LaunchTimeout|InvalidAddressSpace)\b"
    r"|\bCUDA_ERROR_(?:ILLEGAL_ADDRESS|ILLEGAL_INSTRUCTION|MISALIGNED_ADDRESS|LAUNCH_FAILED|ASSERT"
    r"|HARDWARE_STACK_ERROR|INVALID_PC|LAUNCH_TIMEOUT|INVALID_ADDRESS_SPACE)\b",
    re.IGNORECASE,
)
"""The texts CUDA (and HIP) give the errors that leave the context unusable (CUDA's "sticky" errors:
every later call in the process fails with them): an illegal memory access or instruction anywhere in
the text; a misaligned address, an unspecified launch failure, a device-side assert, a hardware stack
error, an invalid program counter, a launch timeout or an unsupported address space after the
runtime's ``CUDA error:`` or Triton's ``Triton Error [CUDA]:`` prefix (so a compiler message that
happens to say "misaligned address" is not one); and the error codes' names."""


def corrupts_cuda_context(err: BaseException) -> bool:
    """Whether ``err`` reports a sticky CUDA error (an illegal memory access or instruction, a misaligned
    address, a launch failure, a device-side assert, ...: :data:`_STICKY_CUDA_ERROR`), after which
    every CUDA call in the process fails, so tuning must stop: the tactics after it would all fail
    with the same error, under their own names. Any other error that merely contains such a word (a
    compiler's "illegal use of ...") fails only its tactic."""
    return _STICKY_CUDA_ERROR.search(str(err)) is not None


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:limit] if text else ''}"


def routed_local_slots(draws: Sequence[tuple[Any, Any]], problem: TuningProblem) -> float:
    """Mean (token, slot) pairs of ``draws`` (``(topk_ids, topk_weights)``) that land in ``problem``'s
    shard. The tactic space and the default follow it, so a rank that a skewed distribution loads
    gets the row blocks its load needs (a dispatched draw can deliver more than the bucket's rows)."""
    from pytest_moetune.routing import routing_stats

    slots = [sum(routing_stats(topk_ids, problem.topology).rows_per_local_expert) for topk_ids, _ in draws]
    return statistics.fmean(slots) if slots else 0.0


class Tuner:
    """Tunes any registered runner.

    Args:
        runner: the kernel (see :class:`~pytest_moetune.runner.MoERunner`).
        store: where winners persist (a :class:`~pytest_moetune.cache.TuningCache`); in memory if None.
        timer: how a tactic is timed (default :class:`~pytest_moetune.timing.CudaGraphTimer`).
        routing: the per-bucket routing hook (default :func:`~pytest_moetune.routing.dummy_topk`;
            :func:`~pytest_moetune.dispatch.dispatch_topk` tunes on every rank's routing dispatched
            to this rank, which follows a skewed rank's extra load). Its name is part of the key.
        seed: routing seed (part of the key: it changes ``random``/``zipf`` routings).
        device: where inputs live.
        check: compare each tactic's output with the reference once before timing it.
        input_sets: how many input sets to rotate through per timing (>1 for cold L2).
        routing_draws: routings drawn per bucket (seeds ``seed .. seed + routing_draws - 1``); each
            tactic is timed cycling through all of them, so the winner is best on average over the
            draws rather than on one draw's exact rows per expert (part of the key).
        stagger: ``(index, count)`` of this tuner among ``count`` tuners working in parallel (one
            per pytest-xdist worker): each bucket's sweep starts ``index / count`` of the way
            through the tactic space, so parallel tuners compile different kernels at the same
            moment and load the others' from Triton's shared on-disk cache. Timings and winners
            do not depend on the order.
        claims: shared with the other parallel tuners: a tactic whose kernel (the runner's
            ``compile_units``, else the tactic) another tuner has claimed is compiled after this
            tuner's own (:mod:`~pytest_moetune.compile_claims`). Works beside ``stagger``, which
            only rotates where a sweep starts.
        refine: after a bucket's sweep, the finalists (:func:`finalists`: within 5% of the best,
            at most 4) are timed ``refine`` more times each, interleaved, and the best median wins;
            one lucky measurement in a sweep of a hundred tactics does not decide. When the
            re-timed best is slower than the sweep's best, the tactics the sweep put within 5% of
            the re-timed best are re-timed too (at most :data:`MAX_REFINED` in all). 0: off.
        progress: a rich progress bar over buckets x tactics; ``None`` shows it on a terminal.
    """

    def __init__(
        self,
        runner: MoERunner,
        store: TacticStore | None = None,
        timer: Timer | None = None,
        *,
        routing: RoutingHook | None = None,
        seed: int = 0,
        device: Any = "cuda",
        check: bool = True,
        input_sets: int | Callable[[Any], int] = 1,
        routing_draws: int = 1,
        stagger: tuple[int, int] = (0, 1),
        claims: CompileClaims | None = None,
        refine: int = 3,
        progress: bool | None = None,
    ) -> None:
        if isinstance(routing_draws, bool) or not isinstance(routing_draws, int) or routing_draws < 1:
            raise ValueError(f"routing_draws must be a positive integer, got {routing_draws!r}")
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise ValueError(f"refine must be an integer >= 0, got {refine!r}")
        index, count = stagger
        if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
            raise ValueError(f"stagger must be (index, count) with 0 <= index < count, got {stagger!r}")
        if timer is None:
            from pytest_moetune.timing import CudaGraphTimer

            timer = CudaGraphTimer()
        if routing is None:
            from pytest_moetune.routing import dummy_topk

            routing = dummy_topk
        self.runner = runner
        self.store: TacticStore = store if store is not None else MemoryStore()
        self.timer = timer
        self.routing = routing
        self.seed = seed
        self.device = device
        self.check = check
        self.input_sets = input_sets
        self.routing_draws = routing_draws
        self.stagger = stagger
        self.claims = claims
        self._claimed: set[str] = set()  # compile units this tuner claimed (and so compiled)
        self.refine = refine
        self.progress = progress
        self._warned: set[str | tuple[str, str]] = set()  # keys (and malformed keys) warned about

    # -- keys and lookup -------------------------------------------------------------------------

    def key(self, problem: TuningProblem, bucket: int) -> TuningKey:
        return TuningKey.of(
            self.runner,
            problem,
            bucket,
            self.timer.name,
            self.seed,
            self.routing_draws,
            routing_name(self.routing),
        )

    def with_routing(self, routing: RoutingHook) -> Tuner:
        """This tuner (same runner, store, timer and settings) with another routing hook."""
        other = copy.copy(self)
        other.routing = routing
        other._warned = set()
        return other

    def cached(self, problem: TuningProblem, bucket: int) -> BucketResult | None:
        """The stored result for ``bucket``, or ``None`` when there is none or it is malformed.

        A malformed entry (hand-edited: ``tactic`` or ``time_us`` missing or of the wrong type, or a
        tactic this runner cannot read; see :func:`entry_problem`) is treated as absent, with one
        :class:`~pytest_moetune.cache.MoetuneCacheWarning` per key naming the key and what is wrong:
        :meth:`tune` re-tunes the bucket and its new entry replaces the bad one, every other entry
        staying as it is; :meth:`lookup` serves the default tactic. The cache only saves time, so a
        bad entry costs one re-tune rather than a failed run, and the tactic it would have named is
        never trusted.
        """
        key = self.key(problem, bucket).id
        entry = self.store.get(key)
        if entry is None:
            return None
        why = entry_problem(entry) or self._unreadable_tactic(entry["tactic"])
        if why is not None:
            self._warn_malformed(key, why)
            return None
        return BucketResult(
            bucket=bucket,
            tactic=self.runner.tactic_from_dict(entry["tactic"]),
            time_us=float(entry["time_us"]),
            timings_us=dict(entry.get("timings_us", {})),
            failures=dict(entry.get("failures", {})),
            wall_s=float(entry.get("wall_s", 0.0)),
            from_cache=True,
            refined_us=dict(entry.get("refined_us", {})),
        )

    def _unreadable_tactic(self, tactic: dict[str, Any]) -> str | None:
        """Why the runner cannot make a tactic of a stored ``tactic`` object, or ``None``."""
        try:
            self.runner.tactic_from_dict(tactic)
        except (KeyError, TypeError, ValueError) as err:
            return f"has a tactic {self.runner.name} cannot read ({type(err).__name__}: {err})"
        return None

    def _warn_malformed(self, key: str, why: str) -> None:
        """Warn once per key that its stored entry is malformed and is treated as missing."""
        if ("malformed", key) in self._warned:
            return
        self._warned.add(("malformed", key))
        path = getattr(self.store, "path", None)
        where = f"tuning cache {path}" if path is not None else "tuning store"
        warnings.warn(
            MoetuneCacheWarning(
                f"{where}: the entry for {key} {why}: treating it as missing (tuning re-tunes the "
                f"bucket and replaces it; other entries are kept)"
            ),
            stacklevel=4,
        )

    def lookup(self, problem: TuningProblem, num_tokens: int) -> Hashable:
        """The tuned tactic for ``num_tokens`` (its bucket: the largest bucket ``<= num_tokens``,
        clamped to the tuned range). A miss returns the default tactic and warns once per key."""
        bucket = problem.bucket_for(num_tokens)
        result = self.cached(problem, bucket)
        if result is not None:
            return result.tactic
        key = self.key(problem, bucket).id
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(
                MoetuneTuningWarning(f"no tuned tactic for {key}; using the default tactic"), stacklevel=2
            )
        return self.runner.default_tactic(problem.at(num_tokens))

    # -- tuning ----------------------------------------------------------------------------------

    def label(self, tactic: Hashable) -> str:
        """A tactic's canonical JSON (unique, stable across processes)."""
        return json.dumps(self.runner.tactic_to_dict(tactic), sort_keys=True, separators=(",", ":"))

    def tune(
        self, problem: TuningProblem, *, force: bool = False, buckets: Sequence[int] | None = None
    ) -> TuningResult:
        """Tune every bucket of ``problem``, or only ``buckets`` (cached ones are reused unless
        ``force``)."""
        start = time.perf_counter()
        chosen = problem.buckets if buckets is None else tuple(dict.fromkeys(buckets))
        unknown = [b for b in chosen if b not in problem.buckets]
        if unknown:
            raise ValueError(f"{unknown} are not buckets of {problem.describe()}: {problem.buckets}")
        results: dict[int, BucketResult] = {}
        todo: list[tuple[int, BucketProblem, list[Hashable]]] = []
        for bucket in chosen:
            hit = None if force else self.cached(problem, bucket)
            if hit is not None:
                results[bucket] = hit
                continue
            draws = self.draws_for(problem.at(bucket), problem)
            slots = routed_local_slots(draws, problem)
            bucket_problem = replace(problem.at(bucket), routed_local_slots=slots)
            if not self.runner.supports(bucket_problem):
                raise ValueError(f"runner {self.runner.name!r} does not support {problem.describe()}")
            space = list(dict.fromkeys(self.runner.tactics(bucket_problem)))
            if not space:
                raise ValueError(f"runner {self.runner.name!r} offers no tactic for bucket {bucket}")
            first = self.stagger[0] * len(space) // self.stagger[1]
            space = space[first:] + space[:first]
            todo.append((bucket, bucket_problem, space, draws))
        with self._progress(problem, sum(2 * len(space) for _, _, space, _ in todo)) as advance:
            for bucket, bucket_problem, space, draws in todo:
                result = self._tune_bucket(problem, bucket_problem, space, advance, draws)
                results[bucket] = result
                self.store.put_many({self.key(problem, bucket).id: self._entry(result)})
        ordered = [results[b] for b in problem.buckets if b in results]
        return TuningResult(problem, ordered, time.perf_counter() - start)

    def _entry(self, result: BucketResult) -> dict[str, Any]:
        return {
            "tactic": self.runner.tactic_to_dict(result.tactic),
            "time_us": result.time_us,
            "timings_us": result.timings_us,
            "failures": result.failures,
            "refined_us": result.refined_us,
            "wall_s": round(result.wall_s, 4),
            "tuned_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }

    def draws_for(self, bucket_problem: BucketProblem, problem: TuningProblem) -> list[tuple[Any, Any]]:
        """The routing hook's ``(topk_ids, topk_weights)`` for the bucket's token count and topology,
        one per routing draw (seeds ``seed``, ``seed + 1``, ...), on the tuner's device."""
        draws = []
        for draw in range(self.routing_draws):
            topk_ids, topk_weights = self.routing(
                bucket_problem.num_tokens, problem.topology, problem.distribution, self.seed + draw
            )
            draws.append((topk_ids.to(self.device), topk_weights.to(self.device)))
        return draws

    def input_sets_for(
        self,
        bucket_problem: BucketProblem,
        problem: TuningProblem,
        draws: Sequence[tuple[Any, Any]] | None = None,
    ) -> list[Any]:
        """The inputs a bucket is timed on: the routing ``draws`` (default :meth:`draws_for`)
        made into at least ``input_sets`` sets (more than one when timing cold L2); set ``i`` uses
        draw ``i % routing_draws``. Each set has as many rows as its draw routes (``T`` for dummy
        routing, the delivered rows for dispatched routing)."""
        draws = list(draws) if draws is not None else self.draws_for(bucket_problem, problem)

        def inputs(draw: tuple[Any, Any]) -> Any:
            rows = int(draw[0].shape[0])
            shaped = bucket_problem if rows == bucket_problem.num_tokens else problem.at(rows)
            return self.runner.make_inputs(shaped, *draw)

        first = inputs(draws[0])
        count = self.input_sets(first) if callable(self.input_sets) else self.input_sets
        count = max(count, len(draws))
        return [first, *(inputs(draws[i % len(draws)]) for i in range(1, count))]

    def try_time(
        self,
        input_sets: Sequence[Any],
        tactic: Hashable,
        reference: Any = None,
        tolerance: float = math.inf,
    ) -> tuple[float | None, str | None]:
        """Median per-launch time of ``tactic`` over ``input_sets``, or ``(None, reason)`` when it
        fails to compile, runs out of shared or device memory, or (given a ``reference`` for the
        first input set) is off by more than ``tolerance``. A sticky CUDA error (an illegal memory
        access, a launch failure, ...) leaves the CUDA context unusable, so that one is raised
        (:func:`corrupts_cuda_context`)."""
        if reference is not None:
            reason = self.try_run(input_sets[0], tactic, reference, tolerance)
            if reason is not None:
                return None, reason
        try:
            launches = [partial(self.runner.run, inputs, tactic) for inputs in input_sets]
            return self.timer.measure(launches).median_us, None
        except Exception as err:  # compile errors, out of shared or device memory, launch errors
            return None, self._failure(tactic, err)

    def try_run(
        self, inputs: Any, tactic: Hashable, reference: Any = None, tolerance: float = math.inf
    ) -> str | None:
        """Run ``tactic`` once on ``inputs`` (compiling it on first use): ``None`` when it ran and,
        given a ``reference``, matched it within ``tolerance``; otherwise the reason it did not."""
        try:
            out = self.runner.run(inputs, tactic)
            if reference is not None:
                err = relative_error(out, reference)
                if not err <= tolerance:
                    return f"mismatch: relative error {err:.3g} > {tolerance:.3g}"
            return None
        except Exception as err:  # compile errors, out of shared or device memory, launch errors
            return self._failure(tactic, err)

    def _failure(self, tactic: Hashable, err: Exception) -> str:
        """The reason a tactic failed; a sticky CUDA error (an illegal memory access, a launch failure,
        ...) leaves the CUDA context unusable, so that one is raised (:func:`corrupts_cuda_context`)."""
        if corrupts_cuda_context(err):
            raise RuntimeError(
                f"tactic {self.label(tactic)} of {self.runner.name} corrupted the CUDA context: "
                f"{_first_line(err)}"
            ) from err
        _release_device_memory()
        return _first_line(err)

    def time_each(self, input_sets: Sequence[Any], tactics: Iterable[Hashable]) -> dict[str, float]:
        """Median per-launch time of each tactic over ``input_sets``, by label; a tactic that fails is
        left out (no reference check: for inputs the tuner did not make itself)."""
        times = {}
        for tactic in tactics:
            us, _reason = self.try_time(input_sets, tactic)
            if us is not None:
                times[self.label(tactic)] = us
        return times

    def retime(
        self, input_sets: Sequence[Any], tactics: Sequence[Hashable], repeats: int
    ) -> dict[str, float]:
        """Each tactic's median over ``repeats`` more measurements (:meth:`retime_samples`); a tactic
        that fails is left out."""
        return medians(self.retime_samples(input_sets, tactics, repeats))

    def retime_samples(
        self, input_sets: Sequence[Any], tactics: Sequence[Hashable], repeats: int
    ) -> dict[str, list[float]]:
        """``repeats`` more measurements of each tactic by label, taken in turn (A B C A B C ...) so
        that clock and thermal drift touch all alike; a tactic that fails has none."""
        samples: dict[str, list[float]] = {self.label(t): [] for t in tactics}
        for _ in range(repeats):
            for label, us in self.time_each(input_sets, tactics).items():
                samples[label].append(us)
        return samples

    def _tune_bucket(
        self,
        problem: TuningProblem,
        bucket_problem: BucketProblem,
        space: list[Hashable],
        advance: Callable[[str], None],
        draws: Sequence[tuple[Any, Any]],
    ) -> BucketResult:
        start = time.perf_counter()
        input_sets = self.input_sets_for(bucket_problem, problem, draws)
        reference = self.runner.reference(input_sets[0]) if self.check else None
        tolerance = self.runner.max_relative_error(bucket_problem)
        timings: dict[str, float] = {}
        failures: dict[str, str] = {}
        best: tuple[float, Hashable] | None = None
        # Compile and check every tactic first, then time them back to back: a measurement taken
        # right after an idle compile gap catches a cool GPU at its boost clock and reads fast.
        ready = []
        for tactic in self._compile_order(bucket_problem, space):
            reason = self.try_run(input_sets[0], tactic, reference, tolerance)
            advance(f"T={bucket_problem.num_tokens} compiling")
            if reason is None:
                ready.append(tactic)
            else:
                failures[self.label(tactic)] = reason
        for tactic in ready:
            label = self.label(tactic)
            us, reason = self.try_time(input_sets, tactic)
            advance(f"T={bucket_problem.num_tokens} timing")
            if us is None:
                failures[label] = reason or "failed"
                continue
            timings[label] = us
            if best is None or us < best[0]:
                best = (us, tactic)
        if best is None:
            raise TuningError(
                f"every tactic failed for {problem.describe()} bucket {bucket_problem.num_tokens}: "
                + "; ".join(sorted(set(failures.values())))
            )
        by_label = {self.label(t): t for t in ready}
        refined = self._refine(input_sets, timings, by_label) if self.refine else {}
        if refined:
            winner = min(refined, key=refined.__getitem__)
            best = (refined[winner], by_label[winner])
        return BucketResult(
            bucket=bucket_problem.num_tokens,
            tactic=best[1],
            time_us=best[0],
            timings_us=timings,
            failures=failures,
            wall_s=time.perf_counter() - start,
            refined_us=refined,
        )

    def _compile_order(self, problem: BucketProblem, space: list[Hashable]) -> Iterator[Hashable]:
        """``space`` in the order to compile it. With claims, a tactic claims its compile units just
        before it is compiled; a tactic with a unit another tuner claimed comes last (by then that
        kernel is usually in Triton's on-disk cache)."""
        if self.claims is None:
            yield from space
            return
        later = []
        for tactic in space:
            units = self._compile_units(problem, tactic)
            if any(unit not in self._claimed and self.claims.taken(unit) for unit in units):
                later.append(tactic)
                continue
            self._claimed.update(unit for unit in units if self.claims.claim(unit))
            yield tactic
        yield from later

    def _compile_units(self, problem: BucketProblem, tactic: Hashable) -> list[str]:
        """Claim keys of what compiling ``tactic`` builds: the runner's ``compile_units`` if it has
        them (kernels that tactics share), else the tactic."""
        named = getattr(self.runner, "compile_units", None)
        units = named(problem, tactic) if named else [(problem.dtype, self.label(tactic))]
        return [f"{self.runner.name}|{self.runner.source_hash}|{unit!r}" for unit in units]

    def _refine(
        self, input_sets: Sequence[Any], timings: Mapping[str, float], by_label: Mapping[str, Hashable]
    ) -> dict[str, float]:
        """Re-timed medians of the sweep's finalists, and of the tactics the sweep put within
        :data:`FINALIST_MARGIN` of the re-timed best (at most :data:`MAX_REFINED`). A lone finalist
        is re-timed too: a sweep's best that was lucky set the finalists' window too low."""
        todo = finalists(timings)
        refined: dict[str, float] = {}
        tried: set[str] = set()
        while todo:
            tried.update(todo)
            refined.update(self.retime(input_sets, [by_label[label] for label in todo], self.refine))
            if not refined:
                break
            bar = min(refined.values()) * (1 + FINALIST_MARGIN)
            close = sorted((label for label, us in timings.items() if us <= bar), key=timings.__getitem__)
            todo = [label for label in close if label not in tried][: MAX_REFINED - len(tried)]
        return refined

    @contextmanager
    def _progress(self, problem: TuningProblem, total: int) -> Iterator[Callable[[str], None]]:
        import sys

        show = self.progress if self.progress is not None else sys.stderr.isatty()
        if not show or total == 0:
            yield lambda _description: None
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(f"tuning {problem.describe()}", total=total)

            def advance(description: str) -> None:
                bar.update(task, advance=1, description=f"tuning {problem.describe()} {description}")

            yield advance


def _release_device_memory() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
