"""The app's matrix actions: run the same engine as `--run-matrix` in a worker, stop it, export reports."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llorch_tui.tui.messages import MatrixIdle

from llorch_tui.matrix.events import RunFinished

if TYPE_CHECKING:
    from llorch_tui.matrix.engine import MatrixEngine
    from llorch_tui.protocol.matrix import MatrixReport
    from llorch_tui.tui.app_host import AppHost as _Base
else:
    _Base = object


class MatrixActions(_Base):
    # The command line's matrix flags (--models, --dtypes, --bench...) override the config for `g` as they do headless.
    matrix_args: Any = None

    def start_matrix(self) -> None:
        if self._refuse("the matrix run"):
            return
        if self.matrix_engine is not None:
            self.warn("a matrix run is already going", "x stops it")
            return
        if self.fleet is None:
            self.warn("no pools to test", "this dashboard shows a synthetic fleet")
            return
        from llorch_tui.matrix.engine import MatrixEngine
        from llorch_tui.matrix.options import MatrixOptions

        self.matrix_engine = engine = MatrixEngine(self.fleet, MatrixOptions.from_config(self.config.matrix, self.matrix_args))
        self.run_worker(self._run_matrix(engine), name="matrix run", group="matrix", exclusive=True, exit_on_error=False)

    async def _run_matrix(self, engine: MatrixEngine) -> None:
        self.event("information", "matrix run started")
        try:
            # aclosing: leaving the loop by an exception or a cancellation runs the engine's cleanup (it stops
            # every worker it spawned) now, not whenever the generator is garbage-collected.
            async with contextlib.aclosing(engine.run()) as events:
                async for ev in events:
                    self._show_matrix_event(ev)
                    if isinstance(ev, RunFinished):
                        self.event("information",
                                   f"matrix {'stopped' if ev.stopped else 'finished'}: {ev.summary.line}")
                        if ev.report_error:
                            self.event("error", ev.report_error, "fix the [matrix] report_dir, then e exports again")
                    elif ev.type == "cell_finished":
                        # Verdicts land in the catalogs: the dashboard shows them on its next refresh.
                        self.refresh_all(force=True)
        finally:
            self.matrix_report = engine.report
            self.matrix_engine = None
            self.signals.matrix.publish(MatrixIdle())

    def _show_matrix_event(self, ev: Any) -> None:
        # The matrix screen's subscriber is guarded: a display problem is reported and never aborts the run.
        self.signals.matrix.publish(ev)

    def stop_matrix(self) -> None:
        if self.matrix_engine is None:
            self.warn("no matrix run to stop")
            return
        self.matrix_engine.stop()
        self.event("information", "stopping the matrix run: running cells are interrupted, their workers stopped")

    def export_matrix(self) -> None:
        engine = self.matrix_engine
        report = engine.report if engine is not None else self.matrix_report
        if report is None:
            self.warn("no matrix results to export yet", "g starts a run")
            return
        self.run_worker(self._export(report), name="matrix export", exit_on_error=False)

    async def _export(self, report: MatrixReport) -> None:
        import asyncio

        from llorch_tui.matrix.reports import write_reports

        out = await asyncio.to_thread(write_reports, report, Path(self.config.matrix.report_dir))
        self.event("information", "exported: " + ", ".join(str(v) for v in out.values()))
