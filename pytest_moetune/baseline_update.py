"""Rewriting baselines from a run (``--moetune-update-baselines``), in the controller only."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from pytest_moetune.baseline import BaselineError, read_baseline, write_baseline

if TYPE_CHECKING:
    from pytest_moetune.gate import GateState
    from pytest_moetune.harness import CheckResult


def update_baselines(state: GateState, mode: str, exitstatus: int) -> list[str]:
    """Write this run's entries into ``baselines/<gpu>/<module>.json``; return report lines.

    ``changed`` writes entries that are new or moved beyond noise (low churn); ``all`` writes every
    entry of the run; ``prune`` is ``changed`` plus dropping, from each module file the run
    checked, the entries no case checked. Prune refuses a run that deselected or failed tests, or
    whose cases an option narrowed (:func:`_narrowing`): their cases would look gone. Each file is
    rewritten atomically; a file that cannot be read or written is left untouched and reported (a
    failed write sets ``state.update_failed``, which fails the run).
    """
    by_module: dict[str, list[CheckResult]] = defaultdict(list)
    for result in state.results:
        by_module[result.module].append(result)
    fingerprint = state.gate.fingerprint if state.gate is not None else state.results[0].entry["fingerprint"]
    slug = _slug(fingerprint)
    prune = mode == "prune"
    lines = []
    if prune and (state.deselected or exitstatus != 0 or _filtered(state)):
        lines.append(
            "moetune: not pruning: the run was filtered or had failures, so absent cases may still exist"
        )
        prune = False
    elif prune and (narrowing := _narrowing(state)) is not None:
        lines.append(f"moetune: not pruning: {narrowing}")
        prune = False
    for module, results in sorted(by_module.items()):
        path = state.baseline_path(slug, module)
        try:
            document = read_baseline(path)
        except BaselineError as err:
            lines.append(f"moetune: not updated: {err}")
            continue
        entries = dict(document["entries"]) if document else {}
        written = [r for r in results if mode == "all" or r.moved]
        for result in written:
            entries[result.case] = result.entry
        removed = sorted(set(entries) - {r.case for r in results}) if prune else []
        for case in removed:
            del entries[case]
        if not written and not removed:
            lines.append(f"moetune: {path}: unchanged ({len(results)} cases within noise)")
            continue
        try:
            write_baseline(path, entries, fingerprint)
        except OSError as err:
            lines.append(f"moetune: not updated: {path} could not be written ({err}); it was left as it was")
            state.update_failed = True
            continue
        lines.append(
            f"moetune: wrote {path}: {len(written)} updated, {len(removed)} pruned, {len(entries)} entries"
        )
    return lines


def _filtered(state: GateState) -> bool:
    option = state.config.option
    return bool(getattr(option, "keyword", "") or getattr(option, "markexpr", "")) or any(
        "::" in str(arg) for arg in state.config.args
    )


def _narrowing(state: GateState) -> str | None:
    """Why an option left cases of the suite out of this run, with what to prune on instead; None
    when none did. A profile other than ``full`` runs a part of the suite's cases;
    ``--moetune-topology`` and ``--moetune-distribution`` on the command line re-parametrize the tests
    that use ``moe_topology`` and ``dummy_distribution`` (their ini values are the suite's own)."""
    from pytest_moetune.gate import selected_profile

    config = state.config
    profile = selected_profile(config)
    if profile != "full":
        return (
            f"--moetune-profile={profile} runs a part of the suite's cases, so absent cases may still "
            "exist; prune on --moetune-profile=full (`moetune baseline prune` does)"
        )
    for dest, option in (
        ("moetune_topology", "--moetune-topology"),
        ("moetune_distribution", "--moetune-distribution"),
    ):
        values = config.getoption(dest)
        if values is not None:
            names = ",".join(value.name for value in values)
            return (
                f"{option}={names} narrows the cases of the tests parametrized by it, so absent cases "
                f"may still exist; prune without {option}"
            )
    return None


def _slug(fingerprint: dict[str, str]) -> str:
    from pytest_moetune.fingerprint import EnvironmentFingerprint

    return EnvironmentFingerprint.from_dict(fingerprint).slug
