"""One error type for every plane: a stable code, what failed, and what to do next.

The code is part of the wire protocol (see protocol.ErrorDoc); the CLI, the TUI and the
matrix engine classify failures by it, so codes are never renamed, only added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the wire model imports this module: a runtime import would be a cycle
    from llorch_tui.protocol import ErrorDoc


class ErrorCode:
    """Stable error codes. Strings, not an Enum, so an older control plane can still print a newer code."""

    BAD_REQUEST = "bad_request"
    INVALID_ID = "invalid_id"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    CONFIG_INVALID = "config_invalid"
    CATALOG_CORRUPT = "catalog_corrupt"
    CATALOG_TOO_NEW = "catalog_too_new"
    REGISTRY_CORRUPT = "registry_corrupt"
    NOT_DOWNLOADED = "not_downloaded"
    BACKEND_UNSUPPORTED = "backend_unsupported"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    REPO_NOT_FOUND = "repo_not_found"
    GATED = "gated"
    NETWORK = "network"
    DISK_FULL = "disk_full"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    CHECKPOINT_CORRUPT = "checkpoint_corrupt"
    MODEL_INVALID = "model_invalid"
    WORKER_FAILED = "worker_failed"
    WORKER_TIMEOUT = "worker_timeout"
    PORT_IN_USE = "port_in_use"
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth_failed"
    HOST_KEY_UNKNOWN = "host_key_unknown"
    HOST_KEY_CHANGED = "host_key_changed"
    AGENT_MISSING = "agent_missing"
    PROTOCOL_MISMATCH = "protocol_mismatch"
    CONNECTION_LOST = "connection_lost"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    UNKNOWN_OP = "unknown_op"
    INTERNAL = "internal"


class LlorchError(Exception):
    """An expected failure: says what failed, why, and (hint) what to do next."""

    def __init__(self, code: str, message: str, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"

    def to_doc(self) -> "ErrorDoc":
        from llorch_tui.protocol import ErrorDoc

        return ErrorDoc(code=self.code, message=self.message, hint=self.hint, details=self.details)

    @classmethod
    def from_doc(cls, doc: "ErrorDoc") -> "LlorchError":
        return cls(doc.code, doc.message, doc.hint, **(doc.details or {}))

