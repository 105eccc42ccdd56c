"""Pilot test of the worker lifecycle through the keys: spawn (modal), follow the log, stop (confirm).

The one test of the TUI suite that starts a real worker (~8 s of torch imports)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from llorch_tui.pool.ops import AgentSettings, InProcessExecutor
from llorch_tui.tui.app import LlorchApp
from llorch_tui.tui.screens.dashboard import DashboardScreen
from llorch_tui.tui.screens.logs import LogsScreen
from llorch_tui.tui.screens.modals import ConfirmModal, SpawnModal
from llorch_tui.tui.widgets.live_table import LiveTable
from tui_helpers import loaded, make_config, wait_for


async def agent_workers(state: Path) -> list[dict]:
    ex = InProcessExecutor(AgentSettings(state_dir=state, pool_id="local"))
    return await ex.call("workers.list", {"probe": False})


@pytest.mark.slow
async def test_spawn_logs_stop(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool))
    async with app.run_test(size=(140, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SpawnModal), 5, "the spawn modal")
        await pilot.press("enter")  # Spawn is focused; backend cpu
        workers = app.screen.query_one("#workers", LiveTable)
        await wait_for(pilot, lambda: any(r[6].plain == "ready" for r in workers.shown.values()), 180,
                       "a ready worker in the Workers pane")
        key = next(k for k, r in workers.shown.items() if r[6].plain == "ready")
        wid = key.split("/", 1)[1]
        rec = next(w for w in await agent_workers(tui_pool) if w["id"] == wid)
        assert rec["state"] == "ready" and psutil.pid_exists(rec["pid"])  # really running, per the agent

        workers.focus()
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen), 5, "the logs mode")
        log = app.screen.query_one("#worker-log")
        await wait_for(pilot, lambda: log.line_count > 0, 30, "log lines of the worker")

        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the dashboard")
        app.screen.query_one("#workers", LiveTable).focus()
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the confirmation")
        await pilot.press("y")
        def proc_gone() -> bool:
            return not psutil.pid_exists(rec["pid"]) or psutil.Process(rec["pid"]).status() == "zombie"

        await wait_for(pilot, proc_gone, 60, "the worker process to exit")
        await wait_for(pilot, lambda: not any(r[6].plain in ("ready", "starting")
                                              for r in app.screen.query_one("#workers", LiveTable).shown.values()),
                       30, "the Workers pane to show it stopped")
    states = {w["id"]: w["state"] for w in await agent_workers(tui_pool)}
    assert states.get(wid) in (None, "stopped")
