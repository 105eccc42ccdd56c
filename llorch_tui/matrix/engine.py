"""MatrixEngine: plans the cells, runs them (pools in parallel, slots per device), yields events.

Plain asyncio, no UI. Every worker it spawns is stopped on every exit path: a finished cell, a
failed one, stop(), and cancellation of the task iterating run() (Ctrl-C in the headless runner).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncGenerator, Callable

from llorch_tui import __version__
from llorch_tui.client import PoolClient
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fleet import Fleet
from llorch_tui.matrix.cell import CellRun, stop_worker
from llorch_tui.matrix.events import CellFinished, CellProgress, CellStarted, MatrixEvent, PlanReady, RunFinished
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.matrix.plan import PlannedCell, PoolFacts, plan_pool
from llorch_tui.protocol.catalog import Catalog
from llorch_tui.protocol.fit import FitEstimate
from llorch_tui.protocol.params import FitParams
from llorch_tui.protocol.matrix import CellResult, MatrixReport, PoolInfo, ReasonCode, RunSummary, Stage

log = logging.getLogger("llorch.matrix")
_DONE = object()
INFO_TIMEOUT_S = 60.0
# Tokens a matrix cell's worker holds at once (short prompts, a few dozen new tokens): what fit is sized for.
MATRIX_FIT_CONTEXT = 512


def _now() -> datetime:
    return datetime.now(timezone.utc)


class MatrixEngine:
    def __init__(self, fleet: Fleet, options: MatrixOptions) -> None:
        self.fleet = fleet
        self.options = options
        self.report: MatrixReport | None = None
        self.results: dict[str, CellResult] = {}
        self._stopping = False
        self._cell_tasks: set[asyncio.Task[Any]] = set()
        self._live: dict[str, PoolClient] = {}  # worker id -> client, until stopped
        self._order: list[str] = []

    # ------------------------------------------------------------------ public
    async def run(self) -> AsyncGenerator[MatrixEvent, None]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.create_task(self._main(queue.put_nowait))
        task.add_done_callback(lambda _t: queue.put_nowait(_DONE))
        try:
            while (item := await queue.get()) is not _DONE:
                yield item
            await task  # re-raise a planning error (unknown pool...)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await asyncio.shield(self._sweep())

    def stop(self) -> None:
        """Start nothing new; interrupt running cells (their workers are stopped); run() then ends."""
        self._stopping = True
        for t in list(self._cell_tasks):
            t.cancel()

    # ------------------------------------------------------------------ planning
    def _pool_names(self) -> list[str]:
        names = self.options.pools or [p.name for p in self.fleet.config.pools]
        unknown = [n for n in names if n not in self.fleet.clients]
        if unknown:
            raise LlorchError(ErrorCode.NOT_FOUND, f"no pool named {', '.join(unknown)} in the configuration",
                              f"configured pools: {', '.join(self.fleet.clients) or '(none)'}")
        return names

    async def _view(self, name: str) -> PoolFacts:
        cfg = self.fleet.client(name).pool
        if self.fleet.state(name).state != "online" and not self.fleet.client(name).connected:
            await self.fleet.connect(name)
        st = self.fleet.state(name)
        if st.state != "online":
            return PoolFacts(cfg, online=False, error=st.error)
        api = self.fleet.api(name)
        try:
            cat, status = await asyncio.gather(api.models.list(timeout=INFO_TIMEOUT_S),
                                               api.pool.status(timeout=INFO_TIMEOUT_S))
        except (LlorchError, asyncio.TimeoutError) as exc:
            return PoolFacts(cfg, online=False, error=str(exc) or "timed out asking for its catalog and status")
        view = PoolFacts(cfg, online=True, catalog=cat, status=status)
        view.fits = await self._fits(name, view.catalog)
        return view

    async def _fits(self, name: str, catalog: Catalog | None) -> dict[tuple[str, str, str], FitEstimate]:
        """Fit before download: each model's estimate for the matrix's workload, from the pool itself.

        Only models whose shapes are on disk, or about to be downloaded anyway (--download): asking the
        Hub for every registered model would make planning depend on the network. A pool that cannot
        answer (an older agent, a damaged file) just has no estimate: the cell is not skipped for it."""
        wanted = [(m.id, d) for m in (catalog.models if catalog else [])
                  if (not self.options.models or m.id in self.options.models) and (m.downloaded or self.options.download)
                  for d in self.options.cell_dtypes]
        api = self.fleet.api(name)

        async def one(mid: str, dtype: str) -> list[tuple[tuple[str, str, str], FitEstimate]]:
            params = FitParams(id=mid, batch=1, context=MATRIX_FIT_CONTEXT, dtype=dtype)
            try:
                rep = await api.models.fit(params, timeout=INFO_TIMEOUT_S)
            except (LlorchError, asyncio.TimeoutError):
                return []
            return [((e.model, e.backend, dtype), e) for e in rep.estimates]

        out: dict[tuple[str, str, str], FitEstimate] = {}
        for pairs in await asyncio.gather(*(one(m, d) for m, d in wanted)):
            out.update(pairs)
        return out

    @staticmethod
    def _info(v: PoolFacts) -> PoolInfo:
        st = v.status
        return PoolInfo(name=v.name, online=v.online, error=v.error, hostname=st.hostname if st else None,
                        backends=v.usable_backends, gpus=[g.name for g in st.gpus] if st else [],
                        ram_total_bytes=st.ram.total if st else None)

    # ------------------------------------------------------------------ running
    async def _main(self, emit: Callable[[MatrixEvent], None]) -> None:
        t0 = time.perf_counter()
        names = self._pool_names()
        report = self.report = MatrixReport(llorch_version=__version__, started_at=_now(),
                                            options=self.options.to_dict(), partial=True)  # until it ends
        views = list(await asyncio.gather(*(self._view(n) for n in names)))
        presets = {m.id for m in self.fleet.config.models}
        planned = {v.name: plan_pool(v, self.options, presets) for v in views}
        report.pools = [self._info(v) for v in views]
        emit(PlanReady(cells=[c.key for cells in planned.values() for c in cells], pools=report.pools))

        self._order = [c.key.id for n in names for c in planned[n]]

        def finish(result: CellResult) -> None:
            self.results[result.key.id] = result
            self._refresh_report(t0)  # live: the TUI may export mid-run
            emit(CellFinished(result=result))

        for cells in planned.values():
            for c in cells:
                if c.skipped:
                    finish(CellResult(key=c.key, verdict="skipped", reason_code=c.skip_code, reason=c.skip_reason,
                                      hint=c.skip_hint))
        view_by_name = {v.name: v for v in views}
        await asyncio.gather(*(self._run_pool(view_by_name[n], [c for c in planned[n] if not c.skipped], emit, finish)
                               for n in names))
        report.finished_at = _now()
        report.partial = self._stopping
        s = self._refresh_report(t0)
        paths: dict[str, str] = {}
        report_error: str | None = None
        if self.options.report_dir:
            from llorch_tui.matrix.reports import write_reports

            try:
                paths = await asyncio.to_thread(write_reports, report, Path(self.options.report_dir))
            except (OSError, LlorchError) as exc:
                # An unwritable report dir must not lose the run: the results still reach the consumer.
                log.error("could not write the matrix reports to %s: %s", self.options.report_dir, exc)
                report_error = f"could not write the reports to {self.options.report_dir}: {exc}"
        emit(RunFinished(summary=s, reports=paths, stopped=self._stopping, report_error=report_error))

    def _refresh_report(self, t0: float) -> RunSummary:
        """Cells in plan order (whatever order they finished in) and the counts so far."""
        assert self.report is not None
        self.report.cells = [self.results[k] for k in self._order if k in self.results]
        counts = Counter(r.verdict for r in self.report.cells)
        self.report.summary = RunSummary(passed=counts["pass"], failed=counts["fail"], skipped=counts["skipped"],
                                         duration_s=round(time.perf_counter() - t0, 3))
        return self.report.summary

    async def _run_pool(self, view: PoolFacts, cells: list[PlannedCell], emit: Callable[[MatrixEvent], None],
                        finish: Callable[[CellResult], None]) -> None:
        if not cells:
            return
        client = self.fleet.client(view.name)
        slots: dict[str, asyncio.Queue[int | None]] = {}
        for backend in {c.key.backend for c in cells}:
            q: asyncio.Queue[int | None] = asyncio.Queue()
            for _ in range(view.config.max_parallel_per_device):
                for gpu in view.gpu_indices(backend):
                    q.put_nowait(gpu)
            slots[backend] = q

        async def one(cell: PlannedCell) -> None:
            q = slots[cell.key.backend]
            gpu = await q.get()
            try:
                if self._stopping:
                    finish(CellResult(key=cell.key, verdict="skipped", reason_code=ReasonCode.STOPPED,
                                      reason="the run was stopped before this cell started"))
                    return
                emit(CellStarted(key=cell.key))

                def progress(stage: Stage, fraction: float | None, detail: str) -> None:
                    emit(CellProgress(key=cell.key, stage=stage, fraction=fraction, detail=detail))

                run = CellRun(client, cell, self.options, gpu, progress, self._live)
                task = asyncio.create_task(run.run())
                self._cell_tasks.add(task)
                try:
                    finish(await task)
                except Exception as exc:  # CellRun.run catches its steps' errors; this is a bug in its cleanup
                    log.exception("cell %s failed unexpectedly", cell.key.id)
                    finish(CellResult(key=cell.key, verdict="fail", reason_code=ReasonCode.INTERNAL,
                                      reason=f"internal error in the matrix engine: {type(exc).__name__}: {exc}",
                                      worker_id=run.worker_id, measurements=run.m, finished_at=_now()))
                except asyncio.CancelledError:
                    if not self._stopping:
                        raise  # the whole run is cancelled (Ctrl-C): unwind
                    finish(CellResult(key=cell.key, verdict="skipped", reason_code=ReasonCode.STOPPED,
                                      reason="the run was stopped while this cell ran", worker_id=run.worker_id,
                                      measurements=run.m, started_at=None, finished_at=_now()))
                finally:
                    self._cell_tasks.discard(task)
                    if not task.done():
                        task.cancel()
                        await asyncio.gather(task, return_exceptions=True)
            finally:
                q.put_nowait(gpu)

        await asyncio.gather(*(one(c) for c in cells))

    async def _sweep(self) -> None:
        """Last resort: stop any worker a cell could not stop itself (its task was torn down mid-stop)."""
        live, self._live = dict(self._live), {}
        if live:
            await asyncio.gather(*(stop_worker(c, wid) for wid, c in live.items()), return_exceptions=True)
