"""``moetune tune``: tune one model x topology x dtype over its token buckets, print the table,
optionally export vLLM configs."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_moetune.argtypes import argparse_type, non_negative_int, positive_int, user_path
from pytest_moetune.cache import CacheWriteError
from pytest_moetune.distributions import ENV_VAR, default_distribution, parse_distribution
from pytest_moetune.fileio import atomic_write_text, unwritable_reason
from pytest_moetune.problem import DEFAULT_TUNE_MAX_NUM_TOKENS, DTYPES, TuningProblem
from pytest_moetune.runner import MoERunner, entry_point_runners, load_runner
from pytest_moetune.topology import TopologySpec
from pytest_moetune.tuner import ROUTINGS, TacticStore, Tuner, TuningKey, TuningResult, routing_hook

ROUTING_HELP = (
    "dummy: this rank's dummy routing (T rows, DESIGN.md rules); dispatch: every rank routes T rows and "
    "the rank gets what the all-to-all delivers to it (DEP: a hot rank's extra load under skew)"
)
DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8_w8a8"}


def parse_dtype(text: str) -> str:
    name = DTYPE_ALIASES.get(text, text)
    if name not in DTYPES:
        valid, aliases = ", ".join(DTYPES), ", ".join(DTYPE_ALIASES)
        raise ValueError(f"unknown dtype {text!r}; valid: {valid} (aliases: {aliases})")
    return name


def configured_runner_spec(directory: Path) -> str | None:
    """``runner`` under ``[tool.moetune]`` in ``directory/pyproject.toml``, if any."""
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        config = tomllib.loads(pyproject.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{pyproject}: not valid TOML: {err}") from None
    spec = config.get("tool", {}).get("moetune", {}).get("runner")
    if spec is not None and not isinstance(spec, str):
        raise ValueError(f"{pyproject}: [tool.moetune] runner must be a string MODULE:ATTR, got {spec!r}")
    return spec


def resolve_runner(spec: str | None, directory: Path) -> MoERunner:
    """``--runner``, else ``[tool.moetune] runner``, else the one entry-point runner."""
    spec = spec or configured_runner_spec(directory)
    if spec:
        return load_runner(spec, directory)
    found = list(entry_point_runners())
    if len(found) == 1:
        return found[0]
    names = ", ".join(r.name for r in found) or "none installed"
    raise ValueError(
        f"choose a runner with --runner MODULE:ATTR or [tool.moetune] runner in pyproject.toml "
        f"(entry-point runners: {names})"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topology", type=argparse_type(TopologySpec.parse), required=True, help="ep<N> or dep<N>"
    )
    parser.add_argument("--rank", type=argparse_type(non_negative_int), default=0, help="measured EP rank")
    parser.add_argument("--dtype", type=argparse_type(parse_dtype), default="bf16", help=", ".join(DTYPES))
    parser.add_argument(
        "--distribution",
        type=argparse_type(parse_distribution),
        default=None,
        help=f"dummy routing to tune on (default ${ENV_VAR}, else balanced)",
    )
    parser.add_argument(
        "--tune-max-num-tokens",
        type=argparse_type(positive_int),
        default=DEFAULT_TUNE_MAX_NUM_TOKENS,
        help="largest bucket; buckets are the powers of two below it, plus it",
    )
    parser.add_argument("--seed", type=int, default=0, help="routing seed")
    parser.add_argument(
        "--routing-draws",
        type=argparse_type(positive_int),
        default=1,
        metavar="K",
        help="time every tactic on K routings (seeds SEED..SEED+K-1) and pick the best on average: "
        "robust to per-expert row counts that straddle a tile boundary (costs K input copies)",
    )
    parser.add_argument(
        "--routing",
        choices=ROUTINGS,
        default="dummy",
        help=ROUTING_HELP,
    )
    parser.add_argument("--runner", help="MODULE:ATTR of the kernel runner (default: [tool.moetune] runner)")
    parser.add_argument(
        "--cache",
        type=user_path,
        help="tuning cache file (default $MOETUNE_CACHE, else $XDG_CACHE_HOME or ~/.cache)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="tune in memory only (not with --cache or --force)"
    )
    parser.add_argument("--force", action="store_true", help="re-tune buckets already in the cache")
    parser.add_argument("--cold-l2", action="store_true", help="time with inputs rotated past L2")
    parser.add_argument(
        "--rounds", type=argparse_type(positive_int), default=5, help="timed rounds per tactic"
    )
    parser.add_argument(
        "--export",
        nargs=2,
        metavar=("FORMAT", "DIR"),
        help="write the tuned table: `--export vllm DIR` (written even when the cache cannot be: see --json)",
    )
    parser.add_argument(
        "--json",
        type=user_path,
        help="write the per-bucket results as JSON to this file; if a cache write fails, tuning goes on in "
        "memory, --json and --export get every bucket, and the command exits 1 naming the cache and cause",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def contradictory_options(args: argparse.Namespace) -> str | None:
    """Why the cache options given contradict each other, or ``None``: ``--no-cache`` tunes in memory,
    so a ``--cache`` file would be ignored and ``--force`` (re-tune what the cache holds) means
    nothing."""
    if not args.no_cache:
        return None
    if args.cache is not None:
        return "--cache and --no-cache contradict each other: --no-cache tunes in memory only; give one"
    if args.force:
        return (
            "--force and --no-cache contradict each other: --force re-tunes buckets the cache holds, and "
            "--no-cache tunes in memory only, without a cache; give one"
        )
    return None


def unwritable_outputs(args: argparse.Namespace) -> str | None:
    """Why the command could not write one of its outputs (``--json``, ``--export``'s folder, the
    tuning cache), checked before it tunes for minutes; ``None`` when all can be written."""
    from pytest_moetune.cache import default_cache_path

    outputs = [("--json", args.json, False), ("--export", args.export and user_path(args.export[1]), True)]
    if not args.no_cache:
        outputs.append(("--cache", args.cache or default_cache_path(), False))
    for option, path, folder in outputs:
        why = path and unwritable_reason(path, folder=folder)
        if why:
            return f"{option}: {why}"
    return None


def tuner_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`Tuner` keyword arguments the command's options set, timer and store aside."""
    return {
        "seed": args.seed,
        "routing_draws": args.routing_draws,
        "routing": routing_hook(args.routing),
        "progress": not args.no_progress,
    }


def build_tuner(args: argparse.Namespace, runner: MoERunner) -> Tuner:
    """The GPU tuner the command uses: CUDA-graph timer, persistent cache (tests replace this)."""
    import torch

    from pytest_moetune.cache import TuningCache, default_cache_path
    from pytest_moetune.fingerprint import EnvironmentFingerprint
    from pytest_moetune.timing import CudaGraphTimer, cold_l2_input_sets

    if not torch.cuda.is_available():
        raise ValueError("moetune tune times kernels on a CUDA GPU and none is available")
    store = (
        None
        if args.no_cache
        else TuningCache(args.cache or default_cache_path(), EnvironmentFingerprint.current())
    )
    timer = CudaGraphTimer(rounds=args.rounds, cold_l2=args.cold_l2)
    input_sets: Any = cold_l2_input_sets() if args.cold_l2 else 1
    return Tuner(runner, store, timer, input_sets=input_sets, **tuner_options(args))


def result_rows(tuner: Tuner, result: TuningResult) -> list[dict[str, Any]]:
    problem = result.problem
    return [
        {
            "bucket": b.bucket,
            "rows_per_local_expert": problem.topology.expected_rows_per_local_expert(b.bucket),
            "tactic": tuner.runner.tactic_to_dict(b.tactic),
            "time_us": b.time_us,
            "timed": b.timed,
            "failed": b.failed,
            "wall_s": b.wall_s,
            "from_cache": b.from_cache,
        }
        for b in result.buckets
    ]


def print_table(tuner: Tuner, result: TuningResult) -> None:
    print(f"{tuner.runner.name} {result.problem.describe()} rank {result.problem.topology.ep_rank}")
    print(f"{'bucket':>7} {'rows/exp':>9} {'time us':>10} {'timed':>5} {'failed':>6} {'wall s':>7}  tactic")
    for row in result_rows(tuner, result):
        wall = "cached" if row["from_cache"] else f"{row['wall_s']:.2f}"
        tactic = getattr(tuner.runner.tactic_from_dict(row["tactic"]), "name", None) or json.dumps(
            row["tactic"]
        )
        print(
            f"{row['bucket']:>7} {row['rows_per_local_expert']:>9.1f} {row['time_us']:>10.1f} "
            f"{row['timed']:>5} {row['failed']:>6} {wall:>7}  {tactic}"
        )
    print(f"total wall {result.wall_s:.1f} s")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, model: Any) -> int:
    from pytest_moetune.export import (
        EXPORT_FORMATS,
        unexportable_reason,
        vllm_file_name,
        vllm_table,
        write_vllm_config,
    )

    contradiction = contradictory_options(args)
    if contradiction:
        parser.error(contradiction)
    if args.export and args.export[0] not in EXPORT_FORMATS:
        supported = ", ".join(EXPORT_FORMATS)
        parser.error(f"--export format {args.export[0]!r} is not supported; supported: {supported}")
    why_not = unwritable_outputs(args)
    if why_not:
        parser.error(why_not)
    try:
        topology = args.topology.bind(model.num_experts, model.top_k, args.rank)
    except ValueError as err:
        parser.error(f"--topology {args.topology.name} with {model.name}: {err}")
    distribution = args.distribution or default_distribution()
    problem = TuningProblem(model, topology, args.dtype, distribution, args.tune_max_num_tokens)
    runner = resolve_runner(args.runner, Path.cwd())
    restrict = getattr(runner, "for_export", None) if args.export else None
    if restrict is not None:  # tune only tactics the export format can express
        runner = restrict(args.export[0])
    unexportable = unexportable_reason(runner) if args.export else None
    if unexportable:  # said before tuning, not after it
        parser.error(f"--export {args.export[0]}: {unexportable}")
    tuner = build_tuner(args, runner)
    tuner.store = guard = CacheWriteGuard(tuner.store)
    try:
        result = tuner.tune(problem, force=args.force)
    except BaseException:  # its own error follows; say first what the cache lacks, if a write failed
        if guard.error is not None:
            print(f"moetune: error: {guard.failure(None)}", file=sys.stderr)
        raise
    print_table(tuner, result)
    if args.json:
        atomic_write_text(args.json, json.dumps(result_rows(tuner, result), indent=1) + "\n")
    if args.export:
        device = _device_name()
        name = vllm_file_name(topology.local_num_experts, model.intermediate, device, args.dtype)
        table = vllm_table(runner, {b.bucket: b.tactic for b in result.buckets})
        print(f"wrote {write_vllm_config(user_path(args.export[1]), name, table)}", file=sys.stderr)
    if guard.error is not None:
        print(f"moetune: error: {guard.failure(args)}", file=sys.stderr)
        return 1
    return 0


class CacheWriteGuard:
    """The tuner's store under ``moetune tune``: writes go to ``store`` until one fails with a
    :class:`~pytest_moetune.cache.CacheWriteError`; from then on nothing more is written to it (a
    lock that timed out or a full disk would fail again, each time after the lock's timeout) and the
    tuner goes on in memory, so the table, ``--json`` and ``--export`` still get every bucket."""

    def __init__(self, store: TacticStore) -> None:
        self.store = store
        self.error: CacheWriteError | None = None
        self.uncached: list[str] = []  # the keys tuned but not written, in tuning order

    @property
    def path(self) -> Path | None:
        """The store's file (the tuner names it in its warnings), ``None`` for a store in memory."""
        return getattr(self.store, "path", None)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.store.get(key)

    def put_many(self, entries: Mapping[str, dict[str, Any]]) -> None:
        if self.error is None:
            try:
                self.store.put_many(entries)
                return
            except CacheWriteError as err:
                self.error = err
        self.uncached.extend(entries)

    def failure(self, args: argparse.Namespace | None) -> str:
        """The one line that says the cache write failed (the error names the file and the cause),
        which buckets it lacks and where their results went; ``args`` ``None``: tuning then stopped
        with an error of its own, which the next line says, so they went nowhere."""
        buckets = ", ".join((TuningKey.fields_of(key) or {}).get("bucket", key) for key in self.uncached)
        if args is None:
            where = "tuning stopped: see the next line"
        else:
            outputs = ["the table above"] + ["--json"] * bool(args.json) + ["--export"] * bool(args.export)
            listed = [", ".join(outputs[:-1]), outputs[-1]] if len(outputs) > 1 else outputs
            where = f"{' and '.join(listed)}: every bucket"
        return f"{self.error}; bucket(s) {buckets} tuned but not cached ({where})"


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
