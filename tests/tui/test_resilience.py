"""Errors never crash the dashboard: an exception in an action, a message handler or a notification's text
becomes a notification plus an event-log line; `q` inside a modal closes the modal, not the app."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input
from textual.content import Content

from llorch_tui.tui.app import LlorchApp
from llorch_tui.tui.screens.dashboard import DashboardScreen
from llorch_tui.tui.screens.modals import ConfirmModal, ModelModal, SpawnModal
from llorch_tui.tui.widgets.log_pane import LogPane
from tui_helpers import loaded, make_config, wait_for


def log_text(app: LlorchApp) -> str:
    return "\n".join(line.text for line in app.screen.query_one(LogPane).lines)


def toasts(app: LlorchApp) -> list[str]:
    """The notifications' text as displayed (headless runs mount no toast widgets, so read the app's list)."""
    return [n.message if not n.markup else Content.from_markup(n.message).plain for n in app._notifications]


def boom(*_a: object, **_k: object) -> None:
    raise RuntimeError("kaboom from a handler")


async def test_action_and_handler_errors_are_reported(tui_pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = LlorchApp(make_config(tui_pool), refresh_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        # An action (binding `d`) that raises.
        monkeypatch.setattr(DashboardScreen, "selected_model_key", boom)
        await pilot.press("d")
        await wait_for(pilot, lambda: "kaboom" in log_text(app), 5, "the action's error in the event log")
        assert app.is_running and isinstance(app.screen, DashboardScreen)
        assert "unexpected RuntimeError: kaboom from a handler" in log_text(app)
        await wait_for(pilot, lambda: any("kaboom" in t for t in toasts(app)), 5, "the error notification")
        # A message handler (Input.Changed of the filter) that raises.
        monkeypatch.setattr(DashboardScreen, "render_model", boom)
        await pilot.press("/", "z")
        await wait_for(pilot, lambda: log_text(app).count("kaboom") >= 2, 5, "the handler's error in the log")
        assert app.is_running and isinstance(app.screen, DashboardScreen)
        # Text from a pool with markup-like brackets is shown as it is, not parsed (nor crashing the app).
        app.event("error", "pool said [/bogus] and [red]")
        await wait_for(pilot, lambda: any("pool said [/bogus] and [red]" in t for t in toasts(app)), 5,
                       "the notification, verbatim")
        assert app.is_running
        await pilot.press("ctrl+q")


async def test_q_in_a_modal_closes_the_modal(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool), refresh_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SpawnModal), 5, "the spawn modal")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the modal closed")
        assert app.is_running
        # In the add-model modal, q typed into the id input is a letter; on another widget it closes the modal.
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelModal), 5, "the add-model modal")
        await pilot.press("q")
        assert isinstance(app.screen, ModelModal) and app.screen.query_one("#model-id", Input).value == "q"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the modal closed")
        app.push_screen(ConfirmModal("really?"))
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the confirm modal")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the confirm modal closed")
        assert app.is_running
        await pilot.press("q")  # outside a modal q still quits
    assert app.return_code in (0, None)
