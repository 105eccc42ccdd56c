"""The logs mode: follow one worker's log (live), above the dashboard's event log."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Log


from llorch_tui.tui.guard import guard_handlers
from llorch_tui.tui.bindings import bind
from llorch_tui.tui.widgets.log_pane import LogPane

if TYPE_CHECKING:
    from llorch_tui.tui.app import LlorchApp


class WorkerLog(Log):
    HELP = ("**Worker log**: the followed worker's log file, live. `f` restarts following; `l` on a worker of "
            "the dashboard picks another one.")


@guard_handlers
class LogsScreen(Screen[None]):
    BINDINGS = [bind("logs.follow", "follow")]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Label("No worker followed: press l on a worker in the dashboard.", id="logs-title", classes="pane-title")
        yield WorkerLog(id="worker-log", max_lines=5000, highlight=False)
        yield Label("Event log", classes="pane-title")
        yield LogPane(id="events")
        yield Footer()

    @property
    def lapp(self) -> "LlorchApp":
        return cast("LlorchApp", self.app)

    def on_mount(self) -> None:
        self.lapp.register_logs(self)
        if self.lapp.following:
            self.start(*self.lapp.following)
            self.write_lines(list(self.lapp.log_buffer))

    def start(self, pool: str, worker_id: str) -> None:
        # ids from pools: Text, never markup
        self.query_one("#logs-title", Label).update(Text(f"Log of worker {worker_id} on {pool} (following)"))
        self.query_one("#worker-log", Log).clear()

    def write_lines(self, lines: list[str]) -> None:
        self.query_one("#worker-log", Log).write_lines(lines)

    def ended(self, why: str) -> None:
        self.query_one("#logs-title", Label).update(Text(why))

    def action_follow(self) -> None:
        if self.lapp.following:
            self.lapp.open_logs(*self.lapp.following)
        else:
            self.lapp.warn("no worker to follow", "press l on a worker in the dashboard")
