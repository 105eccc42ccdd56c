"""Human formatting of sizes, rates and durations, shared by the CLI tables, the TUI and the reports.

One convention everywhere: binary units, labelled as such (KiB, MiB, GiB), one decimal.
"""

from __future__ import annotations

DASH = "—"


def fmt_bytes(n: float | None) -> str:
    """IEC units (KiB, MiB, ...), as GPU and RAM figures are reported."""
    if n is None:
        return DASH
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def fmt_size_gb(size_gb: float | None) -> str:
    """A catalog size (`ModelEntry.size_gb` is in decimal GB, 1e9 bytes) in the same binary units as every
    other figure; an unknown size (0, e.g. a registered model not downloaded yet) is a dash, not "0 B"."""
    if not size_gb or size_gb <= 0:
        return DASH
    return fmt_bytes(size_gb * 1e9)


def fmt_rate(bps: float | None) -> str:
    return DASH if not bps else f"{fmt_bytes(bps)}/s"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return DASH
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def fmt_eta(eta: float | None) -> str:
    """A clock-style ETA (mm:ss or h:mm:ss), as progress bars show it."""
    if eta is None:
        return "--:--"
    e = int(eta)
    return f"{e // 3600}:{e % 3600 // 60:02d}:{e % 60:02d}" if e >= 3600 else f"{e // 60:02d}:{e % 60:02d}"
