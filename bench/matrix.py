"""Per-cell overhead of the matrix engine beyond the worker's own work.

For each cell the engine measures its wall time (cell_s) and the worker's own parts: spawn-to-ready as
the agent recorded it (process start + imports + load: WorkerRecord ready_at - started_at), the
generation durations the worker reported (/execute duration_ms), and the worker's shutdown (workers.stop).
overhead = cell_s - those; its main parts are printed after the bar (spawn rpc: the agent's time around the
worker's start; probe http: probe wall time minus the worker-reported durations; record: models.record_verdict). Both are measured in the same run, so the ratio overhead / worker's own
time is printed next to the absolute figure. Goal: overhead <= 0.3 s per cell on a local pool,
<= 0.5 s over SSH (a real OpenSSH sshd in a network namespace, as in tests/ssh: needs root).

    .venv/bin/python bench/matrix.py [--archs llama qwen2 phi3 mistral] [--no-ssh] [--synth-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ssh"))

from llorch_tui.config import Config, PoolConfig  # noqa: E402
from llorch_tui.fleet import Fleet  # noqa: E402
from llorch_tui.matrix.engine import MatrixEngine  # noqa: E402
from llorch_tui.matrix.events import CellFinished  # noqa: E402
from llorch_tui.matrix.options import MatrixOptions  # noqa: E402
from llorch_tui.paths import PoolPaths  # noqa: E402
from llorch_tui.pool.catalog_store import CatalogStore  # noqa: E402
from llorch_tui.protocol.catalog import Catalog  # noqa: E402
from llorch_tui.protocol.matrix import CellResult  # noqa: E402

GOALS = {"local": 0.3, "ssh": 0.5}


def synth(root: Path, archs: list[str]) -> dict[str, Path]:
    out = {a: root / f"tiny-{a}" for a in archs}
    procs = [subprocess.Popen([sys.executable, "-m", "llorch_worker.synth", "--out", str(d), "--architecture", a,
                               "--json"], stdout=subprocess.DEVNULL) for a, d in out.items() if not d.exists()]
    for p in procs:
        if p.wait(300) != 0:
            raise SystemExit("synthesizing a checkpoint failed")
    return out


def seed_catalog(state: Path, pool_id: str, models: dict[str, Path]) -> None:
    # The same catalog entries the test fixture `make_pool` writes (tests/conftest.py: synth_entry).
    import importlib.util

    spec = importlib.util.spec_from_file_location("llorch_tests_conftest", Path(__file__).resolve().parents[1] / "tests" / "conftest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    synth_entry = mod.synth_entry
    entries = [synth_entry(f"tiny-{a}", a, d) for a, d in models.items()]
    CatalogStore(PoolPaths(state), pool_id).save(Catalog.model_validate({"pool_id": pool_id, "models": entries}))


async def run_matrix(pool: PoolConfig) -> list[CellResult]:
    fleet = Fleet(Config(pools=[pool]))
    opts = MatrixOptions(backends=["cpu"], report_dir=None, record_verdicts=True, max_tokens=16)
    results: list[CellResult] = []
    try:
        async for ev in MatrixEngine(fleet, opts).run():
            if isinstance(ev, CellFinished):
                results.append(ev.result)
    finally:
        await fleet.close()
    return results


def report(kind: str, results: list[CellResult]) -> None:
    print(f"\n== {kind} pool: {len(results)} cells ==")
    print(f"{'cell':<28}{'verdict':>8}{'cell s':>9}{'start s':>9}{'gen s':>8}{'stop s':>8}{'overhead s':>12}{'ratio':>8}"
          f"  | {'spawn rpc':>9}{'probe http':>11}{'record':>8}")
    overheads = []
    for r in results:
        m = r.measurements
        own = (m.worker_start_s or 0) + (m.generation_s or 0) + (m.stop_s or 0)
        ratio = (m.overhead_s or 0) / own if own else 0.0
        if m.overhead_s is not None:
            overheads.append(m.overhead_s)
        print(f"{r.key.id:<28}{r.verdict:>8}{m.cell_s or 0:>9.3f}{m.worker_start_s or 0:>9.3f}{m.generation_s or 0:>8.3f}"
              f"{m.stop_s or 0:>8.3f}{m.overhead_s if m.overhead_s is not None else float('nan'):>12.3f}{ratio:>8.3f}"
              f"  | {(m.spawn_s or 0) - (m.worker_start_s or 0):>9.3f}{(m.probe_s or 0) - (m.generation_s or 0):>11.3f}"
              f"{m.record_s or 0:>8.3f}")
    if overheads:
        med, worst = statistics.median(overheads), max(overheads)
        goal = GOALS[kind]
        print(f"{kind}: overhead per cell median {med:.3f} s, max {worst:.3f} s (goal <= {goal} s): "
              f"{'OK' if worst <= goal else 'OVER GOAL'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["llama", "qwen2", "phi3", "mistral"])
    ap.add_argument("--no-ssh", action="store_true")
    ap.add_argument("--synth-dir", help="reuse checkpoints here (made when missing)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="llorch-bench-matrix-") as tmp:
        root = Path(tmp)
        models = synth(Path(a.synth_dir) if a.synth_dir else root / "synth", a.archs)
        state = root / "local-state"
        seed_catalog(state, "local", models)
        report("local", asyncio.run(run_matrix(PoolConfig(name="local", state_dir=str(state)))))
        if a.no_ssh:
            return 0
        from sshd_env import SshdEnv, sshd_available

        why = sshd_available()
        if why:
            print(f"\nssh: skipped ({why})")
            return 0
        with SshdEnv(pools=("a",)) as env:
            kw = env.pool_kwargs("a")
            seed_catalog(Path(str(kw["state_dir"])), "a", models)
            report("ssh", asyncio.run(run_matrix(PoolConfig(**kw))))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
