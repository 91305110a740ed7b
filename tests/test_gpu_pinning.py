"""One GPU per xdist worker under --moetune."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from pytest_moetune.gpu_pinning import pin_worker, visible_gpus, xdist_workers


def test_workers_get_one_device_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # set, then removed: so monkeypatch's undo also removes what pin_worker writes (a delenv of an
    # unset variable records nothing, and the write leaked into later tests' subprocesses)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert pin_worker("gw1", 2, ["4", "5"]) == "5" and os.environ["CUDA_VISIBLE_DEVICES"] == "5"


def test_no_gpu_leaves_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pin_worker("gw0", 2, []) is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_more_workers_than_gpus_is_an_error() -> None:
    with pytest.raises(ValueError, match="3 xdist workers but 2 GPUs"):
        pin_worker("gw0", 3, ["0", "1"])


@pytest.mark.parametrize("worker_id", ["gw", "w1", "gw-1", "master"])
def test_a_worker_id_that_is_not_gwN_is_an_error(worker_id: str) -> None:
    with pytest.raises(ValueError, match=f"unexpected xdist worker id {worker_id!r}"):
        pin_worker(worker_id, 1, ["0"])


def test_xdist_workers_stagger_their_tuning_sweeps() -> None:
    """Worker gw1 of 3 starts each sweep a third of the way in; the controller and plain runs at 0."""
    from pytest_moetune.gate import _worker_stagger

    assert _worker_stagger(SimpleNamespace(workerinput={"workerid": "gw1", "workercount": 3})) == (1, 3)  # type: ignore[arg-type]
    assert _worker_stagger(SimpleNamespace()) == (0, 1)  # type: ignore[arg-type]


def test_visible_gpus_reads_the_controllers_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []


def test_xdist_workers_are_pinned_before_the_tests_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,7")
    for key in [k for k in os.environ if k.startswith("PYTEST_XDIST_")]:
        monkeypatch.delenv(key)
    pytester.makepyfile(
        """
        import os
        from pathlib import Path

        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_device(i):
            worker = os.environ["PYTEST_XDIST_WORKER"]
            Path(f"device-{worker}-{i}.txt").write_text(os.environ["CUDA_VISIBLE_DEVICES"])
        """
    )
    result = pytester.runpytest_subprocess("--moetune", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    seen = {(p.name.split("-")[1], p.read_text()) for p in pytester.path.glob("device-*.txt")}
    assert seen == {("gw0", "6"), ("gw1", "7")}
    failed = pytester.runpytest_subprocess("--moetune", "-n", "3", "-p", "no:cacheprovider")
    assert failed.ret == pytest.ExitCode.USAGE_ERROR  # from the controller, before any worker starts
    message = "ERROR: 3 xdist workers but 2 GPUs (6,7): use -n 2 or fewer, one GPU per worker"
    assert failed.stderr.str().strip() == message
    assert "crashed" not in failed.stdout.str()


@pytest.mark.parametrize(
    ("numprocesses", "maxprocesses", "workers"),
    [(None, None, 0), (0, None, 0), ("auto", None, 0), (2, None, 2), (8, 2, 2), (2, 8, 2)],
    ids=["no-xdist", "n0", "unresolved", "n2", "n8-max2", "n2-max8"],
)
def test_the_workers_a_run_starts_come_from_n_and_maxprocesses(
    numprocesses: object, maxprocesses: object, workers: int
) -> None:
    """What both the worker-count check and the report header count."""
    option = SimpleNamespace(numprocesses=numprocesses, maxprocesses=maxprocesses)
    assert xdist_workers(option) == workers
    assert xdist_workers(SimpleNamespace()) == 0  # xdist not installed: no such options
