"""Helpers for the foundation tests (import as `from foundation_helpers import ...`): run the real `llorch-pool` / `llorch` CLIs as subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CLI_TIMEOUT_S = 120


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.rc, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def json(self) -> Any:
        return json.loads(self.out.strip().splitlines()[-1])


def run_cli(module: str, *args: str, env: dict[str, str] | None = None) -> Run:
    # COLUMNS: rich tables are as wide as this, so assertions on cell text do not depend on wrapping.
    # XDG_CONFIG_HOME: never read the real ~/.config/llorch (register consults [[models]] presets).
    base = {k: v for k, v in os.environ.items() if k != "LLORCH_CONFIG"}
    full_env = {**base, "COLUMNS": "200", "XDG_CONFIG_HOME": "/nonexistent/llorch-tests", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, env=full_env)
    return Run(proc)


def pool_cli(state: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    return run_cli("llorch_tui.pool.cli.main", "--state-dir", str(state), "--pool-id", "testpool", *args, env=env)


def llorch_cli(*args: str, env: dict[str, str] | None = None) -> Run:
    return run_cli("llorch_tui.cli.main", *args, env=env)


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root: proves a failed command changed nothing.

    Lock files are left out: taking the lock (empty file, never holds data) is not a change."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix != ".lock"}
