"""File hashes the Hub speaks: sha256 (LFS files) and the git blob sha1 (every file's blobId / ETag).

The Hub publishes a sha256 only for LFS-tracked files; a small file kept in git (config.json,
tokenizer.json) is identified by its git blob id, sha1("blob <size>\\0" + content). We verify
each file against whichever the server published, and always record the sha256 we measured.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

CHUNK = 1024 * 1024
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"


class FileHasher:
    """sha256 and git-sha1 of a file fed in order; the size must be known up front (git's header needs it)."""

    def __init__(self, size: int) -> None:
        self.sha256 = hashlib.sha256()
        self.git_sha1 = hashlib.sha1(f"blob {size}\0".encode())
        self.fed = 0

    def update(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        self.git_sha1.update(data)
        self.fed += len(data)

    def feed_file(self, path: Path, cancelled: threading.Event | None = None) -> None:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                if cancelled is not None and cancelled.is_set():
                    return
                self.update(chunk)


def hash_file(path: Path, cancelled: threading.Event | None = None) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file, in one pass."""
    h = FileHasher(path.stat().st_size)
    h.feed_file(path, cancelled)
    return h.sha256.hexdigest(), h.git_sha1.hexdigest()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git stores for an LFS file; the Hub's blobId of an LFS file is this pointer's blob id."""
    return LFS_POINTER.format(sha256=sha256, size=size).encode()
