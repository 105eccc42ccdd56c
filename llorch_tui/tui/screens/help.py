"""`?`: the keys that apply where you are, and help for the focused widget."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from llorch_tui.tui.guard import guard_handlers

INTRO = ("**llorch** — `Tab` moves between panes, the mouse works too. `ctrl+p` opens the command palette "
         "with every action. Keys can be remapped by binding id in `keymap.toml` (see docs/tui.md).")


@guard_handlers
class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, widget_help: str, keys: list[tuple[str, str, str]]) -> None:
        super().__init__(classes="modal")
        self.widget_help, self.keys = widget_help, keys

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"- `{k}` {d}" + (f" — id `{i}`" if i else "") for k, d, i in self.keys)
        # The keys come first: they are what the help key is pressed for, and at 80x24 the widget's
        # longer text would push them below the fold.
        text = f"## Keys\n\n{rows}\n\n## Here\n\n{self.widget_help or 'No help for this widget.'}\n\n{INTRO}"
        with VerticalScroll(classes="dialog help"):
            yield Markdown(text)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
