"""Pilot test of the matrix mode with the real engine: a run whose cells are all decided at plan time
(absent backends, an offline pool), so no worker starts; then export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textual.widgets import Static

from llorch_tui.tui.app import LlorchApp
from llorch_tui.tui.screens.matrix import MatrixScreen
from tui_helpers import loaded, make_config, wait_for


async def test_matrix_run_and_export(tui_pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = LlorchApp(make_config(tui_pool, dead_pool=True, matrix_backends=["cuda", "metal"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), 5, "the matrix mode")
        screen = app.screen
        await pilot.press("g")
        await wait_for(pilot, lambda: screen.grid.summary is not None, 60, "the run to finish")
        cells = screen.grid.cells
        assert cells["local/cuda/tiny-llama"].status == "skipped"
        assert cells["local/cuda/tiny-llama"].result.reason_code == "backend_absent"
        # cuda and metal are usable on no online pool: their columns are hidden, and the status says so once.
        table = screen.query_one("#matrix")
        assert [c.key.value for c in table.ordered_columns] == ["model"]
        assert screen.grid.hidden_backends == ["cuda", "metal"]
        assert "cuda, metal: usable on no online pool" in str(screen.query_one("#matrix-status", Static).content)
        assert screen.grid.reports  # the run wrote its reports
        reports = tmp_path / "reports"
        first = json.loads((reports / "matrix.json").read_text())["started_at"]
        # A second run: the first becomes the baseline.
        await wait_for(pilot, lambda: app.matrix_engine is None, 10, "the engine to be let go")
        await pilot.press("g")
        await wait_for(pilot, lambda: json.loads((reports / "matrix.json").read_text())["started_at"] != first
                       and app.matrix_engine is None, 60, "the second run to finish")
        second = json.loads((reports / "matrix.json").read_text())["started_at"]
        # Exporting (twice) rewrites the second run's reports and leaves the baseline where it is.
        for n in (1, 2):
            await pilot.press("e")
            await wait_for(pilot, lambda n=n: sum("exported" in m.message for m in app._notifications) >= n, 30,
                           "the export")
            assert json.loads((reports / "matrix-previous.json").read_text())["started_at"] == first
            diff = json.loads((reports / "matrix-diff.json").read_text())
            assert (diff["previous_started_at"], diff["current_started_at"]) != (second, second)
    report = json.loads((reports / "matrix.json").read_text())
    assert report["summary"]["skipped"] >= 2 and report["summary"]["passed"] == 0 and not report["partial"]


@pytest.mark.slow
async def test_matrix_stop_interrupts_and_cleans_up(tui_pool: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from llorch_tui.pool.ops import AgentSettings, InProcessExecutor

    monkeypatch.chdir(tmp_path)
    app = LlorchApp(make_config(tui_pool, matrix_backends=["cpu"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), 5, "the matrix mode")
        screen = app.screen
        await pilot.press("g")
        await wait_for(pilot, lambda: any(c.status == "running" for c in screen.grid.cells.values()), 60,
                       "a running cell")
        await pilot.press("x")
        await wait_for(pilot, lambda: screen.grid.summary is not None, 120, "the stopped run to end")
        assert screen.grid.stopped
        assert screen.grid.cells["local/cpu/tiny-llama"].status in ("fail", "skipped")
    # The stopped run's reports are written and marked partial: never the baseline of a later run.
    report = json.loads((tmp_path / "reports" / "matrix.json").read_text())
    assert report["partial"] is True
    assert "**Partial run**" in (tmp_path / "reports" / "matrix.md").read_text()
    ex = InProcessExecutor(AgentSettings(state_dir=tui_pool, pool_id="local"))
    alive = [w for w in await ex.call("workers.list", {"probe": False}) if w["state"] in ("starting", "ready")]
    assert alive == []  # the engine stopped the worker it had started


@pytest.mark.slow
async def test_quit_during_a_run_stops_its_worker(tui_pool: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    from llorch_tui.pool.ops import AgentSettings, InProcessExecutor

    monkeypatch.chdir(tmp_path)
    app = LlorchApp(make_config(tui_pool, matrix_backends=["cpu"]))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), 5, "the matrix mode")
        await pilot.press("g")
        # The engine knows the worker (its id came with the spawn's first progress event): quit now.
        await wait_for(pilot, lambda: app.matrix_engine is not None and app.matrix_engine._live, 60,
                       "the cell's worker to be spawned")
        await pilot.press("q")
    ex = InProcessExecutor(AgentSettings(state_dir=tui_pool, pool_id="local"))
    records = await ex.call("workers.list", {"probe": False})
    assert records, "the run spawned a worker"
    assert [w["id"] for w in records if w["state"] in ("starting", "ready")] == []
    assert not [w for w in records if w.get("pid") and psutil.pid_exists(w["pid"])
                and psutil.Process(w["pid"]).status() != psutil.STATUS_ZOMBIE]
