"""Wire models of `models.download`, `models.verify` and `models.rm`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llorch_tui.protocol import WireModel
from llorch_tui.protocol.catalog import ModelEntry

DownloadStage = Literal["resolving", "downloading", "verifying", "retrying", "done"]


class DownloadProgress(WireModel):
    """One `progress` event of a download. bytes_total is known before the first byte is fetched."""

    model: str
    file: str | None = None
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    speed_bps: float = 0.0
    eta_s: float | None = None
    stage: DownloadStage = "downloading"
    # retrying: which attempt comes next, why, and how long we wait before it.
    attempt: int | None = None
    message: str | None = None
    endpoint: str | None = None


class DownloadResult(WireModel):
    model: ModelEntry
    noop: bool = False
    # Bytes that crossed the network in this call (a resumed download counts only the rest).
    bytes_fetched: int = 0
    bytes_total: int = 0
    # Bytes found on disk from an earlier, interrupted attempt and not fetched again.
    bytes_resumed: int = 0
    endpoint: str | None = None
    files: list[str] = Field(default_factory=list)


class VerifyProblem(WireModel):
    file: str
    problem: str


class VerifyResult(WireModel):
    model: str
    ok: bool
    problems: list[VerifyProblem] = Field(default_factory=list)
    files_checked: int = 0
    loaded: bool = False  # True when the load check ran and passed


class RemoveResult(WireModel):
    """`models rm --drop-entry`: the entry is gone; what was freed."""

    removed: str
    freed_bytes: int = 0
    path: str | None = None
