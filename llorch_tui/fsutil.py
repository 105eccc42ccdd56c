"""Atomic writes and cross-process locks: a crash or a racing process never leaves a half-written file."""

from __future__ import annotations

import errno
import glob
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock

from llorch_tui.errors import ErrorCode, LlorchError


STALE_TMP_S = 3600.0  # a temp file of a writer that still runs is seconds old; older ones are litter


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target. Temp files
    that writers killed mid-write (kill -9) left behind are removed on the way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temps(path: Path) -> None:
    """Delete `.NAME.PID.*.tmp` files whose writer is gone (or that are over an hour old)."""
    now = time.time()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid_text = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        try:
            pid = int(pid_text)
        except ValueError:
            pid = 0  # an older naming without the pid: judged by age alone
        try:
            if (pid and not _alive(pid)) or now - tmp.stat().st_mtime > STALE_TMP_S:
                tmp.unlink()
        except FileNotFoundError:
            pass  # its writer renamed or removed it meanwhile


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def save_state_file(path: Path, text: str, what: str) -> None:
    """atomic_write_text for a state file: a full disk or a bad directory is a LlorchError, never a traceback."""
    try:
        atomic_write_text(path, text)
    except OSError as exc:  # the old file is intact: atomic_write_text only renames a complete file
        code = ErrorCode.DISK_FULL if exc.errno == errno.ENOSPC else ErrorCode.INTERNAL
        raise LlorchError(code, f"cannot write {what} {path}: {exc.strerror or exc}",
                          f"free disk space or fix the directory's permissions; the previous {what} is unchanged",
                          file=str(path)) from None


@contextmanager
def file_lock(lock_path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Serialize read-modify-write cycles across processes (20 agents registering at once)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=timeout):
        yield
