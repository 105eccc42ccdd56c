"""The event log pane: every notification and error also lands here, with its hint."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from llorch_tui.textsafe import escape_controls
from llorch_tui.tui.core.clock import frozen

LEVEL_STYLE = {"information": "", "warning": "yellow", "error": "red"}


class LogPane(RichLog):
    HELP = "**Event log**: what the dashboard did and every error, with what to do next. Newest at the bottom."

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=500, wrap=True, markup=False, highlight=False)

    def add_line(self, line: tuple[str, str]) -> None:
        self.add(*line)

    def replay(self, lines: Iterable[tuple[str, str]]) -> None:
        """What was logged before this pane existed (a screen opened later shows the whole story)."""
        for level, message in lines:
            self.add(level, message)

    def add(self, level: str, message: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(frozen() or time.time()))
        self.write(Text.assemble((stamp + " ", "dim"), (escape_controls(message), LEVEL_STYLE.get(level, ""))))
