"""Pool status and health: what `pool.status` / `pool.health` return (dashboard polls these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from llorch_tui.protocol import WireModel
from llorch_tui.protocol.workers import WorkerRecord

GpuSource = Literal["nvml", "nvidia-smi", "none"]


class GpuInfo(WireModel):
    index: int
    name: str
    # Bytes (nvidia-smi's MiB are converted), so every memory figure on the wire has one unit.
    memory_used: int | None = None
    memory_total: int | None = None
    # Percent 0-100; None where the driver reports [N/A].
    utilization: int | None = None
    uuid: str | None = None


class RamInfo(WireModel):
    total: int
    available: int


class DiskInfo(WireModel):
    path: str
    total: int
    free: int


class ProbeInfo(WireModel):
    """The torch probe (`python -m llorch_worker.probe --json`), as cached in the state dir."""

    backends: dict[str, bool] = Field(default_factory=lambda: {"cpu": True, "cuda": False, "metal": False})
    python: str | None = None
    torch: str | None = None
    transformers: str | None = None
    cuda_devices: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    probed_at: float = 0.0
    cached: bool = False


class PoolStatus(WireModel):
    pool_id: str
    hostname: str
    os: str
    llorch_version: str
    python: str
    backends: list[str]
    gpus: list[GpuInfo] = Field(default_factory=list)
    gpu_source: GpuSource = "none"
    driver_version: str | None = None
    ram: RamInfo
    disk: DiskInfo
    workers: list[WorkerRecord] = Field(default_factory=list)
    torch: str | None = None
    probe_errors: list[str] = Field(default_factory=list)
    kernel: str | None = None   # platform.release()
    cpu: str | None = None      # CPU model name ("AMD EPYC 7763 64-Core Processor", "Apple M2 Pro")


class HealthReport(WireModel):
    ok: bool
    pool_id: str
    problems: list[str] = Field(default_factory=list)
