"""Ops `workers.spawn|list|stop|logs|sweep`: the worker lifecycle on this pool."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from llorch_tui.protocol.events import LogLine
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.paths import PoolPaths
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.pool.terminate import terminate
from llorch_tui.pool.worker_registry import (LIVE_STATES, Registry, fill_exit_info, is_live, is_worker_cmdline,
                                             log_tail, now)
from llorch_tui.pool import template_client
from llorch_tui.pool.worker_spawn import reap_supervisors, spawn_worker, worker_command
from llorch_tui.protocol.workers import LogsResult, SweepResult, TemplateStatus, WorkerRecord
from llorch_tui.protocol.params import ListParams, LogsParams, SpawnParams, StopParams, SweepParams, TemplateParams

HEALTH_TIMEOUT_S = 1.5
FOLLOW_POLL_S = 0.25


@op(ops.WORKERS_SPAWN, summary="start a worker and wait until it is ready")
async def spawn(ctx: OpContext, p: SpawnParams) -> WorkerRecord:
    return await spawn_worker(ctx, p)


async def _probe_health(session: aiohttp.ClientSession, rec: WorkerRecord) -> bool:
    """Fill live figures from /health; an unreachable worker keeps its state (the process is alive).

    Returns True when a `starting` record turns out ready: its spawning agent died before it could say so.
    """
    # Imported here: an agent on a pool without llorch-worker still starts (and says what is missing).
    from llorch_tui.worker_client import WorkerClient

    try:
        health = await WorkerClient(session, f"http://127.0.0.1:{rec.port}").health()
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, LlorchError):
        return False
    if health.worker_id not in (None, rec.id):
        return False  # another process took the port
    promoted = rec.state == "starting" and health.status == "ok"
    if promoted:
        rec.state, rec.ready_at = "ready", now()
    rec.requests, rec.tokens_generated = health.requests, health.tokens_generated
    rec.rss_bytes = health.memory.rss
    rec.device_allocated_bytes = health.memory.device_allocated
    rec.device_peak_bytes = health.memory.device_peak
    rec.in_flight, rec.queue_depth = health.in_flight, health.queue_depth
    return promoted


def _persist_ready(paths: PoolPaths, ready: list[WorkerRecord]) -> None:
    with Registry(paths).edit() as records:
        for r in records:
            match = next((x for x in ready if x.id == r.id), None)
            if match is not None and r.state == "starting":
                r.state, r.ready_at = "ready", match.ready_at


async def list_workers(paths: PoolPaths, probe: bool) -> list[WorkerRecord]:
    reap_supervisors()
    records = await asyncio.to_thread(Registry(paths).reconcile)
    live = [r for r in records if r.state == "ready" or (r.state == "starting" and r.pid > 0)]
    if probe and live:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)) as s:
            promoted = await asyncio.gather(*(_probe_health(s, r) for r in live))
        ready = [r for r, up in zip(live, promoted) if up]
        if ready:
            await asyncio.to_thread(_persist_ready, paths, ready)
    return records


@op(ops.WORKERS_LIST, summary="workers of this pool, reconciled with the live processes")
async def list_op(ctx: OpContext, p: ListParams) -> list[WorkerRecord]:
    return await list_workers(ctx.settings.paths, p.probe)


def stop_record(paths: PoolPaths, worker_id: str, grace_s: float) -> WorkerRecord:
    registry = Registry(paths)
    with registry.edit() as records:
        rec = next((r for r in records if r.id == worker_id), None)
        if rec is None:
            raise LlorchError(ErrorCode.NOT_FOUND, f"no worker {worker_id!r} in the registry of this pool",
                              "`llorch-pool worker list` shows the known workers", worker=worker_id)
        if rec.state == "dead":
            rec.state = "stopped"  # acknowledged: `health` stops reporting it
            return rec
        if rec.state not in LIVE_STATES or rec.pid <= 0:
            return rec  # already gone, or a spawn in progress elsewhere (its caller cancels it)
        if not is_live(rec):
            rec.state, rec.stopped_at = "dead", now()
            fill_exit_info(paths, rec)
            return rec
        rec.state = "stopping"
    terminate(rec.pid, rec.pgid or rec.pid, grace_s)
    if rec.supervisor_pid:
        try:  # it writes the .exit record right after the worker ends
            psutil.Process(rec.supervisor_pid).wait(5)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
    with registry.edit() as records:
        for i, r in enumerate(records):
            if r.id == worker_id:
                fill_exit_info(paths, rec)
                rec.state, rec.stopped_at = "stopped", now()
                records[i] = rec
    return rec


@op(ops.WORKERS_STOP, summary="stop a worker (SIGTERM, SIGKILL after the grace period)")
async def stop_op(ctx: OpContext, p: StopParams) -> list[WorkerRecord]:
    paths = ctx.settings.paths
    if p.all:
        records = await asyncio.to_thread(Registry(paths).reconcile)
        ids = [r.id for r in records if (r.state in LIVE_STATES and r.pid > 0) or r.state == "dead"]
    elif p.id:
        ids = [p.id]
    else:
        raise LlorchError(ErrorCode.BAD_REQUEST, "say which worker to stop", "pass a worker id, or --all")
    reap_supervisors()
    # Concurrently: the grace periods overlap instead of adding up.
    return list(await asyncio.gather(*(asyncio.to_thread(stop_record, paths, i, p.grace_s) for i in ids)))


@op(ops.WORKERS_LOGS, summary="the log of a worker; follow streams `line` events")
async def logs_op(ctx: OpContext, p: LogsParams) -> LogsResult:
    rec = await asyncio.to_thread(Registry(ctx.settings.paths).get, p.id)
    path = Path(rec.log_path)
    if not p.follow:
        return LogsResult(id=rec.id, path=str(path), lines=await asyncio.to_thread(log_tail, path, p.lines))
    for line in await asyncio.to_thread(log_tail, path, p.lines):
        ctx.emit("line", LogLine(text=line))
    return await _follow(ctx, rec, path)


async def _follow(ctx: OpContext, rec: WorkerRecord, path: Path) -> LogsResult:
    """Stream new lines until the worker is gone (or the caller cancels, which ends this task)."""
    followed = 0
    pending = b""
    try:
        # A local regular file: reads return at once (it is never a pipe or a socket), so no thread.
        fh = open(path, "rb")  # noqa: ASYNC230
    except OSError as exc:
        raise LlorchError(ErrorCode.NOT_FOUND, f"log of worker {rec.id} is not readable: {exc}") from None
    with fh:
        fh.seek(0, os.SEEK_END)
        checks = 0
        while True:
            chunk = fh.read(65536)
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    ctx.emit("line", LogLine(text=raw.decode(errors="replace")))
                    followed += 1
                continue
            checks += 1
            # A log file has no "data available" event without inotify; poll it, check liveness ~1/s.
            if checks % 4 == 0 and not is_live(rec):
                break
            ctx.check_cancelled()
            await asyncio.sleep(FOLLOW_POLL_S)
    if pending:
        ctx.emit("line", LogLine(text=pending.decode(errors="replace")))
        followed += 1
    return LogsResult(id=rec.id, path=str(path), lines=[], followed=followed, ended="worker stopped")


SECRET_FLAGS = ("--token",)  # llorch-worker's bearer token: shown as *** wherever a command line is reported


def redact_cmdline(cmd: list[str]) -> str:
    """The command line as one string, with the value of every secret flag masked."""
    out: list[str] = []
    hide_next = False
    for word in cmd:
        if hide_next:
            out.append("***")
            hide_next = False
        elif word in SECRET_FLAGS:
            out.append(word)
            hide_next = True
        elif word.split("=", 1)[0] in SECRET_FLAGS and "=" in word:
            out.append(word.split("=", 1)[0] + "=***")
        else:
            out.append(word)
    return " ".join(out)


def find_workers(paths: PoolPaths) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """llorch-worker processes of this user that the registry does not know: (strays, of other state dirs)."""
    known = {r.pid for r in Registry(paths).load() if r.state in LIVE_STATES and r.pid > 0}
    ours = paths.state_dir.resolve()
    strays: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        cmd = proc.info.get("cmdline") or []
        while cmd and not cmd[-1]:
            cmd = cmd[:-1]  # a worker forked from the template: its title is NUL-padded to the template's argv
        if not is_worker_cmdline(cmd) or proc.pid in known:
            continue
        try:
            env = proc.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # another user's process: not ours to report or stop
        sd = env.get("LLORCH_STATE_DIR")
        item = {"pid": proc.pid, "cmdline": redact_cmdline(cmd)[:500], "create_time": proc.info.get("create_time"),
                "state_dir": sd, "worker_id": env.get("LLORCH_WORKER_ID") or _flag(cmd, "--worker-id")}
        # A worker another agent (another state dir) started is that agent's business, not a stray.
        (others if sd and Path(sd).resolve() != ours else strays).append(item)
    return strays, others


def _flag(cmd: list[str], flag: str) -> str | None:
    """The value after `flag` (a forked worker's environment is its template's: its id is only in argv)."""
    return cmd[cmd.index(flag) + 1] if flag in cmd[:-1] else None


def _stop_stray(item: dict[str, Any], grace_s: float) -> dict[str, Any]:
    pid = item["pid"]
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - (item.get("create_time") or 0)) > 1.0:
            return {**item, "stopped": False, "why": "pid reused"}
        pgid = os.getpgid(pid)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return {**item, "stopped": True, "why": "already gone"}
    # Only signal its group when it leads one; otherwise the group may hold unrelated processes.
    terminate(pid, pgid if pgid == pid else None, grace_s)
    return {**item, "stopped": True}


@op(ops.WORKERS_SWEEP, summary="find llorch-worker processes the registry does not know; --stop stops them")
async def sweep_op(ctx: OpContext, p: SweepParams) -> SweepResult:
    strays, others = await asyncio.to_thread(find_workers, ctx.settings.paths)
    stopped: list[dict[str, Any]] = []
    if p.stop:
        targets = [s for s in strays if p.pids is None or s["pid"] in p.pids]
        missing = set(p.pids or ()) - {s["pid"] for s in strays}
        if missing:
            raise LlorchError(ErrorCode.NOT_FOUND, f"pid(s) {sorted(missing)} are not stray llorch-worker processes",
                              "`llorch-pool worker sweep` lists the strays")
        stopped = list(await asyncio.gather(*(asyncio.to_thread(_stop_stray, s, p.grace_s) for s in targets)))
    return SweepResult.model_validate({"strays": strays, "stopped": stopped, "other_state_dirs": others})


@op(ops.WORKERS_TEMPLATE, summary="the warm worker template of this pool; stop=true drains it")
async def template_op(ctx: OpContext, p: TemplateParams) -> TemplateStatus:
    state = ctx.settings.state_dir
    doc = await asyncio.to_thread(template_client.ping, state)
    out: dict[str, Any] = {"running": doc is not None, "disabled": template_client.disabled_reason(worker_command()),
                           "socket": template_client.socket_name(state), "stopped": False}
    if doc is not None:
        out.update({k: doc.get(k) for k in ("pid", "fingerprint", "children", "stale")})
    if p.stop and doc is not None:
        out["stopped"] = await asyncio.to_thread(template_client.stop, state)
    return TemplateStatus.model_validate(out)
