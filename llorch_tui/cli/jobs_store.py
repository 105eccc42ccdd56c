"""The control plane's record of jobs submitted with `llorch jobs submit` (jobs.json in its state dir).

Small and local: enough for `llorch jobs list` and `llorch jobs cancel <job>` to find a job's
pool and worker. Read-modify-write under a file lock, written atomically, capped in length.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal

from filelock import Timeout
from pydantic import BaseModel, Field, ValidationError

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fsutil import file_lock, save_state_file
from llorch_tui.paths import control_state_dir

JOBS_VERSION = 1
KEEP_JOBS = 500  # oldest finished jobs are dropped beyond this
PROMPT_KEEP = 500  # characters of prompt / text kept per job
LOCK_TIMEOUT_S = 30.0

JobState = Literal["running", "done", "failed", "cancelled"]


class JobRecord(BaseModel):
    id: str
    pool: str
    model: str
    worker_id: str
    worker_port: int
    prompt: str
    max_tokens: int | None = None
    seed: int | None = None
    state: JobState = "running"
    submitted_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    finished_at: datetime | None = None
    tokens: int | None = None
    tokens_per_second: float | None = None
    finish_reason: str | None = None
    text: str | None = None
    error: str | None = None
    client_pid: int | None = None


class JobsFile(BaseModel):
    version: int = JOBS_VERSION
    jobs: list[JobRecord] = Field(default_factory=list)


class JobStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or control_state_dir()
        self.path = self.dir / "jobs.json"
        self.lock = self.dir / "jobs.json.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            with file_lock(self.lock, timeout=LOCK_TIMEOUT_S):
                yield
        except Timeout:
            raise LlorchError(ErrorCode.TIMEOUT, f"the jobs file {self.path} stayed locked for {LOCK_TIMEOUT_S:.0f}s",
                              f"another llorch process holds {self.lock}; wait for it or stop it") from None

    def _read(self) -> JobsFile:
        try:
            return JobsFile.model_validate(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return JobsFile()
        except (OSError, ValueError, ValidationError) as e:
            raise LlorchError(ErrorCode.CATALOG_CORRUPT, f"cannot read the jobs file {self.path}: {e}",
                              f"move it aside (mv {self.path} {self.path}.bad); a new one is started") from None

    def _write(self, doc: JobsFile) -> None:
        running = [j for j in doc.jobs if j.state == "running"]
        finished = [j for j in doc.jobs if j.state != "running"][-max(0, KEEP_JOBS - len(running)):]
        doc.jobs = sorted(running + finished, key=lambda j: j.submitted_at)
        save_state_file(self.path, doc.model_dump_json(indent=1), "jobs file")

    def list(self) -> list[JobRecord]:
        with self._locked():
            return self._read().jobs

    def get(self, job_id: str) -> JobRecord:
        jobs = self.list()
        matches = [j for j in jobs if j.id == job_id] or [j for j in jobs if j.id.startswith(job_id)]
        if len(matches) != 1:
            raise LlorchError(ErrorCode.NOT_FOUND,
                              f"no job {job_id!r}" if not matches else f"job id prefix {job_id!r} is ambiguous",
                              "see `llorch jobs list` for job ids")
        return matches[0]

    def add(self, job: JobRecord) -> None:
        job.prompt = job.prompt[:PROMPT_KEEP]
        with self._locked():
            doc = self._read()
            doc.jobs.append(job)
            self._write(doc)

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        if isinstance(fields.get("text"), str):
            fields["text"] = fields["text"][:PROMPT_KEEP]
        with self._locked():
            doc = self._read()
            for i, j in enumerate(doc.jobs):
                if j.id == job_id:
                    doc.jobs[i] = j.model_copy(update=fields)
                    self._write(doc)
                    return doc.jobs[i]
        raise LlorchError(ErrorCode.NOT_FOUND, f"no job {job_id!r}", "see `llorch jobs list`")
