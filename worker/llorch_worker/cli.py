"""`llorch-worker`: start-up order, readiness, failure reporting and graceful shutdown.

Order: arguments -> cheap checkpoint checks (no torch) -> backend check (imports torch) ->
bind the port (/health answers "loading") -> load + warm up in a thread -> "ready".
Every failure prints one `LLORCH_WORKER_ERROR {json}` line on stderr, POSTs a `failed` status to
the callback URL when one is set, and exits with the code the pool agent maps to a reason.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from .api import ErrorDetail, WorkerCallback
from .check import check_files, raise_for
from .errors import EXIT_OK, EXIT_USAGE, WorkerError
from .httpguard import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, ConnectionLimits, LimitedTCPSite

log = logging.getLogger("llorch_worker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llorch-worker", description="llorch inference worker (one model, one device).")
    p.add_argument("--worker-id", required=True)
    p.add_argument("--model", required=True, help="checkpoint directory (config.json, *.safetensors, tokenizer)")
    p.add_argument("--backend", required=True, choices=("cpu", "cuda", "metal"))
    p.add_argument("--gpu", type=int, default=0, help="CUDA device index (cuda only)")
    p.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one (reported when ready)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (non-loopback needs --token)")
    p.add_argument("--listen-fd", type=int, metavar="FD",
                   help="serve on this inherited, already listening TCP socket instead of binding --host/--port "
                        "(the pool agent binds the port when it chooses it, so nobody can take it meanwhile)")
    p.add_argument("--callback-url", help="POST readiness/failure JSON here")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the bearer token every route but /health then requires (default: "
                        "$LLORCH_WORKER_TOKEN)")
    p.add_argument("--token", help=argparse.SUPPRESS)  # refused below: argv is visible to every user in ps
    p.add_argument("--max-batch", type=int, default=16, help="most requests decoded together")
    p.add_argument("--queue-limit", type=int, default=64, help="most requests waiting; beyond: 503")
    p.add_argument("--shutdown-grace", type=float, default=10.0,
                   help="seconds SIGTERM lets in-flight requests finish before cancelling them")
    p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S,
                   help="close a connection that has not sent a request's headers within this many seconds")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   help="open connections at most; beyond, a connection gets 503 and is closed")
    p.add_argument("--max-connections-per-client", type=int, metavar="N",
                   help="open connections one client address may hold (default: half of --max-connections); "
                        "beyond, a connection gets 429 and is closed")
    args = p.parse_args(argv)
    if args.token is not None:
        p.error("--token on the command line is visible to every user of this machine (ps, /proc); "
                "pass the token in LLORCH_WORKER_TOKEN or in a file named by --token-file")
    args.token = os.environ.get("LLORCH_WORKER_TOKEN") or None
    if args.token_file:
        try:
            args.token = open(args.token_file, encoding="utf-8").read().strip()
        except (OSError, UnicodeDecodeError) as e:
            p.error(f"--token-file {args.token_file}: cannot read it: {e}")
        if not args.token:
            p.error(f"--token-file {args.token_file} is empty")
    if not 0 <= args.port <= 65535:
        p.error(f"--port {args.port} is out of range 0..65535")
    if args.max_batch < 1 or args.queue_limit < 1 or args.max_connections < 1 or (
            args.max_connections_per_client is not None and args.max_connections_per_client < 1):
        p.error("--max-batch, --queue-limit, --max-connections and --max-connections-per-client must be at least 1")
    if not args.idle_timeout > 0:
        p.error("--idle-timeout must be more than 0 seconds")
    from .faults import logit_noise_from_env, prefill_fault_from_env

    try:
        args.logit_noise = logit_noise_from_env()
        args.prefill_fault = prefill_fault_from_env()
    except ValueError as e:
        p.error(str(e))
    if not _is_loopback(args.host) and not args.token:
        p.error(f"--host {args.host} is not a loopback address: it needs a token (LLORCH_WORKER_TOKEN or "
                "--token-file), "
                "so that the worker is not open to the network")
    return args


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _post(url: str | None, callback: WorkerCallback) -> None:
    if not url:
        return
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
            async with s.post(url, json=callback.model_dump(mode="json", exclude_none=True)) as r:
                if r.status >= 400:
                    log.warning("callback %s answered %s", url, r.status)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        log.warning("callback %s failed: %s", url, e)


class WorkerProcess:
    def __init__(self, args: argparse.Namespace) -> None:
        from .httpkit import WorkerState

        self.args = args
        self.state = WorkerState(worker_id=args.worker_id, model_path=str(args.model), backend=args.backend,
                                 token=args.token)
        self.runner: Any = None
        self.stop_event = asyncio.Event()

    async def fail(self, err: WorkerError) -> int:
        err.emit()
        self.state.status = "error"
        self.state.error = err.to_dict()
        await _post(self.args.callback_url, WorkerCallback(worker_id=self.args.worker_id, status="failed",
                                                           error=ErrorDetail(code=err.code, message=err.message)))
        if self.runner is not None:
            await self.runner.cleanup()
        return err.exit_code

    async def run(self) -> int:
        try:
            raise_for(check_files(self._model_path()))
            device = await asyncio.to_thread(self._backend)
            await self._bind()
        except WorkerError as e:
            return await self.fail(e)
        self.state.device = device
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loader = asyncio.ensure_future(asyncio.to_thread(self._load))
        stopper = asyncio.ensure_future(self.stop_event.wait())
        await asyncio.wait([loader, stopper], return_when=asyncio.FIRST_COMPLETED)
        if not loader.done():  # SIGTERM while loading: nothing is in flight, leave at once
            await self.runner.cleanup()
            os._exit(EXIT_OK)
        stopper.cancel()
        try:
            loader.result()
        except WorkerError as e:
            return await self.fail(e)
        except Exception as e:
            return await self.fail(WorkerError("internal", f"loading failed: {type(e).__name__}: {e}"))
        await self._ready()
        await self.stop_event.wait()
        await self._shutdown()
        return EXIT_OK

    @staticmethod
    def t_created_to_load(t_load: float) -> float:
        """Seconds from the process's creation (its fork from a warm template, or its exec) to `t_load`
        (a monotonic time)."""
        from . import template

        if template.FORKED_AT is not None:
            return t_load - template.FORKED_AT
        try:
            # The kernel's start time in clock ticks since boot, against the boot clock: 10 ms exact.
            # (psutil's create_time adds the boot time, which /proc gives in whole seconds.)
            with open("/proc/self/stat") as fh:
                start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
            age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
            return age - (time.monotonic() - t_load)
        except (OSError, ValueError, IndexError, AttributeError):
            import psutil

            return (time.time() - (time.monotonic() - t_load)) - psutil.Process().create_time()

    def _model_path(self) -> Any:
        from pathlib import Path

        return Path(self.args.model).expanduser().resolve()

    def _backend(self) -> str:
        from .engine import configure_threads, resolve_device

        configure_threads()
        return resolve_device(self.args.backend, self.args.gpu)

    async def _bind(self) -> None:
        from aiohttp import web

        from .server import make_app

        app = make_app(self.state)
        # handler_cancellation: a client that disconnects cancels its handler -> its job is cancelled
        limits = ConnectionLimits(self.args.idle_timeout, self.args.max_connections, self.args.max_connections_per_client)
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5.0, access_log=None,
                                    **limits.runner_kwargs())
        await self.runner.setup()
        if self.args.listen_fd is not None:
            sock = self._inherited_socket(self.args.listen_fd)
            site = LimitedTCPSite(self.runner, None, None, limits, sock=sock)
        else:
            site = LimitedTCPSite(self.runner, self.args.host, self.args.port, limits, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await self.runner.cleanup()
            self.runner = None
            if e.errno == errno.EADDRINUSE:
                raise WorkerError("port_in_use", f"port {self.args.port} on {self.args.host} is already in use; "
                                  "pick another --port or stop the process holding it") from e
            raise WorkerError("internal", f"cannot listen on {self.args.host}:{self.args.port}: {e}") from e
        self.port = self.runner.addresses[0][1]
        print(f"LLORCH_WORKER_LISTENING {json.dumps({'port': self.port, 'pid': os.getpid()})}", flush=True)

    def _inherited_socket(self, fd: int) -> socket.socket:
        """The listening socket --listen-fd names, checked: TCP, listening, on loopback unless a token is set."""
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            raise WorkerError("internal", f"--listen-fd {fd} is not an open socket: {e}") from e
        listening = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM \
            and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if not listening:
            sock.detach()
            raise WorkerError("internal", f"--listen-fd {fd} is not a listening TCP socket")
        host = sock.getsockname()[0]
        if not _is_loopback(host) and not self.args.token:
            sock.close()
            raise WorkerError("internal", f"--listen-fd {fd} listens on {host}, not a loopback address: that "
                              "needs a token (LLORCH_WORKER_TOKEN or --token-file)")
        return sock

    def _load(self) -> None:
        """Runs in a thread: load, warm up on a throwaway cache, start the scheduler."""
        from .engine import Engine
        from .jobs import Job
        from .metrics import Metrics
        from .scheduler import Scheduler

        t0 = time.monotonic()
        engine = Engine.load(self._model_path(), self.args.backend, self.args.gpu, self.args.dtype,
                             logit_noise=self.args.logit_noise)
        if engine.noise is not None:
            engine.noise.warn()
        scheduler = Scheduler(engine, Metrics(), max_batch=self.args.max_batch, queue_limit=self.args.queue_limit)
        # warmup: its own cache, dropped with its batch; nothing survives into real requests.
        # It is counted in a throwaway Metrics so /metrics shows only real traffic.
        t_warm = time.monotonic()
        scheduler.run_now(Job("warmup", engine.encode("Hello, world!") or [engine.pad_id], 4, lambda ev: None))
        metrics = scheduler.metrics = Metrics()
        scheduler.prefill_fault = self.args.prefill_fault
        scheduler.start()
        engine.load_s = time.monotonic() - t0
        # process: from this process's start (exec, or the fork of a warm template) to loading
        engine.stages = {"process": round(max(0.0, self.t_created_to_load(t0)), 3), **engine.stages,
                         "warmup": round(time.monotonic() - t_warm, 3)}
        self.state.engine, self.state.scheduler, self.state.metrics = engine, scheduler, metrics
        self.state.dtype = engine.dtype_name
        self.state.device = engine.device

    async def _ready(self) -> None:
        eng = self.state.engine
        self.state.status = "ok"
        ready = WorkerCallback(worker_id=self.args.worker_id, status="ready", port=self.port, model=eng.name,
                               model_path=str(eng.path), backend=self.args.backend, device=eng.device,
                               dtype=eng.dtype_name, load_s=round(eng.load_s, 3), pid=os.getpid(),
                               startup=eng.stages)
        print(f"LLORCH_WORKER_READY {json.dumps(ready.model_dump(mode='json', exclude_none=True))}", flush=True)
        await _post(self.args.callback_url, ready)

    async def _shutdown(self) -> None:
        """Stop accepting, let in-flight work finish for --shutdown-grace, cancel the rest, exit."""
        log.info("shutting down")
        self.state.stopping = True
        sched = self.state.scheduler
        sched.stop(cancel_running=False)
        await asyncio.to_thread(sched.join, self.args.shutdown_grace)
        if sched._thread is not None and sched._thread.is_alive():
            sched.stop(cancel_running=True)
            await asyncio.to_thread(sched.join, 30)
        await asyncio.sleep(0)  # let handlers pick up their final events
        await self.runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LLORCH_WORKER_LOG", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The decode thread runs Python between torch ops; with the default 5 ms GIL switch interval
    # the event loop waits that long for every turn, and a burst of requests trickles in.
    sys.setswitchinterval(float(os.environ.get("LLORCH_WORKER_SWITCH_INTERVAL", "0.001")))
    try:
        args = parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    code = asyncio.run(WorkerProcess(args).run())
    # Everything is closed and flushed by now; skipping interpreter teardown (torch's is ~1 s, more
    # under load) matters because the matrix waits for each worker's exit before the next cell.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
