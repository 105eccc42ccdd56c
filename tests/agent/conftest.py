"""Fixtures of the agent tests (workers, status, stdio service). Helpers live in agent_helpers.py.

Every process a test starts carries LLORCH_STATE_DIR=<its temp state dir> (the agent puts it in the
worker's environment), so the session-end guard finds and kills whatever a failing test left behind in
any state dir these tests used, and fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from agent_helpers import STATE_DIRS, processes_under, stop_everything, stop_templates


@pytest.fixture(scope="session", autouse=True)
def no_worker_left_behind() -> Iterator[None]:
    yield
    for state in sorted(STATE_DIRS):
        stop_templates(state)
    left = [p for state in sorted(STATE_DIRS) for p in processes_under(state, templates=True)]
    for proc in left:
        try:
            proc.kill()
        except Exception:
            pass
    assert not left, f"processes left running after the agent tests: {[(p.pid, p.info) for p in left]}"


@pytest.fixture
def pool(make_pool) -> Iterator[Path]:
    """A fresh pool state dir with tiny-llama registered; any worker started in it is stopped afterwards."""
    state = make_pool(("llama",), pool_id="test")
    STATE_DIRS.add(state)
    yield state
    stop_everything(state)
