"""``moetune cache ...``: show a tuning cache file, and prune what its runner or its machines can no
longer use.

A cache file holds one section per environment (GPU, SM, driver, torch, triton, plugin version) that
tuned into it. Tuning cache keys carry the runner's ``source_hash`` (its kernels) and ``space_hash``
(its tactic space): after a kernel or space edit the tuner re-tunes under new keys, and the old
entries stay in the file, unread. ``show`` lists each environment (marking this machine's) with its
entries grouped by op and hashes, and marks which group the runner reads now; ``prune`` deletes the
runner's entries of other hashes from every environment's section (``--dry-run`` lists them). Entries
of other ops, and keys of another form, are kept. ``prune --other-environments`` (every section but
this machine's) or ``prune --environment FIELD=VALUE`` (the sections that match) deletes whole
sections instead, for a torch, driver or GPU that no longer tunes into the file. Every change holds
the cache's lock and replaces the file atomically. Both commands work on any machine: the file is
opened for all of its environments.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from pytest_moetune.argtypes import argparse_type, user_path
from pytest_moetune.cache import CacheEnvironment, TuningCache, count_noun, default_cache_path
from pytest_moetune.export import EXPORT_FORMATS
from pytest_moetune.fingerprint import EnvironmentFingerprint
from pytest_moetune.runner import MoERunner
from pytest_moetune.tuner import TuningKey, entry_problem

_Group = tuple[str, str, str]  # (op, source_hash, space_hash); "?" for a key of another form
_Selector = tuple[str, str]  # (fingerprint field, value) of --environment


def parse_selector(text: str) -> _Selector:
    """``FIELD=VALUE`` of ``--environment``: a fingerprint field and the value a section must have."""
    field, sep, value = text.partition("=")
    names = EnvironmentFingerprint.field_names()
    if not sep or field not in names:
        raise ValueError(f"{text!r} is not FIELD=VALUE with FIELD one of {', '.join(names)}")
    return field, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cache_command", required=True)
    for name, text in (
        ("show", "each environment of the file and its entries, grouped by op and hashes"),
        ("prune", "delete the runner's entries of other kernel or space hashes, or other environments"),
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
    prune = sub.choices["prune"]
    prune.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    prune.add_argument(
        "--other-environments",
        action="store_true",
        help="instead of the runner's old entries, delete the sections of every environment but this "
        "machine's (refused where this machine has none)",
    )
    prune.add_argument(
        "--environment",
        action="append",
        type=argparse_type(parse_selector),
        metavar="FIELD=VALUE",
        help="instead of the runner's old entries, delete the sections whose FIELD (gpu_name, sm, driver, "
        "torch, triton, plugin) is VALUE; repeated, a section must match all (and with "
        "--other-environments, not be this machine's)",
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pytest_moetune.tune_command import resolve_runner

    drops = args.cache_command == "prune" and (args.other_environments or args.environment)
    if drops and args.runner is not None:
        parser.error(
            "--runner prunes the runner's old entries and --other-environments/--environment delete "
            "whole environments: give one"
        )
    cache = TuningCache.of_file(args.cache or default_cache_path())
    if args.cache_command == "show":
        try:
            runner: MoERunner | None = resolve_runner(args.runner, Path.cwd())
        except (ValueError, ImportError) as err:  # show what the file holds even without the runner
            runner, why = None, f"{type(err).__name__}: {err}"
        _show(cache, None if runner is None else _Current(runner), EnvironmentFingerprint.current())
        if runner is None:
            print(f"(no runner to compare with: {why})")
        return 0
    if drops:
        return _drop_environments(cache, args.environment or [], args.other_environments, args.dry_run)
    return _prune(cache, _Current(resolve_runner(args.runner, Path.cwd())), args.dry_run)


def _prune(cache: TuningCache, current: _Current, dry_run: bool) -> int:
    """Delete the runner's entries of other hashes from every section, in one write (a key is stale
    by its hashes alone, so it goes from every section that holds it)."""
    sections = cache.environments()
    stale = [(s, sorted(key for key in s.entries if current.stale(_group(key)))) for s in sections]
    if dry_run:
        total = _entries(sections)
        print(f"would remove {sum(len(keys) for _, keys in stale)} of {total} entries from {cache.path}")
        for section, keys in stale:
            if keys:
                print(f"  {_describe(section)}: {len(keys)} of {len(section.entries)}")
                print("\n".join(f"    {key}" for key in keys))
        return 0
    doomed = {key for _, keys in stale for key in keys}
    gone = set(cache.remove_many(doomed)) if doomed else set()  # nothing to remove: no lock taken
    removed = sum(len(gone.intersection(keys)) for _, keys in stale)  # per section, as read before
    print(f"removed {removed} entries from {cache.path}; {_entries(cache.environments())} left")
    return 0


def _drop_environments(cache: TuningCache, selectors: list[_Selector], others: bool, dry_run: bool) -> int:
    """Delete the sections that match every selector (and, with ``others``, are not this machine's).

    Raises:
        ValueError: no section matches the selectors, or ``others`` where this machine has no section
            (alone it would delete every one; beside selectors it spares none): nothing is deleted.
    """
    sections = cache.environments()
    matching = [s for s in sections if all(getattr(s.fingerprint, f) == v for f, v in selectors)]
    if selectors and not matching:
        given = ", ".join(f"{field}={value}" for field, value in selectors)
        raise ValueError(f"no environment in {cache.path} has {given} ({_values(sections, selectors)})")
    here = EnvironmentFingerprint.current() if others else None
    if here is not None and sections and all(s.fingerprint != here for s in sections):
        why = f"{cache.path} has no section for this machine ({_describe_fingerprint(here)})"
        if selectors:  # they chose fewer than all: say so, rather than ask for them
            chose, them = count_noun(len(matching), "section"), "it" if len(matching) == 1 else "them"
            raise ValueError(
                f"{why}, so --other-environments spares none of the {chose} --environment chose: drop "
                f"--other-environments to delete {them}"
            )
        raise ValueError(
            f"{why}, so --other-environments would delete all {len(sections)}: choose with --environment "
            f"FIELD=VALUE"
        )
    chosen = [s for s in matching if s.fingerprint != here]
    if dry_run:
        print(f"would remove {count_noun(len(chosen), 'environment')} of {len(sections)} "
              f"({_entries(chosen)} of {_entries(sections)} entries) from {cache.path}")  # fmt: skip
        for section in chosen:
            print(f"  {_describe(section)}: {count_noun(len(section.entries), 'entry', 'entries')}")
        return 0
    dropped = cache.remove_environments([s.fingerprint for s in chosen])
    left = len(cache.environments())
    print(f"removed {count_noun(len(dropped), 'environment')} ({_entries(dropped)} entries) from "
          f"{cache.path}; {left} left")  # fmt: skip
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


def _show(cache: TuningCache, current: _Current | None, here: EnvironmentFingerprint) -> None:
    sections = cache.environments()
    print(f"tuning cache {cache.path}: {count_noun(len(sections), 'environment')}, "
          f"{count_noun(_entries(sections), 'entry', 'entries')}")  # fmt: skip
    for number, section in enumerate(sections, 1):
        print(f"environment {number}: {_describe(section)}")
        mismatches = section.fingerprint.mismatches(here, now="here")
        where = f"not this machine ({'; '.join(mismatches)})" if mismatches else "this machine"
        print(f"  {where}; {count_noun(len(section.entries), 'entry', 'entries')}")
        _show_groups(section, current)
        _show_malformed(section)


def _show_groups(section: CacheEnvironment, current: _Current | None) -> None:
    """The section's entries counted by op and hashes, marking the runner's current and old groups."""
    groups = Counter(_group(key) for key in section.entries)
    if not groups:
        return
    print(f"  {'op':<24} {'source_hash':<18} {'space_hash':<18} {'entries':>7}")
    for (op, source, space), count in sorted(groups.items()):
        mark = ""
        if current is not None and op in current.ops:
            mark = "  stale: `moetune cache prune`" if current.stale((op, source, space)) else "  current"
        print(f"  {op:<24} {source:<18} {space:<18} {count:>7}{mark}")


def _show_malformed(section: CacheEnvironment) -> None:
    """List the entries a tuner would treat as missing (hand-edited: see ``entry_problem``)."""
    malformed = {}
    for key, entry in sorted(section.entries.items()):
        why = entry_problem(entry)
        if why is not None:
            malformed[key] = why
    if malformed:
        print(f"  {len(malformed)} malformed entries (treated as missing: re-tuned when next tuned):")
        for key, why in malformed.items():
            print(f"    {key}: the entry {why}")


def _describe(section: CacheEnvironment) -> str:
    return f"{_describe_fingerprint(section.fingerprint)}, created {section.created}"


def _describe_fingerprint(fp: EnvironmentFingerprint) -> str:
    return (
        f"{fp.gpu_name} (sm {fp.sm}, driver {fp.driver}, torch {fp.torch}, triton {fp.triton}, "
        f"pytest-moetune {fp.plugin})"
    )


def _values(sections: list[CacheEnvironment], selectors: list[_Selector]) -> str:
    """What the sections have in the selectors' fields, e.g. ``torch: 2.11.0, 2.13.0``."""
    if not sections:
        return "it has no environments"
    fields = dict.fromkeys(field for field, _ in selectors)
    return "; ".join(
        f"{field}: {', '.join(sorted({getattr(s.fingerprint, field) for s in sections}))}" for field in fields
    )


def _entries(sections: list[CacheEnvironment]) -> int:
    return sum(len(section.entries) for section in sections)

