"""Text from models and pools made safe for a terminal: control characters shown, never obeyed.

A model's output or a worker's log may hold a bell, a shift-in or an escape sequence; written as is, the
terminal rings, switches character sets or moves the cursor. Newlines and tabs are kept; every other C0/C1
control character (and DEL) is shown as `\\xNN`.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
