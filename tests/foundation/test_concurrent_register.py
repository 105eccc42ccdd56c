"""Twenty real agent processes registering different models at the same moment leave twenty entries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

N = 20
# Each process pays its imports first, reports ready, then blocks on stdin: the test releases all of them
# with one write per pipe, so the registrations really overlap (no sleeps, no timing guesses).
CHILD = """
import sys
from llorch_tui.pool.cli.main import main
import llorch_tui.pool.models_ops  # noqa: F401  (load the op before the gate)
print("ready", flush=True)
sys.stdin.readline()
sys.exit(main(sys.argv[1:]))
"""


def test_twenty_processes_register_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    procs = [subprocess.Popen(
        [sys.executable, "-c", CHILD, "--state-dir", str(state), "--pool-id", "race", "models", "register",
         f"model-{i:02d}", "--repo", f"owner/model-{i:02d}", "--architecture", "llama", "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(N)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:  # the gate opens
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, results):
        assert p.returncode == 0, err
    catalog = json.loads((state / "catalog.json").read_text())
    assert sorted(m["id"] for m in catalog["models"]) == [f"model-{i:02d}" for i in range(N)]
    assert not [f for f in state.iterdir() if f.name.endswith(".tmp")]  # no temp file left behind
