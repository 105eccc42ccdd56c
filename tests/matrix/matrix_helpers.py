"""Helpers for the matrix tests: run the real headless runner as a subprocess and watch its output."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from llorch_tui.protocol.matrix import MatrixReport
from llorch_tui.protocol.status import PoolStatus

RUN_TIMEOUT_S = 400


def pool_status(ram: dict[str, int] | None = None, gpus: list[dict[str, object]] | None = None,
                **fields: object) -> PoolStatus:
    """A `pool.status` answer for planning tests: the given facts over those of a plain Linux pool."""
    doc: dict[str, object] = {
        "pool_id": "p", "hostname": "p", "os": "Linux", "llorch_version": "0.1.0", "python": "3.11", "backends": ["cpu"],
        "ram": {"total": 32 * 10**9, "available": 16 * 10**9, **(ram or {})},
        "disk": {"path": "/", "total": 10**12, "free": 10**11},
        "gpus": [{"name": f"GPU{i}", "index": i, **g} for i, g in enumerate(gpus or [])], **fields}
    return PoolStatus.model_validate(doc)


def write_config(path: Path, state: Path, report_dir: Path, parallel: int = 1, hf_endpoint: str | None = None,
                 **matrix: object) -> Path:
    lines = ["[[pools]]", 'name = "local"', 'transport = "local"', f'state_dir = "{state}"',
             f"max_parallel_per_device = {parallel}"]
    if hf_endpoint:
        lines.append(f'hf_endpoint = "{hf_endpoint}"')
    lines += ["", "[matrix]", f'report_dir = "{report_dir}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in matrix.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class HeadlessRun:
    rc: int
    stdout: str
    stderr_lines: list[str]
    actions: list[str] = field(default_factory=list)  # what the watcher did (kill pid ..., sigint)

    @property
    def stdout_lines(self) -> list[str]:
        return self.stdout.splitlines()


def run_headless(config: Path, *flags: str, on_stderr: Callable[[str, subprocess.Popen[str]], str | None] | None = None,
                 on_stdout: Callable[[str, subprocess.Popen[str]], str | None] | None = None,
                 env: dict[str, str] | None = None) -> HeadlessRun:
    """`llorch-tui --run-matrix --config CONFIG FLAGS...` in its own process group (like a terminal job).

    The callbacks see each line as it arrives (stderr: stage lines; stdout: cell lines or --json events)
    and may act on the process (kill a worker, send SIGINT); a returned string is recorded as an action.
    """
    proc = subprocess.Popen([sys.executable, "-m", "llorch_tui.app_main", "--run-matrix", "--config", str(config),
                             *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()

    def pump(name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put((name, line.rstrip("\n")))
        lines.put((name, None))

    threads = [threading.Thread(target=pump, args=(n, s), daemon=True) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    out: list[str] = []
    err: list[str] = []
    actions: list[str] = []
    open_streams = 2
    try:
        while open_streams:
            name, line = lines.get(timeout=RUN_TIMEOUT_S)
            if line is None:
                open_streams -= 1
                continue
            (out if name == "out" else err).append(line)
            cb = on_stdout if name == "out" else on_stderr
            if cb is not None:
                act = cb(line, proc)
                if act:
                    actions.append(act)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return HeadlessRun(rc, "\n".join(out), err, actions)


def worker_processes(state: Path) -> list[psutil.Process]:
    """llorch-worker processes of this pool still alive (matched by the worker ids in its registry)."""
    reg = state / "workers.json"
    ids: set[str] = set()
    if reg.exists():
        doc = json.loads(reg.read_text())
        records = doc.get("workers", doc) if isinstance(doc, dict) else doc
        ids = {r["id"] for r in records}
    alive = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "--worker-id" in cmd:
            wid = cmd[cmd.index("--worker-id") + 1] if cmd.index("--worker-id") + 1 < len(cmd) else ""
            if wid in ids:
                alive.append(p)
    return alive


def shared_synth_entry():  # type: ignore[no-untyped-def]
    """tests/conftest.py's synth_entry (imported by path: every test dir's conftest is named `conftest`)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("llorch_tests_root_conftest", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.synth_entry


ARCHS = ("llama", "qwen2", "phi3", "mistral")
KILLED_MODEL = "tiny-mistral"
CORRUPT_MODEL = "broken-llama"
STABILITY_REQUESTS = 10


def corrupt_copy(src: Path, dst: Path) -> Path:
    """A checkpoint whose safetensors file lost its second half (an interrupted copy)."""
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return dst


@dataclass
class MainRun:
    run: HeadlessRun
    state: Path
    report_dir: Path       # a copy of the reports as this run left them (later runs write to live_report_dir)
    live_report_dir: Path
    config: Path
    killed_pid: int | None

    @property
    def report(self) -> MatrixReport:
        return MatrixReport.model_validate_json((self.report_dir / "matrix.json").read_text())
