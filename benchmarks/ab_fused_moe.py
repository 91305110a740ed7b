"""Same-session A/B of two revisions of ``kernels.fused_moe`` on qwen3-235b-a22b DEP2 bf16.

    bash benchmarks/make_kernels_rev.sh OLD_REV                    # writes .ab/kernels_old
    PYTHONPATH=. python3 benchmarks/ab_fused_moe.py TUNED.json    # on the device, carry [".ab"]

``TUNED.json`` is a ``bench_tuner.py`` result; its tuned tactic per bucket is what gets timed. Old and
new run on the same inputs, interleaved, 3 x 7 rounds each by CUDA-graph replay; prints the medians
and new/old per token count.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from functools import partial

import torch

sys.path.insert(0, ".ab")

from kernels_old import fused_moe as old_fused_moe
from kernels_old.tactics import Tactic as OldTactic

from kernels import fused_moe as new_fused_moe
from kernels.tactics import Tactic
from pytest_moetune import Topology, dummy_topk, get_model
from pytest_moetune.timing import CudaGraphTimer


def main(tuned_path: str, token_counts: tuple[int, ...] = (64, 2048, 4096)) -> None:
    with open(tuned_path) as handle:
        tuned = {b["bucket"]: b["tactic"] for b in json.load(handle)["buckets"]}
    model = get_model("qwen3-235b-a22b")
    topology = Topology.parse("dep2", model.num_experts, model.top_k)
    local, hidden, inter = topology.local_num_experts, model.hidden, model.intermediate
    w1 = torch.randn(local, 2 * inter, hidden, device="cuda", dtype=torch.bfloat16) / hidden**0.5
    w2 = torch.randn(local, hidden, inter, device="cuda", dtype=torch.bfloat16) / inter**0.5
    timer = CudaGraphTimer(rounds=7, warmup_us=50_000)
    for tokens in token_counts:
        ids, weights = dummy_topk(tokens, topology, "balanced", device="cuda")
        x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16)
        variants: dict[str, Callable[[], object]] = {
            "old": partial(old_fused_moe, x, w1, w2, ids, weights, tactic=OldTactic.from_dict(tuned[tokens])),
            "new": partial(new_fused_moe, x, w1, w2, ids, weights, tactic=Tactic.from_dict(tuned[tokens])),
        }
        rounds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(3):
            for name, launch in variants.items():
                rounds[name] += timer.measure([launch]).rounds_us
        medians = {name: statistics.median(r) for name, r in rounds.items()}
        print(
            tokens,
            {k: round(v, 1) for k, v in medians.items()},
            "new/old",
            round(medians["new"] / medians["old"], 4),
        )


if __name__ == "__main__":
    main(sys.argv[1])
