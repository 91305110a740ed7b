"""MoE model shapes used by the suites and the CLI (ANCHORS.md), one routed-expert layer each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """Static shape of one MoE layer's routed experts.

    Gate/up weight is ``(E, 2I, H)``, down weight ``(E, H, I)``.
    """

    name: str
    num_experts: int
    top_k: int
    hidden: int
    intermediate: int

    def __post_init__(self) -> None:
        for field in ("num_experts", "top_k", "hidden", "intermediate"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} of model {self.name!r} must be an int >= 1, got {value!r}")
        if self.top_k > self.num_experts:
            raise ValueError(
                f"top_k={self.top_k} of model {self.name!r} exceeds num_experts={self.num_experts}"
            )

    def flops(self, routed_rows: int) -> int:
        """FLOPs of both expert GEMMs for ``routed_rows`` (token, local slot) pairs."""
        return 2 * routed_rows * self.hidden * 2 * self.intermediate + (
            2 * routed_rows * self.intermediate * self.hidden
        )

    def expert_weight_elements(self) -> int:
        """Weight elements of one expert (gate/up plus down)."""
        return 3 * self.intermediate * self.hidden


MODELS: dict[str, ModelShape] = {
    m.name: m
    for m in (
        ModelShape("mixtral-8x7b", 8, 2, 4096, 14336),
        ModelShape("qwen3-30b-a3b", 128, 8, 2048, 768),
        ModelShape("qwen3-235b-a22b", 128, 8, 4096, 1536),
        ModelShape("deepseek-r1", 256, 8, 7168, 2048),
        ModelShape("gpt-oss-120b", 128, 4, 2880, 2880),
        ModelShape("qwen3-next-80b", 512, 10, 2048, 512),
    )
}


def get_model(name: str) -> ModelShape:
    """The ANCHORS.md model called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
