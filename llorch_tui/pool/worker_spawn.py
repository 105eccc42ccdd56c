"""`workers.spawn`: check, pick and hold a port, start a supervised detached worker, wait for its ready event.

The port is bound here, when it is chosen, and the worker inherits the listening socket
(`--listen-fd`): nobody can take it in between, however long the worker takes to start.

Readiness comes from the worker itself: its callback POST (a tiny aiohttp server on 127.0.0.1:0
lives here for the duration of the spawn), with `/health` as a fallback and the supervisor's exit
as the failure event. Never a fixed sleep. Every failure path (worker error, timeout, caller
cancel) kills the half-started process group and leaves a `failed` record with the reason.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from pydantic import ValidationError

if TYPE_CHECKING:
    from llorch_worker.api import Health, WorkerCallback

from llorch_tui.protocol.events import PROGRESS, SpawnStage
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool import template_client
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.pool.ops import OpContext
from llorch_tui.pool.ports import hold_port
from llorch_tui.pool.terminate import terminate
from llorch_tui.pool.probe_cache import probe_backends, usable_backends
from llorch_tui.pool.worker_failure import failure_error, refetch_hint
from llorch_tui.pool.worker_registry import LIVE_STATES, Registry, exit_file, fill_exit_info, is_live, now
from llorch_tui.protocol import BACKENDS
from llorch_tui.protocol.catalog import ModelEntry
from llorch_tui.protocol.workers import WorkerRecord
from llorch_tui.pool.child_env import child_env
from llorch_tui.protocol.params import SpawnParams

BASE_TIMEOUT_S = 60.0
TIMEOUT_PER_GB_S = 30.0
HEALTH_POLL_S = 2.0
KILL_GRACE_S = 3.0
PID_WAIT_S = 30.0  # the supervisor reports the worker's pid at once; only an overloaded machine is slower
# Supervisors this agent started: polled so a long-lived agent leaves no zombies.
_SUPERVISORS: list[subprocess.Popen[bytes]] = []


def worker_command() -> list[str]:
    """$LLORCH_WORKER_COMMAND, else llorch-worker beside this interpreter or on PATH, else `python -m`."""
    env = os.environ.get("LLORCH_WORKER_COMMAND")
    if env:
        return shlex.split(env)
    beside = Path(sys.executable).parent / "llorch-worker"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("llorch-worker")
    return [found] if found else [sys.executable, "-m", "llorch_worker.cli"]


def reap_supervisors() -> None:
    for proc in list(_SUPERVISORS):
        if proc.poll() is not None:
            _SUPERVISORS.remove(proc)
    template_client.reap()


def model_dir(ctx: OpContext, entry: ModelEntry) -> Path:
    path = Path(entry.path).expanduser()
    return path if path.is_absolute() else ctx.settings.paths.models_dir / path


# A GGUF served as-is is dequantized on every load: budget for the float32 size it becomes (4-bit -> 32-bit).
GGUF_DEQUANT_FACTOR = 8.0


def spawn_timeout(entry: ModelEntry, mdir: Path, override: float | None) -> float:
    """60 s + 30 s per GB: loading a 7B model from a slow disk takes minutes, a tiny one seconds."""
    if override is not None:
        return override
    size_gb = entry.size_gb
    if not size_gb:
        size_gb = sum(f.stat().st_size for f in mdir.glob("*.safetensors")) / 1e9
    if entry.gguf is not None and not entry.gguf.converted:
        size_gb *= GGUF_DEQUANT_FACTOR
    return BASE_TIMEOUT_S + TIMEOUT_PER_GB_S * size_gb


def check_request(ctx: OpContext, p: SpawnParams) -> tuple[ModelEntry, Path]:
    """Refuse early, with the next step, everything we can know without starting a process."""
    if p.backend not in BACKENDS:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"unknown backend {p.backend!r}",
                          f"use one of: {', '.join(BACKENDS)}")
    if p.gpu is not None and p.backend != "cuda":
        raise LlorchError(ErrorCode.BAD_REQUEST, f"--gpu applies to the cuda backend, not {p.backend}",
                          "leave --gpu out for cpu and metal")
    entry = CatalogStore(ctx.settings.paths, ctx.settings.pool_id).get(p.model)
    if not entry.downloaded:
        raise LlorchError(ErrorCode.NOT_DOWNLOADED, f"model {p.model!r} is registered but not downloaded on this pool",
                          f"download it first: llorch-pool models download {p.model}", model=p.model)
    mdir = model_dir(ctx, entry)
    served_as_gguf = entry.gguf is not None and not entry.gguf.converted
    if served_as_gguf and not mdir.is_file():
        raise LlorchError(ErrorCode.NOT_DOWNLOADED, f"model {p.model!r} is served from its GGUF {mdir}, "
                          "which is no longer there",
                          f"put the file back, or register it again: llorch-pool models unregister {p.model} && "
                          f"llorch-pool models register {p.model} --path FILE.gguf", model=p.model)
    if not served_as_gguf and not (mdir / "config.json").is_file():
        raise LlorchError(ErrorCode.NOT_DOWNLOADED, f"model {p.model!r} is marked downloaded but {mdir} has no config.json",
                          f"put its files back: {refetch_hint(p.model, entry)}", model=p.model)
    if p.backend not in entry.backends:
        raise LlorchError(ErrorCode.BACKEND_UNSUPPORTED,
                          f"model {p.model!r} does not support the {p.backend} backend (it supports: "
                          f"{', '.join(entry.backends) or 'none'})",
                          f"spawn it on {entry.backends[0]}" if entry.backends else
                          f"enable it: llorch-pool models update {p.model} --backends {p.backend}", model=p.model)
    if p.backend != "cpu":
        info = probe_backends(ctx.settings.state_dir)
        if not info.backends.get(p.backend):
            info = probe_backends(ctx.settings.state_dir, refresh=True)  # a stale cache must not refuse wrongly
        if not info.backends.get(p.backend):
            why = f"; probe: {'; '.join(info.errors)}" if info.errors else ""
            raise LlorchError(ErrorCode.BACKEND_UNAVAILABLE,
                              f"the {p.backend} backend is not usable on pool {ctx.settings.pool_id} "
                              f"(torch {info.torch or 'missing'}{why})",
                              f"usable here: {', '.join(usable_backends(info))}; `llorch-pool status --probe` re-checks",
                              backend=p.backend)
        if p.backend == "cuda" and p.gpu is not None and info.cuda_devices and p.gpu >= len(info.cuda_devices):
            raise LlorchError(ErrorCode.BAD_REQUEST, f"no GPU {p.gpu}: this pool has {len(info.cuda_devices)}",
                              f"use --gpu 0..{len(info.cuda_devices) - 1} (`llorch-pool status` lists them)")
    return entry, mdir


class _Callback:
    """The one-shot readiness endpoint: the worker POSTs {status: ready|failed} to a secret path."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.path = f"/callback/{secrets.token_urlsafe(16)}"
        self.event: asyncio.Future[WorkerCallback] = asyncio.get_running_loop().create_future()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
        except ValueError:
            return web.json_response({"error": "expected JSON"}, status=400)
        from llorch_worker.api import WorkerCallback  # here: an agent without the worker package still starts

        try:
            callback = WorkerCallback.model_validate(doc)
        except ValidationError:
            return web.json_response({"error": "expected a worker callback (worker_id, status)"}, status=400)
        if callback.worker_id != self.worker_id:
            return web.json_response({"error": "unknown worker"}, status=404)
        if not self.event.done():
            self.event.set_result(callback)
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.path}"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _reserve(ctx: OpContext, p: SpawnParams, worker_id: str) -> tuple[WorkerRecord, socket.socket]:
    """Bind the port (the worker inherits the socket) and write the `starting` record under one lock."""
    paths = ctx.settings.paths.ensure()
    with Registry(paths).edit() as records:
        reserved = [r.port for r in records if r.state in LIVE_STATES and is_live(r)]
        listener = hold_port(p.gpu, p.port, reserved)
        port = int(listener.getsockname()[1])
        rec = WorkerRecord(id=worker_id, model=p.model, backend=p.backend, gpu=p.gpu, port=port, pid=0,
                           state="starting", started_at=now(), dtype=p.dtype,
                           log_path=str(paths.logs_dir / f"{worker_id}.log"))
        records.append(rec)
    return rec, listener


def _launch(ctx: OpContext, rec: WorkerRecord, mdir: Path, callback_url: str,
            template: str | None, listener: socket.socket) -> tuple[subprocess.Popen[bytes], int]:
    """Start the supervisor in a new session; returns it and the read end of its pid pipe.

    With `template` (the pool's warm template socket), the supervisor has the worker forked there.
    The worker serves on `listener`, passed down as an inherited fd.
    """
    command = worker_command()
    lfd = listener.fileno()
    argv = [*command, "--worker-id", rec.id, "--model", str(mdir), "--backend", rec.backend,
            "--port", str(rec.port), "--host", "127.0.0.1", "--listen-fd", str(lfd), "--callback-url", callback_url]
    if rec.gpu is not None:
        argv += ["--gpu", str(rec.gpu)]
    if rec.dtype:
        argv += ["--dtype", rec.dtype]
    paths = ctx.settings.paths
    exit_file(paths, rec.id).unlink(missing_ok=True)
    # an allow-list: the agent's own secrets (HF_TOKEN, the mirror's token, ...) stay with the agent
    env = child_env({"PYTHONUNBUFFERED": "1", "LLORCH_WORKER_ID": rec.id,
                     "LLORCH_STATE_DIR": str(ctx.settings.state_dir)})
    r, w = os.pipe()
    try:
        with open(rec.log_path, "ab") as log:
            how = "forked from the warm template" if template else f"exec ({rec.start_note})"
            log.write(f"# llorch-pool: starting worker {rec.id} at {now().isoformat()} ({how}): "
                      f"{shlex.join(argv)}\n".encode())
            log.flush()
            fork = ["--template", template, "--command-words", str(len(command))] if template else []
            # Never the agent's stdin/stdout (the protocol channel): /dev/null in, the log file out.
            proc = subprocess.Popen(
                [sys.executable, "-m", "llorch_tui.pool.supervise", "--exit-file", str(exit_file(paths, rec.id)),
                 "--pid-fd", str(w), "--listen-fd", str(lfd), *fork, "--", *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(w, lfd), env=env, cwd=str(ctx.settings.state_dir))
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    _SUPERVISORS.append(proc)
    return proc, r


async def _open_pipe(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    return reader, transport


async def _health(port: int) -> Health | None:
    # Imported here: an agent on a pool without llorch-worker still starts (and says what is missing).
    from llorch_tui.worker_client import WorkerClient

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5)) as s:
            return await WorkerClient(s, f"http://127.0.0.1:{port}").health()
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, LlorchError):
        return None


def kill_worker(rec: WorkerRecord, sup: subprocess.Popen[bytes] | None, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the worker's group, SIGKILL after the grace; the supervisor then records the exit and leaves."""
    if rec.pgid:
        terminate(rec.pid, rec.pgid, grace_s)
    if sup is not None:
        if rec.pgid is None and sup.poll() is None:
            sup.terminate()  # no worker pid yet: the supervisor forwards, or dies before starting it
        try:
            sup.wait(grace_s + 2)
        except subprocess.TimeoutExpired:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()


async def spawn_worker(ctx: OpContext, p: SpawnParams) -> WorkerRecord:
    reap_supervisors()
    entry, mdir = await asyncio.to_thread(check_request, ctx, p)
    timeout = spawn_timeout(entry, mdir, p.timeout_s)
    worker_id = f"{p.model}-{p.backend}{'' if p.gpu is None else p.gpu}-{secrets.token_hex(3)}"
    # The warm template first (its first start imports torch): the port is picked after, so it is
    # still free when the worker binds it.
    template, note = await asyncio.to_thread(
        template_client.ensure, ctx.settings.state_dir, ctx.settings.paths.ensure().logs_dir, worker_command())
    rec, listener = await asyncio.to_thread(_reserve, ctx, p, worker_id)
    rec.start_note = note
    registry = Registry(ctx.settings.paths)
    ctx.emit(PROGRESS, SpawnStage(stage="port", port=rec.port, worker_id=rec.id, held=True))
    callback = _Callback(rec.id)
    sup: subprocess.Popen[bytes] | None = None
    pipe: asyncio.BaseTransport | None = None
    t0 = time.monotonic()
    try:
        try:
            await callback.start()
            sup, fd = _launch(ctx, rec, mdir, callback.url, template, listener)
        finally:
            listener.close()  # the supervisor (and through it the worker) has its own copy now
        reader, pipe = await _open_pipe(fd)
        try:
            line = (await asyncio.wait_for(reader.readline(), PID_WAIT_S)).strip()
        except asyncio.TimeoutError:  # an overloaded pool: a LlorchError, and _abandon kills what did start
            raise failure_error(rec, f"did not start within {PID_WAIT_S:.0f}s", code=ErrorCode.WORKER_TIMEOUT,
                                hint="the pool is overloaded (see `llorch-pool status`); try again") from None
        pid, _, how = line.decode(errors="replace").partition(" ")
        if not pid.isdigit():
            raise failure_error(fill_exit_info(ctx.settings.paths, rec), "the worker process did not start")
        import psutil

        rec.pid = rec.pgid = int(pid)
        mode, _, note = how.partition(" ")
        rec.start_mode = mode or "exec"
        rec.start_note = note or (None if mode == "fork" else rec.start_note)
        rec.supervisor_pid = sup.pid
        try:
            rec.create_time = psutil.Process(rec.pid).create_time()
        except psutil.NoSuchProcess:
            rec.create_time = None
        await asyncio.to_thread(registry.put, rec)
        ctx.emit(PROGRESS, SpawnStage(stage="spawned", pid=rec.pid, port=rec.port, worker_id=rec.id,
                                      log_path=rec.log_path, timeout_s=timeout, start_mode=rec.start_mode,
                                      start_note=rec.start_note))
        ready = await _wait_ready(ctx, rec, callback, reader, t0, timeout, entry)
        rec.state, rec.ready_at = "ready", now()
        rec.load_s = ready.load_s if ready.load_s is not None else round(time.monotonic() - t0, 3)
        await asyncio.to_thread(registry.put, rec)
        ctx.emit(PROGRESS, SpawnStage(stage="ready", pid=rec.pid, port=rec.port, worker_id=rec.id,
                                      load_s=rec.load_s))
        return rec
    except BaseException as exc:
        # Failed, timed out or cancelled: nothing half-started may survive.
        await asyncio.shield(asyncio.to_thread(_abandon, ctx, rec, sup, exc))
        raise
    finally:
        if pipe is not None:
            pipe.close()
        await callback.close()


def _abandon(ctx: OpContext, rec: WorkerRecord, sup: subprocess.Popen[bytes] | None, exc: BaseException) -> None:
    kill_worker(rec, sup)
    fill_exit_info(ctx.settings.paths, rec)
    # A spawn its caller cancelled (a matrix stop, Ctrl-C) was stopped on purpose: not a failure.
    rec.state = "stopped" if isinstance(exc, asyncio.CancelledError) else "failed"
    rec.stopped_at = now()
    if not isinstance(exc, LlorchError):
        rec.exit_reason = "spawn cancelled by the caller" if isinstance(exc, asyncio.CancelledError) else \
            f"spawn failed: {type(exc).__name__}: {exc}"
    elif exc.code == ErrorCode.WORKER_TIMEOUT:
        rec.exit_reason = exc.message
    Registry(ctx.settings.paths).put(rec)


async def _wait_ready(ctx: OpContext, rec: WorkerRecord, callback: _Callback, pipe: asyncio.StreamReader,
                      t0: float, timeout: float, entry: ModelEntry) -> WorkerCallback:
    """Until the ready callback (or /health ok), the worker's exit, the deadline, or a cancel."""
    exited = asyncio.ensure_future(pipe.read())  # EOF when the supervisor exits, i.e. the worker is gone
    loading_seen = False
    try:
        while True:
            remaining = t0 + timeout - time.monotonic()
            if remaining <= 0:
                raise failure_error(rec, f"not ready after {timeout:.0f}s", code=ErrorCode.WORKER_TIMEOUT,
                                    hint=f"a slow disk or a large model: pass --timeout (now {timeout:.0f}s); "
                                         f"the log says where it stopped: llorch-pool worker logs {rec.id}")
            waiting: set[asyncio.Future[Any]] = {callback.event, exited}
            done, _ = await asyncio.wait(waiting, timeout=min(HEALTH_POLL_S, remaining),
                                         return_when=asyncio.FIRST_COMPLETED)
            ctx.check_cancelled()
            if callback.event in done:
                doc = callback.event.result()
                if doc.status == "ready":
                    return doc
                await asyncio.wait({exited}, timeout=KILL_GRACE_S + 2)  # let it exit: the code classifies
                raise failure_error(fill_exit_info(ctx.settings.paths, rec), "failed while loading",
                                    reported=doc.error, entry=entry)
            if exited in done:
                raise failure_error(fill_exit_info(ctx.settings.paths, rec), "exited before it was ready", entry=entry)
            health = await _health(rec.port)
            if health is not None and health.status == "ok" and health.worker_id in (None, rec.id):
                from llorch_worker.api import WorkerCallback

                return WorkerCallback(worker_id=rec.id, status="ready")  # the callback got lost; /health is the same truth
            if health is not None and not loading_seen:
                loading_seen = True
                ctx.emit(PROGRESS, SpawnStage(stage="loading", pid=rec.pid, port=rec.port, worker_id=rec.id))
            ctx.emit(PROGRESS, SpawnStage(stage="waiting", worker_id=rec.id,
                                          elapsed_s=round(time.monotonic() - t0, 1), timeout_s=timeout))
    finally:
        exited.cancel()
