#!/usr/bin/env python3
"""What Gluon's ``tma.store_wait`` waits for, read off the 16-bit Gluon down's PTX (no GPU).

    env -u TRITON_INTERPRET PYTHONPATH=. python3 benchmarks/tma_store_wait_ptx.py

Compiles ``kernels.gluon_down`` for sm_90a (the 128 x 128 4-stage tile, bf16, as
``benchmarks/gluon_fp8_down.compile_gluon_down`` specializes it) and prints each distinct bulk-async
wait, commit, store and fence instruction with its count. ``cp.async.bulk.wait_group.read N`` only
waits until the stores' shared-memory sources have been read, so the tile may be reused; it says
nothing about the global writes being done or visible to other CTAs. A scheme in which one CTA
reads rows another CTA stored by TMA in the same launch (a "last arriver sums" top-k combine in the
down's epilogue) would need ``cp.async.bulk.wait_group N`` without ``.read``, then a fence and a
release on the counter the readers acquire.
"""

from __future__ import annotations

import re
from collections import Counter

PATTERNS = (
    r"cp\.async\.bulk\.wait_group(?:\.read)?",
    r"cp\.async\.bulk\.commit_group",
    r"cp\.async\.bulk\.tensor\.\w+\.global\.shared::cta\S*",
    r"fence\.[\w.:]+",
)


def bulk_async_ops(ptx: str) -> Counter[str]:
    """Count each distinct bulk-async wait / commit / TMA store / fence instruction in ``ptx``."""
    return Counter(m for pattern in PATTERNS for m in re.findall(pattern, ptx))


def main() -> int:
    from benchmarks.gluon_fp8_down import Variant, compile_gluon_down  # Gluon: only for the compile

    ptx = compile_gluon_down(Variant(128, 128, 8, 4), block_scale=False).asm["ptx"]
    for op, count in sorted(bulk_async_ops(ptx).items()):
        print(f"{count:3d}  {op}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
