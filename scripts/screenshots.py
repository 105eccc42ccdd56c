"""Export the README's screenshots (screenshots/*.svg) from the real app on a real local pool.

    .venv/bin/python scripts/screenshots.py [--out screenshots]     (make screenshots)

Everything is real: a fresh pool state dir in a temp directory, two synthetic checkpoints made by
the agent (`models.synth`), a real worker, and a real matrix run on the cpu backend. Also an SSH
pool that cannot be reached, to show how an offline pool looks, and a second local pool named
`recorded-gpu` whose agent finds a *recorded* `nvidia-smi` on its PATH (the only stand-in: this
machine has no GPU), to show the GPU gauges. Takes about a minute on a laptop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llorch_tui.config import SEED_PRESETS, Config, MatrixConfig, PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.protocol.workers import WorkerRecord
from llorch_tui.protocol.params import RegisterParams, SpawnParams, StopParams, SynthParams
from llorch_tui.tui.app import LlorchApp

SIZE = (130, 38)
# Recorded `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` answers (an RTX 4090 box), one per call.
SMI_SAMPLES = [("14812", "61"), ("17934", "78"), ("21206", "93"), ("22310", "97"), ("19020", "70")]


def recorded_smi(bindir: Path) -> None:
    bindir.mkdir(parents=True, exist_ok=True)
    cases = "\n".join(f"  {i}) echo '0, NVIDIA GeForce RTX 4090, {used}, 24564, {util}, GPU-rec0'; "
                      f"echo '1, NVIDIA GeForce RTX 4090, 3120, 24564, 4, GPU-rec1' ;;"
                      for i, (used, util) in enumerate(SMI_SAMPLES))
    script = bindir / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
# Recorded output for the screenshots (no GPU on this machine); cycles through {len(SMI_SAMPLES)} samples.
n=$(cat "{bindir}/n" 2>/dev/null || echo 0); echo $(( (n + 1) % {len(SMI_SAMPLES)} )) > "{bindir}/n"
case $n in
{cases}
esac
""")
    script.chmod(0o755)


async def wait(pilot, cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        await pilot.pause(0.1)


async def shoot(out: Path, work: Path) -> None:
    state = work / "pool"
    recorded_smi(work / "smi")
    config = Config(
        pools=[PoolConfig(name="local", state_dir=str(state)),
               PoolConfig(name="recorded-gpu", state_dir=str(work / "gpu-pool"),
                          env={"PATH": f"{work / 'smi'}:{os.environ.get('PATH', '')}"}),
               PoolConfig(name="gpu-box", transport="ssh", host="gpu-box.invalid", connect_timeout_s=3)],
        models=list(SEED_PRESETS),
        matrix=MatrixConfig(backends=["cpu", "cuda"], models=["tiny-llama", "tiny-qwen"], pools=["local"],
                            report_dir="reports"))  # relative: the screenshot shows short paths
    app = LlorchApp(config)
    async with app.run_test(size=SIZE) as pilot:
        try:
            await _scenes(app, pilot, out)
        finally:  # workers are detached processes: never leave one behind, whatever happened
            await app.fleet.api("local").workers.stop(StopParams(all=True))


async def _spawn(app: LlorchApp) -> WorkerRecord:
    for attempt in range(3):
        try:
            return await app.fleet.api("local").workers.spawn(SpawnParams(model="tiny-llama", backend="cpu"))
        except LlorchError as exc:  # another process took the port meanwhile: the agent picks the next one
            if exc.code != ErrorCode.PORT_IN_USE or attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _requests(port: int, n: int = 3) -> None:
    """Real requests to the worker, so its row shows requests, tokens/s and memory."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            async with http.post(f"http://127.0.0.1:{port}/v1/completions",
                                 json={"prompt": "The dashboard", "max_tokens": 24}) as r:
                r.raise_for_status()


async def _scenes(app: LlorchApp, pilot, out: Path) -> None:
    await wait(pilot, lambda: app.refreshes >= 2, 60, "the local pools")
    models = app.fleet.api("local").models
    await models.synth(SynthParams(id="tiny-llama", architecture="llama"))
    await models.synth(SynthParams(id="tiny-qwen", architecture="qwen2"))
    await models.register(RegisterParams(id="qwen-0.5b"))
    rec = await _spawn(app)
    await _requests(rec.port)
    app.refresh_all(force=True)
    await wait(pilot, lambda: app.model.pools["gpu-box"].conn == "offline", 60, "the ssh pool to fail")
    n = app.refreshes
    await wait(pilot, lambda: app.refreshes >= n + 3, 30, "refreshes")
    # The fit column: tiny models estimated from their files; qwen-0.5b (not downloaded) from the Hub's metadata,
    # which an offline machine cannot read (it then shows why).
    await wait(pilot, lambda: app.model.fits.records and app.model.fits.settled(), 120, "the fit estimates")
    app.refresh_all(force=True)
    await pilot.pause(0.5)
    app.save_screenshot("dashboard.svg", str(out))
    await pilot.click("#pools", offset=(2, 4))  # select recorded-gpu (border, header, All, local, …)
    await pilot.pause(0.5)
    app.save_screenshot("dashboard-gpu.svg", str(out))
    await pilot.click("#pools", offset=(2, 2))  # back to All

    await pilot.press("s")
    await wait(pilot, lambda: type(app.screen).__name__ == "SpawnModal", 10, "the spawn modal")
    await pilot.pause(0.3)
    app.save_screenshot("spawn-modal.svg", str(out))
    await pilot.press("escape")
    await pilot.press("question_mark")
    await wait(pilot, lambda: type(app.screen).__name__ == "HelpScreen", 10, "help")
    await pilot.pause(0.3)
    app.save_screenshot("help.svg", str(out))
    await pilot.press("escape")
    await app.fleet.api("local").workers.stop(StopParams(all=True))

    await pilot.press("2")
    await wait(pilot, lambda: type(app.screen).__name__ == "MatrixScreen", 10, "the matrix")
    await pilot.press("g")
    screen = app.screen
    await wait(pilot, lambda: any(c.status == "running" and c.stage in ("loading", "probing")
                                  for c in screen.grid.cells.values()), 120, "a running cell")
    await pilot.pause(0.3)
    app.save_screenshot("matrix-running.svg", str(out))
    await wait(pilot, lambda: screen.grid.summary is not None, 300, "the end of the run")
    await pilot.press("right")
    await pilot.pause(0.5)
    app.save_screenshot("matrix-finished.svg", str(out))

    # A small terminal: 80x24 still shows pools, catalog, workers (state first) and `q` / `?` in the footer.
    await pilot.press("1")
    await wait(pilot, lambda: type(app.screen).__name__ == "DashboardScreen", 10, "the dashboard")
    await pilot.resize_terminal(80, 24)
    await pilot.pause(0.5)
    app.save_screenshot("dashboard-80x24.svg", str(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="screenshots", help="where the SVGs go (default: screenshots/)")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="llorch-shots-") as work:
        os.chdir(work)
        try:
            asyncio.run(shoot(out, Path(work)))
        finally:
            os.chdir(here)
            # The pool's warm worker template outlives the app (it idles out later): leave nothing running.
            subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(Path(work) / "pool"),
                            "worker", "template", "--stop"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           check=False)
    print("\n".join(str(p) for p in sorted(out.glob("*.svg"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
