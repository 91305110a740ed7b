"""The kernel-source hash that keys tuning caches and flags baselines: code only, no prose.

A baseline records the hash of the kernel sources it was measured with, and the gate flags a case
whose kernels changed since; the tuner re-tunes when the hash moves. Docstrings and comments decide
neither speed nor results, so they are left out: a documentation fix does not invalidate the
committed baselines (a full re-baseline is ~8 minutes of H100 time). Everything else counts, blank
lines and layout included, so the text transformation is simple and the same on every Python
version: the lines of each docstring (and of any other bare string statement) are dropped, each
comment is cut from its line, and trailing blanks and empty lines go.
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from pathlib import Path

SOURCES = (
    "align.py", "fused_moe.py", "quant.py", "row_gather.py", "tactics.py", "pdl.py",
    "gluon_support.py", "gluon_common.py", "gluon_gate_up.py", "gluon_gate_up_ws.py", "gluon_gate_up_dual.py",
    "gluon_down.py",
)  # fmt: skip
"""The files of this package whose code decides the layer's speed and results."""

SPACE_SOURCES = ("runner.py",)
"""The files whose code decides what the tuner times but not the layer's speed or results: the
runner's tactic space (sized by the routed slots), default and inputs. They key tuning caches
(:func:`space_hash`), not baselines."""


def code_text(source: str) -> str:
    """``source`` (Python) without docstrings, other bare string statements, comments and empty
    lines. ``SyntaxError`` if it does not parse. Bare strings are whole lines in this code base
    (a docstring is never on its ``def`` line); one that shares a line with code is an error."""
    lines = source.splitlines()
    dropped: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):  # fmt: skip
            continue
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        before = lines[first].encode()[: node.col_offset]  # ast offsets count UTF-8 bytes
        after = lines[last].encode()[node.end_col_offset or 0 :]
        if before.strip() or (after.strip() and not after.strip().startswith(b"#")):
            raise ValueError(f"line {node.lineno}: a bare string shares its line with code")
        dropped.update(range(first, last + 1))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    kept = (line.rstrip() for i, line in enumerate(lines) if i not in dropped)
    return "\n".join(line for line in kept if line) + "\n"


def _code_hash(names: tuple[str, ...], folder: Path | None) -> str:
    """sha256 (first 16 hex digits) of the code of ``names`` in ``folder`` (this package's by
    default), each file through :func:`code_text`."""
    folder = folder or Path(__file__).parent
    digest = hashlib.sha256()
    for name in names:
        digest.update(code_text((folder / name).read_text()).encode())
    return digest.hexdigest()[:16]


def source_hash(folder: Path | None = None) -> str:
    """The kernels' hash: the code of :data:`SOURCES` (baselines record it; caches are keyed on it)."""
    return _code_hash(SOURCES, folder)


def space_hash(folder: Path | None = None) -> str:
    """The tactic space's hash: the code of :data:`SPACE_SOURCES` (caches are keyed on it, so a
    change in how the runner builds its tactic space re-tunes; baselines do not record it)."""
    return _code_hash(SPACE_SOURCES, folder)
