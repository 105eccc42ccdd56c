"""Fleet tests: fit estimates, pool-to-pool copies, archives, installs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ARCHS = ("llama", "qwen2", "phi3", "mistral")


@pytest.fixture(scope="session")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four `small` synthetic checkpoints (~26M parameters, 100 MB each), made once. Read-only."""
    root = tmp_path_factory.mktemp("small")
    out = {a: root / f"small-{a}" for a in ARCHS}
    procs = {a: subprocess.Popen([sys.executable, "-m", "llorch_worker.synth", "--out", str(d), "--architecture", a,
                                  "--size", "small", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a, d in out.items()}
    try:
        for a, p in procs.items():
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, f"synth {a}: {err}"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return out
