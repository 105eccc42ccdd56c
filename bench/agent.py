"""Benchmark: a `pool.status` call through the long-lived stdio service vs a fresh `llorch-pool status --json`.

Both measured in the same run on the same (temporary) pool state; prints the medians and their ratio.

    .venv/bin/python bench/agent.py [--fresh N] [--service N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig


def agent_argv(state: Path) -> list[str]:
    beside = Path(sys.executable).parent / "llorch-pool"
    exe = [str(beside)] if beside.exists() else [sys.executable, "-m", "llorch_tui.pool.cli.main"]
    return [*exe, "--state-dir", str(state), "--pool-id", "bench"]


def fresh_process(state: Path, n: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLORCH_")}
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        proc = subprocess.run([*agent_argv(state), "status", "--json"], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=120)
        times.append(time.perf_counter() - t0)
        assert proc.returncode == 0 and json.loads(proc.stdout)["pool_id"] == "bench", proc.stderr
    return times


async def through_service(state: Path, n: int, warmup: int = 5) -> list[float]:
    client = PoolClient(PoolConfig(name="bench", state_dir=str(state)))
    try:
        await client.start()
        for _ in range(warmup):  # warm: imports done, caches filled, the first-call costs paid
            await client.api.pool.status()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            st = await client.api.pool.status()
            times.append(time.perf_counter() - t0)
            assert st.pool_id == "bench"
        return times
    finally:
        await client.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fresh", type=int, default=10, help="fresh processes to time (default 10)")
    p.add_argument("--service", type=int, default=50, help="service calls to time (default 50)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="llorch-bench-") as tmp:
        state = Path(tmp) / "state"
        service = asyncio.run(through_service(state, args.service))
        fresh = fresh_process(state, args.fresh)
    med_s, med_f = statistics.median(service), statistics.median(fresh)
    out = {"service_median_ms": round(med_s * 1000, 2), "fresh_median_ms": round(med_f * 1000, 1),
           "ratio_service_over_fresh": round(med_s / med_f, 4), "speedup": round(med_f / med_s, 1),
           "n_service": args.service, "n_fresh": args.fresh, "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"pool.status through the stdio service: median {out['service_median_ms']} ms (n={args.service})")
        print(f"fresh `llorch-pool status --json`:      median {out['fresh_median_ms']} ms (n={args.fresh})")
        print(f"ratio service / fresh = {out['ratio_service_over_fresh']} ({out['speedup']}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
