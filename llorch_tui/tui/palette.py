"""Command palette provider (ctrl+p): the registry's actions, the current screen's first.

An action of another screen switches to that screen's mode and runs there. Actions the target refuses now
(`--readonly`, a matrix stop with no run) are left out rather than shown and then refused.
"""

from __future__ import annotations

from functools import partial
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from llorch_tui.tui.action_registry import ActionSpec, palette_order

if TYPE_CHECKING:
    from llorch_tui.tui.app import LlorchApp


class LlorchCommands(Provider):
    def _commands(self) -> list[tuple[ActionSpec, Callable[[], object]]]:
        app = cast("LlorchApp", self.app)
        here = app.current_mode
        out: list[tuple[ActionSpec, Callable[[], object]]] = []
        for spec in palette_order(here):
            if app.action_allowed(spec):
                out.append((spec, partial(app.run_registered, spec)))
        return out

    async def discover(self) -> Hits:
        for spec, run in self._commands():
            yield DiscoveryHit(spec.palette or spec.label, run, help=spec.palette_help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec, run in self._commands():
            title = spec.palette or spec.label
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=spec.palette_help)
