"""Same-session hardware ceilings and the roofline of a case (DESIGN.md section 4).

Cross-session GPU noise is several percent; same-session noise is well under 1%. So every session
measures two ceilings first (device copy bandwidth, dense bf16 matmul rate), each baseline stores
them, and the gate compares times normalized by the ceiling that bounds the case.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from pytest_moetune.models import ModelShape

COPY = "copy"
MATMUL = "matmul"
BYTES_PER_ELEMENT = {"bf16": 2, "fp16": 2, "fp8_w8a8": 1}


@dataclass(frozen=True)
class Ceilings:
    """Measured rates: bytes/s of a device copy (read + write) and FLOP/s of a dense bf16 matmul."""

    copy_bytes_per_s: float
    matmul_flops_per_s: float
    copy_rounds_us: tuple[float, ...] = ()
    matmul_rounds_us: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not (self.copy_bytes_per_s > 0 and self.matmul_flops_per_s > 0):
            raise ValueError(
                f"ceilings must be positive, got {self.copy_bytes_per_s}, {self.matmul_flops_per_s}"
            )

    def rate(self, regime: str) -> float:
        return self.copy_bytes_per_s if regime == COPY else self.matmul_flops_per_s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["copy_rounds_us"] = list(self.copy_rounds_us)
        data["matmul_rounds_us"] = list(self.matmul_rounds_us)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ceilings:
        return cls(
            float(data["copy_bytes_per_s"]),
            float(data["matmul_flops_per_s"]),
            tuple(data.get("copy_rounds_us", ())),
            tuple(data.get("matmul_rounds_us", ())),
        )


def measure_ceilings(rounds: int = 5, copy_bytes: int = 1 << 30, matmul_size: int = 8192) -> Ceilings:
    """Time a ``copy_bytes`` device-to-device copy and a ``matmul_size``^3 bf16 matmul on random data,
    ``rounds`` rounds each, by CUDA-graph replay. Takes about a second on an H100."""
    import torch

    from pytest_moetune.timing import CudaGraphTimer

    timer = CudaGraphTimer(rounds=rounds, target_round_us=5000.0, max_calls=20, warmup_us=50_000.0)

    def time_copy() -> Any:
        src = torch.randn(copy_bytes // 2, device="cuda", dtype=torch.bfloat16)
        dst = torch.empty_like(src)
        # An elementwise kernel (16-byte loads/stores), not copy_: a memcpy node inside a CUDA graph
        # reaches only ~2.4 TB/s on an H100, against ~3.0 TB/s for a kernel (BENCHMARKS.md).
        return timer.measure([lambda: torch.neg(src, out=dst)])

    def time_matmul() -> Any:
        a = torch.randn(matmul_size, matmul_size, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(matmul_size, matmul_size, device="cuda", dtype=torch.bfloat16)
        return timer.measure([lambda: a @ b])

    copy, mm = time_copy(), time_matmul()
    torch.cuda.empty_cache()
    return Ceilings(
        copy_bytes_per_s=2 * copy_bytes / (statistics.median(copy.rounds_us) * 1e-6),
        matmul_flops_per_s=2 * matmul_size**3 / (statistics.median(mm.rounds_us) * 1e-6),
        copy_rounds_us=copy.rounds_us,
        matmul_rounds_us=mm.rounds_us,
    )


@dataclass(frozen=True)
class Roofline:
    """The least work of a case: FLOPs of both expert GEMMs and the bytes they must move."""

    flops: int
    bytes: int

    def floor_us(self, ceilings: Ceilings) -> float:
        return max(self.bytes / ceilings.copy_bytes_per_s, self.flops / ceilings.matmul_flops_per_s) * 1e6

    def regime(self, ceilings: Ceilings) -> str:
        """``copy`` when moving bytes bounds the case, else ``matmul``."""
        memory = self.bytes / ceilings.copy_bytes_per_s
        return COPY if memory >= self.flops / ceilings.matmul_flops_per_s else MATMUL


def case_roofline(
    model: ModelShape, dtype: str, num_tokens: int, local_slots: int, local_experts_touched: int
) -> Roofline:
    """FLOPs ``2*R*H*2I + 2*R*I*H`` for ``R`` routed local slots; bytes: the weights of every local
    expert with at least one row, plus the activations in and out (ANCHORS.md)."""
    elem = BYTES_PER_ELEMENT[dtype]
    weights = local_experts_touched * model.expert_weight_elements() * elem
    activations = num_tokens * model.hidden * (elem + 2)  # read x, write a 16-bit output
    return Roofline(flops=model.flops(local_slots), bytes=weights + activations)


def normalize_rounds(
    rounds_us: list[float] | tuple[float, ...], now: Ceilings, then: Ceilings, regime: str
) -> list[float]:
    """Express this session's times in the baseline session's hardware: a case bound by copy
    bandwidth that ran on a 3% slower card is sped up by 3% (``t * rate_now / rate_then``)."""
    scale = now.rate(regime) / then.rate(regime)
    return [r * scale for r in rounds_us]
