"""Summarize Nsight Compute's per-SASS-line source page: where one kernel's warps stall, and on what.

    python3 benchmarks/ncu_summary.py PROFILE-sass.csv.gz [...] [--top 20]

Input: ``ncu --import REPORT.ncu-rep --page source --csv --print-source sass`` (gzip or plain), as
``benchmarks/gpu_profile.sh`` writes it: a kernel-name line, a header line, then one row per SASS
instruction with its warp-stall samples (all, and per reason in ``stall_*`` columns) and how many
times it executed. Prints, per file:

- the stall reasons' shares of all samples (``selected`` is a warp issuing, not a stall);
- per opcode (``FFMA``, ``BAR``, ``QGMMA``, ...): its share of the samples and of the executed warp
  instructions;
- the ``--top`` lines with the most samples and their two main reasons.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_PREDICATE = re.compile(r"^@!?U?P\w+\s+")


@dataclass
class SassLine:
    """One SASS instruction of the source page."""

    address: str
    source: str
    samples: int
    executed: int
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def opcode(self) -> str:
        """The mnemonic without predicate and modifiers: ``@!P0 BRA ...`` -> ``BRA``."""
        text = _PREDICATE.sub("", self.source.strip())
        return text.split()[0].split(".")[0] if text else "?"


def read_sass_csv(path: Path) -> tuple[str, list[SassLine]]:
    """The kernel name and the instruction rows of one source-page CSV (``.gz`` or plain text)."""
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2 or not rows[0] or rows[0][0] != "Kernel Name":
        raise ValueError(f"{path}: not an ncu source-page CSV (first line {rows[0][:2] if rows else []!r})")
    header = rows[1]
    try:
        i_source = header.index("Source")
        i_samples = header.index("Warp Stall Sampling (All Samples)")
        i_executed = header.index("Instructions Executed")
    except ValueError as exc:
        raise ValueError(f"{path}: missing column ({exc}); written with --print-source sass?") from None
    reason_cols = [(i, h) for i, h in enumerate(header) if h.startswith("stall_") and "Not Issued" not in h]

    def number(row: list[str], i: int) -> int:
        return int(row[i] or 0) if i < len(row) else 0

    lines = []
    for row in rows[2:]:
        if len(row) > i_source:
            reasons = {name: number(row, i) for i, name in reason_cols}
            counts = number(row, i_samples), number(row, i_executed)
            lines.append(SassLine(row[0], row[i_source], *counts, reasons))
    return rows[0][1], lines


def summarize(lines: list[SassLine], top: int = 20) -> str:
    """The three tables of the module docstring as text."""
    samples = sum(line.samples for line in lines) or 1
    executed = sum(line.executed for line in lines) or 1
    reasons: Counter[str] = Counter()
    by_op_samples: Counter[str] = Counter()
    by_op_executed: Counter[str] = Counter()
    for line in lines:
        reasons.update(line.reasons)
        by_op_samples[line.opcode] += line.samples
        by_op_executed[line.opcode] += line.executed
    out = [f"{samples} samples, {executed} warp instructions executed", "stall reasons (% of samples):"]
    out += [f"  {name:28s} {100 * n / samples:5.1f}%" for name, n in reasons.most_common(12) if n]
    out.append("opcodes (% of samples, % of executed warp instructions):")
    out += [f"  {op:14s} {100 * n / samples:5.1f}%  {100 * by_op_executed[op] / executed:5.1f}%"
            for op, n in by_op_samples.most_common(15)]  # fmt: skip
    out.append(f"top {top} lines (% of samples, address, instruction, main reasons):")
    for line in sorted(lines, key=lambda x: -x.samples)[:top]:
        main = ", ".join(f"{name} {n}" for name, n in Counter(line.reasons).most_common(2) if n)
        share = 100 * line.samples / samples
        out.append(f"  {share:5.1f}% {line.address[-6:]} {line.source.strip()[:60]:60s} {main}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path, help="ncu source-page CSVs (.csv or .csv.gz)")
    parser.add_argument("--top", type=int, default=20, help="hottest lines to list (default 20)")
    args = parser.parse_args()
    if args.top < 0:
        parser.error(f"--top must be >= 0, got {args.top}")
    for path in args.files:
        name, lines = read_sass_csv(path)
        print(f"== {path.name}: {name}")
        print(summarize(lines, args.top))


if __name__ == "__main__":
    main()
