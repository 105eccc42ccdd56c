"""Small helpers for the GGUF tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(src: Path, dst: Path) -> Path:
    """A second name for the shared GGUF without 98 MB of copying; never write through it (same inode)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def http_json(url: str, body: dict | None = None, timeout: float = 120) -> tuple[int, dict]:
    """POST `body` (or GET when None) and return (status, JSON), 4xx/5xx included."""
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
