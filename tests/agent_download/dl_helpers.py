"""Helpers for the download/mirror tests: run the real `llorch-pool` CLI, a mirror process, pools."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
from sshd_mirror import start_mirror, stop_process

# Test modules import these from here, not from conftest (which conftest a bare import finds depends on order).
GATE_TOKEN = "hf_test_gate_token"
BIG_PAD_BYTES = 48 * 1024 * 1024

CLI = [sys.executable, "-m", "llorch_tui.pool.cli.main"]


def clean_env(hf_home: Path, **extra: str) -> dict[str, str]:
    """No HF_TOKEN / HF_ENDPOINT / LLORCH_* from the developer's shell leaks into a test."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING_FACE", "LLORCH_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Pool:
    """A pool's state directory, driven through the real CLI."""

    state: Path
    pool_id: str
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, *args: str) -> list[str]:
        return [*CLI, "--state-dir", str(self.state), "--pool-id", self.pool_id, *args]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})

    def json(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, list[dict], dict]:
        """(exit code, events, final document) of a `--json` call."""
        proc = self.run(*args, "--json", env=env, timeout=timeout)
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        assert lines, f"no JSON output; stderr: {proc.stderr}"
        events = [line for line in lines[:-1] if "event" in line]
        return proc.returncode, events, lines[-1]

    @property
    def catalog(self) -> Path:
        return self.state / "catalog.json"

    def catalog_bytes(self) -> bytes:
        return self.catalog.read_bytes() if self.catalog.exists() else b""

    def entry(self, model_id: str) -> dict[str, Any]:
        doc = json.loads(self.catalog.read_text())
        return next(m for m in doc["models"] if m["id"] == model_id)


class MirrorProc:
    """`llorch-pool mirror serve --port 0 --print-url` as a real subprocess."""

    def __init__(self, pool: Pool, *extra: str, env: dict[str, str] | None = None) -> None:
        self.proc, self.url = start_mirror(pool.argv("mirror", "serve", "--port", "0", "--print-url", *extra),
                                           env={**pool.env, **(env or {})})

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/api/llorch/stats", timeout=10).json()

    def served(self) -> int:
        return int(self.stats()["bytes_served"])

    def stop(self) -> None:
        stop_process(self.proc)


def register(pool: Pool, model_id: str, *args: str) -> dict[str, Any]:
    """`models register ID --repo R --architecture A`, in-process (the CLI's own tests are in tests/foundation)."""
    it = iter(args)
    params: dict[str, Any] = {"id": model_id}
    for flag in it:
        params[flag.lstrip("-").replace("-", "_")] = next(it)
    return call_op(pool.state, pool.pool_id, "models.register", params)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def call_op(state: Path, pool_id: str, op: str, params: dict[str, Any], events: list | None = None,
            hf_endpoint: str | None = None) -> Any:
    """Run an op in this process (what `llorch-pool` does), for tests that patch a function (disk space)."""
    from llorch_tui.pool.ops import AgentSettings, InProcessExecutor

    settings = AgentSettings(state_dir=state, pool_id=pool_id, hf_endpoint=hf_endpoint)

    def sink(event: str, data: dict[str, Any]) -> None:
        if events is not None:
            events.append((event, data))

    # A thread of its own, so async tests (with a running loop) can use it too.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, InProcessExecutor(settings).call(op, params, sink)).result()
