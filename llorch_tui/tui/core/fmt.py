"""Number formatting, text bars and sparklines shared by every pane (pure functions, no UI)."""

from __future__ import annotations

from collections.abc import Iterable

SPARKS = "▁▂▃▄▅▆▇█"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def fmt_rate(bps: float | None) -> str:
    return "—" if not bps else f"{fmt_bytes(bps)}/s"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


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
