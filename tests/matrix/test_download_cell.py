"""--download: a cell whose model is registered but missing on the pool downloads it first (from the download tests'
Hub-compatible mirror serving another pool, over the real huggingface_hub client), with progress events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from matrix_helpers import run_headless, write_config

from llorch_tui.matrix.events import CellFinished, CellProgress, parse_event

pytestmark = pytest.mark.slow


def _pool_cli(state: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state),
                             "--pool-id", "src", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def test_download_then_test(make_pool, tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LLORCH_"))}
    env["HF_HOME"] = str(tmp_path / "hf-home")
    src = make_pool(models=("llama",), pool_id="src")
    upd = _pool_cli(src, "models", "update", "tiny-llama", "--repo", "llorch-test/tiny-llama", env=env)
    assert upd.wait(120) == 0, upd.stderr.read() if upd.stderr else ""
    mirror = _pool_cli(src, "mirror", "serve", "--port", "0", "--print-url", env=env)
    try:
        assert mirror.stdout is not None
        url = mirror.stdout.readline().strip()  # printed once listening
        assert url.startswith("http://"), mirror.stderr.read() if mirror.stderr else ""
        dest = tmp_path / "dest-state"
        reg = subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(dest), "--pool-id",
                              "local", "models", "register", "tiny-llama", "--repo", "llorch-test/tiny-llama",
                              "--architecture", "llama"], capture_output=True, text=True, timeout=120, env=env)
        assert reg.returncode == 0, reg.stderr
        config = write_config(tmp_path / "config.toml", dest, tmp_path / "reports", hf_endpoint=url, max_tokens=8)
        events = []
        run = run_headless(config, "--backends", "cpu", "--download", "--json",
                           on_stdout=lambda line, _p: events.append(parse_event(line)), env=env)
    finally:
        mirror.terminate()
        mirror.wait(10)
    assert run.rc == 0, run.stderr_lines[-20:]
    stages = [e.stage for e in events if isinstance(e, CellProgress)]
    assert stages[0] == "downloading" and stages.index("downloading") < stages.index("spawning")
    fractions = [e.fraction for e in events if isinstance(e, CellProgress) and e.stage == "downloading" and e.fraction]
    assert fractions and fractions[-1] == 1.0
    done = [e.result for e in events if isinstance(e, CellFinished)]
    assert [(r.key.id, r.verdict) for r in done] == [("local/cpu/tiny-llama", "pass")]
    assert any(dest.rglob("model.safetensors"))  # the files landed on the destination pool
