#!/usr/bin/env python3
"""Same-run A/B of default tactics over the full profile's small-block cases (decode).

    PYTHONPATH=. python3 benchmarks/default_ab.py --write-defaults OLD.json   # any machine, before a change
    PYTHONPATH=. python3 benchmarks/default_ab.py --old OLD.json [--max-block-m 32] [--tokens 512,768] \\
        [--changed-only] [--match REGEX] [--variant down=128x128w4s3 ...] [--baselines B.json] --json OUT.json
                                                                         # on the GPU, after it

``--write-defaults`` records ``default_tactic`` of every full-profile case (``suites.perf.cases``;
with ``--tokens``, its balanced cases at those token counts instead) as this tree computes it (the
runner's problem, Gluon tiles allowed as on Hopper): no GPU needed. On the GPU, for every such case
whose old or new default has ``block_m <= --max-block-m`` (with ``--changed-only``, whose default
changed), it times on the case's own inputs (the gate's dummy routing and weights):

- ``old``: the default recorded in ``--old``;
- ``new``: this tree's ``default_tactic``;
- each ``--variant GEMM=NxKwWsS`` (several joined by ``+``): ``new`` with those GEMMs' tiles changed
  (other flags kept);
- ``tuned``: the baselines file's tactic for the case, where it has one.

Variants run interleaved, ``--repeats`` times ``--rounds`` CUDA-graph rounds each (so clock drift lands
on all of them), each pass starting one variant later than the one before, after one untimed pass
over all of them: without it the first variant's first rounds of an fp8 case ran up to 14% slow on
the H200 (run 80, BENCHMARKS.md: the same tactic timed twice).
Each variant's output is checked against the fp32 reference with the runner's bound before it is
timed. Prints one row per case (medians, each variant's time over ``old``) and writes all rounds to
``--json`` (after every case).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from kernels.runner import FusedMoERunner, kernel_problem
from kernels.tactics import GemmTile, Tactic, default_tactic
from pytest_moetune.harness import MoECase
from suites.perf.cases import full_cases

DEFAULT_BASELINES = Path("baselines/nvidia-h200/suites.perf.test_tuned_throughput.json")
_TILE = re.compile(r"(\d+)x(\d+)w(\d+)s(\d+)")


TileChange = tuple[str, int, int, int, int]
"""``(gemm, block_n, block_k, num_warps, num_stages)``: one GEMM's tile in a variant."""


def parse_variant(text: str) -> tuple[TileChange, ...]:
    """``"gate_up=128x128w4s4+down=128x128w4s3"`` -> one :data:`TileChange` per ``+``-joined part."""
    changes = []
    for part in text.split("+"):
        gemm, _, tile = part.partition("=")
        match = _TILE.fullmatch(tile)
        if gemm not in ("gate_up", "down") or match is None:
            raise argparse.ArgumentTypeError(
                f"--variant {text!r}: expected GEMM=NxKwWsS joined by '+', GEMM gate_up or down, "
                "e.g. down=128x128w4s3 or gate_up=128x128w4s4+down=128x128w4s3"
            )
        n, k, w, st = (int(g) for g in match.groups())
        changes.append((gemm, n, k, w, st))
    return tuple(changes)


def with_tiles(tactic: Tactic, changes: tuple[TileChange, ...]) -> Tactic:
    """``tactic`` with the tiles of ``changes`` (tma/gluon/sorted_x flags kept)."""
    for gemm, n, k, w, st in changes:
        tile: GemmTile = getattr(tactic, gemm)
        tactic = replace(tactic, **{gemm: replace(tile, block_n=n, block_k=k, num_warps=w, num_stages=st)})
    return tactic


def profile_cases(tokens: list[int]) -> list[MoECase]:
    """The full profile's cases; with ``tokens``, instead each of its balanced (model, topology,
    dtype) triples at each of those token counts."""
    if not tokens:
        return full_cases()
    at_tokens = (
        replace(c, num_tokens=t) for c in full_cases() if c.distribution.name == "balanced" for t in tokens
    )
    return list({case.id: case for case in at_tokens}.values())  # each (model, topology, dtype) once


def defaults(cases: list[MoECase]) -> dict[str, dict[str, Any]]:
    """``{case id: default tactic dict}`` as this tree computes it on Hopper (Gluon tiles allowed,
    whatever this machine runs)."""
    return {
        case.id: default_tactic(kernel_problem(case.problem().at(case.num_tokens)), gluon=True).to_dict()
        for case in cases
    }


def chosen_cases(cases: list[MoECase], old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]],
                 max_block_m: int, dtypes: set[str], changed_only: bool,
                 match: re.Pattern[str] | None = None) -> list[MoECase]:  # fmt: skip
    """``cases`` of ``dtypes`` whose old or new default has ``block_m <= max_block_m`` (and, with
    ``changed_only``, whose default changed, as a tactic: a file written before a tile flag existed
    lacks its key, which reads as the flag's default; with ``match``, whose id it finds)."""
    missing = [c.id for c in cases if c.id not in old]
    if missing:
        raise ValueError(f"--old lacks {len(missing)} of the cases, e.g. {missing[0]!r}: write it with "
                         "the same --tokens")  # fmt: skip
    return [
        c for c in cases
        if c.dtype in dtypes and min(old[c.id]["block_m"], new[c.id]["block_m"]) <= max_block_m
        and not (changed_only and Tactic.from_dict(old[c.id]) == Tactic.from_dict(new[c.id]))
        and (match is None or match.search(c.id) is not None)
    ]  # fmt: skip


def timing_passes(names: list[str], repeats: int) -> list[tuple[bool, list[str]]]:
    """``(timed, order)`` per pass: one untimed pass, then ``repeats`` timed ones, each starting one
    variant later than the one before (see the module docstring)."""
    rotated = [names[n % len(names) :] + names[: n % len(names)] for n in range(repeats + 1)]
    return [(n > 0, order) for n, order in enumerate(rotated)]


def time_case(runner: FusedMoERunner, case: MoECase, variants: dict[str, Tactic], rounds: int,
              repeats: int) -> dict[str, Any]:  # fmt: skip
    """Check, then time each variant on the case's inputs, interleaved; rounds in µs per launch."""
    from pytest_moetune.routing import dummy_topk
    from pytest_moetune.timing import CudaGraphTimer
    from pytest_moetune.tuner import relative_error

    problem = case.problem()
    ids, weights = dummy_topk(case.num_tokens, problem.topology, problem.distribution, case.seed)
    inputs = runner.make_inputs(problem.at(case.num_tokens), ids.cuda(), weights.cuda())
    ref = runner.reference(inputs)
    bound = runner.max_relative_error(problem)
    errors = {}
    for name, tactic in variants.items():
        errors[name] = relative_error(runner.run(inputs, tactic).clone(), ref)
        if not errors[name] <= bound:
            raise AssertionError(
                f"{case.id} {name} {tactic.name}: relative error {errors[name]:.3g} > bound {bound}"
            )
    timer = CudaGraphTimer(rounds=rounds, warmup_us=20_000.0)
    rounds_us: dict[str, list[float]] = {name: [] for name in variants}
    for timed, order in timing_passes(list(variants), repeats):
        for name in order:
            measured = timer.measure([partial(runner.run, inputs, variants[name])]).rounds_us
            if timed:
                rounds_us[name] += measured
    return {
        "case": case.id,
        "tactics": {name: t.name for name, t in variants.items()},
        "rel_err": errors,
        "rounds_us": rounds_us,
        "median_us": {name: statistics.median(r) for name, r in rounds_us.items()},
    }


def print_row(row: dict[str, Any]) -> None:
    med = row["median_us"]
    ratios = " ".join(f"{n}/old {med[n] / med['old']:.3f}" for n in med if n != "old")
    print(f"{row['case']:58s} old {med['old']:8.1f} µs  {ratios}  new={row['tactics']['new']}", flush=True)


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Per variant other than ``old``, in order of appearance (some rows lack ``tuned``): the geometric
    mean, min and max of its median over ``old``'s across the rows that have it."""
    lines = []
    for name in dict.fromkeys(n for r in rows for n in r["median_us"] if n != "old"):
        ratios = [r["median_us"][name] / r["median_us"]["old"] for r in rows if name in r["median_us"]]
        lines.append(f"{name}/old over {len(ratios)} cases: geomean {statistics.geometric_mean(ratios):.4f}, "
                     f"min {min(ratios):.3f}, max {max(ratios):.3f}")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-defaults", type=Path, help="write this tree's defaults here and stop (no GPU)")
    ap.add_argument("--old", type=Path, help="defaults written by --write-defaults before the change")
    ap.add_argument("--baselines", type=Path, default=DEFAULT_BASELINES, help="the tuned tactics")
    ap.add_argument(
        "--tokens",
        type=lambda v: [int(t) for t in v.split(",")],
        default=[],
        help="comma list: the balanced cases at these token counts instead of the profile's",
    )
    ap.add_argument("--changed-only", action="store_true", help="only cases whose default changed")
    ap.add_argument("--max-block-m", type=int, default=32)
    ap.add_argument("--dtypes", default="bf16,fp8_w8a8")
    ap.add_argument("--match", type=re.compile, help="regex: only cases whose id it finds (gpt-oss)")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        type=parse_variant,
        metavar="GEMM=NxKwWsS[+GEMM=NxKwWsS]",
        help="a variant of the new default (repeatable)",
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.write_defaults:
        written = defaults(profile_cases(args.tokens))
        args.write_defaults.write_text(json.dumps(written, indent=1, sort_keys=True) + "\n")
        return 0
    if args.old is None:
        ap.error("give --old OLD.json (or --write-defaults FILE)")
    runner = FusedMoERunner()
    old = json.loads(args.old.read_text())
    cases = profile_cases(args.tokens)
    new = defaults(cases)
    tuned = json.loads(args.baselines.read_text())["entries"]
    rows = []
    chosen = chosen_cases(
        cases, old, new, args.max_block_m, set(args.dtypes.split(",")), args.changed_only, args.match
    )
    for case in chosen:
        variants = {"old": Tactic.from_dict(old[case.id]), "new": Tactic.from_dict(new[case.id])}
        for changes in args.variant:
            name = "+".join(f"{g}={n}x{k}w{w}s{st}" for g, n, k, w, st in changes)
            variants[name] = with_tiles(variants["new"], changes)
        if case.id in tuned:
            variants["tuned"] = Tactic.from_dict(tuned[case.id]["tactic"])
        rows.append(time_case(runner, case, variants, args.rounds, args.repeats))
        print_row(rows[-1])
        if args.json:  # after every case, so a run cut short keeps what it measured
            record = {"argv": sys.argv[1:] if argv is None else argv, "rows": rows}
            args.json.write_text(json.dumps(record, indent=1) + "\n")
    for line in summary(rows):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
