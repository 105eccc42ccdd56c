"""GPU memory per GPU and RAM: threshold-coloured gauges with a short history sparkline."""

from __future__ import annotations

import os

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from llorch_tui.tui.core.model import GpuLine, gauge_text


def mask_host_figures() -> bool:
    """LLORCH_TUI_MASK_HOST=1 hides host-measured figures (RAM, GPU) so snapshots are deterministic."""
    return os.environ.get("LLORCH_TUI_MASK_HOST") == "1"


class GaugePanel(Static):
    HELP = ("**Memory**: one gauge per GPU and one for RAM of the selected pool (all pools when `All` is selected). "
            "Green below 60 %, yellow below 85 %, red above; the sparkline is the recent history.")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._last: list[str] = []

    def show(self, lines: list[GpuLine], empty: str = "no data yet") -> None:
        mask = mask_host_figures()
        texts = [gauge_text(line, mask=mask) for line in lines] or [Text(empty, style="dim")]
        if lines and not any("GPU" in line.label for line in lines):
            texts.insert(0, Text("no GPU (cpu only)", style="dim"))
        key = [t.markup for t in texts]
        if key != self._last:  # only repaint when the figures changed
            # The same gauges with new figures keep their height: repaint without a screen layout (the
            # layout pass costs more than the repaint, every second).
            same_shape = [k.count("\n") for k in key] == [k.count("\n") for k in self._last]
            self._last = key
            self.update(Group(*texts), layout=not same_shape)
