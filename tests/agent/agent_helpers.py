"""Drive the real agent: the `llorch-pool` CLI as a subprocess, and the stdio service over raw pipes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from llorch_tui.pool import template_client

AGENT = [sys.executable, "-m", "llorch_tui.pool.cli.main"]
POOL_ID = "test"
# Every state dir these tests drove: the session-end guard looks for processes left in any of them.
STATE_DIRS: set[Path] = set()


# Kept from the outer environment: `LLORCH_WORKER_TEMPLATE=off make test` runs these tests with cold starts.
PASSED_THROUGH = ("LLORCH_WORKER_TEMPLATE",)


def agent_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLORCH_") or k in PASSED_THROUGH}
    return {**env, **(extra or {})}


@dataclass
class CliResult:
    rc: int
    events: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None
    error: dict[str, Any] | None = None
    stderr: str = ""


def agent_cli(state: Path, *args: str, timeout: float = 240, env: dict[str, str] | None = None) -> CliResult:
    """`llorch-pool --state-dir STATE --pool-id test ARGS --json`, parsed: events, then a result or an error."""
    STATE_DIRS.add(Path(state))
    proc = subprocess.run([*AGENT, "--state-dir", str(state), "--pool-id", POOL_ID, *args, "--json"],
                          capture_output=True, text=True, timeout=timeout, env=agent_env(env),
                          stdin=subprocess.DEVNULL)
    docs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    out = CliResult(rc=proc.returncode, stderr=proc.stderr)
    for doc in docs:
        if isinstance(doc, dict) and set(doc) == {"event", "data"}:
            out.events.append(doc)
        elif isinstance(doc, dict) and set(doc) == {"error"}:
            out.error = doc["error"]
        else:
            out.result = doc
    return out


def is_template(proc: psutil.Process) -> bool:
    try:
        return "llorch_worker.template" in proc.cmdline()
    except psutil.Error:
        return False


def processes_under(root: Path, templates: bool = False) -> list[psutil.Process]:
    """Processes of this user whose LLORCH_STATE_DIR lies under `root` (workers and their supervisors;
    the pool's warm worker template only with `templates`: it outlives workers by design)."""
    root = root.resolve()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            sd = proc.environ().get("LLORCH_STATE_DIR")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if sd and (Path(sd).resolve() == root or root in Path(sd).resolve().parents):
            if proc.info.get("cmdline") and "serve" not in proc.info["cmdline"] and (templates or not is_template(proc)):
                found.append(proc)
    return found


def wait_gone(pid: int, timeout: float = 20) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class RawAgent:
    """`llorch-pool serve --stdio` over its pipes, speaking the protocol by hand (no PoolClient in between)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.hello: dict[str, Any] = {}

    @classmethod
    async def start(cls, state: Path) -> "RawAgent":
        STATE_DIRS.add(Path(state))
        proc = await asyncio.create_subprocess_exec(
            *AGENT, "--state-dir", str(state), "--pool-id", POOL_ID, "serve", "--stdio",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=agent_env(), limit=16 * 1024 * 1024)
        agent = cls(proc)
        agent.hello = await agent.read()
        return agent

    async def send_raw(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        await self.proc.stdin.drain()

    async def send(self, rid: str, op: str, params: dict[str, Any] | None = None) -> None:
        await self.send_raw((json.dumps({"v": 1, "id": rid, "op": op, "params": params or {}}) + "\n").encode())

    async def read(self, timeout: float = 120) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert line, f"agent closed stdout; stderr: {await self.proc.stderr.read() if self.proc.stderr else ''}"
        return json.loads(line)

    async def read_until(self, pred: Any, timeout: float = 120, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Read messages until pred(msg) holds; every message read is appended to `seen`."""
        while True:
            msg = await self.read(timeout)
            if seen is not None:
                seen.append(msg)
            if pred(msg):
                return msg

    async def close(self) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        except asyncio.TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


def stop_templates(state: Path) -> None:
    """Drain the pool's warm template (it exits once its workers have) and wait for it to go."""
    template_client.stop(state)
    for proc in processes_under(state, templates=True):
        if is_template(proc):
            wait_gone(proc.pid, 30)


def stop_everything(state: Path) -> None:
    """Finalizer of every fixture that starts workers: the agent's own stop, then a hard kill of what is left."""
    agent_cli(state, "worker", "stop", "--all", "--grace", "3", timeout=60)
    stop_templates(state)
    for proc in processes_under(state, templates=True):
        try:
            proc.kill()
        except psutil.Error:
            pass
