"""Start a real `llorch-worker` process and wait for its readiness line (never a sleep)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ARCHS = ("llama", "qwen2", "phi3", "mistral")
START_TIMEOUT = 180.0  # generous: 2 shared cores, other helpers' tests running


class WorkerProc:
    def __init__(self, model: Path | str, *extra: str, backend: str = "cpu", worker_id: str = "w-test",
                 port: int = 0, env: dict[str, str] | None = None) -> None:
        self.cmd = [sys.executable, "-m", "llorch_worker", "--worker-id", worker_id, "--model", str(model),
                    "--backend", backend, "--port", str(port), *extra]
        self.stderr_file = tempfile.NamedTemporaryFile(prefix="llorch-worker-", suffix=".err", delete=False)
        full_env = {**os.environ, "LLORCH_WORKER_LOG": "WARNING", **(env or {})}
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.stderr_file, text=True,
                                     env=full_env)
        self.lines: list[str] = []
        self.ready: dict[str, Any] | None = None
        self.listening: dict[str, Any] | None = None
        self._ready_evt = threading.Event()
        self._listening_evt = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("LLORCH_WORKER_LISTENING "):
                self.listening = json.loads(line.split(" ", 1)[1])
                self._listening_evt.set()
            elif line.startswith("LLORCH_WORKER_READY "):
                self.ready = json.loads(line.split(" ", 1)[1])
                self._ready_evt.set()
        # EOF: the process is gone; wake anyone waiting
        self._listening_evt.set()
        self._ready_evt.set()

    def wait_listening(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        self._listening_evt.wait(timeout)
        if self.listening is None:
            raise RuntimeError(f"worker did not bind: rc={self.proc.poll()} stderr={self.stderr()[-2000:]}")
        return self.listening

    def wait_ready(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        self._ready_evt.wait(timeout)
        if self.ready is None:
            raise RuntimeError(f"worker not ready: rc={self.proc.poll()} stderr={self.stderr()[-2000:]}")
        return self.ready

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(10)
        return rc

    @property
    def url(self) -> str:
        info = self.ready or self.listening
        assert info is not None, "worker has no port yet"
        return f"http://127.0.0.1:{info['port']}"

    def stderr(self) -> str:
        return Path(self.stderr_file.name).read_text(errors="replace")

    def error_line(self) -> dict[str, Any] | None:
        for line in self.stderr().splitlines():
            if line.startswith("LLORCH_WORKER_ERROR "):
                return json.loads(line.split(" ", 1)[1])
        return None

    def signal_term(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        return self.proc.returncode

    def close(self) -> None:
        self.terminate()
        self.stderr_file.close()
        Path(self.stderr_file.name).unlink(missing_ok=True)
