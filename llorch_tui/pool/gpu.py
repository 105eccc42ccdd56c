"""GPU inventory: NVML first (nvidia-ml-py, in-process, ~ms), `nvidia-smi` CSV as the fallback.

No torch here: the dashboard polls status every second, and NVML answers without loading CUDA.
Both sources are parsed into GpuInfo (memory in bytes, utilisation in percent).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

from llorch_tui.protocol.status import GpuInfo

SMI_QUERY = "index,name,memory.used,memory.total,utilization.gpu,uuid"
SMI_ARGS = ["--query-gpu=" + SMI_QUERY, "--format=csv,noheader,nounits"]
MIB = 1024 * 1024


@dataclass
class GpuReport:
    gpus: list[GpuInfo] = field(default_factory=list)
    source: str = "none"  # nvml | nvidia-smi | none
    driver_version: str | None = None
    errors: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    # nvidia-ml-py < 11.5 returns bytes for names and versions, later versions str.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _nvml_not_present(exc: Exception, nvml: ModuleType) -> bool:
    """True when NVML is simply absent (no NVIDIA driver): not a problem worth reporting."""
    # NO_PERMISSION is not absence: a driver is there and the operator should hear about it.
    codes = {getattr(nvml, n, None) for n in ("NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED")}
    codes.discard(None)
    return getattr(exc, "value", None) in codes


def query_nvml(nvml: Any = None) -> GpuReport:
    """Read every GPU through NVML. `nvml` is the pynvml module (injectable: tests pass a recording;
    typed Any because pynvml ships no type information)."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return GpuReport(errors=["nvidia-ml-py (pynvml) is not installed"])
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses; keep the message, classify absence
        if _nvml_not_present(exc, nvml):
            return GpuReport()
        return GpuReport(errors=[f"NVML init failed: {exc}"])
    report = GpuReport(source="nvml")
    try:
        try:
            report.driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        except Exception:
            pass
        for i in range(int(nvml.nvmlDeviceGetCount())):
            try:
                h = nvml.nvmlDeviceGetHandleByIndex(i)
                info = GpuInfo(index=i, name=_text(nvml.nvmlDeviceGetName(h)))
                try:
                    mem = nvml.nvmlDeviceGetMemoryInfo(h)
                    info.memory_used, info.memory_total = int(mem.used), int(mem.total)
                except Exception as exc:
                    report.errors.append(f"GPU {i}: memory query failed: {exc}")
                try:
                    info.utilization = int(nvml.nvmlDeviceGetUtilizationRates(h).gpu)
                except Exception:  # NVML_ERROR_NOT_SUPPORTED on some boards: report N/A
                    info.utilization = None
                try:
                    info.uuid = _text(nvml.nvmlDeviceGetUUID(h))
                except Exception:
                    pass
                report.gpus.append(info)
            except Exception as exc:
                report.errors.append(f"GPU {i}: NVML query failed: {exc}")
    except Exception as exc:
        report.errors.append(f"NVML query failed: {exc}")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
    return report


def _num(cell: str) -> int | None:
    cell = cell.strip()
    if not cell or cell.startswith("[") or cell.upper() in {"N/A", "NA"}:
        return None  # "[N/A]", "[Not Supported]", "[Unknown Error]"
    try:
        return int(float(cell))
    except ValueError:
        return None


def parse_smi_csv(text: str) -> tuple[list[GpuInfo], list[str]]:
    """Parse `nvidia-smi --query-gpu=<SMI_QUERY> --format=csv,noheader,nounits` (MiB, percent)."""
    gpus: list[GpuInfo] = []
    errors: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        # A GPU name never contains a comma in practice, but be safe: re-join extra cells into the name.
        if len(cells) > 6:
            cells = [cells[0], ",".join(cells[1:len(cells) - 4]), *cells[-4:]]
        if len(cells) < 5 or _num(cells[0]) is None:
            errors.append(f"nvidia-smi line {n} not understood: {line.strip()[:120]!r}")
            continue
        used, total = _num(cells[2]), _num(cells[3])
        gpus.append(GpuInfo(
            index=_num(cells[0]) or 0, name=cells[1],
            memory_used=used * MIB if used is not None else None,
            memory_total=total * MIB if total is not None else None,
            utilization=_num(cells[4]),
            uuid=cells[5] if len(cells) > 5 and cells[5] and not cells[5].startswith("[") else None,
        ))
    return gpus, errors


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: list[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)


def query_smi(exe: str | None = None, runner: Runner = _run) -> GpuReport:
    exe = exe or shutil.which("nvidia-smi")
    if exe is None:
        return GpuReport()  # no NVIDIA tooling: a CPU or Apple pool, nothing to report
    try:
        proc = runner([exe, *SMI_ARGS])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return GpuReport(errors=[f"nvidia-smi failed to run: {exc}"])
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        return GpuReport(errors=[f"nvidia-smi exited {proc.returncode}: {msg[-1] if msg else 'no output'}"])
    gpus, errors = parse_smi_csv(proc.stdout)
    return GpuReport(gpus=gpus, source="nvidia-smi", errors=errors)


def query_gpus(nvml: ModuleType | None = None, smi_exe: str | None = None, runner: Runner = _run) -> GpuReport:
    """NVML when it works, else nvidia-smi; errors of a failed NVML are kept only if the fallback fails too."""
    first = query_nvml(nvml)
    if first.source == "nvml" and first.gpus:
        return first
    second = query_smi(smi_exe, runner)
    if second.source == "nvidia-smi":
        return second
    return GpuReport(source="none", errors=first.errors + second.errors)
