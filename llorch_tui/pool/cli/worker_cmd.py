"""`llorch-pool worker spawn|list|stop|logs|sweep|template`."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.table import Table

from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.protocol import ops
from llorch_tui.protocol.events import Event, LogLine, SpawnStage
from llorch_tui.protocol.workers import LogsResult, SweepResult, TemplateStatus, WorkerRecord
from llorch_tui.units import fmt_bytes

STATE_COLOUR = {"ready": "green", "starting": "yellow", "stopping": "yellow", "stopped": "dim",
                "dead": "red", "failed": "red"}


def _spawn_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("backend", choices=["cpu", "cuda", "metal"], help="where the worker runs")
    p.add_argument("--model", required=True, help="model id from the catalog (must be downloaded)")
    p.add_argument("--gpu", type=int, help="CUDA device index (cuda only; default 0)")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: 8000+gpu, or the next free one)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="weights dtype (default auto)")
    p.add_argument("--timeout", type=float, dest="timeout_s", metavar="SECONDS",
                   help="readiness timeout (default 60 s + 30 s per GB of model)")


def _spawn_params(a: argparse.Namespace) -> dict[str, Any]:
    d = {"backend": a.backend, "model": a.model, "gpu": a.gpu, "port": a.port, "dtype": a.dtype,
         "timeout_s": a.timeout_s}
    return {k: v for k, v in d.items() if v is not None}


class SpawnProgress:
    """A spinner line that says what the spawn waits for."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Status | None = None

    def __call__(self, ev: Event) -> None:
        if not isinstance(ev, SpawnStage):
            return
        if ev.stage == "port":
            self.console.print(f"worker {ev.worker_id}: port {ev.port}", highlight=False)
        elif ev.stage == "spawned":
            how = "forked from the warm template" if ev.start_mode == "fork" else \
                f"exec: {ev.start_note}" if ev.start_note else "exec"
            self.console.print(f"started pid {ev.pid} ({how}; log: {ev.log_path})", highlight=False)
            self.status = self.console.status(f"loading (timeout {ev.timeout_s or 0:.0f}s)...")
            self.status.start()
        elif ev.stage == "waiting" and self.status is not None:
            self.status.update(f"loading... {ev.elapsed_s}s of {ev.timeout_s or 0:.0f}s")

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


def render_spawned(rec: WorkerRecord, console: Console) -> None:
    console.print(f"[green]ready[/] worker [bold]{rec.id}[/]: {rec.model} on {rec.backend} at "
                  f"http://127.0.0.1:{rec.port} (pid {rec.pid}, loaded in {rec.load_s or 0:.1f}s)",
                  highlight=False)


def _ago(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def render_list(records: list[WorkerRecord], console: Console) -> None:
    if not records:
        console.print("No workers. Start one: llorch-pool worker spawn cpu --model MODEL", highlight=False)
        return
    t = Table(title="Workers", show_lines=True)
    t.add_column("ID", no_wrap=True)
    t.add_column("Model", overflow="fold")
    t.add_column("Where", no_wrap=True)
    t.add_column("State", no_wrap=True)
    t.add_column("Usage", no_wrap=True)
    t.add_column("Since / reason", overflow="fold")
    for r in records:
        colour = STATE_COLOUR.get(r.state, "white")
        backend = r.backend + (f":{r.gpu}" if r.gpu is not None else "")
        usage = "-"
        if r.requests is not None or r.rss_bytes is not None:
            usage = f"{r.requests or 0} req, {r.tokens_generated or 0} tok\n{fmt_bytes(r.rss_bytes)}"
        t.add_row(r.id, r.model, f"{backend} :{r.port}",
                  f"[{colour}]{r.state}[/]\npid {r.pid or '-'}", usage,
                  r.exit_reason or _ago(r.ready_at or r.started_at))
    console.print(t)


def _stop_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", nargs="?", help="worker id (see `worker list`)")
    p.add_argument("--all", action="store_true", help="stop every running worker of this pool")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                   help="seconds between SIGTERM and SIGKILL (default 10)")


def _stop_params(a: argparse.Namespace) -> dict[str, Any]:
    if not a.id and not a.all:
        from llorch_tui.pool.cli.runner import die

        die("say which worker to stop", "pass a worker id, or --all")
    return {"id": a.id, "all": a.all, "grace_s": a.grace}


def render_stopped(records: list[WorkerRecord], console: Console) -> None:
    if not records:
        console.print("No running workers.")
    for r in records:
        console.print(f"{r.id}: {r.state}" + (f" ({r.exit_reason})" if r.exit_reason else ""),
                      highlight=False)


def _logs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="worker id (see `worker list`)")
    p.add_argument("--lines", "-n", type=int, default=100, help="lines from the end (default 100)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until the worker stops")


class LogLines:
    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, LogLine):
            self.console.print(ev.text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        return None


def render_logs(result: LogsResult, console: Console) -> None:
    for line in result.lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stop", action="store_true", help="stop the strays found (SIGTERM, SIGKILL after the grace)")
    p.add_argument("--pid", type=int, action="append", dest="pids", metavar="PID",
                   help="with --stop: only this stray (repeatable)")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS", help="SIGTERM to SIGKILL (default 10)")


def render_sweep(result: SweepResult, console: Console) -> None:
    strays = result.strays
    if not strays:
        console.print("No stray llorch-worker processes.")
    else:
        t = Table(title="llorch-worker processes this pool's registry does not know")
        for col in ("PID", "Worker id", "Command line"):
            t.add_column(col, overflow="fold")
        for s in strays:
            t.add_row(str(s.pid), s.worker_id or "-", s.cmdline)
        console.print(t)
    for s in result.stopped:
        console.print(f"stopped pid {s.pid}" if s.stopped else f"not stopped pid {s.pid}: {s.why}")
    if strays and not result.stopped:
        console.print("Stop them with: llorch-pool worker sweep --stop [--pid PID]", highlight=False)
    others = result.other_state_dirs
    if others:
        console.print(f"({len(others)} more belong to other state directories; their agents manage them)")


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-probe", action="store_true", help="skip the /health probes")


def _template_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stop", action="store_true", help="drain it: no more forks; it exits after its last worker")


def render_template(result: TemplateStatus, console: Console) -> None:
    if result.disabled:
        console.print(f"Warm starts are off on this pool: {result.disabled}", highlight=False)
    elif not result.running:
        console.print("No worker template running (the next spawn starts one).", highlight=False)
    else:
        kids = result.children or []
        console.print(f"worker template pid {result.pid} (package {result.fingerprint}): "
                      f"{len(kids)} worker(s) forked and running"
                      f"{'; draining' if result.stale or result.stopped else ''}", highlight=False)
    if result.stopped:
        console.print("Asked it to stop: it takes no more spawns and exits after its last worker.")


COMMANDS: list[CommandSpec] = [
    CommandSpec(("worker", "spawn"), "start an inference worker and wait until it is ready", _spawn_args,
                op=ops.WORKERS_SPAWN, to_params=_spawn_params, render=render_spawned, events=SpawnProgress),
    CommandSpec(("worker", "list"), "workers of this pool (dead ones with their exit reason)",
                _list_args,
                op=ops.WORKERS_LIST, to_params=lambda a: {"probe": not a.no_probe}, render=render_list),
    CommandSpec(("worker", "stop"), "stop a worker (SIGTERM to its process group, SIGKILL after --grace)", _stop_args,
                op=ops.WORKERS_STOP, to_params=_stop_params, render=render_stopped),
    CommandSpec(("worker", "logs"), "a worker's log; --follow streams new lines", _logs_args, op=ops.WORKERS_LOGS,
                to_params=lambda a: {"id": a.id, "lines": a.lines, "follow": a.follow}, render=render_logs,
                events=LogLines),
    CommandSpec(("worker", "sweep"), "find llorch-worker processes the registry does not know", _sweep_args,
                op=ops.WORKERS_SWEEP, to_params=lambda a: {"stop": a.stop, "pids": a.pids, "grace_s": a.grace},
                render=render_sweep),
    CommandSpec(("worker", "template"), "the pool's warm worker template (forks workers with torch imported)",
                _template_args, op=ops.WORKERS_TEMPLATE, to_params=lambda a: {"stop": a.stop},
                render=render_template),
]
