"""The environment fingerprint recorded with tuning caches and baselines."""

from __future__ import annotations

import os
import stat
from importlib import metadata
from pathlib import Path

import pytest
import torch

import pytest_moetune
from pytest_moetune import fingerprint as fp_module
from pytest_moetune.fingerprint import EnvironmentFingerprint
from pytest_moetune.testing import H100_FINGERPRINT

H100 = H100_FINGERPRINT
FIELDS = ("gpu_name", "sm", "driver", "torch", "triton", "plugin")


def test_field_names_and_dict_round_trip() -> None:
    assert EnvironmentFingerprint.field_names() == FIELDS
    data = H100.to_dict()
    assert data == {
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "sm": "9.0",
        "driver": "580.82.07",
        "torch": "2.11.0+cu130",
        "triton": "3.6.0",
        "plugin": "0.1.0",
    }
    assert EnvironmentFingerprint.from_dict(data) == H100


@pytest.mark.parametrize(
    ("drop", "add", "message"),
    [
        (["torch"], {}, r"missing field\(s\) torch"),
        (["driver", "plugin"], {}, r"missing field\(s\) driver, plugin"),
        ([], {"bogus": "x"}, r"unexpected field\(s\) bogus"),
        ([], {"sm": 9.0}, r"field sm must be a string, got float 9\.0"),
    ],
)
def test_from_dict_names_the_bad_field(drop: list[str], add: dict[str, object], message: str) -> None:
    data: dict[str, object] = {key: value for key, value in H100.to_dict().items() if key not in drop}
    with pytest.raises(ValueError, match=message):
        EnvironmentFingerprint.from_dict({**data, **add})


def test_mismatches_wording_and_order() -> None:
    now = EnvironmentFingerprint(**{**H100.to_dict(), "torch": "2.13.0", "sm": "10.0"})
    assert H100.mismatches(now) == [
        "sm: 9.0 (cache) != 10.0 (now)",
        "torch: 2.11.0+cu130 (cache) != 2.13.0 (now)",
    ]
    assert H100.mismatches(H100) == []
    assert (
        H100.mismatches(now, recorded="baseline", now="this run")[0]
        == "sm: 9.0 (baseline) != 10.0 (this run)"
    )


@pytest.mark.parametrize(
    ("gpu_name", "slug"),
    [
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
        ("NVIDIA A100-SXM4-80GB", "nvidia-a100-sxm4-80gb"),
        ("NVIDIA GeForce RTX 4090", "nvidia-geforce-rtx-4090"),
        ("  NVIDIA H200 (MIG 1g.18gb) ", "nvidia-h200-mig-1g-18gb"),
        ("cpu", "cpu"),
        ("???", "unknown"),
    ],
)
def test_slug(gpu_name: str, slug: str) -> None:
    assert EnvironmentFingerprint(**{**H100.to_dict(), "gpu_name": gpu_name}).slug == slug


@pytest.fixture
def fresh_probe():
    """Clear the cached probe before and after, so a faked environment does not leak."""
    fp_module._probe.cache_clear()
    fp_module.card_id.cache_clear()
    yield
    fp_module._probe.cache_clear()
    fp_module.card_id.cache_clear()


@pytest.mark.usefixtures("fresh_probe")
def test_current_on_this_cpu_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    current = EnvironmentFingerprint.current()
    assert (current.gpu_name, current.sm, current.slug) == ("cpu", "cpu", "cpu")
    assert current.torch == torch.__version__
    assert current.triton == metadata.version("triton")
    assert current.plugin == pytest_moetune.__version__
    assert EnvironmentFingerprint.current() is current  # probed once


@pytest.mark.usefixtures("fresh_probe")
def test_current_reads_the_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: f"NVIDIA H100 80GB HBM3 #{d}")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: (9, d - 1))
    monkeypatch.setattr(fp_module, "_driver_version", lambda: "580.82.07")
    current = EnvironmentFingerprint.current()
    assert (current.gpu_name, current.sm, current.driver) == ("NVIDIA H100 80GB HBM3 #1", "9.0", "580.82.07")


@pytest.mark.usefixtures("fresh_probe")
@pytest.mark.parametrize(
    ("cuda", "uuid", "card"),
    [
        (False, None, "cpu"),
        (True, "GPU-5f1c2d3e-0000-1111-2222-333344445555", "GPU-5f1c2d3e-0000-1111-2222-333344445555"),
        (True, "5f1c2d3e-0000-1111-2222-333344445555", "GPU-5f1c2d3e-0000-1111-2222-333344445555"),
        (True, "", "unknown"),
    ],
    ids=["no-cuda", "uuid", "bare-uuid", "none-reported"],
)
def test_card_id_is_the_devices_uuid(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, uuid: str | None, card: str
) -> None:
    class Properties:
        pass

    props = Properties()
    props.uuid = uuid  # type: ignore[attr-defined]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: props)
    assert fp_module.card_id() == card


def _fake_nvidia_smi(folder: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = folder / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(folder) + os.pathsep + os.environ.get("PATH", ""))


@pytest.mark.skipif(os.name != "posix", reason="fake nvidia-smi is a shell script")
@pytest.mark.parametrize(
    ("script", "driver"),
    [
        ('[ "$1" = "--query-gpu=driver_version" ] && printf "580.82.07\\n580.82.07\\n"', "580.82.07"),
        ("exit 9", "unknown"),
        ("exec sleep 5", "unknown"),
        ("true", "unknown"),
    ],
)
def test_driver_version_from_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, driver: str
) -> None:
    monkeypatch.setattr(fp_module, "NVIDIA_PROC_VERSION", str(tmp_path / "no-module-file"))
    _fake_nvidia_smi(tmp_path, script, monkeypatch)
    monkeypatch.setattr(fp_module, "NVIDIA_SMI_TIMEOUT_S", 0.3)
    assert fp_module._driver_version() == driver


def test_driver_version_without_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp_module, "NVIDIA_PROC_VERSION", str(tmp_path / "no-module-file"))
    monkeypatch.setattr(fp_module.shutil, "which", lambda name: None)
    assert fp_module._driver_version() == "none"


@pytest.mark.parametrize(
    ("text", "driver"),
    [
        ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.82.07  Wed Aug 20 08:10:11 UTC 2025\n"
         "GCC version:  gcc version 12.2.0\n", "580.82.07"),
        ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n",
         "580.159.04"),
        ("NVRM version: NVIDIA UNIX aarch64 Kernel Module  550.54\n", "550.54"),
    ],
    ids=["proprietary", "open", "two-part"],
)
def test_driver_version_from_the_kernel_module_before_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, driver: str
) -> None:
    """A transient ``nvidia-smi`` failure would read "unknown" and make every cached entry stale: the
    kernel module's own file, read first, cannot time out."""
    version_file = tmp_path / "version"
    version_file.write_text(text)
    monkeypatch.setattr(fp_module, "NVIDIA_PROC_VERSION", str(version_file))
    monkeypatch.setattr(fp_module.shutil, "which", lambda name: pytest.fail("nvidia-smi was asked"))
    assert fp_module._driver_version() == driver


def test_a_module_file_without_a_version_falls_back_to_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version_file = tmp_path / "version"
    version_file.write_text("NVRM version: something else entirely\n")
    monkeypatch.setattr(fp_module, "NVIDIA_PROC_VERSION", str(version_file))
    monkeypatch.setattr(fp_module.shutil, "which", lambda name: None)
    assert fp_module._driver_version() == "none"
