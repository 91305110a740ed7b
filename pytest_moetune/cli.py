"""The ``moetune`` command line.

``moetune models`` lists the ANCHORS.md model shapes; ``moetune routing`` shows what a dummy routing
looks like from each rank of a topology (the numbers the tuner will tune on).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from pytest_moetune import __version__, baseline_command, cache_command, tune_command
from pytest_moetune.argtypes import argparse_type, non_negative_int, positive_int
from pytest_moetune.cache import CacheWriteError
from pytest_moetune.distributions import ENV_VAR, default_distribution, parse_distribution
from pytest_moetune.models import MODELS, ModelShape, get_model
from pytest_moetune.topology import TopologySpec
from pytest_moetune.tuner import ROUTINGS, TuningError, routing_hook


def add_model_arguments(parser: argparse.ArgumentParser, *, needs_shape: bool = False) -> None:
    """``--model NAME`` or the explicit ``--experts/--top-k`` (and ``--hidden/--intermediate``, which
    a command that builds the layer, ``needs_shape``, requires; routing alone does not use them)."""
    group = parser.add_argument_group("model shape")
    shape = "required with --experts" if needs_shape else "not used here; default 1"
    group.add_argument("--model", type=argparse_type(get_model), help=f"one of: {', '.join(MODELS)}")
    group.add_argument("--experts", type=argparse_type(positive_int), help="routed experts E")
    group.add_argument("--top-k", type=argparse_type(positive_int), help="experts per token")
    group.add_argument("--hidden", type=argparse_type(positive_int), help=f"hidden size H ({shape})")
    group.add_argument(
        "--intermediate", type=argparse_type(positive_int), help=f"expert intermediate I ({shape})"
    )
    parser.set_defaults(needs_shape=needs_shape)


def model_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ModelShape:
    """The ``--model``, or the custom shape of ``--experts/--top-k/--hidden/--intermediate``: a usage
    error when both are given, or when a shape the command needs is left out."""
    custom = {
        "--experts": args.experts,
        "--top-k": args.top_k,
        "--hidden": args.hidden,
        "--intermediate": args.intermediate,
    }
    if args.model is not None:
        given = [option for option, value in custom.items() if value is not None]
        if given:
            parser.error(f"give either --model or {'/'.join(custom)}, not both (got {', '.join(given)})")
        return args.model
    needed = ["--experts", "--top-k"] + (["--hidden", "--intermediate"] if args.needs_shape else [])
    missing = [option for option in needed if custom[option] is None]
    if missing:
        parser.error(f"give --model NAME, or {', '.join(needed)} (missing {', '.join(missing)})")
    try:
        return ModelShape("custom", args.experts, args.top_k, args.hidden or 1, args.intermediate or 1)
    except ValueError as err:
        parser.error(str(err))


def _cmd_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    print(f"{'name':<18} {'E':>5} {'top_k':>5} {'H':>6} {'I':>6}")
    for m in MODELS.values():
        print(f"{m.name:<18} {m.num_experts:>5} {m.top_k:>5} {m.hidden:>6} {m.intermediate:>6}")
    return 0


def _cmd_routing(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pytest_moetune.routing import routing_stats

    model = model_from_args(parser, args)
    try:
        topology = args.topology.bind(model.num_experts, model.top_k)
    except ValueError as err:
        parser.error(f"--topology {args.topology.name} with {model.name}: {err}")
    if args.rank is not None and args.rank >= topology.ep_size:
        parser.error(f"--rank {args.rank} is outside [0, ep_size={topology.ep_size})")
    ranks = [topology.with_rank(args.rank)] if args.rank is not None else list(topology.ranks())
    try:
        distribution = args.distribution or default_distribution()
    except ValueError as err:
        parser.error(str(err))
    rows = []
    for rank in ranks:
        ids, _ = routing_hook(args.routing)(args.tokens, rank, distribution, args.seed)
        stats = routing_stats(ids, rank)
        rows.append(
            {
                "distribution": distribution.name,
                "rank": rank.ep_rank,
                "local_expert_offset": rank.local_expert_offset,
                "expected_rows_per_local_expert": rank.expected_rows_per_local_expert(args.tokens),
                **stats.to_dict(),
            }
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    from_env = args.distribution is None and bool(os.environ.get(ENV_VAR, "").strip())
    source = f" (from ${ENV_VAR})" if from_env else ""
    print(
        f"{model.name} {topology.name}: E={topology.num_experts} top_k={topology.top_k} "
        f"L={topology.local_num_experts} T={args.tokens} distribution={distribution.name}{source} "
        f"routing={args.routing} "
        f"seed={args.seed}"
    )
    print(
        f"{'rank':>4} {'offset':>6} {'rows':>6} {'expected':>9} {'min':>6} {'mean':>8} {'max':>6} "
        f"{'max/mean':>8} {'local%':>7} {'touched':>7}"
    )
    for row in rows:
        loads = row["rows_per_local_expert"]
        print(
            f"{row['rank']:>4} {row['local_expert_offset']:>6} {row['num_tokens']:>6} "
            f"{row['expected_rows_per_local_expert']:>9.2f} {min(loads):>6} "
            f"{row['mean_load']:>8.2f} {row['max_load']:>6} {row['imbalance']:>8.2f} "
            f"{100 * row['local_slot_fraction']:>6.1f}% {row['local_experts_touched']:>7}"
        )
    return 0


def _cmd_tune(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return tune_command.run(args, parser, model_from_args(parser, args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moetune", description="pytest-moetune: topology-aware MoE kernel tuning tools."
    )
    parser.add_argument("--version", action="version", version=f"pytest-moetune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list the built-in model shapes")
    models.set_defaults(func=_cmd_models)

    routing = sub.add_parser(
        "routing", help="show per-rank statistics of a dummy routing (what the tuner tunes on)"
    )
    add_model_arguments(routing)
    routing.add_argument(
        "--topology", type=argparse_type(TopologySpec.parse), required=True, help="ep<N> or dep<N>"
    )
    routing.add_argument(
        "--tokens", type=argparse_type(non_negative_int), required=True, help="rows per rank T"
    )
    routing.add_argument(
        "--distribution",
        type=argparse_type(parse_distribution),
        default=None,
        help=f"balanced, random, zipf:<alpha>, replay:<file> (default ${ENV_VAR}, else balanced)",
    )
    routing.add_argument("--routing", choices=ROUTINGS, default="dummy", help=tune_command.ROUTING_HELP)
    routing.add_argument("--seed", type=int, default=0)
    routing.add_argument("--rank", type=argparse_type(non_negative_int), help="only this rank")
    routing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    routing.set_defaults(func=_cmd_routing)

    tune = sub.add_parser(
        "tune", help="tune a model x topology x dtype over its token buckets (needs a CUDA GPU)"
    )
    add_model_arguments(tune, needs_shape=True)
    tune_command.add_arguments(tune)
    tune.set_defaults(func=_cmd_tune)

    baseline = sub.add_parser("baseline", help="update, prune, show or diff the throughput baselines")
    baseline_command.add_arguments(baseline)
    baseline.set_defaults(func=baseline_command.run)

    cache = sub.add_parser(
        "cache", help="show a tuning cache, or prune its entries of old kernels or other environments"
    )
    cache_command.add_arguments(cache)
    cache.set_defaults(func=cache_command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "passes_pytest_args", False):
        args.pytest_args = [a for a in unknown if a != "--"]  # `moetune baseline update -k dep8 ...`
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args, parser)
    except ValueError as err:  # e.g. a replay file whose contents are invalid
        print(f"moetune: error: {err}", file=sys.stderr)
        return 2
    except TuningError as err:  # e.g. a layer shape that none of the runner's tactics can run
        print(f"moetune: error: {err}", file=sys.stderr)
        return 1
    except CacheWriteError as err:  # the cache's lock or file: its message names both and the cause
        print(f"moetune: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `moetune baseline show | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
