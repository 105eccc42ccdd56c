"""guard_handlers relies on two private details of Textual: `@on` marks a function with `_textual_on`, and
the message-pump metaclass collects those in the class's `_decorated_handlers`. Textual has no public hook
for "a handler raised" (only the private fatal-error path), so this pins the details: a Textual upgrade
that changes them fails here, not as a crashed dashboard."""

from __future__ import annotations

from textual import on
from textual.app import App, ComposeResult
from textual.widgets import Button

from llorch_tui.tui.guard import guard_handlers


@guard_handlers
class _Panel(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.reported: list[tuple[str, str]] = []
        self.after = 0

    def compose(self) -> ComposeResult:
        yield Button("boom", id="boom")
        yield Button("fine", id="fine")

    @on(Button.Pressed, "#boom")
    def explode(self) -> None:
        raise RuntimeError("a bug in a handler")

    @on(Button.Pressed, "#fine")
    def count(self) -> None:
        self.after += 1

    def action_fail(self) -> None:
        raise ValueError("a bug in an action")

    def report(self, exc: BaseException, context: str = "") -> None:
        self.reported.append((context, str(exc)))


def test_textual_still_records_on_handlers_where_guard_handlers_looks() -> None:
    assert hasattr(_Panel.__dict__["explode"], "_textual_on")
    handlers = [fn for entries in _Panel.__dict__["_decorated_handlers"].values() for fn, _ in entries]
    assert handlers and all(getattr(fn, "__llorch_guarded__", False) for fn in handlers)


async def test_a_raising_handler_is_reported_and_the_app_goes_on() -> None:
    app = _Panel()
    async with app.run_test() as pilot:
        await pilot.click("#boom")
        await pilot.click("#fine")
        await app.run_action("fail")
        await pilot.pause()
        assert app.is_running
    assert ("explode", "a bug in a handler") in app.reported
    assert ("fail", "a bug in an action") in app.reported
    assert app.after == 1
