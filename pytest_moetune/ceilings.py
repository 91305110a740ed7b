"""Same-session hardware ceilings and the roofline of a case (DESIGN.md section 4).

Cross-session GPU noise is several percent; same-session noise is well under 1%. So every session
measures its ceilings first (device copy bandwidth, dense bf16 matmul rate and, on GPUs with fp8
tensor cores, the dense fp8 e4m3 matmul rate), each baseline stores them, and the gate compares times
normalized by the ceiling that bounds the case. An fp8 case's arithmetic is bounded by the fp8 rate
(1.6-1.8x the bf16 one on the H100s of BENCHMARKS.md runs 46 and 51), so its roofline uses that
rate where it was measured.

The matmul rates are timed after :data:`MATMUL_WARMUP_S` of back-to-back matmuls. A dense matmul
draws the most power a GPU has; timed in short rounds after 50 ms, as before, it ran at whatever
clock the card's power budget allowed just then: 12 measurements on one H200, after idling or after
load, read 671-751 bf16 TFLOP/s after 50 ms and 653-676 after 2 s (BENCHMARKS.md, session 20, run
96), and committed baselines held such 750s. Each measurement records its warm-up
(``matmul_warmup_s``; entries from before hold none and read as the old 50 ms), and two sessions'
matmul rates normalize each other only when measured the same way (:func:`normalize_rounds`).
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import asdict, dataclass
from typing import Any

from pytest_moetune.models import ModelShape

COPY = "copy"
MATMUL = "matmul"
FP8_MATMUL = "fp8_matmul"
FP8_DTYPE = "fp8_w8a8"
BYTES_PER_ELEMENT = {"bf16": 2, "fp16": 2, "fp8_w8a8": 1}
MATMUL_WARMUP_S = 2.0
"""Seconds of back-to-back matmuls before the matmul rates are timed: the sustained rate, not a
boosted burst."""
BURST_WARMUP_S = 0.05
"""The warm-up of the matmul rates measured before :data:`MATMUL_WARMUP_S` (what an entry without
``matmul_warmup_s`` was measured with)."""
COPY_WARMUP_S = 0.05
"""Seconds of copies before the copy rate is timed (a copy draws little power: no sustained warm-up)."""


@dataclass(frozen=True)
class Ceilings:
    """Measured rates: bytes/s of a device copy (read + write), FLOP/s of a dense bf16 matmul and,
    where the GPU has fp8 tensor cores and it was measured, of a dense fp8 e4m3 matmul (``None``
    otherwise: baselines written before it was measured have none); ``matmul_warmup_s``: the seconds
    of matmuls run before the matmul rates were timed."""

    copy_bytes_per_s: float
    matmul_flops_per_s: float
    copy_rounds_us: tuple[float, ...] = ()
    matmul_rounds_us: tuple[float, ...] = ()
    fp8_matmul_flops_per_s: float | None = None
    fp8_matmul_rounds_us: tuple[float, ...] = ()
    matmul_warmup_s: float = BURST_WARMUP_S

    def __post_init__(self) -> None:
        if not (self.copy_bytes_per_s > 0 and self.matmul_flops_per_s > 0):
            raise ValueError(
                f"ceilings must be positive, got {self.copy_bytes_per_s}, {self.matmul_flops_per_s}"
            )
        if self.fp8_matmul_flops_per_s is not None and not self.fp8_matmul_flops_per_s > 0:
            raise ValueError(f"the fp8 matmul ceiling must be positive, got {self.fp8_matmul_flops_per_s}")
        if not self.matmul_warmup_s >= 0:
            raise ValueError(f"the matmul warm-up must be >= 0 s, got {self.matmul_warmup_s}")

    def rate(self, regime: str) -> float:
        """The rate bounding ``regime``: bytes/s for ``copy``, FLOP/s for ``matmul`` and
        ``fp8_matmul`` (the bf16 rate where no fp8 rate was measured)."""
        if regime == COPY:
            return self.copy_bytes_per_s
        if regime == FP8_MATMUL and self.fp8_matmul_flops_per_s is not None:
            return self.fp8_matmul_flops_per_s
        return self.matmul_flops_per_s

    def rates(self) -> dict[str, float]:
        """The measured rates and the matmul warm-up under their ``to_dict`` names (what a baseline
        entry stores)."""
        out = {"copy_bytes_per_s": self.copy_bytes_per_s, "matmul_flops_per_s": self.matmul_flops_per_s}
        if self.fp8_matmul_flops_per_s is not None:
            out["fp8_matmul_flops_per_s"] = self.fp8_matmul_flops_per_s
        out["matmul_warmup_s"] = self.matmul_warmup_s
        return out

    def matmul_comparable(self, other: Ceilings) -> bool:
        """Whether the two sessions' matmul rates were measured the same way (the same warm-up)."""
        return math.isclose(self.matmul_warmup_s, other.matmul_warmup_s)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("copy_rounds_us", "matmul_rounds_us", "fp8_matmul_rounds_us"):
            data[name] = list(data[name])
        if self.fp8_matmul_flops_per_s is None:
            del data["fp8_matmul_flops_per_s"], data["fp8_matmul_rounds_us"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ceilings:
        fp8 = data.get("fp8_matmul_flops_per_s")
        return cls(
            float(data["copy_bytes_per_s"]),
            float(data["matmul_flops_per_s"]),
            tuple(data.get("copy_rounds_us", ())),
            tuple(data.get("matmul_rounds_us", ())),
            None if fp8 is None else float(fp8),
            tuple(data.get("fp8_matmul_rounds_us", ())),
            float(data.get("matmul_warmup_s", BURST_WARMUP_S)),
        )


def measure_ceilings(
    rounds: int = 5,
    copy_bytes: int = 1 << 30,
    matmul_size: int = 8192,
    matmul_warmup_s: float = MATMUL_WARMUP_S,
) -> Ceilings:
    """Time a ``copy_bytes`` device-to-device copy and a ``matmul_size``^3 bf16 matmul on random data,
    ``rounds`` rounds each, by CUDA-graph replay; on GPUs with fp8 tensor cores (compute capability
    8.9 and up) also a ``matmul_size``^3 e4m3 matmul (``torch._scaled_mm``, per-tensor scales, bf16
    out). Each matmul runs back to back for ``matmul_warmup_s`` before its rounds (the copy for 50
    ms). The timer stops a warm-up after 1000 replays of a round (about 5 ms, at most 20 matmuls), so
    a ``matmul_size`` far below the default 8192 warms up for less than asked. Takes about
    ``2 * matmul_warmup_s`` plus a second on an H100."""
    import torch

    from pytest_moetune.timing import CudaGraphTimer

    def timer(warmup_s: float) -> CudaGraphTimer:
        return CudaGraphTimer(rounds=rounds, target_round_us=5000.0, max_calls=20, warmup_us=warmup_s * 1e6)

    def time_copy() -> Any:
        src = torch.randn(copy_bytes // 2, device="cuda", dtype=torch.bfloat16)
        dst = torch.empty_like(src)
        # An elementwise kernel (16-byte loads/stores), not copy_: a memcpy node inside a CUDA graph
        # reaches only ~2.4 TB/s on an H100, against ~3.0 TB/s for a kernel (BENCHMARKS.md).
        return timer(COPY_WARMUP_S).measure([lambda: torch.neg(src, out=dst)])

    def time_matmul() -> Any:
        a = torch.randn(matmul_size, matmul_size, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(matmul_size, matmul_size, device="cuda", dtype=torch.bfloat16)
        return timer(matmul_warmup_s).measure([lambda: a @ b])

    def time_fp8_matmul() -> Any:
        a = torch.randn(matmul_size, matmul_size, device="cuda").to(torch.float8_e4m3fn)
        b = torch.randn(matmul_size, matmul_size, device="cuda").to(torch.float8_e4m3fn)
        one = torch.ones((), device="cuda")
        # _scaled_mm wants B column-major: b.t() of a row-major (N, K) tensor
        return timer(matmul_warmup_s).measure(
            [lambda: torch._scaled_mm(a, b.t(), one, one, out_dtype=torch.bfloat16)]
        )

    copy, mm = time_copy(), time_matmul()
    fp8 = None
    if torch.cuda.get_device_capability() >= (8, 9):
        try:
            fp8 = time_fp8_matmul()
        except RuntimeError as err:  # e.g. a ROCm GPU whose fp8 is another format: no fp8 ceiling
            warnings.warn(f"no fp8 matmul ceiling (fp8 cases use the bf16 rate): {err}", stacklevel=2)
    torch.cuda.empty_cache()
    flops = 2 * matmul_size**3
    return Ceilings(
        copy_bytes_per_s=2 * copy_bytes / (statistics.median(copy.rounds_us) * 1e-6),
        matmul_flops_per_s=flops / (statistics.median(mm.rounds_us) * 1e-6),
        copy_rounds_us=copy.rounds_us,
        matmul_rounds_us=mm.rounds_us,
        fp8_matmul_flops_per_s=None if fp8 is None else flops / (statistics.median(fp8.rounds_us) * 1e-6),
        fp8_matmul_rounds_us=() if fp8 is None else fp8.rounds_us,
        matmul_warmup_s=matmul_warmup_s,
    )


@dataclass(frozen=True)
class Roofline:
    """The least work of a case: FLOPs of both expert GEMMs and the bytes they must move; ``fp8``:
    the GEMMs run on fp8 tensor cores, so the fp8 matmul rate bounds their FLOPs."""

    flops: int
    bytes: int
    fp8: bool = False

    @property
    def mma_regime(self) -> str:
        return FP8_MATMUL if self.fp8 else MATMUL

    def floor_us(self, ceilings: Ceilings) -> float:
        return max(self.bytes / ceilings.rate(COPY), self.flops / ceilings.rate(self.mma_regime)) * 1e6

    def regime(self, ceilings: Ceilings) -> str:
        """``copy`` when moving bytes bounds the case, else ``matmul`` (``fp8_matmul`` for fp8)."""
        memory = self.bytes / ceilings.rate(COPY)
        return COPY if memory >= self.flops / ceilings.rate(self.mma_regime) else self.mma_regime


def case_roofline(
    model: ModelShape, dtype: str, num_tokens: int, local_slots: int, local_experts_touched: int
) -> Roofline:
    """FLOPs ``2*R*H*2I + 2*R*I*H`` for ``R`` routed local slots; bytes: the weights of every local
    expert with at least one row, plus the activations in and out (ANCHORS.md)."""
    elem = BYTES_PER_ELEMENT[dtype]
    weights = local_experts_touched * model.expert_weight_elements() * elem
    activations = num_tokens * model.hidden * (elem + 2)  # read x, write a 16-bit output
    return Roofline(flops=model.flops(local_slots), bytes=weights + activations, fp8=dtype == FP8_DTYPE)


def normalize_rounds(
    rounds_us: list[float] | tuple[float, ...], now: Ceilings, then: Ceilings, regime: str
) -> list[float]:
    """Express this session's times in the baseline session's hardware: a case bound by copy
    bandwidth that ran on a 3% slower card is sped up by 3% (``t * rate_now / rate_then``). Both
    sessions must use the same kind of ceiling, so an ``fp8_matmul`` case falls back to the bf16
    rate when either session has no fp8 rate, and a matmul-bound case keeps its raw times when the
    two sessions timed their matmul rates after different warm-ups (:meth:`Ceilings.matmul_comparable`:
    a sustained rate against a burst one would shift every such case by the card's boost)."""
    if not normalizes(now, then, regime):
        return list(rounds_us)
    if regime == FP8_MATMUL and None in (now.fp8_matmul_flops_per_s, then.fp8_matmul_flops_per_s):
        regime = MATMUL
    scale = now.rate(regime) / then.rate(regime)
    return [r * scale for r in rounds_us]


def normalizes(now: Ceilings, then: Ceilings, regime: str) -> bool:
    """Whether :func:`normalize_rounds` scales a case of ``regime`` by these two sessions' ceilings:
    always for a copy-bound case, for a matmul-bound one only when both timed their matmul rates
    after the same warm-up."""
    return regime == COPY or now.matmul_comparable(then)
