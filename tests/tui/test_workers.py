"""Pilot test of the worker lifecycle through the keys: spawn (modal), follow the log, stop (confirm).

The one test of the TUI suite that starts a real worker (~8 s of torch imports)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
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
        await wait_for(pilot, lambda: any(r[0].plain == "ready" for r in workers.shown.values()), 180,
                       "a ready worker in the Workers pane")
        key = next(k for k, r in workers.shown.items() if r[0].plain == "ready")
        wid = key.split("/", 1)[1]
        rec = next(w for w in await agent_workers(tui_pool) if w["id"] == wid)
        assert rec["state"] == "ready" and psutil.pid_exists(rec["pid"])  # really running, per the agent

        # A real request to the worker: the next refreshes probe its /health, and the row shows the figures.
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{rec['port']}/v1/completions",
                                 json={"prompt": "hello", "max_tokens": 8}) as r:
                assert r.status == 200, await r.text()
        await wait_for(pilot, lambda: workers.shown[key][5] not in ("—", "0"), 30, "the request count in the row")
        row = workers.shown[key]
        assert int(row[5]) >= 1 and row[7] == "0"  # requests served; nothing queued now
        assert row[8].endswith("iB")  # memory (RSS on cpu), binary units
        await wait_for(pilot, lambda: workers.shown[key][6] not in ("—",), 30, "tokens/s")

        workers.focus()
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen), 5, "the logs mode")
        log = app.screen.query_one("#worker-log")
        await wait_for(pilot, lambda: len(log.lines) > 0, 30, "log lines of the worker")
        # The event log of the logs mode tells the story so far (what happened before it was opened too).
        assert any("ready" in line.text for line in app.screen.query_one("#events").lines)

        await pilot.press("escape")  # back, as the footer says
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the dashboard")
        app.screen.query_one("#workers", LiveTable).focus()
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the confirmation")
        await pilot.press("y")
        def proc_gone() -> bool:
            return not psutil.pid_exists(rec["pid"]) or psutil.Process(rec["pid"]).status() == "zombie"

        await wait_for(pilot, proc_gone, 60, "the worker process to exit")
        table = app.screen.query_one("#workers", LiveTable)
        await wait_for(pilot, lambda: key not in table.shown, 30, "the stopped worker folded away")
        assert "1 finished hidden" in str(table.border_subtitle)
        await pilot.press("f")  # finished workers shown again, after the live ones
        await wait_for(pilot, lambda: key in table.shown, 5, "the finished worker shown")
        assert table.shown[key][0].plain in ("stopped", "dead")
    states = {w["id"]: w["state"] for w in await agent_workers(tui_pool)}
    assert states.get(wid) in (None, "stopped")
