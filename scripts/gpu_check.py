#!/usr/bin/env python
"""The GPU check in one command (`make gpu-check`): real-size figures on a CUDA machine, offline.

1. builds the `--like` checkpoints (tinyllama, qwen-0.5b, phi3, mistral; bfloat16) into a pool state dir
   with `llorch-pool models synth --like` (no internet needed; kept between runs);
2. runs the worker benchmark (`bench/worker.py --backend cuda`) on qwen-0.5b-like;
3. runs the matrix over them on cuda in float16 and bfloat16 with `--bench` (pp/tg ± σ, TTFT/TPOT/ITL
   percentiles per concurrency, start-up stages);
4. writes the figures, with tg tok/s ÷ the memory-bandwidth roofline (bandwidth ÷ bytes of weights read
   per token), to docs/gpu-check.md.

`--dry-run` runs the same pipeline on the cpu with the tiny synthetic checkpoints (float32, two
reps, no transformers serve), writing to a temporary file unless `--out` says otherwise: it proves
the CPU-side parts on a machine without a GPU.

    .venv/bin/python scripts/gpu_check.py [--dry-run] [--likes ...] [--dtypes float16 bfloat16]
                                          [--reps 3] [--bandwidth-gbs N] [--work-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llorch_tui.bench_metrics import roofline_tps  # noqa: E402
from llorch_tui.config import Config, PoolConfig  # noqa: E402
from llorch_tui.fleet import Fleet  # noqa: E402
from llorch_tui.matrix.engine import MatrixEngine  # noqa: E402
from llorch_tui.matrix.events import CellFinished  # noqa: E402
from llorch_tui.matrix.options import MatrixOptions  # noqa: E402
from llorch_tui.pool import template_client  # noqa: E402
from llorch_tui.pool.gpu import query_gpus  # noqa: E402
from llorch_tui.protocol.matrix import CellResult  # noqa: E402
from llorch_tui.units import fmt_bytes  # noqa: E402

LIKES = ("tinyllama", "qwen-0.5b", "phi3", "mistral")
TINY = ("llama", "qwen2", "phi3", "mistral")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Peak memory bandwidth (GB/s) of common datacenter and workstation GPUs, by a substring of the NVML
# name; anything else: --bandwidth-gbs, else the NVML memory clock × bus width estimate.
BANDWIDTH_GBS = {"H200": 4800, "H100 SXM": 3350, "H100 PCIe": 2000, "H100 NVL": 3900, "H100": 3350,
                 "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864, "L40": 864,
                 "L4": 300, "A10G": 600, "A10": 600, "RTX 4090": 1008, "RTX 3090": 936, "V100": 900, "T4": 320}


def agent(state: Path, *args: str, timeout: float = 3600) -> dict[str, Any] | list[Any]:
    proc = subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state), "--pool-id",
                           "gpu-check", *args, "--json"], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"llorch-pool {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(doc, (dict, list))
    return doc


def gpu_bandwidth(name: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override * 1e9, "--bandwidth-gbs"
    for key, gbs in BANDWIDTH_GBS.items():
        if key in name:
            return gbs * 1e9, f"datasheet ({key})"
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        clock_hz = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM) * 1e6
        bus_bytes = pynvml.nvmlDeviceGetMemoryBusWidth(h) / 8
        return clock_hz * bus_bytes * 2, "NVML memory clock × bus width × 2 (estimate)"
    except Exception as exc:  # noqa: BLE001 - any NVML failure: no roofline, said in the report
        return None, f"unknown ({type(exc).__name__})"


def build_models(state: Path, dry: bool, likes: list[str]) -> list[str]:
    catalog = agent(state, "models", "list")
    have = {m["id"] for m in catalog["models"]} if isinstance(catalog, dict) else set()
    ids = []
    for name in (TINY if dry else likes):
        mid = f"tiny-{name}" if dry else f"{name}-like"
        if mid not in have:
            t0 = time.monotonic()
            kind = ["--architecture", name] if dry else ["--like", name, "--dtype", "bfloat16"]
            agent(state, "models", "synth", mid, *kind)
            print(f"built {mid} in {time.monotonic() - t0:.1f} s", flush=True)
        ids.append(mid)
    return ids


def worker_bench(state: Path, model_id: str, backend: str, dtype: str, reps: int, dry: bool, out: Path) -> dict[str, Any]:
    catalog = agent(state, "models", "list")
    assert isinstance(catalog, dict)
    path = next(m["path"] for m in catalog["models"] if m["id"] == model_id)
    argv = [sys.executable, str(REPO / "bench" / "worker.py"), "--model", path, "--backend", backend, "--dtype", dtype,
            "--reps", str(reps), "--json-out", str(out)]
    if dry:
        argv += ["--skip-serve", "--tokens", "32", "--burst-tokens", "16"]
    print("$ " + " ".join(argv), flush=True)
    subprocess.run(argv, check=True, timeout=7200)
    doc = json.loads(out.read_text())
    assert isinstance(doc, dict)
    return doc


async def matrix(state: Path, models: list[str], backend: str, dtypes: list[str], reps: int,
                 report_dir: Path) -> list[CellResult]:
    fleet = Fleet(Config(pools=[PoolConfig(name="gpu-check", state_dir=str(state))]))
    opts = MatrixOptions(models=models, backends=[backend], dtypes=dtypes, bench=reps, report_dir=str(report_dir),
                         record_verdicts=False, max_tokens=16, bench_concurrency=[1, 4, 16],
                         load_timeout_s=1800, request_timeout_s=600,
                         command="scripts/gpu_check.py")
    results: list[CellResult] = []
    try:
        async for ev in MatrixEngine(fleet, opts).run():
            if isinstance(ev, CellFinished):
                results.append(ev.result)
                print(f"  {ev.result.key.id}: {ev.result.verdict} {ev.result.reason or ''}", flush=True)
    finally:
        await fleet.close()
    return results


def weight_bytes(state: Path, model_id: str, dtype: str) -> int:
    """Bytes of weights a decode step reads, in the dtype the cell computed in."""
    catalog = agent(state, "models", "list")
    assert isinstance(catalog, dict)
    path = Path(next(m["path"] for m in catalog["models"] if m["id"] == model_id))
    params = 0
    for f in path.glob("*.safetensors"):
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                count = 1
                for d in v["shape"]:
                    count *= d
                params += count
    return params * DTYPE_BYTES.get(dtype, 4)


def write_report(out: Path, dry: bool, gpu: str, bw: float | None, bw_src: str, wb: dict[str, Any],
                 cells: list[CellResult], state: Path, load: tuple[float, float, float]) -> None:
    lines = [f"# GPU check{' (dry run on the cpu)' if dry else ''}", "",
             f"Written by `scripts/gpu_check.py{' --dry-run' if dry else ''}` on "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}: {platform.node()}, {gpu}; "
             f"memory bandwidth {bw / 1e9:.0f} GB/s ({bw_src})" if bw else
             f"Written by `scripts/gpu_check.py{' --dry-run' if dry else ''}` on "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}: {gpu}; "
             f"memory bandwidth unknown ({bw_src}): no roofline", "",
             f"Machine load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. The models are "
             "**synthetic** (`models synth --like`: the originals' exact shapes, random weights): the figures are "
             "those of the real models' compute and memory, the text is noise.", "",
             "## Worker benchmark (bench/worker.py)", "",
             "| model | backend / dtype | (a) worker ÷ raw generate | (b) burst ÷ sequential | (c) worker ÷ transformers serve |",
             "|---|---|---|---|---|",
             f"| {Path(str(wb.get('model'))).name} | {wb.get('backend')} / {wb.get('dtype')} | {wb.get('a_ratio', 0):.3f}× "
             f"({wb.get('a_worker_tps', 0):.1f} vs {wb.get('a_raw_generate_tps', 0):.1f} tok/s) | "
             f"{wb.get('b_ratio', 0):.2f}× | "
             + (f"{wb['c_ratio']:.2f}× ({wb['c_worker_burst_tps']:.1f} vs {wb['c_serve_burst_tps']:.1f} tok/s)"
                if wb.get("c_ratio") else "skipped") + " |", "",
             "## Matrix cells (matrix --bench)", "",
             "| cell | verdict | weights | pp tok/s | tg tok/s | roofline tok/s | tg ÷ roofline | TTFT p50/p99 ms (c=1) "
             "| ITL p50/p99 ms (c=4) | throughput c=16 | device peak | start-up s (process / disk→RAM / →device / warm-up) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: c.key.id):
        b = c.bench
        if b is None or b.pp_tps_mean is None:
            lines.append(f"| `{c.key.id}` | {c.verdict} {c.reason_code or ''} | | | | | | | | | | |")
            continue
        dtype = c.key.dtype or "auto"
        wbytes = weight_bytes(state, c.key.model, dtype if dtype in DTYPE_BYTES else "float32")
        roof = roofline_tps(wbytes, bw) if bw else None
        lv = {lvl.concurrency: lvl for lvl in b.levels}
        st = b.startup
        lines.append(
            f"| `{c.key.id}` | {c.verdict} | {fmt_bytes(wbytes)} | pp{b.pp_tokens} {b.pp_tps_mean:.1f} ± {b.pp_tps_sd or 0:.1f} "
            f"| tg{b.tg_tokens} {b.tg_tps_mean or 0:.1f} ± {b.tg_tps_sd or 0:.1f} | {f'{roof:.1f}' if roof else '–'} "
            f"| {f'{(b.tg_tps_mean or 0) / roof:.0%}' if roof else '–'} "
            f"| {f'{lv[1].ttft_ms_p50:.1f} / {lv[1].ttft_ms_p99:.1f}' if 1 in lv else '–'} "
            f"| {f'{lv[4].itl_ms_p50:.1f} / {lv[4].itl_ms_p99:.1f}' if 4 in lv else '–'} "
            f"| {f'{lv[16].throughput_tps:.1f}' if 16 in lv else '–'} | {fmt_bytes(b.device_peak_bytes or b.peak_rss_bytes)} "
            f"| {' / '.join(f'{st[k]:.2f}' if k in st else '–' for k in ('process', 'weights_to_ram', 'to_device', 'warmup'))} |")
    lines += ["", "Definitions of every figure: [benchmarks.md](benchmarks.md#metrics).", ""]
    out.write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="cpu, tiny checkpoints: proves the pipeline without a GPU")
    ap.add_argument("--likes", nargs="+", default=list(LIKES), choices=LIKES)
    ap.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bandwidth-gbs", type=float, help="memory bandwidth for the roofline (default: known GPUs / NVML)")
    ap.add_argument("--work-dir", type=Path, help="pool state and models (kept; default ~/.cache/llorch/gpu-check)")
    ap.add_argument("--out", type=Path, help="the report (default docs/gpu-check.md; a temp file with --dry-run)")
    a = ap.parse_args()
    backend = "cpu" if a.dry_run else "cuda"
    dtypes = ["float32"] if a.dry_run else a.dtypes
    reps = min(a.reps, 2) if a.dry_run else a.reps
    work = a.work_dir or (Path(tempfile.mkdtemp(prefix="llorch-gpu-check-")) if a.dry_run
                          else Path.home() / ".cache" / "llorch" / "gpu-check")
    out = a.out or (work / "gpu-check.md" if a.dry_run else REPO / "docs" / "gpu-check.md")
    state = work / "state"
    state.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    gpus = query_gpus()
    if not a.dry_run and not gpus.gpus:
        raise SystemExit(f"no NVIDIA GPU found ({gpus.source}: {'; '.join(gpus.errors) or 'none'}); "
                         "use --dry-run to check the pipeline on the cpu")
    gpu = f"{gpus.gpus[0].name} ({fmt_bytes(gpus.gpus[0].memory_total)}, driver {gpus.driver_version})" \
        if gpus.gpus else f"no GPU ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)"
    bw, bw_src = gpu_bandwidth(gpus.gpus[0].name if gpus.gpus else "", a.bandwidth_gbs)
    print(f"{gpu}; bandwidth {bw / 1e9 if bw else 0:.0f} GB/s ({bw_src}); work dir {work}", flush=True)
    try:
        models = build_models(state, a.dry_run, a.likes)
        qwen = "tiny-llama" if a.dry_run else ("qwen-0.5b-like" if "qwen-0.5b" in a.likes else models[0])
        wb = worker_bench(state, qwen, backend, dtypes[-1], reps, a.dry_run, work / "worker-bench.json")
        cells = asyncio.run(matrix(state, models, backend, dtypes, reps, work / "reports"))
        write_report(out, a.dry_run, gpu, bw, bw_src, wb, cells, state, load)
    finally:
        template_client.stop(state)
    print(f"wrote {out} (matrix reports: {work / 'reports'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
