"""The llorch Textual app: modes, the refresh loop, and every I/O action as an async worker.

All I/O runs in workers started here (so one `on_worker_state_changed` reports every failure as a
notification + log line). The refresh timer only starts per-pool workers; it never does I/O itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections import deque
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on
from textual import events
from textual.app import App
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.worker import Worker, WorkerState

from llorch_tui.config import Config
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.textsafe import escape_controls
from llorch_tui.tui.action_registry import ActionSpec, bindings, mutating_for_key, spec_for
from llorch_tui.tui.core.clock import now
from llorch_tui.tui.core.model import DashboardModel
from llorch_tui.tui.core.snapshot import DataSource, FleetSource
from llorch_tui.tui.guard import guard_handlers, guarded
from llorch_tui.tui.actions import DownloadEvent, PoolActions
from llorch_tui.tui.matrix_actions import MatrixActions
from llorch_tui.tui.messages import (AddModelRequested, AppSignals, CopyRequested, DownloadRequested, FollowRequested,
                                    InstallRequested, MatrixRequested, RefreshRequested, SpawnRequested, StopRequested)
from llorch_tui.tui.palette import LlorchCommands
from llorch_tui.tui.screens.dashboard import DashboardScreen

if TYPE_CHECKING:
    from llorch_tui.fleet import Fleet
    from llorch_tui.tui.screens.logs import LogsScreen
    from llorch_tui.tui.screens.matrix import MatrixScreen

log = logging.getLogger("llorch.tui")
REFRESH_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 30.0
SHUTDOWN_WAIT_S = 15.0


def _matrix_screen() -> "MatrixScreen":
    from llorch_tui.tui.screens.matrix import MatrixScreen

    return MatrixScreen()


def _logs_screen() -> "LogsScreen":
    from llorch_tui.tui.screens.logs import LogsScreen

    return LogsScreen()


class PoolConn(Message):
    def __init__(self, pool: str, state: str, error: str | None) -> None:
        super().__init__()
        self.pool, self.state, self.error = pool, state, error


@guard_handlers
class LlorchApp(PoolActions, MatrixActions, App[int]):
    TITLE = "llorch"
    CSS_PATH = str(Path(__file__).with_name("llorch.tcss"))  # absolute: subclasses may live elsewhere
    # Matrix and logs screens are imported when first opened: the first frame only needs the dashboard.
    MODES = {"dashboard": DashboardScreen, "matrix": _matrix_screen, "logs": _logs_screen}
    DEFAULT_MODE = "dashboard"
    COMMANDS = App.COMMANDS | {LlorchCommands}
    BINDINGS = bindings("app")

    def __init__(self, config: Config, *, readonly: bool = False, source: DataSource | None = None,
                 fleet: Any = None, keymap: dict[str, str] | None = None, refresh_s: float | None = None,
                 warnings: list[str] | None = None) -> None:
        super().__init__()
        self.config, self.readonly = config, readonly
        if fleet is None and source is None:
            from llorch_tui.fleet import Fleet

            fleet = Fleet(config)
        self.fleet = fleet
        self.source: DataSource = source or FleetSource(fleet)
        self.model = DashboardModel([p.name for p in config.pools])
        self.refresh_s = refresh_s or float(os.environ.get("LLORCH_TUI_REFRESH_S", "1.0"))
        self._keymap = keymap or {}
        self._startup_warnings = warnings or []
        self._inflight: set[str] = set()
        self._fitting: set[str] = set()  # pools whose fit estimates are being fetched
        self._redraw_pending = False
        self.signals = AppSignals(self)
        self.events_seen: deque[tuple[str, str]] = deque(maxlen=500)  # for event logs mounted later
        self.following: tuple[str, str] | None = None
        self.log_buffer: deque[str] = deque(maxlen=5000)
        self.matrix_engine = None
        self.matrix_report = None
        self.refreshes = 0  # completed pool refreshes (tests and the benchmark wait on this)
        if readonly:
            self.sub_title = "read-only"

    # --- lifecycle --------------------------------------------------------------------
    def on_mount(self) -> None:
        if self._keymap:
            self.set_keymap(self._keymap)
        if self.fleet is not None:
            self.fleet.on_change(lambda pool, st, err: self.post_message(PoolConn(pool, st, err)))
        for w in self._startup_warnings:
            self.warn(w)
        # Timer callbacks are outside any handler: guard them too (an error is reported, the timer goes on).
        self.set_interval(self.refresh_s, guarded(self.refresh_all, self))
        self.call_after_refresh(guarded(self.refresh_all, self))  # first paint first, then start the agents

    async def on_unmount(self) -> None:
        # Textual has cancelled every worker; let their cleanup finish (a half-connected agent process is
        # closed by the cancelled connect, a matrix run stops its workers) before the loop goes away.
        pending = [w.wait() for w in self.workers if not w.is_finished]
        if pending:
            try:
                await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), SHUTDOWN_WAIT_S)
            except asyncio.TimeoutError:
                log.warning("some work did not finish within %.0fs of quitting", SHUTDOWN_WAIT_S)
        if self.fleet is not None:
            await self.fleet.close()

    # --- errors: one handler for every worker ------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report(event.worker.error, event.worker.name)

    def report(self, exc: BaseException, context: str = "") -> None:
        if isinstance(exc, LlorchError):
            self.event("error", f"{context}: {exc.message}" if context else exc.message, exc.hint)
        else:
            log.error("unexpected error in %s", context, exc_info=exc)
            self.event("error", f"{context}: unexpected {type(exc).__name__}: {exc}",
                       "this is a bug in llorch; please report it with the steps that led here")

    def event(self, level: SeverityLevel, message: str, hint: str | None = None, notify: bool = True) -> None:
        text = escape_controls(message if not hint else f"{message}\n→ {hint}")
        if notify:
            # markup=False: messages carry text from pools (ids, errors) that must not be parsed as markup.
            self.notify(text, severity=level, timeout=8 if level == "error" else 4,
                        markup=False)
        line = (level, text.replace("\n", " "))
        self.events_seen.append(line)
        self.signals.event_logged.publish(line)

    def warn(self, message: str, hint: str | None = None) -> None:
        self.event("warning", message, hint)

    # --- refresh ------------------------------------------------------------------------
    def refresh_all(self, force: bool = False) -> None:
        """Timer callback: starts one refresh worker per pool that is due; never waits on a pool."""
        t = now()
        for pool, pv in self.model.pools.items():
            if pool in self._inflight:
                continue
            if pv.conn == "offline" and t < pv.retry_at and not force:
                continue
            self._inflight.add(pool)
            # A callable, not a coroutine object: a worker cancelled before it starts leaves nothing un-awaited.
            # The ignore: textual's WorkType makes mypy infer Never for a callable returning a coroutine.
            self.run_worker(partial(self._refresh, pool), name=f"refresh {pool}", group=f"refresh:{pool}",  # type: ignore[arg-type]
                            exclusive=True, exit_on_error=False)

    async def _refresh(self, pool: str) -> None:
        try:
            await self._refresh_once(pool)
        finally:
            self._inflight.discard(pool)
        # Not in `finally`: a refresh cancelled at shutdown must not schedule a redraw on a closing app.
        self.schedule_redraw()

    async def _refresh_once(self, pool: str) -> None:
        try:
            if self.fleet is not None and not self.fleet.client(pool).connected:
                if not await asyncio.wait_for(self.fleet.connect(pool), CONNECT_TIMEOUT_S):
                    st = self.fleet.state(pool)
                    self.model.fail(pool, st.error or "unreachable", st.hint)
                    return
            snap = await self.source.fetch(pool, REFRESH_TIMEOUT_S)
        except LlorchError as exc:
            self.model.fail(pool, exc.message, exc.hint)
            self._log_pool_failure(pool, exc.message, exc.hint)
        except TimeoutError:
            self.model.fail(pool, f"no answer within {CONNECT_TIMEOUT_S:.0f}s", "retried automatically")
        else:
            self.model.apply(snap)
            self.refreshes += 1
            self.request_fits(pool)

    def schedule_redraw(self) -> None:
        """Coalesce redraws: many pools answering within 50 ms cost one table diff."""
        if not self._redraw_pending:
            self._redraw_pending = True
            self.set_timer(0.05, guarded(self._redraw, self))

    def _redraw(self) -> None:
        self._redraw_pending = False
        if self.screen_stack:  # empty while the app shuts down
            self.signals.model_changed.publish(None)

    @on(PoolConn)
    def _pool_conn(self, msg: PoolConn) -> None:
        st = self.fleet.state(msg.pool) if self.fleet is not None else None
        state = msg.state
        if state == "online" and self.fleet is not None and not self.fleet.client(msg.pool).connected:
            state = "connecting"  # the transport is up, but the agent has not said hello yet
        self.model.set_conn(msg.pool, state, msg.error, st.hint if st else None)
        if msg.state == "offline" and msg.error:
            self._log_pool_failure(msg.pool, msg.error, st.hint if st else None)
        self.schedule_redraw()

    def _log_pool_failure(self, pool: str, reason: str, hint: str | None) -> None:
        pv = self.model.pools[pool]
        if pv.reported != reason:  # retries of the same failure are not logged again
            pv.reported = reason
            self.event("warning", f"pool {pool} offline: {reason}", hint, notify=False)

    @on(DownloadEvent)
    def _download_event(self, msg: DownloadEvent) -> None:
        self.model.download_event(msg.pool, msg.progress)
        self.schedule_redraw()

    # --- requests from the screens ------------------------------------------------------
    @on(RefreshRequested)
    def _refresh_requested(self) -> None:
        self.refresh_all(force=True)
        self.notify("refreshing every pool", timeout=2)

    @on(DownloadRequested)
    def _download_requested(self, msg: DownloadRequested) -> None:
        self.start_download(msg.pool, msg.model)

    @on(SpawnRequested)
    def _spawn_requested(self, msg: SpawnRequested) -> None:
        self.spawn_inference_worker(msg.pool, msg.params)

    @on(CopyRequested)
    def _copy_requested(self, msg: CopyRequested) -> None:
        self.copy_model(msg.source, msg.model, msg.target)

    @on(InstallRequested)
    def _install_requested(self, msg: InstallRequested) -> None:
        self.install_llorch(msg.pool, msg.options)

    @on(StopRequested)
    def _stop_requested(self, msg: StopRequested) -> None:
        self.stop_inference_worker(msg.pool, msg.worker_id)

    @on(AddModelRequested)
    def _add_model_requested(self, msg: AddModelRequested) -> None:
        self.add_model(msg.pool, msg.params)

    @on(FollowRequested)
    def _follow_requested(self, msg: FollowRequested) -> None:
        target = (msg.pool, msg.worker_id) if msg.pool and msg.worker_id else self.following
        if target is None:
            self.warn("no worker to follow", "press l on a worker in the dashboard")
        else:
            self.open_logs(*target)

    @on(MatrixRequested)
    def _matrix_requested(self, msg: MatrixRequested) -> None:
        {"start": self.start_matrix, "stop": self.stop_matrix, "export": self.export_matrix}[msg.what]()

    # --- actions (I/O in workers) ------------------------------------------------------
    def live_fleet(self) -> Fleet:
        """The fleet the pool actions act on; a dashboard on a synthetic source (screenshots, tests) has none."""
        if self.fleet is None:
            raise LlorchError(ErrorCode.NOT_FOUND, "this dashboard shows a synthetic fleet: there is no pool to act on",
                              "start llorch-tui with a configuration that lists your pools")
        return self.fleet

    def _refuse(self, what: str) -> bool:
        if self.readonly:
            self.warn(f"read-only: {what} is disabled", "start llorch-tui without --readonly to change pools")
        return self.readonly

    def action_enabled(self, scope: str, action: str) -> bool:
        """Whether the registry's `action` of `scope` may run now: the one check behind every screen's
        check_action and the palette (--readonly, and a matrix run that is or is not going)."""
        spec = spec_for(scope, action)
        if spec is None:
            return True
        if self.readonly and spec.mutating:
            return False
        if spec.id == "matrix.start":
            return self.matrix_engine is None
        if spec.id == "matrix.stop":
            return self.matrix_engine is not None
        return True

    def action_allowed(self, spec: ActionSpec) -> bool:
        return self.action_enabled(spec.scope, spec.name)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.action_enabled("app", action)

    async def run_registered(self, spec: ActionSpec) -> None:
        """Run a registry action from anywhere (the palette): switch to its screen's mode first."""
        if spec.scope == "app":
            await self.run_action(spec.action)
            return
        if self.current_mode != spec.scope:
            await self.switch_mode(spec.scope)
        if getattr(self.screen, "SCOPE", None) == spec.scope:
            await self.run_action(spec.action, self.screen)

    def on_key(self, event: events.Key) -> None:
        # A key of a mutating action reaches here only when its binding is disabled (--readonly): say so
        # instead of ignoring it.
        if not self.readonly:
            return
        scope = getattr(self.screen, "SCOPE", None)
        spec = mutating_for_key(scope, event.key, self._keymap) if scope else None
        if spec is not None:
            event.stop()
            self._refuse(spec.label.lower())

    # --- app-level actions --------------------------------------------------------------
    def action_help(self) -> None:
        from llorch_tui.tui.screens.help import HelpScreen

        focused = self.focused
        widget_help = getattr(focused, "HELP", "") if focused is not None else ""
        keys: list[tuple[str, str, str]] = []
        for active in self.active_bindings.values():
            b = active.binding
            if b.description and active.enabled and (b.id, b.description) not in [(k[2], k[1]) for k in keys]:
                keys.append((self.get_key_display(b), b.description, b.id or ""))
        keys.sort(key=lambda k: (not k[2], k[2]))  # llorch's own (remappable) keys first
        self.push_screen(HelpScreen(widget_help or getattr(self.screen, "HELP", ""), keys))


def run_app(args: argparse.Namespace) -> int:
    from llorch_tui.config_load import load_config
    from llorch_tui.tui.keymap import load_keymap

    try:
        loaded = load_config(args.config)
    except LlorchError as exc:
        print(f"llorch-tui: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2
    try:
        keymap, warnings = load_keymap()
    except LlorchError as exc:
        keymap, warnings = {}, [f"{exc.message} — using the default keys"]
    if not loaded.config.pools:
        print("llorch-tui: the configuration has no pools\n  hint: add a [[pools]] table, or remove the file "
              "to use the built-in `local` pool", file=sys.stderr)
        return 2
    app = LlorchApp(loaded.config, readonly=args.readonly, keymap=keymap, warnings=warnings)
    app.matrix_args = args
    from llorch_tui.fleet_ops.install import config_target

    app.config_target = config_target(args.config, loaded.source)
    app.run()
    return app.return_code or 0
