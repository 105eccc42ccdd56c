"""Which torch backends a worker could use here: `python -m llorch_worker.probe --json`, cached.

The probe imports torch (several seconds), so its answer is cached in the state dir with a short
TTL; spawn and `status --probe` refresh it. The agent itself never imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from llorch_tui.fsutil import file_lock, save_state_file
from llorch_tui.protocol.status import ProbeInfo
from llorch_tui.pool.child_env import child_env

PROBE_TTL_S = float(os.environ.get("LLORCH_PROBE_TTL_S", "300"))
PROBE_TIMEOUT_S = 120.0


def _cache_path(state_dir: Path) -> Path:
    return state_dir / "probe.json"


def read_cached(state_dir: Path, ttl_s: float = PROBE_TTL_S) -> ProbeInfo | None:
    path = _cache_path(state_dir)
    try:
        doc = json.loads(path.read_text())
        info = ProbeInfo.model_validate(doc)
    except (OSError, ValueError):
        return None
    # Keyed by interpreter: another venv on the same pool may have another torch.
    if doc.get("python_executable") != sys.executable or time.time() - info.probed_at > ttl_s:
        return None
    info.cached = True
    return info


def run_probe(python: str = sys.executable) -> ProbeInfo:
    """Run the probe in a subprocess. A missing or broken worker install is reported, cpu stays usable."""
    try:
        proc = subprocess.run([python, "-m", "llorch_worker.probe", "--json"], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, env=child_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ProbeInfo(errors=[f"backend probe failed to run: {exc}"], probed_at=time.time())
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return ProbeInfo(errors=[f"backend probe exited {proc.returncode}: {tail} "
                                 "(is llorch-worker installed? pip install llorch-worker)"], probed_at=time.time())
    try:
        info = ProbeInfo.model_validate(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError) as exc:
        return ProbeInfo(errors=[f"backend probe printed no JSON: {exc}"], probed_at=time.time())
    info.probed_at = time.time()
    return info


def probe_backends(state_dir: Path, refresh: bool = False, ttl_s: float = PROBE_TTL_S) -> ProbeInfo:
    """Cached probe; concurrent agents share one probe run through the lock."""
    if not refresh:
        cached = read_cached(state_dir, ttl_s)
        if cached is not None:
            return cached
    with file_lock(state_dir / "probe.json.lock", timeout=PROBE_TIMEOUT_S + 10):
        if not refresh:
            cached = read_cached(state_dir, ttl_s)
            if cached is not None:
                return cached
        info = run_probe()
        # cpu is always usable for the agent's purposes: the worker reports a broken torch itself.
        info.backends["cpu"] = True
        doc = info.model_dump(mode="json")
        doc["python_executable"] = sys.executable
        save_state_file(_cache_path(state_dir), json.dumps(doc, indent=1), "probe cache")
        return info


def usable_backends(info: ProbeInfo) -> list[str]:
    return [b for b in ("cpu", "cuda", "metal") if info.backends.get(b)]
