"""The dashboard's one clock. LLORCH_FREEZE_TIME=<epoch seconds> freezes it (snapshot tests, screenshots)."""

from __future__ import annotations

import os
import time


def frozen() -> float | None:
    value = os.environ.get("LLORCH_FREEZE_TIME")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def now() -> float:
    f = frozen()
    return f if f is not None else time.time()
