"""Fixtures of the foundation tests (helpers live in foundation_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A pool state directory that does not exist yet (the agent creates it)."""
    return tmp_path / "pool-state"
