"""Committed throughput baselines: one JSON file per suite module under ``baselines/<gpu-slug>/``.

File format (schema 1)::

    {"schema": 1,
     "fingerprint": {gpu_name, sm, driver, torch, triton, plugin},   # of the run that wrote it
     "entries": {"<case id>": {rounds_us, summary, throughput, fraction_of_ceilings, ceilings,
                               tactic, source_hash, fingerprint, flops, bytes,
                               card (optional: the card's UUID, fingerprint.card_id)}}}

Formatting is deterministic (sorted keys, floats to 4 significant digits, one key per line) so a
baseline update diffs small. Files are read strictly: a corrupt or truncated file, or a newer schema,
is an error that names the file and leaves it untouched. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_moetune.ceilings import Ceilings
from pytest_moetune.fileio import atomic_write_text

SCHEMA_VERSION = 1
SIGNIFICANT_DIGITS = 4
ENTRY_FIELDS = (
    "bytes",
    "ceilings",
    "flops",
    "fingerprint",
    "fraction_of_ceilings",
    "rounds_us",
    "source_hash",
    "summary",
    "tactic",
    "throughput",
)


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file."""


def round_floats(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """``value`` with every float rounded to ``digits`` significant digits (recursively)."""
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0.0:
            return value
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(v, digits) for v in value]
    return value


def dumps(document: Mapping[str, Any]) -> str:
    """Deterministic JSON text of a baseline document."""
    return json.dumps(round_floats(dict(document)), indent=1, sort_keys=True, allow_nan=False) + "\n"


def _number(value: Any, *, positive: bool = False) -> bool:
    """A finite JSON number (not a bool), above zero with ``positive``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > 0 if positive else True


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _numbers(value: Any) -> bool:
    return isinstance(value, dict) and all(_number(v) for v in value.values())


def _holds(*keys: str) -> Any:
    """A check: an object with a positive number at each of ``keys`` (other keys: numbers)."""
    return lambda value: _numbers(value) and all(_number(value.get(k), positive=True) for k in keys)


def _ceilings_ok(value: Any) -> bool:
    """Numbers that :class:`pytest_moetune.ceilings.Ceilings` accepts (it checks each rate)."""
    if not (_holds("copy_bytes_per_s", "matmul_flops_per_s")(value)):
        return False
    try:
        Ceilings.from_dict(value)
    except ValueError:
        return False
    return True


FIELD_CHECKS: dict[str, tuple[Any, str]] = {
    "bytes": (_count, "a count >= 0"),
    "flops": (_count, "a count >= 0"),
    "ceilings": (_ceilings_ok, "an object of positive rates (and a matmul_warmup_s >= 0)"),
    "summary": (_holds("median_us"), "an object with a positive median_us"),
    "fraction_of_ceilings": (_numbers, "an object of numbers"),
    "throughput": (_numbers, "an object of numbers"),
    "fingerprint": (
        lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
        "an object of strings",
    ),
    "tactic": (lambda v: isinstance(v, dict), "an object"),
    "source_hash": (lambda v: isinstance(v, str), "a string"),
    "rounds_us": (
        lambda v: isinstance(v, list) and len(v) >= 2 and all(_number(r, positive=True) for r in v),
        "a list of >= 2 positive times",
    ),
    # optional fields
    "card": (lambda v: isinstance(v, str), "a string"),
    "dtype": (lambda v: isinstance(v, str), "a string"),
    "peer_median_us": (lambda v: _number(v, positive=True), "a positive time"),
    "routing": (lambda v: isinstance(v, dict), "an object"),
}
"""Each field's check and what it must be: what the gate and ``moetune baseline`` read from it."""


def _check_entry(path: Path, case: str, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise BaselineError(f"baseline {str(path)!r}: entry {case!r} is not an object")
    missing = [f for f in ENTRY_FIELDS if f not in entry]
    if missing:
        raise BaselineError(f"baseline {str(path)!r}: entry {case!r} lacks {missing}")
    for field, (check, must_be) in FIELD_CHECKS.items():
        if field in entry and not check(entry[field]):
            raise BaselineError(
                f"baseline {str(path)!r}: entry {case!r}: {field} must be {must_be}, got "
                f"{json.dumps(entry[field])[:80]}; the file was left untouched"
            )


def read_baseline(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The validated document at ``path``, or ``None`` if there is no file.

    Raises:
        BaselineError: unreadable, not JSON, truncated, wrong shape, or a newer schema; the message
            names the file, which is left as it is.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BaselineError(
            f"baseline {str(path)!r} is not readable JSON ({err}); it was left untouched"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("schema"), int):
        raise BaselineError(f"baseline {str(path)!r} has no integer 'schema'; it was left untouched")
    if document["schema"] > SCHEMA_VERSION:
        raise BaselineError(
            f"baseline {str(path)!r} has schema {document['schema']}, newer than this pytest-moetune "
            f"reads ({SCHEMA_VERSION}): upgrade pytest-moetune"
        )
    if set(document) != {"schema", "fingerprint", "entries"} or not isinstance(document["entries"], dict):
        raise BaselineError(
            f"baseline {str(path)!r} must hold exactly schema, fingerprint and entries; it was left untouched"
        )
    if not isinstance(document["fingerprint"], dict):
        raise BaselineError(f"baseline {str(path)!r}: fingerprint must be an object")
    for case, entry in document["entries"].items():
        _check_entry(path, case, entry)
    return document


def write_baseline(
    path: str | os.PathLike[str], entries: Mapping[str, Mapping[str, Any]], fingerprint: Mapping[str, str]
) -> Path:
    """Write a whole baseline document atomically (directories created).

    The text is built and validated before the file is touched, so an error leaves the old file.
    """
    path = Path(path)
    document = {"schema": SCHEMA_VERSION, "fingerprint": dict(fingerprint), "entries": dict(entries)}
    text = dumps(document)
    for case, entry in json.loads(text)["entries"].items():
        _check_entry(path, case, entry)
    return atomic_write_text(path, text)


def baseline_file(root: str | os.PathLike[str], gpu_slug: str, module: str) -> Path:
    """``root/<gpu-slug>/<module>.json``, ``module`` a dotted rootdir-relative module path."""
    return Path(root) / gpu_slug / f"{module}.json"
