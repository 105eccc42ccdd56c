"""Where llorch keeps things. XDG by default, overridable by flags and LLORCH_* variables."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "llorch"


def config_file() -> Path:
    """$LLORCH_CONFIG, else ~/.config/llorch/config.toml (XDG)."""
    env = os.environ.get("LLORCH_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def control_state_dir() -> Path:
    """State of the control plane itself (jobs, matrix history): $LLORCH_CONTROL_DIR or XDG data/control."""
    env = os.environ.get("LLORCH_CONTROL_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP)) / "control"


def pool_state_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """A pool's state directory: --state-dir, $LLORCH_STATE_DIR, else ~/.local/share/llorch/pool."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("LLORCH_STATE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP)) / "pool"


def examples_cache_dir() -> Path:
    """Example models (`llorch-pool models fetch-example`): $LLORCH_EXAMPLES_DIR, else ~/.cache/llorch/examples.

    A cache, not state: it survives between runs and may be deleted at any time."""
    env = os.environ.get("LLORCH_EXAMPLES_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir(APP)) / "examples"


class PoolPaths:
    """The files of one pool's state directory. The agent is stateless between calls: this is its state."""

    def __init__(self, state_dir: Path, models_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.models_dir = models_dir or Path(os.environ.get("LLORCH_MODELS_DIR", "") or state_dir / "models")

    @property
    def catalog(self) -> Path:
        return self.state_dir / "catalog.json"

    @property
    def catalog_lock(self) -> Path:
        return self.state_dir / "catalog.json.lock"

    @property
    def workers(self) -> Path:
        return self.state_dir / "workers.json"

    @property
    def workers_lock(self) -> Path:
        return self.state_dir / "workers.json.lock"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def downloads_dir(self) -> Path:
        """Partial downloads live here until verified, so a half-fetched file never looks complete."""
        return self.state_dir / "downloads"

    def model_dir(self, model_id: str) -> Path:
        return self.models_dir / model_id

    def ensure(self) -> "PoolPaths":
        for d in (self.state_dir, self.models_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self
