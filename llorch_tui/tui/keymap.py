"""Remappable keys: every Binding has an id; a keymap file maps ids to keys.

The file is `$LLORCH_KEYMAP`, else `keymap.toml` beside the config file (~/.config/llorch/keymap.toml):

    [keymap]
    download = "D"
    "mode.matrix" = "f2,2"     # several keys: comma-separated
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.paths import config_file
from llorch_tui.tui.action_registry import BY_ID


def keymap_path() -> Path:
    env = os.environ.get("LLORCH_KEYMAP")
    return Path(env).expanduser() if env else config_file().parent / "keymap.toml"


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """Read the keymap file: (id -> keys, problems). An unreadable file is an error; a line with an unknown
    id or a bad value is a problem (with a "did you mean") and the valid lines still apply."""
    path = path or keymap_path()
    if not path.is_file():
        return {}, []
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LlorchError(ErrorCode.CONFIG_INVALID, f"{path}: cannot read the keymap: {exc}",
                          "fix the TOML syntax, or delete the file to use the default keys") from None
    table = doc.get("keymap", {})
    if not isinstance(table, dict):
        raise LlorchError(ErrorCode.CONFIG_INVALID, f"{path}: [keymap] must be a table of id = \"keys\"")
    keymap: dict[str, str] = {}
    problems: list[str] = []
    for key, value in table.items():
        if key not in BY_ID:
            close = difflib.get_close_matches(key, list(BY_ID), n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{path}: [keymap] {key!r} is not a binding id ({guess}known ids: {', '.join(BY_ID)})")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{path}: [keymap] {key} must be a key string like \"ctrl+d\"")
        else:
            keymap[key] = value.strip()
    return keymap, problems
