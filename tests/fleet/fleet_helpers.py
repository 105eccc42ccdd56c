"""Helpers for the fleet tests: the agent CLI, a mirror process, a worker's peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from contextlib import AbstractContextManager
from typing import Any

from sshd_mirror import mirror_process

BIN = Path(sys.executable).parent
AGENT = str(BIN / "llorch-pool")
LLORCH = str(BIN / "llorch")
DATA = Path(__file__).parent / "data"


def agent(state: Path, *args: str, timeout: float = 300) -> Any:
    """`llorch-pool --state-dir STATE ARGS --json`: the result document (asserts exit 0)."""
    r = subprocess.run([AGENT, "--state-dir", str(state), *args, "--json"], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{args}: {r.stdout[-2000:]} {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def mirror(state: Path) -> AbstractContextManager[str]:
    """`llorch-pool mirror serve` of a pool on loopback; yields its URL, stops it on exit."""
    return mirror_process([AGENT, "--state-dir", str(state), "mirror", "serve", "--host", "127.0.0.1", "--port", "0",
                           "--print-url"])


def mirror_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.rstrip("/") + "/api/llorch/stats", timeout=30) as r:
        return json.loads(r.read())


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (Linux VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def measure_peak(model: Path, prompt_tokens: int, dtype: str = "auto") -> tuple[int, int]:
    """A real worker serving `model` on cpu, one request of ~prompt_tokens: (tokens held, peak RSS).
    Also bench/fit_calibration.py's measurement."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    ids = tok("the sea is calm tonight and the ships sail slowly home " * (prompt_tokens // 8 + 8))["input_ids"]
    proc = subprocess.Popen([str(BIN / "llorch-worker"), "--worker-id", "fit", "--model", str(model), "--backend",
                             "cpu", "--port", "0", "--max-batch", "1", "--dtype", dtype],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:
            if line.startswith("LLORCH_WORKER_READY "):
                port = json.loads(line.split(" ", 1)[1])["port"]
                break
        assert port, "the worker never became ready"
        body = json.dumps({"prompt": tok.decode(ids[:prompt_tokens]), "max_tokens": 4, "ignore_eos": True}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/execute", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=1800) as r:
            out = json.loads(r.read())
        return out["prompt_tokens"] + out["tokens_generated"], peak_rss(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
