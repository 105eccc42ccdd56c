"""GGUF tests: the real SmolLM2 model (session fixtures in tests/conftest.py) through the agent and the worker.

Reuses the worker area's `WorkerProc` and the agent area's `agent_cli` (bare-name helper modules)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "worker"))
sys.path.insert(0, str(TESTS / "agent"))


@pytest.fixture()
def gguf_copy(smollm2_gguf: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the GGUF (tests may damage it)."""
    dst = tmp_path / "own" / smollm2_gguf.name
    dst.parent.mkdir()
    shutil.copyfile(smollm2_gguf, dst)
    return dst
