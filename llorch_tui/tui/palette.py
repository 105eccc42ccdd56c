"""Command palette provider: every action of llorch, searchable (ctrl+p)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from llorch_tui.tui.bindings import MUTATING

if TYPE_CHECKING:
    from llorch_tui.tui.app import LlorchApp

# (title, help, action string run on the app, action name for --readonly)
COMMANDS: list[tuple[str, str, str, str]] = [
    ("Refresh all pools", "ask every pool for its state now", "dashboard_action('refresh')", "refresh"),
    ("Download the highlighted model", "fetch it onto its pool from the Hub (or a mirror)", "dashboard_action('download')", "download"),
    ("Spawn a worker", "start an inference worker for the highlighted model", "dashboard_action('spawn')", "spawn"),
    ("Stop the highlighted worker", "with a confirmation", "dashboard_action('stop')", "stop"),
    ("Follow the highlighted worker's log", "switch to the logs mode", "dashboard_action('logs')", "logs"),
    ("Add a model (register or synthesize)", "a catalog entry, or a tiny synthetic checkpoint", "dashboard_action('add_model')", "add_model"),
    ("Filter the tables", "narrow catalog and workers to matching rows", "dashboard_action('filter')", "filter"),
    ("Dashboard", "switch to the dashboard mode", "switch_mode('dashboard')", "mode"),
    ("Matrix", "switch to the model x backend test matrix", "switch_mode('matrix')", "mode"),
    ("Logs", "switch to the logs mode", "switch_mode('logs')", "mode"),
    ("Start the matrix run", "every model x backend x pool", "matrix_action('start_run')", "start_run"),
    ("Stop the matrix run", "running cells are interrupted, their workers stopped", "matrix_action('stop_run')", "stop_run"),
    ("Export the matrix reports", "markdown, JSON, JUnit and the diff", "matrix_action('export')", "export"),
    ("Help", "keys and help for the focused widget", "help", "help"),
    ("Quit", "leave llorch (workers keep running)", "quit", "quit"),
]


class LlorchCommands(Provider):
    def _commands(self) -> list[tuple[str, str, str]]:
        app = cast("LlorchApp", self.app)
        return [(t, h, a) for t, h, a, name in COMMANDS if not (app.readonly and name in MUTATING)]

    async def discover(self) -> Hits:
        for title, help_text, action in self._commands():
            yield DiscoveryHit(title, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, action in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self.app.run_action, action), help=help_text)
