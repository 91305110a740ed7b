"""``moetune cache ...``: show a tuning cache file, and prune the entries its runner can no longer use.

Tuning cache keys carry the runner's ``source_hash`` (its kernels) and ``space_hash`` (its tactic
space): after a kernel or space edit the tuner re-tunes under new keys, and the old entries stay in
the file, unread. ``show`` groups the entries by op and hashes and marks which group the runner reads
now; ``prune`` deletes the runner's entries of other hashes (``--dry-run`` lists them), under the
cache's lock, with an atomic replace. Entries of other ops, and keys of another form, are kept. Both
work on any machine: the file is opened with the environment it records.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from pytest_moetune.argtypes import user_path
from pytest_moetune.cache import TuningCache, default_cache_path
from pytest_moetune.export import EXPORT_FORMATS
from pytest_moetune.runner import MoERunner
from pytest_moetune.tuner import TuningKey, entry_problem

_Group = tuple[str, str, str]  # (op, source_hash, space_hash); "?" for a key of another form


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cache_command", required=True)
    for name, text in (
        ("show", "the file's environment and entries, grouped by op and hashes"),
        ("prune", "delete the runner's entries of other kernel or space hashes"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "--cache",
            type=user_path,
            default=None,
            help="cache file (default $MOETUNE_CACHE, else $XDG_CACHE_HOME or ~/.cache)",
        )
        cmd.add_argument(
            "--runner", default=None, help="MODULE:ATTR of the kernel runner (default: [tool.moetune] runner)"
        )
    sub.choices["prune"].add_argument("--dry-run", action="store_true", help="list, delete nothing")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pytest_moetune.tune_command import resolve_runner

    cache = TuningCache.of_file(args.cache or default_cache_path())
    if args.cache_command == "show":
        try:
            runner: MoERunner | None = resolve_runner(args.runner, Path.cwd())
        except (ValueError, ImportError) as err:  # show what the file holds even without the runner
            runner, why = None, f"{type(err).__name__}: {err}"
        _show(cache, None if runner is None else _Current(runner))
        if runner is None:
            print(f"(no runner to compare with: {why})")
        return 0
    current = _Current(resolve_runner(args.runner, Path.cwd()))
    stale = [key for key in cache if current.stale(_group(key))]
    if args.dry_run:
        print(f"would remove {len(stale)} of {len(cache)} entries from {cache.path}")
        for key in stale:
            print(f"  {key}")
        return 0
    removed = cache.remove_many(stale)
    print(f"removed {len(removed)} entries from {cache.path}; {len(cache)} left")
    return 0


def _group(key: str) -> _Group:
    fields = TuningKey.fields_of(key)
    if fields is None:
        return ("?", "?", "?")
    return (fields["op"], fields["source_hash"], fields.get("space_hash", "-"))


class _Current:
    """What ``runner`` reads now: for each op name its entries are stored under (its own and its
    export runners'), that runner's ``(source_hash, space_hash)``. Built once per command: an export
    runner's hashes come from reading and parsing the kernel sources."""

    def __init__(self, runner: MoERunner) -> None:
        restrict = getattr(runner, "for_export", None)
        runners = [runner, *(restrict(fmt) for fmt in EXPORT_FORMATS)] if restrict else [runner]
        self.hashes = {r.name: (r.source_hash, getattr(r, "space_hash", "")) for r in runners}
        self.ops = set(self.hashes)

    def stale(self, group: _Group) -> bool:
        """The group is of one of these runners' ops and of other hashes than that runner's (``-``: a
        key from before ``space_hash``)."""
        op, source, space = group
        return op in self.hashes and (source, "" if space == "-" else space) != self.hashes[op]


def _show(cache: TuningCache, current: _Current | None) -> None:
    fp = cache.fingerprint
    print(f"tuning cache {cache.path}: {fp.gpu_name} (sm {fp.sm}, driver {fp.driver}, torch {fp.torch}, "
          f"triton {fp.triton}, pytest-moetune {fp.plugin}), created {cache.created}")  # fmt: skip
    groups = Counter(_group(key) for key in cache)
    print(f"{len(cache)} entries")
    if not groups:
        return
    print(f"{'op':<24} {'source_hash':<18} {'space_hash':<18} {'entries':>7}")
    for (op, source, space), count in sorted(groups.items()):
        mark = ""
        if current is not None and op in current.ops:
            mark = "  stale: `moetune cache prune`" if current.stale((op, source, space)) else "  current"
        print(f"{op:<24} {source:<18} {space:<18} {count:>7}{mark}")
    _show_malformed(cache)


def _show_malformed(cache: TuningCache) -> None:
    """List the entries a tuner would treat as missing (hand-edited: see ``entry_problem``)."""
    malformed = {}
    for key in cache:
        entry = cache.get(key)
        why = entry_problem(entry) if entry is not None else None
        if why is not None:
            malformed[key] = why
    if malformed:
        print(f"{len(malformed)} malformed entries (treated as missing: re-tuned when next tuned):")
        for key, why in malformed.items():
            print(f"  {key}: the entry {why}")
