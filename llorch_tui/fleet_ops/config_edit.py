"""Recording a pool setting in the operator's config.toml without losing their comments or layout.

A targeted edit of the text: the `[[pools]]` block whose `name` matches gets the key replaced (or
added after its name); a pool that is not in the file yet (an ad-hoc --host) gets a block of its
own at the end. The result is parsed and validated before it is written (atomically, under a lock),
so a bad edit can never leave an unreadable configuration.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from llorch_tui.config import PoolConfig, default_config
from llorch_tui.config_load import config_to_toml, write_config
from llorch_tui.fsutil import file_lock

HEADER = re.compile(r"^\s*\[")
NAME = re.compile(r"""^\s*name\s*=\s*["']([^"']*)["']""")


def _line(key: str, value: Any) -> str:
    return tomli_w.dumps({key: value}).strip()


def _set_in_text(text: str, pool: PoolConfig, key: str, value: Any) -> str:
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip() == "[[pools]]"]
    for start in starts:
        end = next((j for j in range(start + 1, len(lines)) if HEADER.match(lines[j])), len(lines))
        names = [(j, m.group(1)) for j in range(start + 1, end) if (m := NAME.match(lines[j]))]
        if not names or names[0][1] != pool.name:
            continue
        key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for j in range(start + 1, end):
            if key_re.match(lines[j]):
                lines[j] = _line(key, value)
                break
        else:
            lines.insert(names[0][0] + 1, _line(key, value))
        return "\n".join(lines) + "\n"
    block = pool.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    block.update({"name": pool.name, "transport": pool.transport, key: value})
    return text.rstrip("\n") + "\n\n" + tomli_w.dumps({"pools": [block]})


def set_pool_setting(config_path: Path, exists: bool, pool: PoolConfig, key: str, value: Any) -> Path:
    """Set `key = value` for `pool` in the config file (created from the built-in default if absent)."""
    with file_lock(config_path.with_name(config_path.name + ".lock")):
        text = config_path.read_text(encoding="utf-8") if exists and config_path.exists() else \
            config_to_toml(default_config())
        new = _set_in_text(text, pool, key, value)
        tomllib.loads(new)  # a syntax slip raises here, before anything is written
        return write_config(config_path, new, force=True)  # validates the schema, then an atomic write
