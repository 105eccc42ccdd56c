"""What the action mixins (actions.py, matrix_actions.py) use of LlorchApp, declared for the type checker.

Imported only under TYPE_CHECKING: at run time the mixins derive from `object` and LlorchApp supplies all of
this. Declaring it here (instead of deriving the mixins from LlorchApp, a cycle) lets mypy check both sides:
a mixin using something LlorchApp lacks, or LlorchApp changing a signature the mixins rely on, fails `make lint`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from textual.app import App
from textual.notifications import SeverityLevel

from llorch_tui.config import Config
from llorch_tui.tui.core.model import DashboardModel

if TYPE_CHECKING:
    from llorch_tui.fleet import Fleet
    from llorch_tui.matrix.engine import MatrixEngine
    from llorch_tui.protocol.matrix import MatrixReport
    from llorch_tui.tui.messages import AppSignals


class AppHost(App[int]):
    config: Config
    readonly: bool
    fleet: Fleet | None
    model: DashboardModel
    following: tuple[str, str] | None
    log_buffer: deque[str]
    signals: AppSignals
    matrix_engine: MatrixEngine | None
    matrix_report: MatrixReport | None
    _fitting: set[str]

    def live_fleet(self) -> Fleet: raise NotImplementedError
    def _refuse(self, what: str) -> bool: raise NotImplementedError
    def event(self, level: SeverityLevel, message: str, hint: str | None = None, notify: bool = True) -> None: ...
    def warn(self, message: str, hint: str | None = None) -> None: ...
    def report(self, exc: BaseException, context: str = "") -> None: ...
    def refresh_all(self, force: bool = False) -> None: ...
    def schedule_redraw(self) -> None: ...
