"""What every mode's screen shares: its registry scope, and a footer that puts the app's keys first."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import ActiveBinding
from textual.screen import Screen

from llorch_tui.tui.action_registry import FOOTER_FIRST


class ModeScreen(Screen[None]):
    SCOPE: ClassVar[str] = ""

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        # The footer shows these in order and cuts what does not fit: `?` and `q` go first, so a small
        # terminal still shows how to get help and how to leave.
        bindings = super().active_bindings
        first = {k: b for k, b in bindings.items() if b.binding.id in FOOTER_FIRST}
        return {**first, **{k: b for k, b in bindings.items() if k not in first}}
