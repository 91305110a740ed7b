"""``replay:<file>`` routing: round trip, DEP dispatch filtering, resampling, refused files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_moetune.routing import dummy_topk
from pytest_moetune.strategies import token_counts
from pytest_moetune.topology import Topology

EP8 = Topology.parse("ep8", num_experts=64, top_k=4)


def recorded_trace(num_rows: int, topology: Topology, seed: int = 0) -> torch.Tensor:
    """A plausible router output: top-k of random scores over all experts, ``(N, k)`` int64."""
    scores = torch.rand(num_rows, topology.num_experts, generator=torch.Generator().manual_seed(seed))
    return scores.topk(topology.top_k, dim=1).indices


def save(tmp_path: Path, ids: torch.Tensor | np.ndarray | object, suffix: str) -> Path:
    path = tmp_path / f"trace{suffix}"
    if suffix == ".npy":
        np.save(path, ids, allow_pickle=True)  # writing a pickle is how we test that reading refuses it
    else:
        torch.save(ids, path)
    return path


@pytest.mark.parametrize("suffix", [".pt", ".npy"])
def test_round_trip_pure_ep(tmp_path: Path, suffix: str) -> None:
    trace = recorded_trace(100, EP8)
    data = trace.numpy().astype(np.int32) if suffix == ".npy" else trace
    path = save(tmp_path, data, suffix)
    ids, weights = dummy_topk(100, EP8, f"replay:{path}")
    assert ids.dtype == torch.int32 and torch.equal(ids.long(), trace)
    assert bool((weights == 0.25).all())


def test_pt_dict_with_topk_ids(tmp_path: Path) -> None:
    trace = recorded_trace(10, EP8)
    path = save(tmp_path, {"topk_ids": trace, "note": "layer 3"}, ".pt")
    assert torch.equal(dummy_topk(10, EP8, f"replay:{path}")[0].long(), trace)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token_counts(max_value=700), st.integers(1, 300))
def test_resampled_rows_come_from_the_trace(tmp_path: Path, num_tokens: int, num_rows: int) -> None:
    trace = recorded_trace(num_rows, EP8, seed=num_rows)
    path = save(tmp_path, trace, ".pt")
    ids, _ = dummy_topk(num_tokens, EP8, f"replay:{path}")
    assert ids.shape == (num_tokens, 4)
    rows = {tuple(r) for r in trace.tolist()}
    assert all(tuple(r) in rows for r in ids.long().tolist())
    if num_tokens >= num_rows:  # every recorded row is used, none dropped
        assert {tuple(r) for r in ids.long().tolist()} == rows


def test_dep_keeps_only_rows_dispatched_to_the_rank(tmp_path: Path) -> None:
    dep = Topology.parse("dep8", num_experts=64, top_k=4, ep_rank=2)
    trace = recorded_trace(2000, dep)
    path = save(tmp_path, trace, ".pt")
    ids, _ = dummy_topk(500, dep, f"replay:{path}")
    lo, hi = dep.local_expert_offset, dep.local_expert_offset + dep.local_num_experts
    assert bool(((ids >= lo) & (ids < hi)).any(dim=1).all()), "a row with no local slot was delivered"


def test_dep_rank_with_no_traffic_is_an_error(tmp_path: Path) -> None:
    dep = Topology.parse("dep8", num_experts=64, top_k=4, ep_rank=7)
    path = save(tmp_path, torch.tensor([[0, 1, 2, 3]] * 5), ".pt")
    with pytest.raises(ValueError, match=r"no row with a slot on rank 7's shard \[56, 64\)"):
        dummy_topk(4, dep, f"replay:{path}")


class NotATensor:
    pass


@pytest.mark.parametrize(
    ("make", "suffix", "message"),
    [
        pytest.param(lambda: torch.tensor([[0, 1, 2]]), ".pt", r"shape \(1, 3\)", id="wrong-top-k"),
        pytest.param(lambda: torch.tensor([0, 1, 2, 3]), ".pt", r"shape \(4,\)", id="one-dimensional"),
        pytest.param(lambda: torch.zeros(0, 4, dtype=torch.long), ".pt", r"shape \(0, 4\)", id="empty"),
        pytest.param(lambda: torch.tensor([[0.0, 1, 2, 3]]), ".pt", "dtype torch.float32", id="float"),
        pytest.param(lambda: torch.tensor([[0, 1, 2, 64]]), ".pt", "expert id 64 outside", id="id-too-high"),
        pytest.param(lambda: torch.tensor([[0, 1, -2, 3]]), ".pt", "expert id -2 outside", id="id-negative"),
        pytest.param(lambda: torch.tensor([[0, 1, 2, 3], [5, 6, 5, 7]]), ".pt", "row 1 repeats", id="dup"),
        pytest.param(lambda: {"ids": torch.zeros(1, 4)}, ".pt", "holds dict", id="dict-without-key"),
        pytest.param(lambda: NotATensor(), ".pt", "weights_only=True", id="pickled-object"),
        pytest.param(lambda: np.array([[0, 1, 2, 3.5]]), ".npy", "dtype float64", id="npy-float"),
        pytest.param(
            lambda: np.array([[0, 1, 2, None]], dtype=object), ".npy", "not a readable", id="npy-pickle"
        ),
    ],
)
def test_bad_trace_files_are_refused_naming_the_file(
    tmp_path: Path, make: object, suffix: str, message: str
) -> None:
    path = save(tmp_path, make(), suffix)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message) as err:
        dummy_topk(4, EP8, f"replay:{path}")
    assert str(path) in str(err.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_in_pt_never_executes(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (marker.write_text, ("ran",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ValueError, match="weights_only=True"):
        dummy_topk(4, EP8, f"replay:{path}")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [("trace.json", "only .pt and .npy traces are read"), ("missing.npy", "does not exist")],
)
def test_refused_paths(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text("[[0, 1, 2, 3]]")
    with pytest.raises(ValueError, match=message):
        dummy_topk(4, EP8, f"replay:{path}")
