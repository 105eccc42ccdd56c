"""A command is declared once (arguments -> op params -> rendering) and runs in-process or remotely."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from rich.console import Console

from llorch_tui.protocol.events import Event
from llorch_tui.protocol.ops import OpRef


class EventRenderer(Protocol):
    """Stateful human rendering of a streamed op (a progress bar, log lines): gets each event parsed."""

    def __call__(self, event: Event, /) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CommandSpec:
    path: tuple[str, ...]  # ("models", "list") -> `llorch-pool models list`
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    # None: a local-only command (serve, mirror serve) that runs `run_local(args) -> exit code` instead.
    op: OpRef[Any, Any] | None = None
    to_params: Callable[[argparse.Namespace], dict[str, Any]] = lambda args: {}
    # Gets the op's result as its declared type (`--json` prints the wire document instead).
    render: Callable[[Any, Console], None] | None = None
    events: Callable[[Console], EventRenderer] | None = None
    run_local: Callable[[argparse.Namespace], int] | None = None
    remote: bool = True  # offered by `llorch pool ... --host H`
    # A result can still mean failure (verify found problems): map it to the exit status.
    exit_code: Callable[[Any], int] | None = None


def no_args(_: argparse.ArgumentParser) -> None:
    return None
