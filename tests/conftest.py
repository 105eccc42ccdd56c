"""Fixtures shared by every area. Expensive things (checkpoints, workers) are made once per session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ARCHITECTURES = ("llama", "qwen2", "phi3", "mistral")
REPO_ROOT = Path(__file__).resolve().parent.parent


def synthesize(out: Path, architecture: str, size: str = "tiny", seed: int = 0) -> dict:
    """Make a checkpoint through the real command (a subprocess, like the agent does)."""
    proc = subprocess.run(
        [sys.executable, "-m", "llorch_worker.synth", "--out", str(out), "--architecture", architecture,
         "--size", size, "--seed", str(seed), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def synth_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four tiny random-weight checkpoints ({architecture: directory}), shared by the whole session. Read-only!"""
    root = tmp_path_factory.mktemp("synth")
    out: dict[str, Path] = {}
    for arch in ARCHITECTURES:
        d = root / f"tiny-{arch}"
        synthesize(d, arch)
        out[arch] = d
    return out
