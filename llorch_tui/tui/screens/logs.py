"""The logs mode: follow one worker's log (live), above the dashboard's event log."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Footer, Header, Label, RichLog


from llorch_tui.textsafe import escape_controls
from llorch_tui.tui.screens.base import ModeScreen
from llorch_tui.tui.guard import guard_handlers, guarded
from llorch_tui.tui.messages import FollowRequested, LogUpdate
from llorch_tui.tui.action_registry import bindings
from llorch_tui.tui.widgets.log_pane import LogPane

if TYPE_CHECKING:
    from llorch_tui.tui.app import LlorchApp


class WorkerLog(RichLog):
    """Long lines wrap (a log line is never cut at the screen's edge); pool text is never markup."""

    HELP = ("**Worker log**: the followed worker's log file, live. `f` restarts following; `l` on a worker of "
            "the dashboard picks another one; Esc goes back to the dashboard.")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=5000, wrap=True, markup=False, highlight=False)


@guard_handlers
class LogsScreen(ModeScreen):
    SCOPE = "logs"
    BINDINGS = bindings("logs")

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Label("No worker followed: press l on a worker in the dashboard.", id="logs-title", classes="pane-title")
        yield WorkerLog(id="worker-log")
        yield Label("Event log", classes="pane-title")
        yield LogPane(id="events")
        yield Footer()

    @property
    def lapp(self) -> "LlorchApp":
        return cast("LlorchApp", self.app)

    def on_mount(self) -> None:
        signals = self.lapp.signals
        events = self.query_one(LogPane)
        events.replay(self.lapp.events_seen)
        signals.event_logged.subscribe(self, guarded(events.add_line, self), immediate=True)
        signals.worker_log.subscribe(self, guarded(self._worker_log, self), immediate=True)
        if self.lapp.following:
            self.start(*self.lapp.following)
            self.write_lines(list(self.lapp.log_buffer))

    def _worker_log(self, update: LogUpdate) -> None:
        if update.kind == "start":
            self.start(update.pool, update.worker_id)
        elif update.kind == "lines":
            self.write_lines(update.lines)
        else:
            self.query_one("#logs-title", Label).update(Text(update.text))

    def start(self, pool: str, worker_id: str) -> None:
        # ids from pools: Text, never markup
        self.query_one("#logs-title", Label).update(Text(f"Log of worker {worker_id} on {pool} (following)"))
        self.query_one("#worker-log", WorkerLog).clear()

    def write_lines(self, lines: list[str]) -> None:
        log = self.query_one("#worker-log", WorkerLog)
        for line in lines:
            log.write(Text(escape_controls(line)))

    def action_back(self) -> None:
        self.app.switch_mode("dashboard")

    def action_follow(self) -> None:
        self.post_message(FollowRequested())
