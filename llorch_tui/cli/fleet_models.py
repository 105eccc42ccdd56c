"""`llorch models place|copy`: model operations that span pools (run from the control plane)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from llorch_tui.errors import LlorchError
from llorch_tui.pool.cli.fit_cmd import add_fit_args, fit_params, fits_cell
from llorch_tui.pool.cli.runner import EXIT_ERROR, print_error, run_sync
from llorch_tui.protocol.params import FitParams, build_params
from llorch_tui.units import DASH, fmt_bytes

if TYPE_CHECKING:  # the fleet (asyncssh) is imported only when a command runs
    from llorch_tui.fleet_ops.place import Placement


def add_models_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    models = sub.add_parser("models", help="model operations across pools: place, copy")
    msub = models.add_subparsers(dest="models_cmd", metavar="COMMAND", required=True)
    p = msub.add_parser("place", help="rank where a model would run (every pool, every backend) and why",
                        description="Asks every pool how much memory the model needs there (models.fit: from "
                                    "config.json and safetensors headers, no download) and ranks them.")
    p.add_argument("id", help="model id (registered on the pools, a seed preset, or with --repo)")
    p.add_argument("--pools", nargs="+", metavar="POOL", help="only these pools (default: all configured)")
    add_fit_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_place)
    from llorch_tui.cli.copy_cli import add_copy_command

    add_copy_command(msub)


def _place(args: argparse.Namespace) -> int:
    from llorch_tui.cli import pools
    from llorch_tui.fleet_ops.place import place

    try:
        config = pools.load(args.config)
    except LlorchError as e:
        print_error(e, args.json)
        return EXIT_ERROR

    async def go() -> int:
        ranked = await place(config, build_params(FitParams, fit_params(args, args.id), "models.fit"), args.pools)
        if args.json:
            print(json.dumps({"model": args.id, "placements": [p.to_json() for p in ranked]}), flush=True)
        else:
            _render(args.id, ranked)
        return 0 if any(p.estimate and p.estimate.fits for p in ranked) else EXIT_ERROR

    return run_sync(go, args.json)


def _render(model: str, ranked: "list[Placement]") -> None:
    console = Console()
    t = Table(title=f"Where {model} would run, best first")
    for col in ("#", "Pool", "Backend", "dtype", "Needs", "Free", "Headroom", "Fits"):
        t.add_column(col, no_wrap=True)
    for i, p in enumerate(ranked, 1):
        e = p.estimate
        if e is None:
            t.add_row(str(i), p.pool, DASH, DASH, DASH, DASH, DASH, f"[red]{p.error}[/]")
            continue
        need = fmt_bytes(e.need_bytes) + (" (measured)" if e.measured_bytes else "")
        t.add_row(str(i), p.pool, e.backend + (f":{e.gpu}" if e.gpu is not None else ""), e.dtype, need,
                  fmt_bytes(e.free_bytes), fmt_bytes(p.headroom) if p.headroom is not None else DASH,
                  fits_cell(e))
    console.print(t)
    for i, p in enumerate(ranked, 1):
        if p.estimate is not None:
            console.print(f"{i}. {p.pool}: {p.estimate.reason}", highlight=False)
