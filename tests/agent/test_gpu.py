"""GPU inventory parsing on recorded output: NVML (through nvidia-ml-py's own names and structs) and nvidia-smi."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from agent_helpers import agent_cli
from llorch_tui.pool.gpu import parse_smi_csv, query_gpus, query_nvml, query_smi

DATA = Path(__file__).parent / "data"
MIB = 1024 * 1024


def recorded_nvml(path: Path = DATA / "nvml-2gpu.json", init_error: int | None = None) -> SimpleNamespace:
    """A stand-in `pynvml` module replaying a recording through the real function names, structs and errors."""
    rec = json.loads(path.read_text())
    devs: list[dict[str, Any]] = rec["devices"]
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if init_error is not None:
            raise pynvml.NVMLError(init_error)

    def memory(h: int) -> pynvml.c_nvmlMemory_t:
        m = pynvml.c_nvmlMemory_t()
        m.total, m.free, m.used = (devs[h]["memory"][k] for k in ("total", "free", "used"))
        return m

    def utilization(h: int) -> pynvml.c_nvmlUtilization_t:
        u = devs[h]["utilization"]
        if isinstance(u, str):
            raise pynvml.NVMLError(getattr(pynvml, u))
        return pynvml.c_nvmlUtilization_t(gpu=u["gpu"], memory=u["memory"])

    return SimpleNamespace(
        NVMLError=pynvml.NVMLError, NVML_ERROR_LIBRARY_NOT_FOUND=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        NVML_ERROR_DRIVER_NOT_LOADED=pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        NVML_ERROR_NO_PERMISSION=pynvml.NVML_ERROR_NO_PERMISSION,
        nvmlInit=init, nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlSystemGetDriverVersion=lambda: rec["driver_version"], nvmlDeviceGetCount=lambda: len(devs),
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetName=lambda h: devs[h]["name"],
        nvmlDeviceGetMemoryInfo=memory, nvmlDeviceGetUtilizationRates=utilization,
        nvmlDeviceGetUUID=lambda h: devs[h]["uuid"], calls=calls)


def fake_smi(tmp_path: Path, stdout_file: Path | None, rc: int = 0) -> Path:
    """An `nvidia-smi` executable replaying a recorded output (and exit status)."""
    exe = tmp_path / "bin" / "nvidia-smi"
    exe.parent.mkdir(parents=True, exist_ok=True)
    body = f"/bin/cat '{stdout_file}'\n" if stdout_file else ""
    exe.write_text(f"#!/bin/sh\n{body}exit {rc}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_nvml_recording_parses_every_field() -> None:
    nvml = recorded_nvml()
    rep = query_nvml(nvml)
    assert rep.source == "nvml" and rep.driver_version == "550.54.15" and not rep.errors
    assert [g.index for g in rep.gpus] == [0, 1]
    g0, g1 = rep.gpus
    assert g0.name == "NVIDIA A100-SXM4-80GB" and g0.memory_total == 85899345920 and g0.memory_used == 21282144256
    assert g0.utilization == 42 and g0.uuid.startswith("GPU-2b7f")
    assert g1.utilization is None and g1.memory_used == 881459200  # NOT_SUPPORTED (MIG) is N/A, not an error
    assert nvml.calls == ["init", "shutdown"]


def test_real_nvml_without_a_driver_is_absence_not_an_error() -> None:
    # This machine has nvidia-ml-py but no libnvidia-ml: the real library raises LibraryNotFound.
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        pynvml.nvmlInit()
    rep = query_nvml()
    assert rep.source == "none" and rep.gpus == [] and rep.errors == []


def test_nvml_broken_driver_is_reported() -> None:
    rep = query_nvml(recorded_nvml(init_error=pynvml.NVML_ERROR_UNKNOWN))
    assert rep.source == "none" and rep.errors and "NVML init failed" in rep.errors[0]


def test_smi_csv_four_gpus_in_bytes() -> None:
    gpus, errors = parse_smi_csv((DATA / "nvidia-smi-4gpu.csv").read_text())
    assert not errors
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000",
                                      "Tesla T4"]
    assert gpus[0].memory_used == 20512 * MIB and gpus[0].memory_total == 24564 * MIB and gpus[0].utilization == 97
    assert gpus[3].utilization is None and gpus[3].memory_used == 0  # "[N/A]" and a real zero differ
    assert gpus[2].uuid == "GPU-3d9e8c71-0b2a-4f5e-96c3-d8a1b7e4f260"


def test_smi_garbage_line_is_reported_not_guessed() -> None:
    gpus, errors = parse_smi_csv("0, Tesla T4, 0, 15360, 0\nNo devices were found\n")
    assert len(gpus) == 1 and len(errors) == 1 and "No devices" in errors[0]


def test_smi_absent_and_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    absent = query_smi()
    assert absent.source == "none" and absent.gpus == [] and absent.errors == []  # a CPU pool: nothing to say
    failing = fake_smi(tmp_path, DATA / "nvidia-smi-no-driver.txt", rc=9)
    rep = query_smi(str(failing))
    assert rep.source == "none" and "exited 9" in rep.errors[0] and "couldn't communicate" in rep.errors[0]


def test_fallback_to_smi_when_nvml_is_missing(tmp_path: Path) -> None:
    exe = fake_smi(tmp_path, DATA / "nvidia-smi-4gpu.csv")
    rep = query_gpus(nvml=recorded_nvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND), smi_exe=str(exe))
    assert rep.source == "nvidia-smi" and len(rep.gpus) == 4 and not rep.errors


def test_status_cli_reports_gpus_from_nvidia_smi(tmp_path: Path) -> None:
    """End to end: the real `llorch-pool status --json` with a recorded nvidia-smi on PATH (no NVML here)."""
    state = tmp_path / "state"
    fake_smi(tmp_path, DATA / "nvidia-smi-4gpu.csv")
    res = agent_cli(state, "status", env={"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"})
    assert res.rc == 0, res.stderr
    st = res.result
    assert st["pool_id"] == "test" and st["gpu_source"] == "nvidia-smi" and len(st["gpus"]) == 4
    assert st["gpus"][2]["memory_total"] == 49140 * MIB
    assert "cuda" in st["backends"] and "cpu" in st["backends"]  # no torch probe cached: NVML/smi decide
    assert st["ram"]["total"] > st["ram"]["available"] > 0 and st["disk"]["free"] > 0
    assert st["workers"] == [] and st["llorch_version"] and st["python"].startswith("3.")
