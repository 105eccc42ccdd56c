"""Warm worker starts: spawn→ready and matrix wall time, forked from the pool's template vs cold exec.

One run, interleaved: R rounds of [a matrix over the tiny models with cold starts
(LLORCH_WORKER_TEMPLATE=off in the pool's env), the same matrix with warm starts]. Each cell's
spawn→ready is the matrix engine's `spawn_s` (the workers.spawn call, as the control plane waits for
it); the matrix wall time is from the first event to the last. The template is started once before
the rounds (its start is printed apart: a pool pays it once per worker-package version, lazily).
Medians over the rounds, and the ratios cold ÷ warm. Goals: warm spawn→ready ≤ 1.5 s,
matrix ≥ 3× faster than cold. Where the time goes: each start's stages as the worker reported them
(its LLORCH_WORKER_READY line: process, weights_to_ram, to_device, warmup; load_s = the tokenizer
and those after `process`), the rest of spawn→ready (supervisor start, the fork request, the ready
callback, the control plane's round trip) and the other phases of a cell (probes, stop), medians.

    .venv/bin/python bench/warm_start.py [--rounds 3] [--archs llama qwen2 phi3 mistral] [--synth-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from llorch_tui.config import Config, PoolConfig
from llorch_tui.fleet import Fleet
from llorch_tui.matrix.engine import MatrixEngine
from llorch_tui.matrix.events import CellFinished
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.pool import template_client
from llorch_tui.protocol.matrix import CellResult

GOAL_SPAWN_S = 1.5
GOAL_MATRIX_RATIO = 3.0


def _bench_matrix_module():  # type: ignore[no-untyped-def]
    """bench/matrix.py's checkpoint and catalog helpers (one copy of them)."""
    spec = importlib.util.spec_from_file_location("llorch_bench_matrix", Path(__file__).with_name("matrix.py"))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def run_matrix(pool: PoolConfig) -> tuple[float, list[CellResult]]:
    fleet = Fleet(Config(pools=[pool]))
    opts = MatrixOptions(backends=["cpu"], report_dir=None, record_verdicts=False, max_tokens=8)
    results: list[CellResult] = []
    t0 = time.perf_counter()
    try:
        async for ev in MatrixEngine(fleet, opts).run():
            if isinstance(ev, CellFinished):
                results.append(ev.result)
    finally:
        await fleet.close()
    return time.perf_counter() - t0, results


def ready_lines(logs: Path, seen: set[Path]) -> list[dict]:  # type: ignore[type-arg]
    """The LLORCH_WORKER_READY documents of worker logs not in `seen` (which gains them)."""
    docs = []
    for log in sorted(logs.glob("*.log")):
        if log in seen or log.name == "template.log":
            continue
        seen.add(log)
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("LLORCH_WORKER_READY "):
                docs.append(json.loads(line.split(" ", 1)[1]))
    return docs


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine_state() -> str:
    load = os.getloadavg()
    return f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--archs", nargs="+", default=["llama", "qwen2", "phi3", "mistral"])
    ap.add_argument("--synth-dir", help="reuse checkpoints here (made when missing)")
    a = ap.parse_args()
    helpers = _bench_matrix_module()
    print(f"machine: {machine_state()}")
    with tempfile.TemporaryDirectory(prefix="llorch-bench-warm-") as tmp:
        root = Path(tmp)
        models = helpers.synth(Path(a.synth_dir) if a.synth_dir else root / "synth", a.archs)
        state = root / "state"
        helpers.seed_catalog(state, "local", models)
        warm_pool = PoolConfig(name="local", state_dir=str(state), env={"LLORCH_WORKER_TEMPLATE": "on"})
        cold_pool = PoolConfig(name="local", state_dir=str(state), env={"LLORCH_WORKER_TEMPLATE": "off"})
        try:
            first_s, first = asyncio.run(run_matrix(warm_pool))  # starts the template (lazily, in its 1st cell)
            print(f"first warm matrix (includes the template's start): {first_s:.2f} s; its first cell "
                  f"spawn→ready {first[0].measurements.spawn_s or 0:.2f} s")
            spawn: dict[str, list[float]] = {"cold": [], "warm": []}
            wall: dict[str, list[float]] = {"cold": [], "warm": []}
            phases: dict[str, dict[str, list[float]]] = {"cold": {}, "warm": {}}
            seen: set[Path] = set()
            ready_lines(state / "logs", seen)  # the first warm matrix's
            for r in range(a.rounds):
                for kind, pool in (("cold", cold_pool), ("warm", warm_pool)):
                    s, results = asyncio.run(run_matrix(pool))
                    bad = [c.key.id for c in results if c.verdict != "pass"]
                    if bad:
                        print(f"  {kind} round {r + 1}: cells did not pass: {bad}")
                    wall[kind].append(s)
                    spawn[kind] += [c.measurements.spawn_s for c in results if c.measurements.spawn_s is not None]
                    ph = phases[kind]
                    for doc in ready_lines(state / "logs", seen):
                        for stage, v in {**doc.get("startup", {}), "load_s": doc.get("load_s")}.items():
                            if isinstance(v, (int, float)):
                                ph.setdefault(stage, []).append(v)
                    for c in results:
                        m = c.measurements
                        for name in ("probe_s", "stop_s", "record_s", "overhead_s", "cell_s"):
                            v = getattr(m, name)
                            if v is not None:
                                ph.setdefault(name, []).append(v)
                    print(f"  round {r + 1} {kind}: matrix {s:.2f} s, spawn→ready "
                          + ", ".join(f"{c.measurements.spawn_s or 0:.2f}" for c in results))
        finally:
            template_client.stop(state)
    ms, mw = statistics.median(spawn["cold"]), statistics.median(spawn["warm"])
    ws, ww = statistics.median(wall["cold"]), statistics.median(wall["warm"])
    print(f"\nspawn→ready median: cold {ms:.2f} s, warm {mw:.2f} s ({ms / mw:.1f}× faster; goal warm ≤ "
          f"{GOAL_SPAWN_S} s: {'OK' if mw <= GOAL_SPAWN_S else 'OVER GOAL'})")
    print(f"matrix over {len(a.archs)} tiny models, median: cold {ws:.2f} s, warm {ww:.2f} s ({ws / ww:.2f}×; "
          f"goal ≥ {GOAL_MATRIX_RATIO}×: {'OK' if ws / ww >= GOAL_MATRIX_RATIO else 'NOT MET'})")
    print("\nwhere the time goes (medians, s):")
    print(f"  {'':6} {'spawn→ready':>11} {'process':>8} {'load_s':>7} {'(weights':>9} {'device':>7} "
          f"{'warmup)':>8} {'rest':>6} | {'probes':>7} {'stop':>6} {'cell':>6}")
    for kind in ("cold", "warm"):
        ph = phases[kind]
        sp, pr, ld = med(spawn[kind]), med(ph.get("process", [])), med(ph.get("load_s", []))
        print(f"  {kind:6} {sp:11.2f} {pr:8.2f} {ld:7.2f} {med(ph.get('weights_to_ram', [])):9.2f} "
              f"{med(ph.get('to_device', [])):7.2f} {med(ph.get('warmup', [])):8.2f} {sp - pr - ld:6.2f} | "
              f"{med(ph.get('probe_s', [])):7.2f} {med(ph.get('stop_s', [])):6.2f} {med(ph.get('cell_s', [])):6.2f}")
    print("  (rest = spawn→ready − process − load_s: supervisor start, fork request, ready callback, round trip)")
    print(f"machine after: {machine_state()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
