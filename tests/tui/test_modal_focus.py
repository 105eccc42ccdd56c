"""The add-model modal shows which field has focus, and typing goes into the id field first."""

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
