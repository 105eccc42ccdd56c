"""Error types shared by the worker CLI, the loader and the HTTP layer.

Two kinds: `WorkerError` ends the process with a classified exit code (the pool agent parses
the `LLORCH_WORKER_ERROR {json}` line), `ApiError` becomes a 4xx/5xx JSON response and leaves
the worker running.
"""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_BACKEND = 4
EXIT_PORT = 5
EXIT_INTERNAL = 1

# code -> exit status; the codes are part of the contract with the pool agent.
EXIT_FOR_CODE: dict[str, int] = {
    "model_invalid": EXIT_MODEL,
    "checkpoint_corrupt": EXIT_MODEL,
    "tokenizer_missing": EXIT_MODEL,
    "backend_unavailable": EXIT_BACKEND,
    "dtype_unsupported": EXIT_BACKEND,
    "port_in_use": EXIT_PORT,
    "oom": EXIT_MODEL,
    "usage": EXIT_USAGE,
    "internal": EXIT_INTERNAL,
}


class WorkerError(Exception):
    """A failure that stops the worker; `code` is one of EXIT_FOR_CODE."""

    def __init__(self, code: str, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.file = file

    @property
    def exit_code(self) -> int:
        return EXIT_FOR_CODE.get(self.code, EXIT_INTERNAL)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.file is not None:
            d["file"] = self.file
        return d

    def emit(self) -> None:
        """Print the one machine-readable line the pool agent looks for on stderr."""
        print(f"LLORCH_WORKER_ERROR {json.dumps(self.to_dict())}", file=sys.stderr, flush=True)


# A generation that failed inside the worker: the HTTP status its error code answers with.
# `non_finite_logits`: the model cannot compute this prompt (NaN/inf; often a float16 overflow):
# the request, not the worker, is what cannot be served, and retrying it gives the same answer.
STATUS_FOR_GENERATION_ERROR: dict[str, int] = {"oom": 507, "non_finite_logits": 422}


class ApiError(Exception):
    """A request-level error: becomes `{"error": {"code", "message", "hint"?, "field"?}}` with `status`;
    `field` names the request field at fault (`messages[0].role`)."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None,
                 headers: dict[str, str] | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.headers = headers or {}
        self.field = field

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            err["hint"] = self.hint
        if self.field:
            err["field"] = self.field
        return {"error": err}
