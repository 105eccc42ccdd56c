"""SIGTERM to a one-shot `llorch-pool worker spawn` cleans up like Ctrl-C: no half-started worker survives."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from agent_helpers import AGENT, POOL_ID, STATE_DIRS, agent_cli, agent_env, processes_under, wait_gone


def test_sigterm_during_spawn_kills_the_half_started_worker(pool: Path) -> None:
    STATE_DIRS.add(pool)
    proc = subprocess.Popen([*AGENT, "--state-dir", str(pool), "--pool-id", POOL_ID, "worker", "spawn", "cpu",
                             "--model", "tiny-llama", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=agent_env())
    try:
        assert proc.stdout is not None
        pid = None
        for line in proc.stdout:
            doc = json.loads(line)
            if doc.get("event") == "progress" and doc["data"].get("stage") == "spawned":
                pid = doc["data"]["pid"]
                break
        assert pid is not None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 143
        assert json.loads(out.strip().splitlines()[-1])["error"]["code"] == "cancelled"
        assert wait_gone(pid, 10) and processes_under(pool) == []
        (rec,) = agent_cli(pool, "worker", "list").result
        assert rec["state"] == "stopped"  # cancelled by the user, not a failure of the worker
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
