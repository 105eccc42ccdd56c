"""One cell, start to finish: ensure the model, spawn, probe, (bench, stability), stop, record.

`CellRun.run()` always returns a CellResult (expected failures are verdicts, not exceptions) and
always stops the worker it spawned — also when the task running it is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Callable

import aiohttp

from llorch_worker.api import WorkerInfo

from llorch_tui.client import PoolClient
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.matrix.classify import SKIP_CODES, classify_download_error, classify_spawn_error, exit_code_of, log_tail_of
from llorch_tui.matrix.environment import env_fingerprint, fetch_worker_info
from llorch_tui.matrix.modes import run_bench, run_stability
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.matrix.parity import DRIFT_HINT, ParityUnavailable, certify_cell, drift_code
from llorch_tui.matrix.plan import PlannedCell
from llorch_tui.matrix.probes import ProbeFailure, WorkerHTTP, run_probes
from llorch_tui.protocol.downloads import DownloadProgress
from llorch_tui.protocol.events import Event, SpawnStage
from llorch_tui.protocol.matrix import DEFAULT_DTYPE, CellResult, Measurements, ReasonCode, Stage, Verdict
from llorch_tui.units import fmt_bytes
from llorch_tui.protocol.params import (DownloadParams, ListParams, LogsParams, RegisterParams, SpawnParams, StopParams,
                                        VerdictParams)
from llorch_tui.protocol.workers import WorkerRecord

log = logging.getLogger("llorch.matrix")
ProgressFn = Callable[[Stage, "float | None", str], None]
LOG_TAIL_LINES = 30
STOP_GRACE_S = 10
# Seconds to wait for the agent's answer beyond the worker's own load timeout.
AGENT_SLACK_S = 30.0


class CellFailed(Exception):
    def __init__(self, code: str, reason: str, hint: str | None = None, exit_code: int | None = None,
                 log_tail: list[str] | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.hint, self.exit_code = code, reason, hint, exit_code
        self.log_tail = log_tail or []


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _stage_of_spawn_event(ev: SpawnStage) -> Stage:
    stage = ev.stage
    return "loading" if ("load" in stage or stage in ("started", "waiting", "ready")) else "spawning"


class CellRun:
    def __init__(self, client: PoolClient, cell: PlannedCell, options: MatrixOptions, gpu: int | None,
                 progress: ProgressFn, live_workers: dict[str, PoolClient]) -> None:
        self.client, self.cell, self.options, self.gpu = client, cell, options, gpu
        self.progress = progress
        self.live = live_workers  # engine-wide registry: worker id -> client, for the last-resort sweep
        self.worker_id: str | None = None
        self.worker_info: WorkerInfo | None = None  # the worker's /info (environment facts)
        self.m = Measurements(fit_estimate_bytes=cell.fit.estimate_bytes if cell.fit else None)
        self._modes_s = 0.0  # wall time of --bench/--stability requests (the worker's work, not overhead)

    async def run(self) -> CellResult:
        started = _now()
        t0 = time.perf_counter()
        result = CellResult(key=self.cell.key, verdict="pass", started_at=started)
        try:
            await self._body(result)
        except CellFailed as f:
            verdict: Verdict = "skipped" if f.code in SKIP_CODES else "fail"
            result.verdict, result.reason_code, result.reason, result.hint = verdict, f.code, f.reason, f.hint
            result.exit_code = f.exit_code
            result.log_tail = f.log_tail or await self._log_tail()
        except LlorchError as exc:  # an op failed in a way the steps did not classify
            code = ReasonCode.CONNECTION_LOST if exc.code == ErrorCode.CONNECTION_LOST else ReasonCode.INTERNAL
            result.verdict, result.reason_code, result.reason, result.hint = "fail", code, exc.message, exc.hint
            result.log_tail = await self._log_tail()
        except Exception as exc:  # a bug here must cost one cell, not the run (and never leak the worker)
            log.exception("cell %s failed unexpectedly", self.cell.key.id)
            result.verdict, result.reason_code = "fail", ReasonCode.INTERNAL
            result.reason = f"internal error in the matrix engine: {type(exc).__name__}: {exc}"
            result.log_tail = await self._log_tail()
        finally:
            # Shielded: a cancelled run (Ctrl-C, stop()) must still stop the worker before it unwinds.
            await asyncio.shield(self._stop_worker())
        result.environment = env_fingerprint(self.cell.key, self.cell.pool_status, self.worker_info, self.cell.entry,
                                             result.parity, self.gpu)
        if self.options.record_verdicts and result.verdict in ("pass", "fail"):
            t_rec = time.perf_counter()
            await self._record(result)
            self.m.record_s = round(time.perf_counter() - t_rec, 4)
        self.m.cell_s = round(time.perf_counter() - t0, 4)
        if self.m.worker_start_s is not None and self.m.generation_s is not None:
            # What the engine adds beyond the worker's own start+load, generations and shutdown.
            own = (self.m.worker_start_s + self.m.generation_s + self._modes_s + (self.m.stop_s or 0.0)
                   + (self.m.parity_s or 0.0))
            self.m.overhead_s = round(self.m.cell_s - own, 4)
        result.measurements, result.worker_id, result.finished_at = self.m, self.worker_id, _now()
        return result

    async def _body(self, result: CellResult) -> None:
        if self.cell.needs_register:
            await self.client.api.models.register(RegisterParams(id=self.cell.key.model))
        if self.cell.needs_download:
            await self._download()
        try:
            record = await self._spawn()
        except CellFailed as f:
            if f.code != ReasonCode.PORT_IN_USE:
                raise
            # Another process took the port between the agent's pick and the worker's bind (other pools or
            # tools on the same host): the agent picks the next free one on a second try.
            self.progress("spawning", None, "port taken meanwhile; spawning again")
            if self.worker_id is not None:
                self.live.pop(self.worker_id, None)  # the agent already reaped the failed one
            self.worker_id = None
            record = await self._spawn()
        url = await self.client.worker_url(record.port)
        self.progress("probing", None, f"worker {self.worker_id} pid {record.pid} port {record.port}")
        async with aiohttp.ClientSession() as session:
            http = WorkerHTTP(session, url, self.options.request_timeout_s)
            try:
                t_probe = time.perf_counter()
                await run_probes(http, self.options, self.m)
                self.worker_info = await fetch_worker_info(http)
                self.m.probe_s = round(time.perf_counter() - t_probe, 4)
                if self.options.parity:
                    await self._parity(result, session, url)
                t_modes = time.perf_counter()
                if self.options.bench:
                    self.progress("benchmark", 0.0, f"{self.options.bench} iterations")
                    result.bench = await run_bench(http, self.options, lambda f, d: self.progress("benchmark", f, d))
                if self.options.stability:
                    self.progress("stability", 0.0, f"{self.options.stability_requests} requests")
                    result.stability = await run_stability(http, self.options,
                                                           lambda f, d: self.progress("stability", f, d))
                    if result.stability.errors:
                        # A worker that died under load is a crash, whatever the requests saw.
                        raise await self._maybe_crash(ReasonCode.UNSTABLE,
                                                      f"{result.stability.errors} errors under load: "
                                                      + "; ".join(result.stability.error_samples[:3]))
                self._modes_s = time.perf_counter() - t_modes
                self.m.peak_rss_bytes, self.m.device_peak_bytes = http.peak_rss, http.device_peak
            except ProbeFailure as pf:
                raise await self._maybe_crash(pf.code, pf.reason, pf.hint) from None
            except ParityUnavailable as pu:
                raise await self._maybe_crash(ReasonCode.WRONG_OUTPUT, str(pu)) from None
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                code = ReasonCode.TIMEOUT if isinstance(exc, asyncio.TimeoutError) else ReasonCode.CONNECTION_LOST
                what = "timed out" if code == ReasonCode.TIMEOUT else f"failed: {type(exc).__name__}: {exc}"
                raise await self._maybe_crash(code, f"request to the worker {what}") from None

    async def _parity(self, result: CellResult, session: aiohttp.ClientSession, url: str) -> None:
        """The correctness certificate against the model's reference; a drifting cell fails with the evidence."""
        t = time.perf_counter()
        result.parity = await certify_cell(self.client, self.cell.key, session, url, self.options, self.progress)
        self.m.parity_s = round(time.perf_counter() - t, 4)
        code = drift_code(result.parity)
        if code is not None:
            raise CellFailed(code, result.parity.reason or code, DRIFT_HINT)

    async def _download(self) -> None:
        self.progress("downloading", 0.0, "")

        def on_event(ev: Event) -> None:
            if not isinstance(ev, DownloadProgress):
                return
            total, done = ev.bytes_total, ev.bytes_done
            self.progress("downloading", (done / total) if total else None,
                          f"{ev.file or ''} {fmt_bytes(done)}/{fmt_bytes(total)}".strip())

        try:
            await self.client.api.models.download(DownloadParams(id=self.cell.key.model), on_event=on_event)
        except LlorchError as exc:
            if exc.code == ErrorCode.CONNECTION_LOST:
                raise
            raise CellFailed(classify_download_error(exc), f"download failed: {exc.message}", exc.hint) from None

    async def _spawn(self) -> WorkerRecord:
        self.progress("spawning", None, f"{self.cell.key.backend}" + (f" gpu {self.gpu}" if self.gpu is not None else ""))
        params = SpawnParams(backend=self.cell.key.backend, model=self.cell.key.model,
                             timeout_s=self.options.load_timeout_s)
        if self.gpu is not None:
            params.gpu = self.gpu
        if self.cell.key.dtype != DEFAULT_DTYPE:
            params.dtype = self.cell.key.dtype

        def on_event(ev: Event) -> None:
            if not isinstance(ev, SpawnStage):
                return
            wid = ev.worker_id or ev.id
            if wid is not None and self.worker_id is None:
                self.worker_id = wid  # known before readiness: a cancel mid-load can still stop it
                self.live[wid] = self.client
            self.progress(_stage_of_spawn_event(ev), None, ev.message or ev.stage)

        t = time.perf_counter()
        try:
            rec = await self.client.api.workers.spawn(params, on_event=on_event,
                                                      timeout=self.options.load_timeout_s + AGENT_SLACK_S)
        except asyncio.TimeoutError:
            raise CellFailed(ReasonCode.TIMEOUT, f"the worker was not ready within {self.options.load_timeout_s:.0f}s",
                             "raise [matrix] load_timeout_s for big models") from None
        except LlorchError as exc:
            if exc.code == ErrorCode.CONNECTION_LOST:
                raise
            code, exit_code = classify_spawn_error(exc)
            wid = exc.details.get("worker_id") or exc.details.get("id")
            if isinstance(wid, str):
                self.worker_id = self.worker_id or wid
            raise CellFailed(code, f"spawn failed: {exc.message}", exc.hint, exit_code, log_tail_of(exc.details)) from None
        self.m.spawn_s = round(time.perf_counter() - t, 4)
        self.worker_id = rec.id
        self.live[self.worker_id] = self.client
        self.m.load_s = rec.load_s
        if rec.ready_at is not None:
            self.m.worker_start_s = round((rec.ready_at - rec.started_at).total_seconds(), 4)
        return rec

    async def _maybe_crash(self, code: str, reason: str, hint: str | None = None) -> CellFailed:
        """A probe failed: if the worker died meanwhile, that is the real reason (crash with its exit code)."""
        try:
            workers = await self.client.api.workers.list(ListParams(probe=False), timeout=30)
        except (LlorchError, asyncio.TimeoutError):
            return CellFailed(code, reason, hint)
        me = next((w for w in workers if w.id == self.worker_id), None)
        if me is not None and me.state in ("dead", "failed", "stopped"):
            why = me.exit_reason or "the worker process is gone"
            return CellFailed(ReasonCode.CRASH, f"the worker died: {why}", "see the log tail",
                              exit_code_of({}, why))
        return CellFailed(code, reason, hint)

    async def _log_tail(self) -> list[str]:
        if self.worker_id is None:
            return []
        try:
            res = await self.client.api.workers.logs(LogsParams(id=self.worker_id, lines=LOG_TAIL_LINES), timeout=30)
        except (LlorchError, asyncio.TimeoutError):
            return []
        return res.lines[-LOG_TAIL_LINES:]

    async def _stop_worker(self) -> None:
        wid = self.worker_id
        if wid is None:
            return
        self.progress("stopping", None, f"worker {wid}")
        t = time.perf_counter()
        await stop_worker(self.client, wid)
        self.live.pop(wid, None)
        self.m.stop_s = round(time.perf_counter() - t, 4)

    async def _record(self, result: CellResult) -> None:
        peak = self.m.peak_bytes(self.cell.key.backend)
        # Keyed "cpu" (the worker's default dtype) or "cpu:bfloat16": each dtype keeps its own verdict and peak.
        params = VerdictParams(id=self.cell.key.model, backend=self.cell.key.backend, verdict=result.verdict,
                               dtype=None if self.cell.key.dtype == DEFAULT_DTYPE else self.cell.key.dtype,
                               reason=result.reason, tokens_per_second=self.m.tokens_per_second,
                               peak_memory_bytes=peak)
        try:
            await self.client.api.models.record_verdict(params, timeout=30)
        except (LlorchError, asyncio.TimeoutError):
            pass  # the verdict is in the reports; the catalog note is a convenience for later runs


async def stop_worker(client: PoolClient, worker_id: str) -> None:
    """Stop one worker; after a lost agent session, once more on a fresh one (the registry is on disk)."""
    for attempt in range(2):
        try:
            await client.api.workers.stop(StopParams(id=worker_id, grace_s=STOP_GRACE_S), timeout=STOP_GRACE_S + 30)
            return
        except LlorchError as exc:
            if exc.code != ErrorCode.CONNECTION_LOST or attempt:
                return  # not_found: already gone
        except asyncio.TimeoutError:
            return
