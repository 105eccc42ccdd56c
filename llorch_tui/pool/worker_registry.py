"""The pool's `workers.json`: every worker this agent started, reconciled with the live processes.

Writes are atomic and locked (several agents may run at once: a TUI session, a CLI call). A record
says what the agent intended; psutil says what is true. `reconcile` brings the two together so a
worker that died is reported dead with its exit reason, never as running.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import psutil
from filelock import Timeout
from pydantic import ValidationError

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fsutil import file_lock, save_state_file
from llorch_tui.paths import PoolPaths
from llorch_tui.protocol.workers import WorkerRecord, WorkerState

REGISTRY_VERSION = 1
LIVE_STATES = ("starting", "ready", "stopping")
# What a live state becomes when its process is found gone (anything else: dead).
_GONE: dict[str, WorkerState] = {"stopping": "stopped", "starting": "failed"}
KEEP_FINISHED = 30  # finished records kept for `worker list` (newest first); older ones are pruned
STARTING_GRACE_S = 120.0  # a record with no pid yet is a spawn in progress, not a dead worker
LOCK_TIMEOUT_S = 30.0
ERROR_LINE = re.compile(r"LLORCH_WORKER_ERROR (\{.*\})\s*$")


def now() -> datetime:
    return datetime.now(timezone.utc)


def is_worker_cmdline(cmdline: list[str]) -> bool:
    """`llorch-worker ...`, `python /venv/bin/llorch-worker ...` or `python -m llorch_worker.cli ...`.

    The supervisor's command line carries `llorch-worker` as an argument, not as the program: not a match.
    """
    if not cmdline:
        return False
    if any(os.path.basename(c) == "llorch-worker" for c in cmdline[:2]):
        return True
    return len(cmdline) >= 3 and cmdline[1] == "-m" and cmdline[2] in ("llorch_worker.cli", "llorch_worker")


def process_alive(pid: int, create_time: float | None) -> bool:
    """Alive and the same process: a recycled pid (other create_time) or a zombie counts as gone."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is not None:
            return abs(proc.create_time() - create_time) < 1.0
        return is_worker_cmdline(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def is_live(rec: WorkerRecord) -> bool:
    if rec.pid <= 0:
        return rec.state == "starting" and (now() - rec.started_at).total_seconds() < STARTING_GRACE_S
    return process_alive(rec.pid, rec.create_time)


def log_tail(path: Path, lines: int = 20, max_bytes: int = 256 * 1024) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    out = data.decode(errors="replace").splitlines()
    return out[-lines:] if lines > 0 else []


def worker_error(path: Path) -> dict[str, str] | None:
    """The last `LLORCH_WORKER_ERROR {json}` line of a worker log: the worker's own classification."""
    return error_in_lines(log_tail(path, 400))


def error_in_lines(lines: list[str]) -> dict[str, str] | None:
    """The last `LLORCH_WORKER_ERROR {json}` line among `lines` (a log, or a worker module's stderr)."""
    for line in reversed(lines):
        m = ERROR_LINE.search(line)
        if m:
            try:
                doc = json.loads(m.group(1))
            except ValueError:
                continue
            if isinstance(doc, dict):
                return {k: str(v) for k, v in doc.items()}
    return None


def exit_file(paths: PoolPaths, worker_id: str) -> Path:
    return paths.logs_dir / f"{worker_id}.exit"


def read_exit(paths: PoolPaths, worker_id: str) -> dict | None:
    try:
        doc = json.loads(exit_file(paths, worker_id).read_text())
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def _await_supervisor(pid: int, timeout: float = 3.0) -> None:
    try:
        proc = psutil.Process(pid)
        if "llorch_tui.pool.supervise" in proc.cmdline():
            proc.wait(timeout)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.TimeoutExpired, psutil.ZombieProcess):
        pass


def fill_exit_info(paths: PoolPaths, rec: WorkerRecord) -> WorkerRecord:
    """exit_code/exit_signal from the supervisor's .exit file, error_code from the log, a one-line reason."""
    doc = read_exit(paths, rec.id)
    if doc is None and rec.supervisor_pid:
        _await_supervisor(rec.supervisor_pid)  # the worker just ended: its supervisor is writing the record
        doc = read_exit(paths, rec.id)
    err = worker_error(Path(rec.log_path))
    if doc is not None:
        rc = doc.get("returncode")
        rec.exit_code = rc if isinstance(rc, int) and rc >= 0 else None
        rec.exit_signal = doc.get("signal")
    if err is not None:
        rec.error_code = err.get("code")
    if rec.exit_signal:
        why = f"killed by {rec.exit_signal}"
    elif rec.exit_code is not None:
        why = f"exited with code {rec.exit_code}"
    else:
        why = "process gone without an exit record (its supervisor was killed too)"
    if err is not None:
        why += f": {err.get('code')}: {err.get('message')}"
    elif rec.exit_code == 0:
        why = "exited cleanly (code 0)"
    else:
        tail = [ln for ln in log_tail(Path(rec.log_path), 5) if ln.strip()]
        if tail:
            why += f"; last log line: {tail[-1].strip()[:300]}"
    rec.exit_reason = why
    return rec


class Registry:
    def __init__(self, paths: PoolPaths) -> None:
        self.paths = paths

    @property
    def file(self) -> Path:
        return self.paths.workers

    def load(self) -> list[WorkerRecord]:
        try:
            doc = json.loads(self.file.read_text(encoding="utf-8"))
            return [WorkerRecord.model_validate(r) for r in doc.get("workers", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, AttributeError, ValidationError) as exc:
            raise LlorchError(ErrorCode.REGISTRY_CORRUPT, f"worker registry {self.file} is unreadable: {exc}",
                              f"it was left untouched; move it aside (mv {self.file} {self.file}.bad); "
                              "`llorch-pool worker sweep` then finds the workers it listed", file=str(self.file)) from None

    def save(self, records: list[WorkerRecord]) -> None:
        live = [r for r in records if r.state in LIVE_STATES]
        done = sorted((r for r in records if r.state not in LIVE_STATES), key=lambda r: r.started_at, reverse=True)
        keep = {r.id for r in live} | {r.id for r in done[:KEEP_FINISHED]}
        doc = {"version": REGISTRY_VERSION,
               "workers": [r.model_dump(mode="json") for r in records if r.id in keep]}
        save_state_file(self.file, json.dumps(doc, indent=1) + "\n", "worker registry")

    @contextmanager
    def edit(self) -> Iterator[list[WorkerRecord]]:
        """Lock, load, let the caller change the list in place, save if the block raised nothing."""
        try:
            with file_lock(self.paths.workers_lock, timeout=LOCK_TIMEOUT_S):
                records = self.load()
                yield records
                self.save(records)
        except Timeout:
            raise LlorchError(ErrorCode.TIMEOUT, f"worker registry {self.file} stayed locked for {LOCK_TIMEOUT_S:.0f}s",
                              f"another llorch-pool process holds {self.paths.workers_lock}") from None

    def get(self, worker_id: str) -> WorkerRecord:
        rec = next((r for r in self.load() if r.id == worker_id), None)
        if rec is None:
            raise LlorchError(ErrorCode.NOT_FOUND, f"no worker {worker_id!r} in the registry of this pool",
                              "`llorch-pool worker list` shows the known workers", worker=worker_id)
        return rec

    def put(self, rec: WorkerRecord) -> WorkerRecord:
        with self.edit() as records:
            for i, r in enumerate(records):
                if r.id == rec.id:
                    records[i] = rec
                    break
            else:
                records.append(rec)
        return rec

    def reconcile(self) -> list[WorkerRecord]:
        """Mark records whose process is gone (dead, failed or stopped) with the reason."""
        records = self.load()
        if not any(r.state in LIVE_STATES and not is_live(r) for r in records):
            return records  # the common case writes nothing and takes no lock
        with self.edit() as records:
            for rec in records:
                if rec.state in LIVE_STATES and not is_live(rec):
                    # Never ready: failed. Was serving: dead. Being stopped: stopped.
                    rec.state = _GONE.get(rec.state, "dead")
                    rec.stopped_at = rec.stopped_at or now()
                    fill_exit_info(self.paths, rec)
            return list(records)
