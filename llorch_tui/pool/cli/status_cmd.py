"""`llorch-pool status` and `llorch-pool health`."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.protocol import ops
from llorch_tui.protocol.status import HealthReport, PoolStatus
from llorch_tui.pool.cli.worker_cmd import render_list
from llorch_tui.units import fmt_bytes


def _probe_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--probe", action="store_true",
                   help="re-run the torch backend probe now (a few seconds) instead of using its cache")


def _pct_colour(used: int | None, total: int | None) -> str:
    if not used or not total:
        return "white"
    frac = used / total
    return "red" if frac > 0.9 else "yellow" if frac > 0.7 else "green"


def render_status(s: PoolStatus, console: Console) -> None:
    console.print(f"[bold]{s.pool_id}[/] on {s.hostname} ({s.os}), llorch {s.llorch_version}, "
                  f"python {s.python}" + (f", torch {s.torch}" if s.torch else ""), highlight=False)
    console.print(f"backends: [bold]{', '.join(s.backends)}[/]", highlight=False)
    ram, disk = s.ram, s.disk
    console.print(f"RAM: {fmt_bytes(ram.available)} available of {fmt_bytes(ram.total)}; "
                  f"disk: {fmt_bytes(disk.free)} free of {fmt_bytes(disk.total)} in {disk.path}",
                  highlight=False)
    if s.gpus:
        t = Table(title=f"GPUs (via {s.gpu_source}" + (f", driver {s.driver_version})" if s.driver_version else ")"))
        for col in ("#", "Name", "Memory used", "Memory total", "Utilisation"):
            t.add_column(col)
        for g in s.gpus:
            colour = _pct_colour(g.memory_used, g.memory_total)
            util = g.utilization
            t.add_row(str(g.index), g.name, f"[{colour}]{fmt_bytes(g.memory_used)}[/]",
                      fmt_bytes(g.memory_total), "-" if util is None else f"{util}%")
        console.print(t)
    else:
        console.print("GPUs: none found")
    for e in s.probe_errors:
        console.print(f"[yellow]warning:[/] {e}", highlight=False)
    render_list(s.workers, console)


def render_health(h: HealthReport, console: Console) -> None:
    if h.ok:
        console.print(f"[green]ok[/] pool {h.pool_id}", highlight=False)
        return
    console.print(f"[red]problems[/] on pool {h.pool_id}:", highlight=False)
    for p in h.problems:
        console.print(f"  - {p}", highlight=False)


COMMANDS: list[CommandSpec] = [
    CommandSpec(("status",), "this pool: host, backends, GPUs, RAM, disk, workers", _probe_arg, op=ops.POOL_STATUS,
                to_params=lambda a: {"probe": a.probe}, render=render_status),
    CommandSpec(("health",), "ok, or what is wrong with this pool", _probe_arg, op=ops.POOL_HEALTH,
                to_params=lambda a: {"probe": a.probe}, render=render_health),
]
