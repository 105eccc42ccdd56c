"""SVG snapshots of the main screens (pytest-textual-snapshot). Deterministic: a prepared pool state dir,
a fixed terminal size, LLORCH_FREEZE_TIME for clocks, LLORCH_TUI_MASK_HOST for the RAM/GPU gauges, and the
pools' free RAM pinned (PinnedRamSource) so the fit column and line show fixed figures.
Update after an intended change: pytest tests/tui/test_snapshots.py --snapshot-update"""

from __future__ import annotations

from pathlib import Path

import pytest

from llorch_tui.tui.app import LlorchApp
from llorch_tui.tui.screens.matrix import MatrixScreen
from tui_helpers import loaded, make_config, pinned_app, wait_for

PINNED_FREE_RAM = 24 * 1024**3

pytestmark = pytest.mark.usefixtures("frozen_env")


def app_for(state: Path, **kw) -> LlorchApp:
    return pinned_app(make_config(state, dead_pool=True, matrix_backends=["cuda", "metal"]), PINNED_FREE_RAM,
                      refresh_s=3600, **kw)


async def settled(pilot, app: LlorchApp) -> None:
    """Loaded, the dead pool offline, and every fit estimate in (the screen drawn with them)."""
    await loaded(pilot, app)
    await wait_for(pilot, lambda: app.model.pools["dead"].conn == "offline", 30, "the dead pool")
    await wait_for(pilot, lambda: app.model.fits.records and app.model.fits.settled(), 60, "the fit estimates")
    app.schedule_redraw()
    await wait_for(pilot, lambda: not app._redraw_pending, 5, "the redraw")


def test_dashboard(snap_compare, tui_pool: Path) -> None:
    app = app_for(tui_pool)

    async def ready(pilot) -> None:
        await settled(pilot, app)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 36), run_before=ready)


def test_dashboard_small_terminal(snap_compare, tui_pool: Path) -> None:
    app = app_for(tui_pool)

    async def ready(pilot) -> None:
        await settled(pilot, app)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_help(snap_compare, tui_pool: Path) -> None:
    app = app_for(tui_pool)

    async def ready(pilot) -> None:
        await settled(pilot, app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen", 5, "help")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 36), run_before=ready)


def test_spawn_modal(snap_compare, tui_pool: Path) -> None:
    app = app_for(tui_pool)

    async def ready(pilot) -> None:
        await settled(pilot, app)
        await pilot.press("s")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SpawnModal", 5, "the spawn modal")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 36), run_before=ready)


def test_matrix_finished(snap_compare, tui_pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = app_for(tui_pool)

    async def ready(pilot) -> None:
        await settled(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), 5, "the matrix")
        await pilot.press("g")
        await wait_for(pilot, lambda: app.screen.grid.summary is not None, 60, "the run")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(120, 30), run_before=ready)
