"""Turning what went wrong (agent error documents, HTTP failures, worker exit) into a ReasonCode."""

from __future__ import annotations

import re
from typing import Any

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.protocol.matrix import ReasonCode

# Agent / worker error code -> matrix reason. Unknown codes fall back to LOAD_ERROR at spawn time.
_SPAWN_CODES: dict[str, str] = {
    ErrorCode.CHECKPOINT_CORRUPT: ReasonCode.CHECKPOINT_CORRUPT,
    ErrorCode.CHECKSUM_MISMATCH: ReasonCode.CHECKPOINT_CORRUPT,
    ErrorCode.MODEL_INVALID: ReasonCode.MODEL_INVALID,
    "tokenizer_missing": ReasonCode.TOKENIZER_MISSING,
    ErrorCode.BACKEND_UNAVAILABLE: ReasonCode.BACKEND_UNAVAILABLE,
    ErrorCode.BACKEND_UNSUPPORTED: ReasonCode.BACKEND_UNAVAILABLE,
    ErrorCode.PORT_IN_USE: ReasonCode.PORT_IN_USE,
    "dtype_unsupported": ReasonCode.DTYPE_UNSUPPORTED,
    "oom": ReasonCode.OOM,
    ErrorCode.WORKER_TIMEOUT: ReasonCode.TIMEOUT,
    ErrorCode.TIMEOUT: ReasonCode.TIMEOUT,
    ErrorCode.CONNECTION_LOST: ReasonCode.CONNECTION_LOST,
    ErrorCode.NOT_DOWNLOADED: ReasonCode.NOT_DOWNLOADED,
    ErrorCode.CANCELLED: ReasonCode.CANCELLED,
}

_EXIT_RE = re.compile(r"(?:exit(?:ed)?(?: with)?(?: code| status)?|code)\s*[:=]?\s*(-?\d+)", re.I)


def _nested_code(details: dict[str, Any]) -> str | None:
    """The worker's own classification, wherever the agent put it (details.worker_error.code, details.code...)."""
    for key in ("worker_error", "worker", "error"):
        v = details.get(key)
        if isinstance(v, dict) and isinstance(v.get("code"), str):
            return v["code"]
    for key in ("reason", "worker_code", "reason_code", "code"):
        v = details.get(key)
        if isinstance(v, str):
            return v
    return None


def exit_code_of(details: dict[str, Any], text: str | None = None) -> int | None:
    for key in ("exit_code", "returncode", "exit_status"):
        v = details.get(key)
        if isinstance(v, int):
            return v
    if text:
        m = _EXIT_RE.search(text)
        if m:
            return int(m.group(1))
    return None


def log_tail_of(details: dict[str, Any], limit: int = 30) -> list[str]:
    for key in ("log_tail", "stderr", "tail", "lines"):
        v = details.get(key)
        if isinstance(v, list):
            return [str(x) for x in v][-limit:]
        if isinstance(v, str) and v.strip():
            return v.splitlines()[-limit:]
    return []


def classify_spawn_error(exc: LlorchError) -> tuple[str, int | None]:
    """(reason code, worker exit code) for a failed workers.spawn."""
    nested = _nested_code(exc.details)
    exit_code = exit_code_of(exc.details, exc.message)
    for code in (nested, exc.code):
        if code in _SPAWN_CODES:
            return _SPAWN_CODES[code], exit_code
    if exc.code == ErrorCode.WORKER_FAILED:
        # Died without a classified error line: a crash (signal, segfault, killed by the OOM killer...).
        crashed = exc.details.get("signal") is not None or exit_code not in (None, 1)
        return (ReasonCode.CRASH if crashed else ReasonCode.LOAD_ERROR), exit_code
    return ReasonCode.LOAD_ERROR, exit_code


# Failures that say the cell cannot exist on this pool (like an absent backend): skipped, not failed.
SKIP_CODES = frozenset({ReasonCode.DTYPE_UNSUPPORTED})
# Failures of a worker that runs but answers differently from its reference: shown apart from broken cells.
DRIFT_CODES = frozenset({ReasonCode.PARITY_DRIFT, ReasonCode.WRONG_ANSWER})


def classify_download_error(exc: LlorchError) -> str:
    if exc.code in (ErrorCode.CHECKSUM_MISMATCH, ErrorCode.CHECKPOINT_CORRUPT):
        return ReasonCode.CHECKPOINT_CORRUPT
    if exc.code == ErrorCode.CANCELLED:
        return ReasonCode.CANCELLED
    return ReasonCode.DOWNLOAD_FAILED
