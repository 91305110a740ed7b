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
    checked, the entries no case checked. Prune refuses a run that deselected or failed tests (their
    cases would look gone). Each file is rewritten atomically; a file that cannot be read is left
    untouched and reported.
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
        write_baseline(path, entries, fingerprint)
        lines.append(
            f"moetune: wrote {path}: {len(written)} updated, {len(removed)} pruned, {len(entries)} entries"
        )
    return lines


def _filtered(state: GateState) -> bool:
    option = state.config.option
    return bool(getattr(option, "keyword", "") or getattr(option, "markexpr", "")) or any(
        "::" in str(arg) for arg in state.config.args
    )


def _slug(fingerprint: dict[str, str]) -> str:
    from pytest_moetune.fingerprint import EnvironmentFingerprint

    return EnvironmentFingerprint.from_dict(fingerprint).slug
