"""The content hash of a model's weights: what a reference fingerprint is tied to.

sha256 over one line `NAME NUL SHA256 LF` per weight file (sorted by name), so a renamed, added,
removed or altered weight file changes it, and so does any byte of any tensor. Measured on the
files themselves every time (never taken from the catalog, which may be stale: the point is to
notice a file that changed after it was registered); per-file hashes are cached in memory by
(path, size, mtime, inode), so a long-lived agent hashes a file once until it changes.
"""

from __future__ import annotations

import threading
from pathlib import Path

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.hashing import hash_file
from llorch_tui.protocol.parity import WEIGHT_SUFFIXES, weights_digest

_CACHE: dict[tuple[str, int, int, int], str] = {}
_LOCK = threading.Lock()


def weight_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint: the file itself (a .gguf), or those in the directory."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(f for f in path.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)


def _file_sha256(f: Path) -> str:
    st = f.stat()
    key = (str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        hit = hash_file(f)[0]
        with _LOCK:
            _CACHE[key] = hit
    return hit


def weights_sha256(path: Path) -> str:
    files = weight_files(path)
    if not files:
        raise LlorchError(ErrorCode.NOT_DOWNLOADED, f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) at {path}",
                          "download or register the model's files first")
    return weights_digest((f.name, _file_sha256(f)) for f in files)
