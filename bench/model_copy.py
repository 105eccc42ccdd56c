"""Benchmark: `llorch models copy` between local pools vs copying the same files with cp + sha256.

One model (a synthetic `small` checkpoint, ~100 MB), three local pools (agents as child processes,
the same JSON-Lines sessions an SSH pool uses), interleaved runs, medians:
  baseline   shutil.copyfile of every file + sha256 of the copy   (what the bytes cost on this disk)
  copy x1    llorch models copy ID --from a --to b --route relay  (through the control plane, verified)
  copy x2    llorch models copy ID --from a --to b --to c --route relay (the source read once for both)
  direct x1  llorch models copy ID --from a --to b --route direct (b fetches from a's loopback mirror)
  lan x1     llorch models copy ID --from a --to b --route lan (b fetches from a's mirror on a's LAN address:
             here 127.0.0.1, as local pools share only loopback; the probe and the mirror's set-up included)
Prints the times and the ratios copy x1 / baseline, copy x2 / copy x1, direct x1 / baseline and lan x1 / direct x1.
On one machine the LAN route cannot show what it is for (the bytes not crossing the control plane's
links): tests/ssh/test_copy_lan.py measures that over real namespaced pools.

    .venv/bin/python bench/model_copy.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llorch_tui.config import Config, PoolConfig
from llorch_tui.fleet_ops.copy import Route, copy_model

CLI = [sys.executable, "-m", "llorch_tui.pool.cli.main"]


def baseline(src: Path, dst: Path) -> float:
    t = time.perf_counter()
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        shutil.copyfile(f, dst / f.name)
        h = hashlib.sha256()
        with (dst / f.name).open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return time.perf_counter() - t


def copy_once(root: Path, i: int, targets: int, route: Route = "relay") -> float:
    pools = [PoolConfig(name="a", state_dir=str(root / "a"), lan_address="127.0.0.1" if route == "lan" else None)]
    names = [f"t{i}x{targets}n{k}{route}" for k in range(targets)]
    pools += [PoolConfig(name=n, state_dir=str(root / n)) for n in names]
    t = time.perf_counter()
    result = asyncio.run(copy_model(Config(pools=pools), "m", "a", names, route=route))
    elapsed = time.perf_counter() - t
    assert result.ok and result.route == route, result.to_json()
    assert route != "relay" or result.bytes_read == result.bytes_total, result.to_json()
    for n in names:
        shutil.rmtree(root / n, ignore_errors=True)  # the disk of a small machine
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="llorch-bench-copy-"))
    try:
        model = root / "model"
        subprocess.run([sys.executable, "-m", "llorch_worker.synth", "--out", str(model), "--architecture", "llama",
                        "--size", "small", "--json"], check=True, capture_output=True, timeout=600)
        subprocess.run([*CLI, "--state-dir", str(root / "a"), "models", "register", "m", "--path", str(model)],
                       check=True, capture_output=True, timeout=120)
        size = sum(f.stat().st_size for f in model.iterdir())
        base, one, two, direct, lan = [], [], [], [], []
        for i in range(args.runs):  # interleaved: a busy moment hits all five alike
            base.append(baseline(model, root / f"plain{i}"))
            shutil.rmtree(root / f"plain{i}")
            one.append(copy_once(root, i, 1))
            two.append(copy_once(root, i, 2))
            direct.append(copy_once(root, i, 1, "direct"))
            lan.append(copy_once(root, i, 1, "lan"))
        out = {"bytes": size, "baseline_s": statistics.median(base), "copy1_s": statistics.median(one),
               "copy2_s": statistics.median(two), "direct1_s": statistics.median(direct), "lan1_s": statistics.median(lan), "runs": args.runs,
               "loadavg": os.getloadavg()}
        out["copy1_over_baseline"] = out["copy1_s"] / out["baseline_s"]
        out["copy2_over_copy1"] = out["copy2_s"] / out["copy1_s"]
        out["copy1_MiBps"] = size / out["copy1_s"] / 2**20
        out["direct1_over_baseline"] = out["direct1_s"] / out["baseline_s"]
        out["copy1_over_direct1"] = out["copy1_s"] / out["direct1_s"]
        out["lan1_over_direct1"] = out["lan1_s"] / out["direct1_s"]
        if args.json:
            print(json.dumps(out))
        else:
            print(f"{size / 2**20:.0f} MiB, median of {args.runs}: baseline (cp + sha256) {out['baseline_s']:.2f} s; "
                  f"copy to 1 pool {out['copy1_s']:.2f} s ({out['copy1_MiBps']:.1f} MiB/s, "
                  f"{out['copy1_over_baseline']:.1f}x the baseline); to 2 pools {out['copy2_s']:.2f} s "
                  f"({out['copy2_over_copy1']:.2f}x one pool); direct route to 1 pool {out['direct1_s']:.2f} s "
                  f"({out['direct1_over_baseline']:.1f}x the baseline, the relay takes {out['copy1_over_direct1']:.2f}x "
                  f"as long); LAN route to 1 pool {out['lan1_s']:.2f} s ({out['lan1_over_direct1']:.2f}x the direct "
                  f"route); load average {out['loadavg'][0]:.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
