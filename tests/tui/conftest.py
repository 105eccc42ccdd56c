"""TUI fixtures: the real app on real local pools (state dirs from the shared make_pool factory)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture
def tui_pool(make_pool) -> Iterator[Path]:
    """A fresh local pool with tiny-llama; every worker it ends up with is stopped afterwards."""
    state = make_pool(("llama",))
    yield state
    from llorch_tui.pool.ops import AgentSettings, InProcessExecutor

    asyncio.run(InProcessExecutor(AgentSettings(state_dir=state, pool_id="local")).call(
        "workers.stop", {"all": True, "grace_s": 5}))


@pytest.fixture
def frozen_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic screens: frozen clock, host figures masked."""
    monkeypatch.setenv("LLORCH_FREEZE_TIME", "1767225600")
    monkeypatch.setenv("LLORCH_TUI_MASK_HOST", "1")
    monkeypatch.setenv("LLORCH_KEYMAP", "/nonexistent/keymap.toml")
