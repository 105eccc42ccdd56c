"""`llorch-pool models fit ID`: memory per backend, estimate vs measured, and whether it fits."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from llorch_tui.pool.cli.models_cmd import split_backends
from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.protocol import ops
from llorch_tui.protocol.fit import FitEstimate, FitReport
from llorch_tui.protocol.params import WORKER_MAX_BATCH
from llorch_tui.units import DASH, fmt_bytes


def add_fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", help="Hub repo for a model not registered here (seed presets need none)")
    p.add_argument("--revision", help="Hub revision (default: main, or the catalog's)")
    p.add_argument("--endpoint", help="Hub-compatible endpoint to read the metadata from (a llorch mirror)")
    p.add_argument("--backends", nargs="+", metavar="BACKEND", help="only these backends (default: usable ones)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                   help="the dtype the worker would load (default: its own choice per backend)")
    p.add_argument("--context", type=int, help="tokens per sequence for the KV cache (default: the model's context)")
    p.add_argument("--batch", type=int, default=WORKER_MAX_BATCH,
                   help=f"sequences decoded together (default: the worker's --max-batch, {WORKER_MAX_BATCH})")


def fit_params(a: argparse.Namespace, model_id: str) -> dict[str, Any]:
    d = {"id": model_id, "repo": a.repo, "revision": a.revision, "endpoint": a.endpoint,
         "backends": split_backends(a.backends), "dtype": a.dtype, "context": a.context, "batch": a.batch}
    return {k: v for k, v in d.items() if v is not None}


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="model id (registered here, or a seed preset, or with --repo)")
    add_fit_args(p)


def fits_cell(e: FitEstimate) -> str:
    return "[yellow]?[/]" if e.fits is None else "[green]yes[/]" if e.fits else "[bold red]no[/]"


def render_fit(report: FitReport, console: Console) -> None:
    t = Table(title=f"{report.model} on pool {report.pool_id}", caption=f"from {report.source}")
    for col in ("Backend", "dtype", "Params", "Weights", "KV cache", "Activ.", "Runtime", "Estimate", "Measured",
                "Free", "Fits"):
        t.add_column(col, no_wrap=True)
    for e in report.estimates:
        kv = f"{fmt_bytes(e.kv_cache_bytes)} ({e.context}x{e.batch})"
        t.add_row(e.backend + (f":{e.gpu}" if e.gpu is not None else ""), e.dtype,
                  f"{e.params / 1e9:.2f}B" if e.params >= 1e8 else f"{e.params / 1e6:.1f}M",
                  fmt_bytes(e.weights_bytes), kv, fmt_bytes(e.activation_bytes), fmt_bytes(e.overhead_bytes),
                  fmt_bytes(e.estimate_bytes), fmt_bytes(e.measured_bytes) if e.measured_bytes else DASH,
                  fmt_bytes(e.free_bytes), fits_cell(e))
    console.print(t)
    for e in report.estimates:
        if e.fits is False:
            console.print(f"[red]•[/] {e.reason}", highlight=False)


COMMANDS: list[CommandSpec] = [
    CommandSpec(("models", "fit"), "will a model fit here? memory per backend, before downloading it", _args,
                op=ops.MODELS_FIT, to_params=lambda a: fit_params(a, a.id), render=render_fit),
]
