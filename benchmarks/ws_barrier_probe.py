"""Where the warp-specialized K loop's CTA barrier comes from: offline sm_90a compiles (no GPU).

    env -u TRITON_INTERPRET PYTHONPATH=. python3 benchmarks/ws_barrier_probe.py

The math warps' K loop of the Gluon down (``kernels/gluon_down.py``, here the 16-bit 128 x 256 tile
on 8 warps) holds one ``BAR.SYNC`` of the 256 math threads per K block. This compiles the kernel
four times, with the loop's ring-barrier operations removed one by one (the variants are not
correct programs, only probes of the compiler), and prints the barriers left in the K loop (the
shortest SASS loop with the tile's four wgmmas per warp):

- ``as committed``: the wait on ``ready[slot]`` and the per-thread release of ``empty[slot]``;
- ``no release``: the wait only;
- ``no wait``: the release only;
- ``neither``.

Triton 3.6's shared-memory barrier pass (Membar) sees every ``mbarrier`` wait and arrive as a read
and write of its barrier array, and its NVIDIA filter keeps a CTA barrier between two waits on
overlapping barrier memory ("a warp must not get ahead in a chain of mbarrier waits"); the
releases are writes to one array. Both arrays are indexed by a runtime slot, so each K block's wait
and release conflict with the previous block's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, warpgroup_mma

import kernels.gluon_down as gluon_down
from benchmarks import sass_loop
from benchmarks.gluon_fp8_down import Variant, compile_gluon_down

TILE = Variant(128, 256, 8, 3)
WGMMAS_PER_K_BLOCK = 4  # per warp: a 64 x 256 slice, K 64 in steps of 16


@gluon.jit
def _issue_without_wait(a_bufs, b_bufs, ready, f, spare, NUM_STAGES: gl.constexpr, USE_ACC: gl.constexpr,
                        FENCE: gl.constexpr = False):  # fmt: skip
    slot = f % NUM_STAGES
    return warpgroup_mma(a_bufs.index(slot), b_bufs.index(slot).permute((1, 0)), spare, use_acc=USE_ACC,
                         is_async=True)  # fmt: skip


@gluon.jit
def _issue_with_wait(a_bufs, b_bufs, ready, f, spare, NUM_STAGES: gl.constexpr, USE_ACC: gl.constexpr,
                     FENCE: gl.constexpr = False):  # fmt: skip
    slot = f % NUM_STAGES
    mbarrier.wait(ready.index(slot), (f // NUM_STAGES) & 1)
    return warpgroup_mma(a_bufs.index(slot), b_bufs.index(slot).permute((1, 0)), spare, use_acc=USE_ACC,
                         is_async=True)  # fmt: skip


@gluon.jit
def _no_release(empty, f, NUM_STAGES: gl.constexpr):
    pass


def k_loop_barriers(issue: Any, release: Any) -> int:
    """CTA barriers in the compiled K loop with these two helpers swapped in. Call it once per
    process: Triton keys its compile cache on the kernel's dependencies as first resolved."""
    gluon_down._ws_issue, gluon_down._down_release = issue, release
    cubin = compile_gluon_down(TILE, block_scale=False).asm["cubin"]
    return sass_loop.main_loop(cubin, WGMMAS_PER_K_BLOCK).opcodes["BAR"]


VARIANTS = {
    "as committed": (_issue_with_wait, gluon_down._down_release),
    "no release": (_issue_with_wait, _no_release),
    "no wait": (_issue_without_wait, gluon_down._down_release),
    "neither": (_issue_without_wait, _no_release),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(VARIANTS), help="compile this one only (a child process)")
    args = ap.parse_args()
    if args.variant:
        print(k_loop_barriers(*VARIANTS[args.variant]))
        return
    print(f"16-bit Gluon down {TILE.block_m} x {TILE.block_n}, {TILE.num_warps} math warps: "
          "CTA barriers per K block")
    for name in VARIANTS:
        child = subprocess.run([sys.executable, __file__, "--variant", name], capture_output=True, text=True,
                               check=True)  # fmt: skip
        print(f"  {name:13s} {child.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
