"""Ops `pool.status` and `pool.health`: what this pool is, what it can run, what it is running.

Cheap enough to poll every second: NVML (or one nvidia-smi call), psutil, a statvfs, the registry.
The torch probe is only read from its cache here; `probe=true` refreshes it (seconds).
"""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from llorch_tui import __version__
from llorch_tui.errors import LlorchError
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.pool.gpu import query_gpus
from llorch_tui.pool.ops import AgentSettings, OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.pool.probe_cache import probe_backends, read_cached
from llorch_tui.pool.worker_ops import list_workers
from llorch_tui.protocol.status import DiskInfo, HealthReport, PoolStatus, RamInfo
from llorch_tui.protocol.params import StatusParams

LOW_DISK_BYTES = 2 * 1024**3


def os_name() -> str:
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]} {platform.machine()}"
    return f"{platform.system()} {platform.release()} {platform.machine()}"


@functools.cache
def cpu_model() -> str | None:
    """The CPU's model name (cached: pool.status is polled every second and it does not change)."""
    try:
        if sys.platform == "darwin":
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        else:
            for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
                key, _, value = line.partition(":")
                # x86: "model name"; ARM Linux kernels name it "Model" or only give "Hardware".
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or None


def apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def disk_info(models_dir: Path) -> DiskInfo:
    # The models dir may not exist yet: measure the nearest existing parent (same filesystem).
    probe = models_dir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return DiskInfo(path=str(models_dir), total=usage.total, free=usage.free)


def _collect(settings: AgentSettings, refresh_probe: bool) -> PoolStatus:
    gpu = query_gpus()
    errors = list(gpu.errors)
    # Any cached answer, however old, beats guessing from NVML (a GPU with a CPU-only torch is not usable);
    # spawn re-probes before refusing, so a stale answer never blocks work.
    probe = probe_backends(settings.state_dir, refresh=True) if refresh_probe else \
        read_cached(settings.state_dir, ttl_s=float("inf"))
    if probe is None and apple_silicon():
        probe = probe_backends(settings.state_dir)  # Metal has no NVML: only torch can tell
    backends = ["cpu"]
    if probe is not None:
        errors += probe.errors
        # torch's answer wins over NVML's: a visible GPU with a CPU-only torch is not usable.
        backends += [b for b in ("cuda", "metal") if probe.backends.get(b)]
    elif gpu.gpus:
        backends.append("cuda")
    vm = psutil.virtual_memory()
    return PoolStatus(
        pool_id=settings.pool_id, hostname=socket.gethostname(), os=os_name(), llorch_version=__version__,
        python=platform.python_version(), backends=backends, gpus=gpu.gpus, gpu_source=gpu.source,
        driver_version=gpu.driver_version, ram=RamInfo(total=vm.total, available=vm.available),
        disk=disk_info(settings.paths.models_dir), torch=probe.torch if probe else None, probe_errors=errors,
        kernel=platform.release(), cpu=cpu_model())


async def pool_status(settings: AgentSettings, refresh_probe: bool = False,
                      probe_workers: bool = False) -> PoolStatus:
    status, workers = await asyncio.gather(asyncio.to_thread(_collect, settings, refresh_probe),
                                           list_workers(settings.paths, probe=probe_workers))
    status.workers = workers
    return status


@op(ops.POOL_STATUS, summary="pool id, host, backends, GPUs, RAM, disk, workers")
async def status_op(ctx: OpContext, p: StatusParams) -> PoolStatus:
    return await pool_status(ctx.settings, p.probe, p.workers_probe)


def _problems(settings: AgentSettings, status: PoolStatus) -> list[str]:
    problems: list[str] = []
    state_dir = settings.state_dir
    if state_dir.exists() and not os.access(state_dir, os.W_OK):
        problems.append(f"state directory {state_dir} is not writable")
    if status.disk.free < LOW_DISK_BYTES:
        problems.append(f"only {status.disk.free / 1024**3:.1f} GiB free in {status.disk.path}")
    try:
        CatalogStore(settings.paths, settings.pool_id).load()
    except LlorchError as exc:
        problems.append(exc.message)
    problems += [f"probe: {e}" for e in status.probe_errors]
    for w in status.workers:
        if w.state == "dead":
            problems.append(f"worker {w.id} ({w.model} on {w.backend}) died: {w.exit_reason}")
    return problems


@op(ops.POOL_HEALTH, summary="ok, or the list of problems of this pool")
async def health_op(ctx: OpContext, p: StatusParams) -> HealthReport:
    try:
        status = await pool_status(ctx.settings, p.probe)
    except LlorchError as exc:
        return HealthReport(ok=False, pool_id=ctx.settings.pool_id, problems=[str(exc)])
    problems = await asyncio.to_thread(_problems, ctx.settings, status)
    return HealthReport(ok=not problems, pool_id=ctx.settings.pool_id, problems=problems)
