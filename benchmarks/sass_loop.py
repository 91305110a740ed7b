"""The SASS of a compiled kernel's main loop, counted offline: how many instructions a warp issues per
iteration, and of which kinds.

The static count matched Nsight Compute's executed-instruction count within 5% (the wide gate/up
of branch ``next-rebaseline``, run 60: 246 executed, 235 static per K block). It is not a proxy for
speed by itself: cutting the wide gate/up's loop by 27% (470 to 345 per two K blocks) left it as
fast as before (BENCHMARKS.md, run 62); taking the x gather out of it made it 1.2x faster (run 63).
:func:`main_loop` disassembles the cubin with Triton's bundled ``nvdisasm`` and returns the innermost
backward-branch region that holds ``mma_per_iteration`` wgmmas (``QGMMA``/``HGMMA`` in SASS).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass

import triton

_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_BRANCH = re.compile(r"\bBRA\s+`?\(?(\.L_x_\d+)")
_PREDICATE = re.compile(r"^@!?U?P\w+\s+")


@dataclass(frozen=True)
class SassLoop:
    """One loop of SASS: its address range and the opcodes (mnemonic without modifiers) it holds."""

    start: int
    end: int
    opcodes: Counter[str]

    @property
    def instructions(self) -> int:
        return sum(self.opcodes.values())


def disassemble(cubin: bytes) -> str:
    """``nvdisasm -c`` (code sections only) of ``cubin``, with Triton's bundled nvdisasm."""
    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as handle:
        handle.write(cubin)
    try:
        done = subprocess.run([nvdisasm, "-c", handle.name], capture_output=True, text=True, check=True)
        return done.stdout
    finally:
        os.unlink(handle.name)


def opcode(instruction: str) -> str:
    """``@!P0 BAR.SYNC.DEFER_BLOCKING 0x0`` -> ``BAR``."""
    text = _PREDICATE.sub("", instruction.strip())
    return text.split()[0].split(".")[0] if text else "?"


def loops(sass: str) -> list[SassLoop]:
    """Every region from a label to a backward branch that targets it."""
    instructions: list[tuple[int, str]] = []
    labels: dict[str, int] = {}
    pending: list[str] = []
    for line in sass.splitlines():
        label = _LABEL.match(line)
        if label:
            pending.append(label.group(1))
            continue
        match = _INSTRUCTION.match(line)
        if match:
            address = int(match.group(1), 16)
            for name in pending:
                labels[name] = address
            pending = []
            instructions.append((address, match.group(2)))
    found = []
    for address, text in instructions:
        branch = _BRANCH.search(text)
        if branch and labels.get(branch.group(1), address + 1) <= address:
            start = labels[branch.group(1)]
            body = Counter(opcode(t) for a, t in instructions if start <= a <= address)
            found.append(SassLoop(start, address, body))
    return found


def main_loop(cubin: bytes, mma_per_iteration: int) -> SassLoop:
    """The shortest loop with exactly ``mma_per_iteration`` wgmma instructions (per warp)."""
    candidates = [
        loop for loop in loops(disassemble(cubin))
        if loop.opcodes["QGMMA"] + loop.opcodes["HGMMA"] == mma_per_iteration
    ]  # fmt: skip
    if not candidates:
        raise ValueError(f"no loop with {mma_per_iteration} wgmma instructions in this kernel")
    return min(candidates, key=lambda loop: loop.end - loop.start)
