"""How screens and the app talk without holding references to each other.

Up: a screen posts a request message; it bubbles to the app, which does the I/O in a worker.
Down: the app publishes its state on signals (`AppSignals`); a screen subscribes when it mounts, and a screen
that is gone is dropped by the signal itself (no `is_mounted` guards, no register_* hooks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from textual.dom import DOMNode
from textual.message import Message
from textual.signal import Signal

from llorch_tui.protocol.params import RegisterParams, SpawnParams, SynthParams

if TYPE_CHECKING:
    from llorch_tui.fleet_ops.install import InstallOptions


# --- requests: screen -> app ------------------------------------------------------------

class DownloadRequested(Message):
    def __init__(self, pool: str, model: str) -> None:
        super().__init__()
        self.pool, self.model = pool, model


class SpawnRequested(Message):
    def __init__(self, pool: str, params: SpawnParams) -> None:
        super().__init__()
        self.pool, self.params = pool, params


class CopyRequested(Message):
    def __init__(self, source: str, model: str, target: str) -> None:
        super().__init__()
        self.source, self.model, self.target = source, model, target


class InstallRequested(Message):
    """Install this machine's llorch on a pool (the options the confirmation modal settled)."""

    def __init__(self, pool: str, options: InstallOptions) -> None:
        super().__init__()
        self.pool, self.options = pool, options


class StopRequested(Message):
    def __init__(self, pool: str, worker_id: str) -> None:
        super().__init__()
        self.pool, self.worker_id = pool, worker_id


class AddModelRequested(Message):
    """Synthesize a checkpoint (SynthParams) or register a model (RegisterParams) on one pool."""

    def __init__(self, pool: str, params: SynthParams | RegisterParams) -> None:
        super().__init__()
        self.pool, self.params = pool, params


class FollowRequested(Message):
    """Follow a worker's log; `None` follows the one followed last again."""

    def __init__(self, pool: str | None = None, worker_id: str | None = None) -> None:
        super().__init__()
        self.pool, self.worker_id = pool, worker_id


class RefreshRequested(Message):
    pass


class MatrixRequested(Message):
    def __init__(self, what: Literal["start", "stop", "export"]) -> None:
        super().__init__()
        self.what = what


# --- state: app -> screens ----------------------------------------------------------------

@dataclass
class LogUpdate:
    """The followed worker's log: `start` (a new worker), `lines`, or `ended` (with why)."""

    kind: Literal["start", "lines", "ended"]
    pool: str
    worker_id: str
    lines: list[str] = field(default_factory=list)
    text: str = ""


@dataclass
class MatrixIdle:
    """Published after a matrix run's last event, once the app no longer holds the engine."""

    type: str = "idle"


class AppSignals:
    """The app's state channels. Subscribers get the data; a redraw signal carries nothing."""

    def __init__(self, owner: DOMNode) -> None:
        self.model_changed: Signal[None] = Signal(owner, "model_changed")
        self.event_logged: Signal[tuple[str, str]] = Signal(owner, "event_logged")
        self.matrix: Signal[Any] = Signal(owner, "matrix")
        self.worker_log: Signal[LogUpdate] = Signal(owner, "worker_log")
