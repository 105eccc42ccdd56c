"""Number formatting, text bars and sparklines shared by every pane (pure functions, no UI)."""

from __future__ import annotations

from collections.abc import Iterable

from llorch_tui.units import fmt_bytes, fmt_duration, fmt_rate

__all__ = ["fmt_bytes", "fmt_duration", "fmt_rate"]

SPARKS = "▁▂▃▄▅▆▇█"


def threshold_style(fraction: float | None) -> str:
    """nvitop-style thresholds: green below 60 %, yellow below 85 %, red above."""
    if fraction is None:
        return "dim"
    if fraction < 0.60:
        return "green"
    if fraction < 0.85:
        return "yellow"
    return "red"


def text_bar(fraction: float | None, width: int = 20) -> str:
    if fraction is None:
        return "·" * width
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(round(fraction * width))
    return "█" * full + "░" * (width - full)


def sparkline(values: Iterable[float], width: int = 16, top: float | None = None) -> str:
    """Last `width` values as ▁..█, scaled to `top` (default: the max seen)."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    hi = top if top else max(vals)
    if hi <= 0:
        return SPARKS[0] * len(vals)
    out = []
    for v in vals:
        i = int(min(max(v / hi, 0.0), 1.0) * (len(SPARKS) - 1))
        out.append(SPARKS[i])
    return "".join(out)
