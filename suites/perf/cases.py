"""The gated cases of ``suites/perf`` per profile.

- ``quick`` (the CI gate): 5 model x topology x token points in bf16 and fp8 (BENCHMARKS.md, device
  run 12: 67 s on one H100 including tuning).
- ``full``: the matrix of issue 6: every ANCHORS.md model on the topologies that divide its experts
  (ep1 for the models that fit one GPU, dep2, dep8, pure ep8, and gpt-oss-120b at dep64, where
  each rank holds fewer experts than top_k), decode to prefill token counts, bf16 everywhere and
  fp8 at two points, plus random and zipf routing at one point of dep8 and ep8: 138 cases, 405 s
  on one H100 including tuning (device run 14).

Every case of both profiles has a committed H100 baseline.
"""

from __future__ import annotations

from pytest_moetune.harness import MoECase
from pytest_moetune.models import MODELS
from pytest_moetune.topology import TopologySpec

TUNE_MAX = 8192
QUICK_POINTS = [
    ("qwen3-235b-a22b", "dep2", 64),
    ("qwen3-235b-a22b", "dep2", 512),
    ("deepseek-r1", "dep8", 64),
    ("deepseek-r1", "ep8", 64),
    ("mixtral-8x7b", "ep1", 16),
]
FULL_TOPOLOGIES = ("ep1", "dep2", "dep8", "ep8")
EP1_MODELS = ("mixtral-8x7b", "qwen3-30b-a3b", "gpt-oss-120b")
"""Models whose whole weights fit one H100 (or that ANCHORS.md measures at ep1): the others run
EP1 nowhere, so gating them there would tune for traffic nobody serves."""
SKEWED_TOPOLOGIES = ("dep8", "ep8")
FULL_TOKENS = (1, 64, 1024)
FP8_TOKENS = (64, 1024)
SKEWED = ("random", "zipf:1.2")


def quick_cases() -> list[MoECase]:
    return [
        MoECase(model, topology, tokens, dtype=dtype, tune_max_num_tokens=TUNE_MAX)
        for model, topology, tokens in QUICK_POINTS
        for dtype in ("bf16", "fp8_w8a8")
    ]


def full_cases() -> list[MoECase]:
    cases = []
    for model in MODELS.values():
        topologies = [
            t
            for t in FULL_TOPOLOGIES
            if model.num_experts % TopologySpec.parse(t).ep_size == 0
            and (t != "ep1" or model.name in EP1_MODELS)
        ]
        if model.name == "gpt-oss-120b":
            topologies.append("dep64")
        for topology in topologies:
            for tokens in FULL_TOKENS:
                cases.append(MoECase(model, topology, tokens, tune_max_num_tokens=TUNE_MAX))
                if tokens in FP8_TOKENS:
                    cases.append(
                        MoECase(model, topology, tokens, dtype="fp8_w8a8", tune_max_num_tokens=TUNE_MAX)
                    )
            for distribution in SKEWED if topology in SKEWED_TOPOLOGIES else ():
                cases.append(
                    MoECase(model, topology, 1024, distribution=distribution, tune_max_num_tokens=TUNE_MAX)
                )
    return cases


def cases_for(profile: str) -> list[MoECase]:
    """The cases of ``profile`` (``quick`` or ``full``); ``full`` includes every ``quick`` case."""
    if profile == "quick":
        return quick_cases()
    if profile == "full":
        full = full_cases()
        ids = {case.id for case in full}
        return full + [case for case in quick_cases() if case.id not in ids]
    raise ValueError(f"unknown profile {profile!r}; valid: quick, full")
