"""Focus and keys: the add-model modal marks its focused field and types into the id first; `f` and `X` work
from every dashboard pane and from another mode's command palette."""

from __future__ import annotations

from textual.widgets import Input

from llorch_tui.config import Config, PoolConfig
from llorch_tui.tui.app import LlorchApp
from llorch_tui.tui.core.snapshot import SyntheticSource
from llorch_tui.tui.screens.modals import ModelModal
from tui_helpers import wait_for


def synthetic_app() -> LlorchApp:
    source = SyntheticSource(pools=1, workers=0)
    return LlorchApp(Config(pools=[PoolConfig(name=p) for p in source.pools]), source=source, refresh_s=3600)


def drawn_border(widget: Input) -> tuple[object, ...]:
    """The border the field is drawn with: kind and colour of each side."""
    st = widget.styles
    return st.border_top, st.border_right, st.border_bottom, st.border_left


async def test_add_model_modal_marks_the_focused_field_and_types_into_the_id() -> None:
    app = synthetic_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.refreshes >= 1, 30, "the first refresh")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelModal), 5, "the add-model modal")
        await pilot.pause()
        modal = app.screen
        model_id, repo = modal.query_one("#model-id", Input), modal.query_one("#repo", Input)
        assert model_id.has_focus
        focused_style, unfocused_style = drawn_border(model_id), drawn_border(repo)
        assert focused_style != unfocused_style  # the focused field is visibly marked
        await pilot.press(*"my-model")
        assert model_id.value == "my-model" and repo.value == ""
        # Focus moves with Tab and the mark follows it.
        while not repo.has_focus:
            await pilot.press("tab")
        await pilot.pause()
        assert drawn_border(repo) == focused_style and drawn_border(model_id) == unfocused_style
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ModelModal), 5, "the modal closed")


async def test_finished_worker_keys_work_from_every_pane_and_the_palette() -> None:
    """`f` and `X` act on the Workers pane whichever dashboard pane has focus, and from another mode through
    the command palette (the registry's action, run on the dashboard)."""
    from llorch_tui.tui.screens.dashboard import DashboardScreen
    from llorch_tui.tui.screens.matrix import MatrixScreen
    from llorch_tui.tui.widgets.live_table import LiveTable

    source = SyntheticSource(pools=1, workers=4, finished=2)
    app = LlorchApp(Config(pools=[PoolConfig(name=p) for p in source.pools]), source=source, refresh_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.refreshes >= 1, 30, "the first refresh")
        screen = app.screen
        workers = screen.query_one("#workers", LiveTable)
        await wait_for(pilot, lambda: list(workers.shown) == ["pool00/w000", "pool00/w001"], 5, "live workers only")
        for pane in ("pools", "catalog", "workers"):
            screen.query_one(f"#{pane}").focus()
            await pilot.press("f")
            await wait_for(pilot, lambda: len(workers.shown) == 4, 5, f"finished shown ({pane} focused)")
            await pilot.press("f")
            await wait_for(pilot, lambda: len(workers.shown) == 2, 5, f"finished folded ({pane} focused)")
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), 5, "the matrix")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette", 5, "the palette")
        await pilot.press(*"show or hide finished")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 10, "back on the dashboard")
        await wait_for(pilot, lambda: len(workers.shown) == 4, 5, "finished shown from the matrix's palette")
        screen.query_one("#pools").focus()
        await pilot.press("X")
        await wait_for(pilot, lambda: app.model.finished_count("*") == 0, 5, "the finished workers cleared")
        await wait_for(pilot, lambda: len(workers.shown) == 2, 5, "only the live ones left")
        assert "finished" not in str(workers.border_subtitle or "")
