"""Matrix fixtures. Every cell spawns a real worker (~8 s), so the expensive run happens ONCE per session:
`main_run` runs the headless matrix over all four architectures plus a corrupted copy, in bench and
stability mode, and kills one worker mid-cell; many tests then assert on its outputs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from matrix_helpers import (ARCHS, CORRUPT_MODEL, KILLED_MODEL, STABILITY_REQUESTS, MainRun,  # noqa: E402
                            corrupt_copy, run_headless, write_config)

@pytest.fixture(scope="session")
def matrix_pool(make_pool, tmp_path_factory: pytest.TempPathFactory, synth_models: dict[str, Path]) -> Path:
    state = make_pool(models=ARCHS, pool_id="local")
    bad = corrupt_copy(synth_models["llama"], tmp_path_factory.mktemp("corrupt") / "tiny-llama-corrupt")
    proc = subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state), "--pool-id",
                           "local", "models", "register", CORRUPT_MODEL, "--path", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return state


@pytest.fixture(scope="session")
def main_run(matrix_pool: Path, tmp_path_factory: pytest.TempPathFactory) -> MainRun:
    root = tmp_path_factory.mktemp("matrix-main")
    report_dir = root / "reports"
    # Two cells at once on the cpu: exercises the per-device slots and halves the wall time.
    config = write_config(root / "config.toml", matrix_pool, report_dir, parallel=2, max_tokens=8)
    pids: dict[str, int] = {}
    killed: list[int] = []

    def on_stderr(line: str, _proc: subprocess.Popen[str]) -> str | None:
        # ".. local/cpu/tiny-mistral: probing (worker ID pid PID port PORT)", later ".. ...: stability"
        m = re.match(r"\.\. local/cpu/(\S+): probing \(worker \S+ pid (\d+)", line)
        if m:
            pids[m.group(1)] = int(m.group(2))
        if line.startswith(f".. local/cpu/{KILLED_MODEL}: stability") and not killed:
            pid = pids[KILLED_MODEL]
            os.kill(pid, signal.SIGKILL)  # mid-cell: the worker is serving the stability requests
            killed.append(pid)
            return f"killed {pid}"
        return None

    run = run_headless(config, "--bench", "2", "--stability", "--stability-requests", str(STABILITY_REQUESTS),
                       on_stderr=on_stderr)
    snapshot = root / "reports-main"
    if report_dir.exists():
        shutil.copytree(report_dir, snapshot)
    return MainRun(run, matrix_pool, snapshot, report_dir, config, killed[0] if killed else None)
