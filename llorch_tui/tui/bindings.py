"""Bindings built from the id table in keymap.py, so every key is remappable by id."""

from __future__ import annotations

from textual.binding import Binding

from llorch_tui.tui.keymap import BINDING_IDS


def bind(binding_id: str, action: str, show: bool = True, priority: bool = False) -> Binding:
    key, description = BINDING_IDS[binding_id]
    return Binding(key, action, description, show=show, id=binding_id, priority=priority)


# Actions that change a pool. --readonly hides and refuses them.
MUTATING: frozenset[str] = frozenset({"download", "spawn", "stop", "add_model", "start_run", "stop_run"})
