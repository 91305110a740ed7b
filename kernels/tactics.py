"""Tactic space of the fused MoE layer: tile configs per GEMM, pruned for a problem size.

A :class:`Tactic` fixes everything the launcher needs to pick kernels: ``block_m`` (the row-block
size, shared by the alignment and both GEMMs: each expert's rows are padded to a multiple of it) and
one :class:`GemmTile` per GEMM (``gate_up``: x @ W1^T with the activation in the epilogue, ``down``:
h @ W2^T with the routing weight in the epilogue). Tactics are frozen dataclasses (hashable) and
round-trip through JSON via :meth:`Tactic.to_dict` / :meth:`Tactic.from_dict`.

Given ``block_m`` the two GEMMs are separate kernels and do not interact, so a tuner may search
``gate_up`` and ``down`` independently (coordinate-wise) instead of timing the whole product.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float8_e4m3fn": 1}
_BLOCK_M_CHOICES = (16, 32, 64, 128)
# Shared memory an H100 block may use (227 KiB), less a margin for the epilogue's scratch.
_SMEM_LIMIT = 220 * 1024
_SMEM_LIMIT_16BIT_GLUON = 227 * 1024
"""The 16-bit Gluon kernels allocate exactly their ring, staging tile and mbarriers (no compiler
scratch), so they may use a Hopper block's whole opt-in shared memory (232,448 B)."""


def _is_pow2(v: int) -> bool:
    return v > 0 and (v & (v - 1)) == 0


def _next_pow2(v: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, v))))


def _check_int(name: str, value: Any, *, lo: int, hi: int, pow2: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value} must lie in [{lo}, {hi}]")
    if pow2 and not _is_pow2(value):
        raise ValueError(f"{name}={value} must be a power of two")


@dataclass(frozen=True)
class GemmTile:
    """Tile config of one grouped GEMM.

    ``block_n``/``block_k``: output-column and reduction tile; ``group_m``: how many row blocks share
    a column tile in the launch order (L2 reuse of weight tiles); ``num_warps``/``num_stages``:
    Triton's warps per program and software-pipelining depth; ``tma``: load weight tiles (and the
    down GEMM's contiguous activation tiles) through TMA descriptors (Hopper's bulk copy engine)
    instead of per-thread pointer loads; needs 16-byte aligned rows (H and I multiples of 8 in
    16-bit dtypes); ``gluon``: run the GEMM as the Hopper Gluon kernel (implies ``tma``; see
    :func:`gluon_misfit`): for fp8 block scale :mod:`kernels.gluon_gate_up` and
    :mod:`kernels.gluon_down`, which keep wgmmas in flight while they promote the previous K block;
    for 16-bit operands the down (:mod:`kernels.gluon_down` without scales, persistent and
    warp-specialized, its tiles stored by TMA) and the persistent gate/up at block_m 128
    (:mod:`kernels.gluon_gate_up_ws`: with ``sorted_x`` by TMA, without it gathering x's rows by
    ``cp.async`` in its loader warps);
    ``sorted_x`` (gate/up tiles with ``tma``): the layer first writes x's rows in the alignment's
    row order (``top_k`` rows per token instead of one: the fp8 layer quantizes straight into it,
    ``kernels.quant.quantize_fp8_groups_sorted``; the 16-bit layer copies the rows,
    ``kernels.row_gather``) and the gate/up reads them by TMA, one box per K step, instead of
    gathering rows with per-row loads; for the Gluon fp8 gate/up that ran ~1.2x faster on the H100
    (BENCHMARKS.md, run 63); ``persistent`` (Gluon gate/up tiles at block_m 128): run the gate/up as
    one persistent program per SM with a loader warpgroup (:mod:`kernels.gluon_gate_up_ws`; for fp8
    the halves schedule, the same bits), as the Gluon down always runs; without ``sorted_x`` its
    loader warps gather x's rows by ``cp.async``; ``dual`` (fp8 persistent ``sorted_x`` gate/up tiles):
    read x once per tile, both halves' h columns in one pass over K, each math warpgroup its own
    partition (:mod:`kernels.gluon_gate_up_dual`, the same bits).
    """

    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3
    tma: bool = False
    gluon: bool = False
    sorted_x: bool = False
    persistent: bool = False
    dual: bool = False

    def __post_init__(self) -> None:
        _check_int("block_n", self.block_n, lo=16, hi=256, pow2=True)
        _check_int("block_k", self.block_k, lo=16, hi=512, pow2=True)
        _check_int("group_m", self.group_m, lo=1, hi=64, pow2=False)
        _check_int("num_warps", self.num_warps, lo=1, hi=16, pow2=True)
        _check_int("num_stages", self.num_stages, lo=1, hi=8, pow2=False)
        if not isinstance(self.tma, bool):
            raise ValueError(f"tma must be a bool, got {self.tma!r}")
        if not isinstance(self.gluon, bool):
            raise ValueError(f"gluon must be a bool, got {self.gluon!r}")
        if self.gluon and not self.tma:
            raise ValueError("a gluon tile loads its weights through TMA: it needs tma=True")
        if not isinstance(self.sorted_x, bool):
            raise ValueError(f"sorted_x must be a bool, got {self.sorted_x!r}")
        if self.sorted_x and not self.tma:
            raise ValueError(f"tile n{self.block_n}k{self.block_k}w{self.num_warps}s{self.num_stages}: "
                             "sorted_x reads x's rows in the alignment's order by TMA: it needs tma=True")
        if not isinstance(self.persistent, bool):
            raise ValueError(f"persistent must be a bool, got {self.persistent!r}")
        if self.persistent and not self.gluon:
            raise ValueError(f"tile n{self.block_n}k{self.block_k}w{self.num_warps}s{self.num_stages}: "
                             "persistent is a Gluon gate/up option: it needs gluon=True")
        if not isinstance(self.dual, bool):
            raise ValueError(f"dual must be a bool, got {self.dual!r}")
        if self.dual and not (self.persistent and self.sorted_x):
            raise ValueError(f"tile n{self.block_n}k{self.block_k}w{self.num_warps}s{self.num_stages}: "
                             "dual is an option of the persistent sorted_x gate/up: it needs persistent=True "
                             "and sorted_x=True")  # fmt: skip

    @property
    def name(self) -> str:
        return (
            f"n{self.block_n}k{self.block_k}g{self.group_m}w{self.num_warps}s{self.num_stages}"
            + ("t" if self.tma else "")
            + ("G" if self.gluon else "")
            + ("S" if self.sorted_x else "")
            + ("P" if self.persistent else "")
            + ("D" if self.dual else "")
        )


@dataclass(frozen=True)
class Tactic:
    """One point of the tactic space: ``block_m`` shared with the alignment, one tile per GEMM."""

    block_m: int
    gate_up: GemmTile
    down: GemmTile

    def __post_init__(self) -> None:
        _check_int("block_m", self.block_m, lo=16, hi=256, pow2=True)
        for name in ("gate_up", "down"):
            if not isinstance(getattr(self, name), GemmTile):
                raise ValueError(f"{name} must be a GemmTile, got {getattr(self, name)!r}")
        if self.down.sorted_x:
            raise ValueError(f"down tile {self.down.name}: sorted_x is a gate_up option (the down reads "
                             "h, already in the alignment's order)")  # fmt: skip

    @property
    def name(self) -> str:
        """Short stable id, e.g. ``m16-gu_n64k128g8w4s4-dn_n64k128g8w4s4``."""
        return f"m{self.block_m}-gu_{self.gate_up.name}-dn_{self.down.name}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``Tactic.from_dict(t.to_dict()) == t``."""
        return {"block_m": self.block_m, "gate_up": asdict(self.gate_up), "down": asdict(self.down)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tactic:
        """Inverse of :meth:`to_dict`; ``ValueError`` on missing or unknown keys or bad values."""
        if not isinstance(data, dict) or set(data) != {"block_m", "gate_up", "down"}:
            raise ValueError(f"a tactic needs exactly keys block_m, gate_up, down; got {data!r}")
        tiles = {}
        for key in ("gate_up", "down"):
            sub = data[key]
            allowed = set(GemmTile.__dataclass_fields__)
            if not isinstance(sub, dict) or not set(sub) <= allowed or not {
                "block_n",
                "block_k",
            } <= set(sub):
                raise ValueError(f"tactic.{key} must be a dict with keys from {sorted(allowed)}")
            tiles[key] = GemmTile(**sub)
        return cls(block_m=data["block_m"], **tiles)


@dataclass(frozen=True)
class MoEProblem:
    """The static problem one rank runs, which is all the tactic space depends on.

    ``num_local_slots`` is the expected number of (token, slot) pairs routed to this rank's experts:
    ``T * min(top_k, L)`` under DEP (the default when ``None``), about ``T * top_k * L / E`` under
    pure EP. ``dtype`` is a torch dtype name (``"bfloat16"``, ``"float16"``, ``"float32"``).
    """

    num_tokens: int
    hidden_size: int
    intermediate_size: int
    num_local_experts: int
    top_k: int
    dtype: str = "bfloat16"
    num_local_slots: int | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "num_local_experts", "top_k"):
            _check_int(name, getattr(self, name), lo=1, hi=1 << 30, pow2=False)
        _check_int("num_tokens", self.num_tokens, lo=0, hi=1 << 30, pow2=False)
        if self.dtype not in _DTYPE_BYTES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {sorted(_DTYPE_BYTES)}")
        if self.num_local_slots is not None:
            _check_int(
                "num_local_slots",
                self.num_local_slots,
                lo=0,
                hi=self.num_tokens * self.top_k,
                pow2=False,
            )

    @property
    def local_slots(self) -> int:
        """Expected (token, slot) pairs routed to local experts."""
        if self.num_local_slots is not None:
            return self.num_local_slots
        return self.num_tokens * min(self.top_k, self.num_local_experts)

    @property
    def rows_per_expert(self) -> float:
        """Expected rows per local expert (the ``m`` of each expert's GEMM)."""
        return self.local_slots / self.num_local_experts

    @property
    def active_experts(self) -> int:
        """Expected local experts with at least one row (balanced routing)."""
        return min(self.num_local_experts, self.local_slots)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Curated per-GEMM tiles, by block_m: (block_n, block_k, num_warps, num_stages). Small block_m is the
# weight-bandwidth-bound regime (long K tiles, deep pipelines, narrow N for many programs); large
# block_m is the tensor-core-bound regime (wide tiles, 8 warps). gate_up computes two accumulators
# (gate and up) per program, so its effective N width is 2 * block_n.
_GATE_UP: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    16: ((32, 256, 4, 4), (64, 128, 4, 4), (64, 256, 4, 3), (128, 128, 4, 3)),
    32: ((32, 256, 4, 4), (64, 128, 4, 4), (64, 256, 4, 3), (128, 128, 4, 3)),
    64: ((64, 128, 4, 4), (64, 64, 4, 4), (128, 64, 8, 4), (128, 64, 4, 3)),
    128: ((64, 64, 4, 4), (128, 64, 8, 4), (128, 64, 8, 3), (64, 128, 8, 3)),
}
_DOWN: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    16: ((32, 256, 4, 4), (64, 128, 4, 4), (64, 256, 4, 3), (128, 128, 4, 3)),
    32: ((64, 128, 4, 4), (64, 256, 4, 3), (128, 128, 4, 3), (128, 64, 4, 4)),
    64: ((128, 64, 4, 4), (64, 128, 4, 4), (128, 128, 8, 3), (256, 64, 8, 3)),
    128: ((128, 64, 8, 4), (256, 64, 8, 3), (128, 128, 8, 3), (256, 64, 8, 4)),
}


# fp8 block-scale: gate_up block_n and both block_k are pinned to the 128-wide scale groups.
_GATE_UP_FP8: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    16: ((128, 128, 4, 3), (128, 128, 4, 4), (128, 128, 4, 5)),
    32: ((128, 128, 4, 3), (128, 128, 4, 4), (128, 128, 4, 5)),
    64: ((128, 128, 4, 3), (128, 128, 8, 3), (128, 128, 4, 4)),
    128: ((128, 128, 8, 3), (128, 128, 8, 4)),
}
_DOWN_FP8: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    16: ((64, 128, 4, 4), (128, 128, 4, 3), (32, 128, 4, 5)),
    32: ((64, 128, 4, 4), (128, 128, 4, 3), (128, 128, 4, 4)),
    64: ((128, 128, 4, 3), (256, 128, 8, 3), (128, 128, 8, 4)),
    128: ((128, 128, 8, 4), (256, 128, 8, 3), (256, 128, 8, 4)),
}


# Gluon fp8 tiles (kernels/gluon_gate_up.py, kernels/gluon_down.py), by block_m: (block_n, block_k,
# num_warps, num_stages), the first of each row the defaults' pick unless a rule says otherwise
# (deepseek-r1 DEP8, 4000 tokens on the H100, BENCHMARKS.md runs 36 and 45; the block_m 128 gate/up,
# "halves", runs 54 and 55: 4 stages fastest at 16384 tokens and in most layer sweeps; the
# warp-specialized down at block_m 128, H200 run 7 of session 10: 5 stages 1-3% faster than 4 at
# deepseek-r1 and qwen3-235b, 4.5% slower at mixtral, 3 the slowest; the default takes 5 stages up to
# I = 2048, _gluon_down_default). wgmma tiles are 64 rows per warpgroup, so block_m is 64 or 128.
# Left out because they spill (run 36 and the offline ptxas reports): gate/up on 4 warps, down
# 128x128 on 4 warps.
_GATE_UP_GLUON: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    64: ((128, 128, 8, 4), (128, 128, 8, 3)),
    128: ((128, 128, 8, 4), (128, 128, 8, 3)),
}
_DOWN_GLUON: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    64: ((256, 128, 8, 4), (128, 128, 4, 3)),
    128: ((128, 128, 8, 4), (128, 128, 8, 5)),
}


# 16-bit Gluon down tiles (kernels/gluon_down.py without block scales: block_k 64, one 128-byte swizzle
# row), by block_m: (block_n, block_k, num_warps, num_stages). The ring's stages and the epilogue's
# y tile share the shared memory: 128 x 256 fits 3 stages, 128 x 128 five.
_DOWN_GLUON_16BIT: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    64: ((256, 64, 8, 4), (128, 64, 4, 5)),
    128: ((256, 64, 8, 3), (128, 64, 8, 5)),
}
# The 16-bit persistent gate/up (kernels/gluon_gate_up_ws.py): 128 h columns per tile, a ring slot
# the x block and 128 gate rows then the same 128 up rows; always persistent, offered gathering x's
# rows and with sorted_x.
_GATE_UP_GLUON_16BIT: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    128: ((128, 64, 8, 4), (128, 64, 8, 3)),
}


def gluon_misfit(gemm: str, block_m: int, tile: GemmTile, hidden: int, intermediate: int,
                 dtype: str = "float8_e4m3fn") -> str | None:  # fmt: skip
    """Why the Gluon kernel cannot run ``tile`` as the ``gemm`` (``"gate_up"`` or ``"down"``) GEMM
    of a layer with this ``hidden``/``intermediate`` size at ``block_m``, or ``None`` when it can.

    The kernels have no K tail and one scale group per K step and gate/up program: H and I multiples
    of 128, block_k 128, gate/up block_n 128, down block_n 64/128/256 dividing H; block_m 64 or 128
    (one or two 64-row wgmma warpgroups), 4 or 8 warps (8 for gate/up: at block_m 64 the "wide"
    schedule gives each warpgroup one half of the h columns, at 128 the "halves" schedule one half
    of the rows); the ring needs 3 stages for gate/up (cp.async groups in flight) and 2 for down,
    and with the epilogue's buffers must fit the shared memory of an H100 block.
    Whether the device can run Gluon at all is :func:`kernels.gluon_support.gluon_unready`.

    16-bit ``dtype`` (``"bfloat16"``, ``"float16"``), no scales, block_k 64 (one 128-byte swizzle
    row): the down with block_n 64/128/256 dividing H, I a multiple of 64, block_m 64 or 128, 4 or 8
    warps; the gate/up only as a persistent tile at block_m 128 (128 h columns, 8 warps, I a
    multiple of 128, H of 64; x gathered or ``sorted_x``); 2 or more stages within the shared
    memory."""
    if gemm not in ("gate_up", "down"):
        raise ValueError(f"gemm must be 'gate_up' or 'down', got {gemm!r}")
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(_DTYPE_BYTES)}")
    if dtype != "float8_e4m3fn":
        return _gluon_misfit_16bit(gemm, block_m, tile, hidden, intermediate, dtype)
    widths = (128,) if gemm == "gate_up" else (64, 128, 256)
    min_stages = 3 if gemm == "gate_up" else 2
    if hidden % 128 or intermediate % 128:
        return f"H={hidden} and I={intermediate} must be multiples of 128"
    if block_m not in (64, 128):
        return f"block_m={block_m} must be 64 or 128"
    if tile.block_k != 128 or tile.block_n not in widths:
        return f"{gemm} tile {tile.name} needs block_k 128 and block_n in {widths}"
    if gemm == "down" and tile.sorted_x:
        return f"down tile {tile.name}: sorted_x is a gate_up option (the down reads h, already sorted)"
    if tile.persistent and block_m != 128:
        return f"{gemm} tile {tile.name} at block_m={block_m}: persistent is a block_m 128 gate_up option"
    if gemm == "down" and hidden % tile.block_n:
        return f"H={hidden} is not a multiple of the down tile's block_n={tile.block_n}"
    if tile.num_warps not in (4, 8):
        return f"num_warps={tile.num_warps} must be 4 or 8"
    if gemm == "gate_up" and tile.num_warps != 8:
        return f"gate_up needs num_warps=8 (two 64-row wgmma warpgroups), got {tile.num_warps}"
    if tile.num_stages < min_stages:
        return f"{gemm} needs num_stages >= {min_stages}, got {tile.num_stages}"
    smem = _gluon_smem_bytes(gemm, block_m, tile)
    if smem > _SMEM_LIMIT:
        return f"{gemm} with {tile.num_stages} stages needs {smem} B of shared memory (> {_SMEM_LIMIT})"
    return None


def _gluon_misfit_16bit(gemm: str, block_m: int, tile: GemmTile, hidden: int, intermediate: int,
                        dtype: str) -> str | None:  # fmt: skip
    """:func:`gluon_misfit` for 16-bit operands."""
    if dtype not in ("bfloat16", "float16"):
        return f"the Gluon kernels take fp8 or 16-bit operands, not {dtype}"
    if tile.dual:
        return f"{gemm} tile {tile.name}: dual is an fp8 gate/up option"
    if gemm == "gate_up":
        if not tile.persistent or block_m != 128:
            return (f"the 16-bit Gluon gate/up is a persistent tile at block_m 128, got "
                    f"{tile.name} at block_m={block_m}")  # fmt: skip
        if tile.block_n != 128 or tile.block_k != 64 or tile.num_warps != 8:
            return f"16-bit gate/up tile {tile.name} needs block_n 128, block_k 64 and 8 warps"
        if intermediate % 128 or hidden % 64:
            return f"H={hidden} and I={intermediate} must be multiples of 64 and 128 (no tails)"
    else:
        if intermediate % 64:
            return f"I={intermediate} must be a multiple of 64 (the 16-bit Gluon down has no K tail)"
        if block_m not in (64, 128):
            return f"block_m={block_m} must be 64 or 128"
        if tile.block_k != 64 or tile.block_n not in (64, 128, 256):
            return f"16-bit down tile {tile.name} needs block_k 64 and block_n in (64, 128, 256)"
        if tile.sorted_x or tile.persistent:
            return f"down tile {tile.name}: sorted_x and persistent are gate_up options"
        if hidden % tile.block_n:
            return f"H={hidden} is not a multiple of the down tile's block_n={tile.block_n}"
        if tile.num_warps not in (4, 8):
            return f"num_warps={tile.num_warps} must be 4 or 8"
    if tile.num_stages < 2:
        return f"{gemm} needs num_stages >= 2, got {tile.num_stages}"
    smem = _gluon_smem_bytes(gemm, block_m, tile, elem=2)
    if smem > _SMEM_LIMIT_16BIT_GLUON:
        return (f"{gemm} with {tile.num_stages} stages needs {smem} B of shared memory "
                f"(> {_SMEM_LIMIT_16BIT_GLUON})")  # fmt: skip
    return None


def _gluon_smem_bytes(gemm: str, block_m: int, tile: GemmTile, elem: int = 1) -> int:
    """Shared memory of a Gluon tile: the fp8 ring (A rows and weight rows, K = 128, per stage) and
    the epilogue's buffers. A gate/up slot holds the gate and up rows of its h columns: 256 at
    block_m 64 ("wide"), 128 at 128 ("halves": two passes of 64 h columns, the first pass's h kept
    as fp32); the gate/up's epilogue (the wide tile's layout change, the fp8 hq tile staged for its
    TMA store) reuses the drained ring (163,872 B for either block_m at 4 stages, triton 3.6),
    except in the ``persistent`` gate/up, whose ring stays live beside its two hq staging tiles
    (213,212 B at 5 stages). A ``dual`` slot holds both halves' weight rows (256) and no h waits as
    fp32: 212,992 B of ring and staging at 4 stages. The persistent down stages each y tile in shared
    memory for its TMA store (a block_m x block_n 16-bit tile: 32 KB of the 196,828 B the 5-stage
    128 x 128 down takes). ``elem``: bytes per operand element (1 for fp8, 2 for the 16-bit down,
    whose K step is 64: 128 bytes per ring row either way)."""
    if gemm == "gate_up" and elem == 2:  # the 16-bit persistent tile: one pass, h staged for TMA
        slot, stash, out = 2 * tile.block_n, 0, block_m * tile.block_n * 2
    elif gemm == "gate_up":
        slot = 2 * tile.block_n if block_m == 64 or tile.dual else tile.block_n
        stash = block_m * tile.block_n // 2 * 4 if block_m == 128 and not tile.dual else 0
        out = block_m * tile.block_n if tile.persistent else 0
    else:
        slot, stash, out = tile.block_n, 0, block_m * tile.block_n * 2
    return tile.num_stages * (block_m + slot) * tile.block_k * elem + stash + out


def _gluon_tiles(problem: MoEProblem, block_m: int, gemm: str) -> list[GemmTile]:
    """The Gluon tiles of ``gemm`` at ``block_m`` that fit ``problem``'s sizes. fp8 gate/up: the
    first (fastest) table tile also with ``sorted_x``, right after it, and at block_m 128 both also
    ``persistent`` with :data:`_PERSISTENT_GATE_UP_STAGES` stages, at the end (sorted, then
    gathering), then the sorted one ``dual`` with :data:`_DUAL_GATE_UP_STAGES`. 16-bit gate/up: each
    table tile persistent, gathering x's rows, then with ``sorted_x``."""
    fp8 = problem.dtype == "float8_e4m3fn"
    if fp8:
        table = _GATE_UP_GLUON if gemm == "gate_up" else _DOWN_GLUON
    else:
        table = _GATE_UP_GLUON_16BIT if gemm == "gate_up" else _DOWN_GLUON_16BIT
    persistent_16 = not fp8 and gemm == "gate_up"
    tiles = [GemmTile(bn, bk, 8, warps, stages, tma=True, gluon=True, sorted_x=sorted_x,
                      persistent=persistent_16)
             for bn, bk, warps, stages in table.get(block_m, ())
             for sorted_x in ((False, True) if persistent_16 else (False,))]  # fmt: skip
    if fp8 and gemm == "gate_up" and tiles:
        tiles.insert(1, replace(tiles[0], sorted_x=True))
        if block_m == 128:
            stages = _PERSISTENT_GATE_UP_STAGES
            tiles += [replace(t, persistent=True, num_stages=stages) for t in (tiles[1], tiles[0])]
            tiles.append(replace(tiles[1], persistent=True, dual=True, num_stages=_DUAL_GATE_UP_STAGES))
    h, i = problem.hidden_size, problem.intermediate_size
    return [t for t in tiles if gluon_misfit(gemm, block_m, t, h, i, problem.dtype) is None]


_SMS = 132
"""Streaming multiprocessors of an H100 SXM or H200: the default's launch-size rules count programs
against them."""

_WIDE_DECODE_GATE_UP_MIN_PROGRAMS = 64
"""At ``block_m <= 32`` the 16-bit default's gate/up is 128 x 128 with 3 stages where that launches at
least this many programs (row blocks x I / 128), else 64 x 128 with 4 stages. H200 run 73
(``benchmarks/default_ab.py``, BENCHMARKS.md), this change alone at the 42 of the full profile's bf16
cases at block_m <= 32 whose gate/up it changed: 0.977x the old default's time (geomean), 0.90x at
best, 1.018x at worst (gpt-oss-120b EP1 T = 64, where I = 2880 pads the last 128-wide column tile).
The session-16 baselines' tuner had taken this tile at 30 of 48 such cases; run 69's sweep had it 6%
slower at qwen3-30b T = 1 (8 experts x 6 column tiles = 48 programs)."""

_WIDE_DECODE_DOWN_MAX_I = 1536
"""The 16-bit default's down at ``block_m <= 32``, where the 64-wide one would launch at least two
programs per SM (so the 128-wide one launches one), is 128 x 128 with 3 stages (instead of 64 x 256)
at ``block_m = 32``, and at ``block_m = 16`` where its reduction (I) is at most this long. H200 run
73, that tile against the rule's other downs in the same rounds: 0.86-1.01x the time at the 24 cases
where it now applies; 0.99-1.03x at block_m 16 with I > 1536 (deepseek-r1, gpt-oss-120b, mixtral: no
gain); 0.98-1.21x where the 64-wide down launches fewer programs (1.08-1.21x at mixtral T = 1). Both
16-bit rules and the block_m rule together (run 74): 0.952x over the full profile's 44 bf16 cases
whose default changed, 1.022x at worst (gpt-oss-120b EP1 T = 64)."""

_FP8_DEEP_DECODE_GATE_UP_MIN_H = 4096
"""From this H (the gate/up's reduction: at least 32 K blocks of 128) the fp8 default's 128 x 128 gate/up
at ``block_m <= 32`` has 4 stages, else 3. H200 runs 80-81 (``benchmarks/default_ab.py``,
BENCHMARKS.md), 4 stages against 3 in the same rounds: 0.969x / 0.968x the layer's time (geomean) over
33 / 19 cases with H >= 4096 (mixtral, deepseek-r1, qwen3-235b; 0.89-1.03x), 1.006x / 1.008x over
43 / 23 with H < 4096 (up to 1.06x at gpt-oss-120b EP8/DEP8, H = 2880): a longer K loop amortizes the
deeper pipeline's fill. Run 82, on a third card, with the rule against the 3-stage default: 0.976x over
the 34 balanced fp8 cases it changes (T = 1 to 1024; 0.90-1.02x)."""

_SORTED_X_MIN_BLOCK_M_16BIT = 128
"""The 16-bit space offers each TMA gate/up tile also with ``sorted_x`` from this block_m (the
tensor-core-bound regime, where the gathered x rows hold the GEMM back)."""

_SORTED_X_ROWS = 256
"""Rows per expert from which the Gluon fp8 default reads x quantized into the alignment's order."""

_SORTED_X_ABOVE_ROWS_16BIT = 128
"""Above this many rows per expert (more than one block_m-128 block each) the 16-bit default's
gate/up reads x's rows copied into the alignment's order by :mod:`kernels.row_gather`."""


_GATHERING_GLUON_GATE_UP_MAX_I = 1024
"""Up to this I the 16-bit default's gate/up, where it would read x copied into the alignment's
order, is the persistent Gluon one gathering x's rows itself (no copy of x); above it, the persistent
Gluon one reading the copy. H200, run 47 of session 15 (BENCHMARKS.md), the layer with each Gluon
gate/up beside the default in the same rounds: gathering 0.917x / 0.968x the time at qwen3-30b
(I = 768) T = 4096 / 16384, but 1.01-1.06x at qwen3-235b (I = 1536), deepseek-r1 (I = 2048) and
mixtral (I = 14336), where the copy is a smaller share of the layer."""

_GATHERING_GLUON_GATE_UP_STAGES = 4
"""Ring depth of the 16-bit default's gathering Gluon gate/up (run 47: the 4-stage tile)."""

_SORTED_GLUON_GATE_UP_STAGES = 3
"""Ring depth of the 16-bit default's Gluon gate/up reading x's copy, above
:data:`_GATHERING_GLUON_GATE_UP_MAX_I`. H200 run 60 of session 16 (``benchmarks/layer_power_ab.py``,
T = 4096): against Triton's sorted gate/up in the same layer, 0.970-1.000x the time in interleaved
20 ms rounds and 0.963-0.983x sustained (the card at its 700 W cap, ~1.5 GHz) at qwen3-235b,
deepseek-r1 and mixtral; 4 stages the same within 1%. Alone it was the faster GEMM in runs 55-56."""

_PERSISTENT_GATE_UP_STAGES = 5
"""Ring depth of the persistent gate/up tile: 5 stages were level with 4 to 9% faster at the six
points of H200 run 23 (3 stages 1.25-1.36x slower): with one wgmma in flight and one being promoted,
S - 2 blocks are in the air."""

_DUAL_GATE_UP_STAGES = 4
"""Ring depth of the ``dual`` gate/up tile: its 48 KB slots fit 4 stages beside the h staging."""

_DUAL_GATE_UP_MIN_I = 8192
"""From this I the fp8 default's persistent gate/up is the ``dual`` one (x read once per tile). H200
runs 111-112 (BENCHMARKS.md, ``benchmarks/fp8_gate_up_probe.py``), the gate/up alone against the
two-pass kernel in the same rounds, T = 4096 / 16384: 0.95-0.99x the time at mixtral (I = 14336),
0.95-1.00x at qwen3-235b (I = 1536), 1.01-1.06x at deepseek-r1 (I = 2048), 1.00-1.04x at qwen3-30b
(I = 768). No I between 2048 and 14336 was measured; the tuner can pick it anywhere at block_m 128.
Run 114, the layer: 0.990x the time over the 12 balanced mixtral fp8 cases of T = 1024, 4096, 16384
(0.968-1.016x); the session-23 baselines' tuner took it at 6 cases, all T = 1024."""


def _gluon_gate_up_default(problem: MoEProblem, block_m: int) -> GemmTile:
    """The default's Gluon gate/up at ``block_m``: the fastest table tile, with ``sorted_x`` (x
    quantized into the alignment's order, read by TMA) from :data:`_SORTED_X_ROWS` rows per expert.

    H100, runs 64 and 66 (BENCHMARKS.md), the layer with each x layout in the same rounds: sorted
    5-19% faster from 256 rows per expert with I >= 1536 (deepseek-r1, qwen3-235b, mixtral), even
    (within 2%) at qwen3-30b (I=768, 256-1024 rows); the gathering kernel 2-4% faster at 64-128
    rows, where the quantization's ``top_k`` writes per token are not paid back.

    The sorted block_m 128 tile runs ``persistent``. On the H200 (BENCHMARKS.md, runs 23, 29 and 30:
    the 5-stage persistent gate/up alone against the non-persistent kernel in the same rounds) it
    took 0.85-0.92x the time at deepseek-r1 (I=2048) T=4096 and qwen3-30b (I=768) T=4096 and 16384,
    0.97-1.02x at deepseek-r1 T=16384 and 0.97-1.00x at qwen3-235b (I=1536). At mixtral (I=14336)
    runs 23 and 29 read 0.97-1.06x, so it kept the non-persistent kernel until session 22: there
    run 106 timed it alone at 0.96-0.97x (T = 4096, 16384) and run 107 the layer at 0.94-1.02x the
    time over 12 balanced mixtral cases (geomean 0.981; ep1 0.985 at T = 1024, 4096, 16384). From
    :data:`_DUAL_GATE_UP_MIN_I` it is the ``dual`` one, reading x once per tile."""
    tiles = _gluon_tiles(problem, block_m, "gate_up")
    want = problem.rows_per_expert >= _SORTED_X_ROWS
    persistent = want and block_m == 128
    dual = persistent and problem.intermediate_size >= _DUAL_GATE_UP_MIN_I
    return next(t for t in tiles if (t.sorted_x, t.persistent, t.dual) == (want, persistent, dual))


def _uses_gluon(problem: MoEProblem, gluon: bool) -> bool:
    """Gluon tiles apply: asked for, and sizes the kernels take: fp8 with H, I % 128 == 0; bf16/fp16
    (the down only) with H, I % 64 == 0."""
    if not gluon:
        return False
    h, i = problem.hidden_size, problem.intermediate_size
    if problem.dtype == "float8_e4m3fn":
        return h % 128 == 0 and i % 128 == 0
    return problem.dtype in ("bfloat16", "float16") and h % 64 == 0 and i % 64 == 0


def _smem_bytes(block_m: int, tile: GemmTile, elem: int, b_tiles: int) -> int:
    per_stage = (block_m + b_tiles * tile.block_n) * tile.block_k * elem
    return per_stage * max(1, tile.num_stages - 1) + 4096


def _clamp_tile(raw: tuple[int, int, int, int], n: int, k: int, group_m: int,
                *, pin: tuple[bool, bool] = (False, False)) -> GemmTile:
    """Tile from a table row; block_n/block_k shrink to the GEMM's size unless pinned (fp8)."""
    block_n, block_k, warps, stages = raw
    if not pin[0]:
        block_n = max(16, min(block_n, _next_pow2(n)))
    if not pin[1]:
        block_k = max(16, min(block_k, _next_pow2(k)))
    return GemmTile(block_n, block_k, group_m, warps, stages)


def _tiles_for(
    problem: MoEProblem, block_m: int, table: dict[int, tuple[tuple[int, int, int, int], ...]],
    n: int, k: int, b_tiles: int, pin: tuple[bool, bool] = (False, False),
) -> list[GemmTile]:
    elem = _DTYPE_BYTES[problem.dtype]
    # TMA pays in the tensor-core-bound regime (block_m >= 64); rows must be 16-byte aligned and
    # the box's inner extent at most one 128-byte swizzle span
    rows_aligned = (problem.hidden_size * elem) % 16 == 0 and (
        problem.intermediate_size * elem
    ) % 16 == 0
    out: list[GemmTile] = []
    for raw in table[block_m]:
        tile = _clamp_tile(raw, n, k, 8, pin=pin)
        if _smem_bytes(block_m, tile, elem, b_tiles) > _SMEM_LIMIT:
            continue
        twins = [tile]
        if block_m >= 64 and rows_aligned and tile.block_k * elem <= 128:
            twins.append(replace(tile, tma=True))
        for t in twins:
            if t not in out:
                out.append(t)
    return out


def block_m_choices(problem: MoEProblem, *, gluon: bool = False) -> list[int]:
    """Row-block sizes worth trying: up to three, the largest not above the expected rows/expert.

    fp8 stops at 64 unless the Gluon tiles apply (``gluon``, see :func:`tactics`): Triton's fp8
    gate/up at block_m=128 (two block-scaled fp32 accumulators plus the per-K-block promotion)
    spills registers and ran ~3x slower than 64 in every H100 sweep.
    """
    top = 64 if problem.dtype == "float8_e4m3fn" and not _uses_gluon(problem, gluon) else 128
    cap = min(top, max(16, _next_pow2(math.ceil(problem.rows_per_expert))))
    choices = [bm for bm in _BLOCK_M_CHOICES if bm <= cap]
    return choices[-3:]


def tactics(problem: MoEProblem, *, gluon: bool = False) -> list[Tactic]:
    """The pruned tactic space for ``problem``: every block_m choice x gate_up tiles x down tiles.

    Pruning: ``block_m`` up to the expected rows per expert (next power of two, at most 128, at
    most 3 choices); tile widths clamped to the GEMM sizes (duplicates removed); tiles whose
    pipelined shared-memory footprint exceeds an H100 block's are dropped; TMA variants only for
    ``block_m >= 64``. For ``dtype="float8_e4m3fn"`` the fp8 tables apply (gate_up block_n and
    both block_k fixed at the 128-wide scale groups). 16-bit problems also get each TMA gate/up tile
    with ``sorted_x`` from block_m :data:`_SORTED_X_MIN_BLOCK_M_16BIT`.

    ``gluon`` (the caller's device runs Gluon: :func:`kernels.gluon_support.gluon_unready` is
    ``None``) adds, for fp8 with H and I multiples of 128, the Gluon tiles at block_m 64 beside the
    Triton ones, and block_m 128 with Gluon tiles only. The two GEMMs' kernels are interchangeable
    (same h and scales), so a tactic may mix them. For bf16/fp16 with H and I multiples of 64 it
    adds the 16-bit Gluon down tiles (:data:`_DOWN_GLUON_16BIT`) at block_m 64 and 128 beside
    Triton's.
    """
    h, i = problem.hidden_size, problem.intermediate_size
    fp8 = problem.dtype == "float8_e4m3fn"
    use_gluon = _uses_gluon(problem, gluon)
    gate_up, down = (_GATE_UP_FP8, _DOWN_FP8) if fp8 else (_GATE_UP, _DOWN)
    out: list[Tactic] = []
    for bm in block_m_choices(problem, gluon=use_gluon):
        gu_tiles: list[GemmTile] = []
        dn_tiles: list[GemmTile] = []
        if not (fp8 and bm > 64):  # Triton's fp8 tiles stop at 64 (block_m_choices)
            gu_tiles = _tiles_for(problem, bm, gate_up, i, h, 2, pin=(fp8, fp8))
            dn_tiles = _tiles_for(problem, bm, down, h, i, 1, pin=(False, fp8))
            if not fp8 and bm >= _SORTED_X_MIN_BLOCK_M_16BIT:
                gu_tiles += [replace(t, sorted_x=True) for t in gu_tiles if t.tma]
        if use_gluon:
            gu_tiles += _gluon_tiles(problem, bm, "gate_up")
            dn_tiles += _gluon_tiles(problem, bm, "down")
        for gu in gu_tiles:
            for dn in dn_tiles:
                out.append(Tactic(bm, gu, dn))
    return out


_GLUON_DOWN_MIN_I = 2048
"""The smallest I (the down GEMM's K) at which the block_m 64 default takes the Gluon down."""


def _gluon_down_pays(intermediate: int) -> bool:
    """Whether the default takes the Gluon down over Triton's ``n128k128g8w4s3t`` at block_m 64,
    that is below :data:`_GLUON_BM128_ROWS` rows per expert (or with I < 768).

    The down GEMM's K is I. The H100 winners (the run-47/50 baselines and runs 46, 49, 52 in
    BENCHMARKS.md) took the Gluon down at every point with I >= 2048 (deepseek-r1, mixtral) and
    Triton's at every point with I < 1024 (qwen3-30b I=768, qwen3-next I=512) and at I=1536
    (qwen3-235b) below 512 rows per expert."""
    return intermediate >= _GLUON_DOWN_MIN_I


_GLUON_BM128_ROWS = 128
"""Rows per expert from which the Gluon fp8 default takes block_m 128 (with I >= 768)."""
_GLUON_BM128_MIN_I = 768
"""The smallest I at which the block_m 128 Gluon tiles won (qwen3-30b); qwen3-next's I=512 lost."""
_GLUON_DOWN_S5_MAX_I = 2048
"""Up to this I the block_m 128 default down runs 5 ring stages, above it 4."""


def _gluon_block_m_128_pays(intermediate: int, rows_per_expert: float) -> bool:
    """Whether the Gluon fp8 default runs block_m 128 (halves gate/up, 128 x 128 warp-specialized
    Gluon down) over block_m 64 (wide gate/up).

    H200, with the persistent warp-specialized down (BENCHMARKS.md, session 11): the full profile's
    tuner (run 11) chose block_m 128 with the Gluon down at every fp8 case with 128 to 1024 rows per
    expert and I >= 768 (deepseek-r1, mixtral, qwen3-235b, qwen3-30b), and block_m 64 with Triton's
    down at qwen3-next (I=512, 160 rows); run 12's layer timings agree (0.92-0.95x the old block_m 64
    default's time at qwen3-235b DEP2 with 128 and 512 rows and qwen3-30b EP1 with 256 and 1024).
    Before that down (H100 runs 54 and 55) block_m 128 paid only from 1024 rows with I >= 1024."""
    return intermediate >= _GLUON_BM128_MIN_I and rows_per_expert >= _GLUON_BM128_ROWS


def _gluon_down_default(problem: MoEProblem, block_m: int) -> GemmTile:
    """The default's Gluon down at ``block_m``: the table's first tile, except at block_m 128 with
    I <= :data:`_GLUON_DOWN_S5_MAX_I`, where the 5-stage ring won on the H200: the tuner's pick at all
    five such block_m 128 cases of run 11, 0.5-3.6% faster than 4 stages at deepseek-r1 (run 7's
    down alone), qwen3-235b and qwen3-30b (run 12's layer) except qwen3-235b at 2048 rows (1% slower);
    at mixtral's I=14336 run 7 had 4 stages 4.5% faster."""
    tiles = _gluon_tiles(problem, block_m, "down")
    if block_m == 128 and problem.intermediate_size <= _GLUON_DOWN_S5_MAX_I:
        return next((t for t in tiles if t.num_stages == 5), tiles[0])
    return tiles[0]


def default_tactic(problem: MoEProblem, *, gluon: bool = False) -> Tactic:
    """A good tactic without tuning: a heuristic on rows per expert and the programs it launches.

    ``block_m`` follows the expected rows per expert (balanced routing; the tuner serves skew): 16 or 32
    where one block holds them (each expert's weights read once), 64 up to 96 rows, else 128. (H200 run
    74: at 33-48 rows per expert, where block_m 32 took two blocks and read the weights twice, block_m
    64 was 0.59-0.90x the time, bf16 and fp8, at all 34 such cases tried.) In the bandwidth-bound regime
    (``block_m <= 32``) the 16-bit tiles are 128 x 128 where they launch enough programs
    (:data:`_WIDE_DECODE_GATE_UP_MIN_PROGRAMS`; the down only at short I,
    :data:`_WIDE_DECODE_DOWN_MAX_I`, or at ``block_m = 32``), else narrower ones with more programs, so
    enough weight loads are in flight; the fp8 gate/up there is 128 x 128 with 4 stages from
    :data:`_FP8_DEEP_DECODE_GATE_UP_MIN_H`, else 3; from ``block_m = 64`` the weight tiles come
    through TMA (the H100 sweeps in BENCHMARKS.md picked it there). fp8 with ``gluon`` (as in
    :func:`tactics`) takes the Gluon tiles at ``block_m = 128`` where :func:`_gluon_block_m_128_pays`,
    else the Gluon gate/up at ``block_m = 64``, and the Gluon down where :func:`_gluon_down_pays`.
    16-bit problems' gate/up reads x in the alignment's order (``sorted_x``) at ``block_m = 128`` above
    :data:`_SORTED_X_ABOVE_ROWS_16BIT` rows per expert; with ``gluon`` their down at ``block_m = 128``
    is the 16-bit Gluon down's first table tile that fits H (128 x 256 with 3 stages where H % 256 == 0,
    else 128 x 128 with 5 where H % 128 == 0), and their ``sorted_x`` gate/up is the persistent Gluon
    one, gathering x's rows itself up to :data:`_GATHERING_GLUON_GATE_UP_MAX_I`, else reading the copy
    (where the tiles fit H and I).
    On the H200 (BENCHMARKS.md, session 14, runs 39 and 41) the 128 x 256 tile gave Triton's bits in
    0.81-0.99x the time of Triton's ``n256k64g8w8s4t`` down at the issue's four cases (T = 4096,
    16384; the 128 x 128 one 0.90-1.06x), the layer up to 1.10x faster.
    """
    m = problem.rows_per_expert
    h, i = problem.hidden_size, problem.intermediate_size
    if m <= 16:
        bm = 16
    elif m <= 32:
        bm = 32
    elif m <= 96:
        bm = 64
    else:
        bm = 128
    fp8 = problem.dtype == "float8_e4m3fn"
    elem = _DTYPE_BYTES[problem.dtype]
    tma = bm >= 64 and (h * elem) % 16 == 0 and (i * elem) % 16 == 0
    blocks = max(1, problem.active_experts) * max(1, math.ceil(m / bm))
    if fp8:
        # block_m stops at 64 for Triton's fp8 tiles (they spill at 128); 8 warps for two 64x128
        # gate/up accumulators. Where Gluon applies: its gate/up, and its down (the 256-wide one when
        # H % 256 == 0) where that GEMM's K = I is long enough to pay (_gluon_down_pays); from
        # _GLUON_BM128_ROWS rows per expert with I >= 768, block_m 128 (the halves gate/up and the
        # 128 x 128 warp-specialized Gluon down), which the H200's tuner chose there.
        if _uses_gluon(problem, gluon) and _gluon_block_m_128_pays(i, m):
            return Tactic(128, _gluon_gate_up_default(problem, 128), _gluon_down_default(problem, 128))
        bm = min(bm, 64)
        tma = (h % 16 == 0) and (i % 16 == 0) and bm >= 64
        stages = 4 if bm <= 32 and h >= _FP8_DEEP_DECODE_GATE_UP_MIN_H else 3
        gu = GemmTile(128, 128, 8, 8 if bm == 64 else 4, stages, tma)
        dn = replace(_clamp_tile((128 if bm == 64 else 64, 128, 4, 3 if bm == 64 else 4), h, i, 8,
                                 pin=(False, True)), tma=tma)  # fmt: skip
        if bm == 64 and _uses_gluon(problem, gluon):
            gu = _gluon_gate_up_default(problem, bm)
            if _gluon_down_pays(i):
                dn = _gluon_down_default(problem, bm)
        return Tactic(bm, gu, dn)
    if bm <= 32:
        gu_raw, dn_raw = (64, 128, 4, 4), (64, 256, 4, 3)
        if blocks * math.ceil(i / 128) >= _WIDE_DECODE_GATE_UP_MIN_PROGRAMS:
            gu_raw = (128, 128, 4, 3)
        if blocks * math.ceil(h / 64) < 2 * _SMS:
            dn_raw = (64, 128, 4, 4)
        elif bm == 32 or i <= _WIDE_DECODE_DOWN_MAX_I:
            dn_raw = (128, 128, 4, 3)
    elif bm == 64:
        gu_raw, dn_raw = (64, 128, 4, 4), (256, 64, 8, 3)
    else:
        gu_raw, dn_raw = (128, 64, 8, 4), (256, 64, 8, 4)
    gu_t = _clamp_tile(gu_raw, i, h, 8)
    dn_t = _clamp_tile(dn_raw, h, i, 8)
    gu_tma = tma and gu_t.block_k * elem <= 128
    # H200 runs 17 and 18 (BENCHMARKS.md), the layer with each x layout in the same rounds: x copied
    # into the alignment's order is 6-14% faster from 192 rows per expert at I >= 1536 (level to 3%
    # faster at qwen3-30b's I=768); at 128 rows 3-9% slower (mixtral level), the copy not paid back.
    sorted_x = gu_tma and bm >= _SORTED_X_MIN_BLOCK_M_16BIT and m > _SORTED_X_ABOVE_ROWS_16BIT
    dn = replace(dn_t, tma=tma and dn_t.block_k * elem <= 128)
    gu = replace(gu_t, tma=gu_tma, sorted_x=sorted_x)
    if bm == 128 and _uses_gluon(problem, gluon):
        dn = next(iter(_gluon_tiles(problem, bm, "down")), dn)
        if sorted_x:  # the Gluon gate/up, gathering x's rows itself up to a small I
            gather = i <= _GATHERING_GLUON_GATE_UP_MAX_I
            stages = _GATHERING_GLUON_GATE_UP_STAGES if gather else _SORTED_GLUON_GATE_UP_STAGES
            gu = next((t for t in _gluon_tiles(problem, bm, "gate_up")
                       if t.sorted_x != gather and t.num_stages == stages), gu)  # fmt: skip
    return Tactic(bm, gu, dn)
