"""Pilot test: `d` downloads a model through the real huggingface_hub client from the project's
Hub-compatible mirror (a real HTTP server serving another pool's checkpoint), and it lands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from llorch_tui.config import Config, PoolConfig
from llorch_tui.protocol.params import RegisterParams
from llorch_tui.tui.app import LlorchApp
from llorch_tui.tui.widgets.live_table import LiveTable
from sshd_mirror import mirror_process
from tui_helpers import loaded, wait_for

CLI = [sys.executable, "-m", "llorch_tui.pool.cli.main"]
REPO = "llorch-test/tiny-llama"


@pytest.fixture
def mirror_url(make_pool) -> Iterator[str]:
    src = make_pool(("llama",), "source")
    subprocess.run([*CLI, "--state-dir", str(src), "--pool-id", "source", "models", "update", "tiny-llama",
                    "--repo", REPO], check=True, capture_output=True, timeout=60)
    with mirror_process([*CLI, "--state-dir", str(src), "--pool-id", "source", "mirror", "serve", "--port", "0",
                         "--print-url"]) as url:
        yield url


async def test_download_lands(tmp_path: Path, mirror_url: str) -> None:
    state = tmp_path / "dest"
    app = LlorchApp(Config(pools=[PoolConfig(name="dest", state_dir=str(state), hf_endpoint=mirror_url,
                                             env={"HF_HOME": str(tmp_path / "hf")})]))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await app.fleet.api("dest").models.register(RegisterParams(id="tiny-llama", repo=REPO, architecture="llama"))
        app.refresh_all(force=True)
        catalog = app.screen.query_one("#catalog", LiveTable)
        await wait_for(pilot, lambda: "dest/tiny-llama" in catalog.shown, 30, "the registered model")
        catalog.focus()
        await pilot.press("d")
        await wait_for(pilot, lambda: app.model.downloads.get("dest/tiny-llama") is not None
                       and app.model.downloads["dest/tiny-llama"].state == "done", 120, "the download")
        await wait_for(pilot, lambda: catalog.shown["dest/tiny-llama"][4].plain == "✓", 30, "have ✓")
        dl = app.model.downloads["dest/tiny-llama"].progress
        assert dl.bytes_total > 0
    files = {p.name for p in (state / "models" / "tiny-llama").iterdir()}
    assert "config.json" in files and any(f.endswith(".safetensors") for f in files)
