"""``benchmarks/down_epilogue_probe.py``'s copy of the Gluon down compiles to its own kernel, as it claims:
every wgmma of the committed down is there (the accumulator stays live behind the never-taken
epilogue), and the cubin differs (not the committed kernel from a shared compile cache), for the bf16
128 x 256 tile and the fp8 128 x 128 one.

Compile only; the times are measured on the GPU. The compiles run in a child Python without
``TRITON_INTERPRET`` (the ``gluon_child`` fixture).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("triton")

CHILD = r"""
import hashlib, json
from kernels.gluon_support import HAS_GLUON
out = {"has_gluon": HAS_GLUON}
if HAS_GLUON:
    import kernels.gluon_down as gluon_down
    import benchmarks.gluon_fp8_down as down
    from benchmarks.down_epilogue_probe import _epilogue_never
    from benchmarks.fp8_gate_up_probe import _module_copy
    probe = _module_copy(gluon_down, "no_epilogue")
    probe._down_epilogue = _epilogue_never
    for dtype, variant, block_scale in (("bf16", down.Variant(128, 256, 8, 3), False),
                                        ("fp8", down.Variant(128, 128, 8, 5), True)):
        kernels = {"committed": gluon_down._gluon_down_kernel, "probe": probe._gluon_down_kernel}
        for name, kernel in kernels.items():
            down._gluon_down_kernel = kernel
            compiled = down.compile_gluon_down(variant, block_scale=block_scale)
            ptx = compiled.asm["ptx"]
            out[f"{dtype}-{name}"] = {"cubin": hashlib.sha1(compiled.asm["cubin"]).hexdigest(),
                                      "wgmma": ptx.count("wgmma.mma_async")}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled(gluon_child: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return gluon_child(CHILD)


@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_the_probe_keeps_every_wgmma_in_its_own_kernel(compiled: dict[str, Any], dtype: str) -> None:
    committed, probe = compiled[f"{dtype}-committed"], compiled[f"{dtype}-probe"]
    assert probe["cubin"] != committed["cubin"]
    assert probe["wgmma"] == committed["wgmma"] > 0, (probe, committed)
