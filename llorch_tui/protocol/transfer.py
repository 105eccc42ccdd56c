"""Results of the ops that move a model between pools (copies, archives)."""

from __future__ import annotations

from pydantic import Field

from llorch_tui.protocol import WireModel
from llorch_tui.protocol.catalog import ModelEntry


class ChunkData(WireModel):
    data: str  # base64
    offset: int
    size: int  # the whole file's size


class ReceiveBegun(WireModel):
    noop: bool  # the pool already has exactly these files
    have: dict[str, int] = Field(default_factory=dict)  # bytes already received per file (resume points)


class ChunkWritten(WireModel):
    have: int  # bytes of the file now received


class MirrorServing(WireModel):
    """`models.serve_copy`'s `serving` event: where its mirror listens (the pool's 127.0.0.1) and what it serves."""
    port: int
    repo: str  # the Hub-style repo id the model is served under
    revision: str
    host: str = "127.0.0.1"  # the address it is bound to (the pool's LAN address on the LAN route)


class ServeCopyResult(WireModel):
    bytes_served: int = 0
    stopped: bool = False  # the answer to a stop call: a mirror with that token was running and is told to end


class FileFetched(WireModel):
    file: str
    have: int  # bytes of the file now received
    fetched: int  # of which this call fetched


class MirrorReach(WireModel):
    """`models.probe_fetch`: whether this pool reached the sender's mirror (and was served with the token)."""
    ok: bool
    reason: str | None = None  # why not: the connection's error or the HTTP status


class FileVerified(WireModel):
    file: str
    sha256: str


class ArchiveResult(WireModel):
    model: ModelEntry
    file: str
    bytes: int
    noop: bool = False
