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
    # Added by H4: the supervisor (records the exit code), pid-reuse guard, classified failure.
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
