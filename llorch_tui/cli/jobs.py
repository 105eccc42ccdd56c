"""`llorch jobs submit|list|cancel`: run a prompt on a worker of a model, wherever one is running.

submit asks every pool (or --pool) for its workers (`workers.list`), picks a ready worker of the
model (spawning one with --spawn BACKEND when none runs), and POSTs /execute to it through the
pool's transport (an SSH port forward for remote pools: workers stay on the pool's loopback).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import datetime, timezone
from typing import AsyncIterator, Callable

import aiohttp
from llorch_worker.api import ExecuteRequest, ExecuteResult, StreamEvent
from rich.console import Console
from rich.table import Table

from llorch_tui.client import PoolClient
from llorch_tui.config import Config
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.textsafe import escape_controls
from llorch_tui.cli.jobs_store import JobRecord, JobStore
from llorch_tui.protocol.events import Event, EventHandler, SpawnStage
from llorch_tui.protocol.params import SpawnParams
from llorch_tui.worker_client import WorkerClient, WorkerHTTPError
from llorch_tui.protocol.workers import WorkerRecord

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30)


async def find_worker(config: Config, model: str, pool_name: str | None,
                      warn: Callable[[str], None]) -> tuple[PoolClient, WorkerRecord] | None:
    """A (connected client, ready worker record) for the model, or None. Unreachable pools are skipped."""
    pools = [p for p in config.pools if pool_name is None or p.name == pool_name]
    if pool_name is not None and not pools:
        raise LlorchError(ErrorCode.NOT_FOUND, f"no pool named {pool_name!r} in the configuration",
                          f"configured pools: {', '.join(p.name for p in config.pools) or '(none)'}")
    clients = [PoolClient(p) for p in pools]
    found: tuple[PoolClient, WorkerRecord] | None = None
    try:
        results = await asyncio.gather(*(c.api.workers.list() for c in clients), return_exceptions=True)
        for c, res in zip(clients, results):
            if isinstance(res, LlorchError):
                warn(f"pool {c.name} skipped: {res.message}")
                continue
            if isinstance(res, BaseException):
                raise res
            ready = [w for w in res if w.model == model and w.state == "ready"]
            if ready and found is None:
                # The least-loaded ready worker on the first pool that has one.
                found = (c, min(ready, key=lambda w: w.requests or 0))
    finally:
        await asyncio.gather(*(c.close() for c in clients if found is None or c is not found[0]),
                             return_exceptions=True)
    return found


async def spawn_worker(config: Config, model: str, backend: str, pool_name: str | None,
                       on_event: EventHandler) -> tuple[PoolClient, WorkerRecord]:
    pool = config.pool(pool_name) if pool_name else (config.pools[0] if len(config.pools) == 1 else None)
    if pool is None:
        raise LlorchError(ErrorCode.BAD_REQUEST, "--spawn needs --pool when several pools are configured",
                          "name the pool that should run the new worker: --pool NAME")
    client = PoolClient(pool)
    try:
        rec = await client.api.workers.spawn(SpawnParams(backend=backend, model=model), on_event=on_event)
    except BaseException:
        await client.close()
        raise
    return client, rec


async def submit(config: Config, store: JobStore, *, model: str, prompt: str, max_tokens: int | None,
                 seed: int | None, stream: bool, pool_name: str | None, spawn: str | None,
                 out: Callable[[str], None], err: Callable[[str], None], as_json: bool,
                 ignore_eos: bool = False) -> JobRecord:
    found = await find_worker(config, model, pool_name, err)
    if found is None:
        if not spawn:
            where = f" on pool {pool_name}" if pool_name else ""
            raise LlorchError(ErrorCode.NOT_FOUND, f"no ready worker of model {model!r}{where}",
                              f"start one: `llorch pool worker spawn cpu --model {model} --host POOL`, "
                              "or add --spawn BACKEND (with --pool POOL) to this command")
        err(f"no ready worker of {model}: spawning a {spawn} worker…")
        def stage(ev: Event) -> None:
            if isinstance(ev, SpawnStage):
                err(f"  {ev.stage} {ev.message or ''}".rstrip())

        found = await spawn_worker(config, model, spawn, pool_name, stage)
    client, worker = found
    try:
        job = JobRecord(id=uuid.uuid4().hex[:12], pool=client.name, model=model, worker_id=worker.id,
                        worker_port=worker.port, prompt=prompt, max_tokens=max_tokens, seed=seed,
                        client_pid=os.getpid())
        store.add(job)
    except BaseException:
        await client.close()  # the pool session (an agent process, an SSH connection) must not outlive us
        raise
    req = ExecuteRequest(job_id=job.id, prompt=prompt, max_tokens=max_tokens, seed=seed, ignore_eos=ignore_eos or None)
    err(f"job {job.id} → pool {job.pool}, worker {job.worker_id}")
    try:
        base = await client.worker_url(job.worker_port)
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            endpoint = WorkerClient(http, base)
            try:
                if stream:
                    final = await _read_stream(endpoint.execute_stream(req), out, as_json)
                else:
                    final = await endpoint.execute(req)
                    if not as_json:
                        out(final.text + "\n")
            except WorkerHTTPError as e:
                raise _http_error(e, job) from None
        job = store.update(job.id, state="cancelled" if final.finish_reason == "cancelled" else "done",
                           finished_at=_now(), tokens=final.tokens_generated, text=final.text,
                           tokens_per_second=final.tokens_per_second, finish_reason=final.finish_reason)
        return job
    except LlorchError as e:
        store.update(job.id, state="failed", finished_at=_now(), error=e.message)
        raise
    except aiohttp.ClientError as e:
        store.update(job.id, state="failed", finished_at=_now(), error=str(e))
        raise LlorchError(ErrorCode.CONNECTION_LOST, f"job {job.id}: lost the worker on pool {job.pool}: {e}",
                          "check the worker: `llorch pool worker list --host " + job.pool + "`") from None
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Closing the HTTP connection cancels the job on the worker (the handler is cancelled).
        store.update(job.id, state="cancelled", finished_at=_now(), finish_reason="interrupted")
        raise
    finally:
        await client.close()


async def _read_stream(events: AsyncIterator[StreamEvent], out: Callable[[str], None], as_json: bool) -> ExecuteResult:
    async for event in events:
        if as_json:
            out(event.model_dump_json(exclude_none=True) + "\n")
        elif event.type == "token":
            out(event.text or "")
        if event.type == "done":
            if not as_json:
                out("\n")
            return ExecuteResult.model_validate(event.model_dump())
        if event.type == "error":
            raise LlorchError(ErrorCode.WORKER_FAILED, f"the worker failed the job: {event.message}",
                              "see the worker's log: `llorch pool worker logs ID --host POOL`", code_detail=event.code)
    raise LlorchError(ErrorCode.CONNECTION_LOST, "the worker closed the stream before the job finished",
                      "check the worker: `llorch pool worker list --host POOL`")


def _http_error(e: WorkerHTTPError, job: JobRecord) -> LlorchError:
    msg = e.message.partition(": ")[2] or e.message  # the worker's own message, without "POST /execute answered ..."
    return LlorchError(ErrorCode.WORKER_FAILED, f"job {job.id}: worker {job.worker_id} on {job.pool} answered {e.status}: {msg}",
                       e.hint)


async def cancel(config: Config, store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id)
    if job.state != "running":
        raise LlorchError(ErrorCode.BAD_REQUEST, f"job {job.id} is {job.state}, not running", "nothing to cancel")
    pool = config.pool(job.pool)
    if pool is None:
        raise LlorchError(ErrorCode.NOT_FOUND, f"job {job.id} ran on pool {job.pool!r}, which is no longer configured")
    client = PoolClient(pool)
    try:
        base = await client.worker_url(job.worker_port)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            try:
                await WorkerClient(http, base).cancel(job.id)
            except WorkerHTTPError as e:
                if e.status != 404:
                    raise _http_error(e, job) from None
                # The worker no longer knows it: it finished meanwhile (or the worker restarted).
                if job.client_pid and not _alive(job.client_pid):
                    store.update(job.id, state="failed", finished_at=_now(),
                                 error="its `llorch jobs submit` exited and the worker no longer knows it")
                raise LlorchError(ErrorCode.NOT_FOUND, f"job {job.id} is no longer running on worker "
                                  f"{job.worker_id} (it finished before the cancel arrived)",
                                  "see `llorch jobs list` for its result") from None
    except aiohttp.ClientError as e:
        raise LlorchError(ErrorCode.CONNECTION_LOST, f"cannot reach worker {job.worker_id} on {job.pool}: {e}",
                          f"the worker may be gone: `llorch pool worker list --host {job.pool}`") from None
    finally:
        await client.close()
    return store.update(job.id, state="cancelled", finished_at=_now(), finish_reason="cancelled")


def render_list(jobs: list[JobRecord], as_json: bool) -> None:
    if as_json:
        print(json.dumps([j.model_dump(mode="json") for j in jobs]), flush=True)
        return
    table = Table(title="jobs")
    for col in ("job", "state", "pool", "worker", "model", "tokens", "tok/s", "submitted", "prompt"):
        table.add_column(col)
    colour = {"done": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}
    for j in jobs:
        table.add_row(j.id, f"[{colour.get(j.state, 'white')}]{j.state}[/]", j.pool, j.worker_id, j.model,
                      str(j.tokens if j.tokens is not None else "-"),
                      f"{j.tokens_per_second:.1f}" if j.tokens_per_second else "-",
                      j.submitted_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"), (j.prompt[:40] + "…") if len(j.prompt) > 40 else j.prompt)
    Console().print(table)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> datetime:
    return datetime.now(timezone.utc)


def stdout_writer(text: str) -> None:
    sys.stdout.write(escape_controls(text))  # model output: a bell or an escape sequence is shown, not obeyed
    sys.stdout.flush()


def stderr_writer(text: str) -> None:
    print(escape_controls(text), file=sys.stderr, flush=True)
