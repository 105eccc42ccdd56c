"""Remappable keys: every Binding has an id; a keymap file maps ids to keys.

The file is `$LLORCH_KEYMAP`, else `keymap.toml` beside the config file (~/.config/llorch/keymap.toml):

    [keymap]
    download = "D"
    "mode.matrix" = "f2,2"     # several keys: comma-separated
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.paths import config_file

# id -> (default key, description). The single list the bindings, the palette and the docs come from.
BINDING_IDS: dict[str, tuple[str, str]] = {
    "quit": ("q", "Quit"),
    "help": ("question_mark", "Help"),
    "mode.dashboard": ("1", "Dashboard"),
    "mode.matrix": ("2", "Matrix"),
    "mode.logs": ("3", "Logs"),
    "refresh": ("r", "Refresh"),
    "download": ("d", "Download"),
    "spawn": ("s", "Spawn"),
    "stop": ("x", "Stop"),
    "logs": ("l", "Logs"),
    "model.add": ("a", "Add model"),
    "matrix": ("m", "Matrix"),
    "filter": ("slash", "Filter"),
    "matrix.start": ("g", "Start run"),
    "matrix.stop": ("x", "Stop run"),
    "matrix.export": ("e", "Export"),
    "matrix.detail": ("i", "Cell detail"),
    "logs.follow": ("f", "Follow"),
}


def keymap_path() -> Path:
    env = os.environ.get("LLORCH_KEYMAP")
    return Path(env).expanduser() if env else config_file().parent / "keymap.toml"


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """Read the keymap file ({} when there is none). Unknown ids and bad values are a clear error."""
    path = path or keymap_path()
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LlorchError(ErrorCode.CONFIG_INVALID, f"{path}: cannot read the keymap: {exc}",
                          "fix the TOML syntax, or delete the file to use the default keys") from None
    table = doc.get("keymap", {})
    if not isinstance(table, dict):
        raise LlorchError(ErrorCode.CONFIG_INVALID, f"{path}: [keymap] must be a table of id = \"keys\"")
    keymap: dict[str, str] = {}
    for key, value in table.items():
        if key not in BINDING_IDS:
            raise LlorchError(ErrorCode.CONFIG_INVALID, f"{path}: [keymap] {key!r} is not a binding id",
                              f"known ids: {', '.join(BINDING_IDS)}")
        if not isinstance(value, str) or not value.strip():
            raise LlorchError(ErrorCode.CONFIG_INVALID, f"{path}: [keymap] {key} must be a key string like \"ctrl+d\"")
        keymap[key] = value.strip()
    return keymap
