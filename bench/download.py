"""Benchmark: `models download` (ranged fetch + sha256 while streaming) vs the plain HF client, and a resume.

One run, one mirror (`llorch-pool mirror serve`, unthrottled, loopback), one random weights file:
  baseline   snapshot_download(..., endpoint=mirror)            (the client alone: size check only)
  llorch     models.download in-process                          (ranged GETs + sha256 + git sha1 + catalog)
  resume     a `llorch-pool models download` killed at ~50 %, then started again: time and bytes of the rest
Prints the times and the ratios llorch / baseline and resume / full.

    .venv/bin/python bench/download.py [--mib 256] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llorch_tui.pool.ops import AgentSettings, InProcessExecutor
from llorch_tui.pool_api import PoolApi
from llorch_tui.protocol.params import DownloadParams, RegisterParams

CLI = [sys.executable, "-m", "llorch_tui.pool.cli.main"]


def weights(path: Path, size: int) -> None:
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        left = size
        while left:
            n = min(left, 16 << 20)
            f.write(os.urandom(n))
            left -= n


def api(state: Path) -> PoolApi:
    return PoolApi(InProcessExecutor(AgentSettings(state_dir=state, pool_id=state.name)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256, help="size of the weights file (MiB)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="llorch-bench-dl-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LLORCH_"))}
    env["HF_HOME"] = str(root / "hf-home")
    mirror = None
    try:
        ck = root / "ck"
        ck.mkdir()
        (ck / "config.json").write_text(json.dumps({"model_type": "llama"}))
        weights(ck / "model.safetensors", args.mib << 20)
        src = root / "src"
        asyncio.run(api(src).models.register(RegisterParams(id="m", path=str(ck), architecture="llama", repo="bench/m")))
        mirror = subprocess.Popen([*CLI, "--state-dir", str(src), "--pool-id", "src", "mirror", "serve", "--port", "0",
                                   "--print-url"], stdout=subprocess.PIPE, text=True, env=env)
        url = mirror.stdout.readline().strip()  # type: ignore[union-attr]

        from huggingface_hub import snapshot_download

        t = time.perf_counter()
        snapshot_download("bench/m", endpoint=url, local_dir=root / "baseline", cache_dir=root / "hf-cache")
        baseline_s = time.perf_counter() - t

        dst = root / "dst"
        asyncio.run(api(dst).models.register(RegisterParams(id="m", repo="bench/m", architecture="llama")))
        t = time.perf_counter()
        full = asyncio.run(api(dst).models.download(DownloadParams(id="m", endpoint=url)))
        llorch_s = time.perf_counter() - t

        again = root / "again"
        asyncio.run(api(again).models.register(RegisterParams(id="m", repo="bench/m", architecture="llama")))
        argv = [*CLI, "--state-dir", str(again), "--pool-id", "again", "models", "download", "m", "--endpoint", url,
                "--json"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        for line in proc.stdout:  # type: ignore[union-attr]
            d = json.loads(line).get("data", {})
            if d.get("bytes_total") and d["bytes_done"] >= d["bytes_total"] / 2:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
        t = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
        resume_s = time.perf_counter() - t
        resumed = json.loads(out.strip().splitlines()[-1])
        res = {"size_mib": args.mib, "baseline_s": round(baseline_s, 3), "llorch_s": round(llorch_s, 3),
               "llorch_over_baseline": round(llorch_s / baseline_s, 2),
               "resume_s_incl_process_start": round(resume_s, 3),
               "resume_bytes_fraction": round(resumed["bytes_fetched"] / resumed["bytes_total"], 3),
               "full_bytes": full.bytes_total}
        if args.json:
            print(json.dumps(res))
        else:
            for k, v in res.items():
                print(f"{k:30} {v}")
        return 0
    finally:
        if mirror is not None:
            mirror.terminate()
            mirror.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
