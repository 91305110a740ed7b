"""``benchmarks/tma_store_wait_ptx.py``: under Triton 3.6 Gluon's ``tma.store_wait`` in the 16-bit Gluon
down lowers to ``cp.async.bulk.wait_group.read`` only (the stores' shared-memory sources read, not
their global writes done), the fact BENCHMARKS.md's note on a fused top-k combine rests on. A later
Triton that lowers it otherwise fails here: then that note needs a new look.

Compile only (no GPU), in a child Python without ``TRITON_INTERPRET`` (the ``gluon_child`` fixture).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.tma_store_wait_ptx import bulk_async_ops

CHILD = """
import json
from kernels.gluon_support import HAS_GLUON
out = {"has_gluon": HAS_GLUON}
if HAS_GLUON:
    from benchmarks.gluon_fp8_down import Variant, compile_gluon_down
    from benchmarks.tma_store_wait_ptx import bulk_async_ops
    ptx = compile_gluon_down(Variant(128, 128, 8, 4), block_scale=False).asm["ptx"]
    out["ops"] = dict(bulk_async_ops(ptx))
print(json.dumps(out))
"""


def test_counts_each_bulk_async_instruction() -> None:
    ptx = """
        cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%rd1, {%r1, %r2}], [%r3];
        cp.async.bulk.commit_group;
        cp.async.bulk.wait_group.read 0;
        cp.async.bulk.wait_group 1;
        fence.proxy.async.shared::cta;
        cp.async.bulk.wait_group.read 0;
    """
    assert bulk_async_ops(ptx) == {
        "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group": 1,
        "cp.async.bulk.commit_group": 1,
        "cp.async.bulk.wait_group.read": 2,
        "cp.async.bulk.wait_group": 1,
        "fence.proxy.async.shared::cta": 1,
    }


def test_the_gluon_downs_store_wait_only_frees_shared_memory(
    gluon_child: Callable[[str], dict[str, Any]],
) -> None:
    pytest.importorskip("triton")
    ops = gluon_child(CHILD)["ops"]  # the fixture skips, saying why, where Triton has no Gluon
    assert ops.get("cp.async.bulk.wait_group.read", 0) >= 1
    assert "cp.async.bulk.wait_group" not in ops
    assert any(op.startswith("cp.async.bulk.tensor.2d.global.shared::cta") for op in ops)
