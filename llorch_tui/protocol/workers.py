"""Worker registry records, as kept in the pool's `workers.json` and sent over the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from llorch_tui.protocol import WireModel

WorkerState = Literal["starting", "ready", "stopping", "stopped", "dead", "failed"]


class WorkerRecord(WireModel):
    id: str
    model: str
    backend: str
    gpu: int | None = None
    port: int
    pid: int
    pgid: int | None = None
    state: WorkerState = "starting"
    started_at: datetime
    ready_at: datetime | None = None
    load_s: float | None = None
    log_path: str
    # Set when the agent finds the process gone: exit code / signal and the log tail.
    exit_reason: str | None = None
    # Live figures from the worker's /health, filled by `worker list` when reachable.
    requests: int | None = None
    tokens_generated: int | None = None
    rss_bytes: int | None = None
    device_allocated_bytes: int | None = None
    device_peak_bytes: int | None = None
    in_flight: int | None = None  # requests queued or generating (from /health)
    queue_depth: int | None = None  # of which waiting for a batch slot
    # The supervisor (records the exit code), pid-reuse guard, classified failure.
    supervisor_pid: int | None = None
    create_time: float | None = None
    exit_code: int | None = None
    exit_signal: str | None = None
    error_code: str | None = None
    dtype: str | None = None
    stopped_at: datetime | None = None
    # How the worker started: "fork" (from the pool's warm template) or "exec"; start_note says
    # why an exec happened where a fork was possible (switched off, macOS, template failure).
    start_mode: str | None = None
    start_note: str | None = None


class LogsResult(WireModel):
    """`workers.logs`: the last lines; with follow, the lines came as `line` events and `ended` says why it stopped."""

    id: str
    path: str
    lines: list[str] = []
    followed: int | None = None
    ended: str | None = None


class StrayWorker(WireModel):
    """An llorch-worker process the registry does not know (`workers.sweep`)."""

    pid: int
    cmdline: str
    create_time: float | None = None
    state_dir: str | None = None
    worker_id: str | None = None
    stopped: bool | None = None  # in `stopped` only: whether it is gone now
    why: str | None = None  # in `stopped` only: "pid reused", "already gone"


class SweepResult(WireModel):
    strays: list[StrayWorker] = []
    stopped: list[StrayWorker] = []
    other_state_dirs: list[StrayWorker] = []  # workers of another agent's state dir: not ours to stop


class TemplateChild(WireModel):
    pid: int
    worker_id: str | None = None


class TemplateStatus(WireModel):
    """`workers.template`: the pool's warm worker template (forks each worker with torch imported)."""

    running: bool
    disabled: str | None = None  # why warm starts are off, or None
    socket: str
    stopped: bool = False
    pid: int | None = None
    fingerprint: str | None = None
    children: list[TemplateChild] | None = None
    stale: bool | None = None
