"""Dashboard benchmarks: startup to first frame, and CPU while a big fleet refreshes once a second.

    .venv/bin/python bench/tui.py [--seconds 10] [--pools 16] [--workers 32]

1. Startup: wall time from process start to the first frame of `llorch-tui`'s app on a local pool
   (goal <= 1 s), against a baseline measured in the same run: a bare Textual app's first frame.
2. CPU: 16 pools x 32 workers from an in-process SyntheticSource, fed through the same fetch ->
   DashboardModel -> LiveTable.sync path as real pools, refreshed every second (goal <= 10 % of
   one core), every worker's probed figures (requests, tokens, queue, memory) moving on every refresh;
   baseline: the same dashboard with the refresh timer effectively off. Baseline and measurement are
   interleaved (--rounds of each) and the medians compared, so a machine busy with other work weighs on
   both alike; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD_APP = r"""
import sys, time
t0 = float(sys.argv[1])
mode = sys.argv[2]
if mode == "bare":
    from textual.app import App
    from textual.widgets import Footer, Header
    class Bare(App):
        def compose(self):
            yield Header(); yield Footer()
        def on_mount(self):
            self.call_after_refresh(self.done)
        def done(self):
            print(time.time() - t0); self.exit()
    Bare().run(headless=True, size=(120, 40))
else:
    from llorch_tui.config import Config, PoolConfig
    from llorch_tui.tui.app import LlorchApp
    class Timed(LlorchApp):
        def on_ready(self):
            self.call_after_refresh(self.done)
        def done(self):
            print(time.time() - t0); self.exit()
    Timed(Config(pools=[PoolConfig(name="local", state_dir=sys.argv[3])])).run(headless=True, size=(120, 40))
"""


def first_frame(mode: str, state_dir: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", CHILD_APP, str(t0), mode, state_dir], capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            raise SystemExit(f"first-frame child failed: {out.stderr[-2000:]}")
        best = min(best, float(out.stdout.strip().splitlines()[-1]))
    return best


async def cpu_share(pools: int, workers: int, seconds: float, refresh_s: float) -> tuple[float, int]:
    from llorch_tui.config import Config, PoolConfig
    from llorch_tui.tui.app import LlorchApp
    from llorch_tui.tui.core.snapshot import SyntheticSource

    source = SyntheticSource(pools, workers)
    config = Config(pools=[PoolConfig(name=p) for p in source.pools])
    app = LlorchApp(config, source=source, refresh_s=refresh_s)
    async with app.run_test(size=(160, 50)) as pilot:
        while app.refreshes < pools:  # warm-up: every pool answered once, tables filled
            await pilot.pause(0.05)
        await pilot.pause(1.0)
        start_cpu, start_wall, start_n = time.process_time(), time.monotonic(), app.refreshes
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - start_cpu, time.monotonic() - start_wall
        done = app.refreshes - start_n
        rows = len(app.screen.query_one("#workers").shown)
    assert rows == pools * workers, f"expected {pools * workers} worker rows, saw {rows}"
    return cpu / wall, done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--pools", type=int, default=16)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved baseline/measurement pairs (median)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as state:
        bare = first_frame("bare", state)
        ours = first_frame("llorch", state)
    print(f"startup to first frame: llorch-tui {ours:.3f} s (goal <= 1 s), bare Textual app {bare:.3f} s, "
          f"ratio {ours / bare:.2f}x  [{'OK' if ours <= 1.0 else 'OVER GOAL'}]")
    idles, busies, counts = [], [], []
    for _ in range(args.rounds):
        idles.append(asyncio.run(cpu_share(args.pools, args.workers, args.seconds, refresh_s=3600))[0])
        busy, n = asyncio.run(cpu_share(args.pools, args.workers, args.seconds, refresh_s=1.0))
        busies.append(busy)
        counts.append(n)
    idle, busy = statistics.median(idles), statistics.median(busies)
    print(f"CPU, {args.pools} pools x {args.workers} workers refreshed every 1 s, worker figures probed: "
          f"median {busy:.1%} of one core over {args.rounds} runs ({', '.join(f'{b:.1%}' for b in busies)}; "
          f"goal <= 10 %; {statistics.median(counts):.0f} pool refreshes per {args.seconds:.0f} s); "
          f"same dashboard not refreshing, interleaved: median {idle:.1%}; refresh cost {busy - idle:.1%}  "
          f"[{'OK' if busy <= 0.10 else 'OVER GOAL'}]")
    load_after = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
