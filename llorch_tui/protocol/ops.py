"""The op table: every agent op's name, parameter model and result type, in one place.

The agent registers its handlers against these (`@op(ops.MODELS_LIST)`), checks every result against
the declared type before it goes on the wire, and the typed client (`llorch_tui.pool_api.PoolApi`) parses
every answer with the same type, so a renamed or missing field fails at the agent, in mypy or in one
clear `protocol_mismatch` error, never as a KeyError in a consumer. Ops are only added, never renamed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Protocol, TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.protocol import WireModel
from llorch_tui.protocol.catalog import Catalog, ModelEntry
from llorch_tui.protocol.downloads import DownloadProgress, DownloadResult, RemoveResult, VerifyResult
from llorch_tui.protocol.events import (PROGRESS, EventHandler, EventModels, FingerprintStage, LogLine,
                                        ModelStage, SpawnStage, Tick, typed_sink)
from llorch_tui.protocol.fit import FitReport
from llorch_tui.protocol.parity import FingerprintReport, ModelReference
from llorch_tui.protocol.params import (BeginParams, ChunkParams, DownloadParams, ExportParams, FetchExampleParams,
                                        FetchParams, FileParams,
                                        FingerprintParams, FitParams, IdParams, ImportParams, ListParams, LogsParams,
                                        NoParams, RegisterParams, RmParams, SetFingerprintParams, SpawnParams,
                                        StatusParams, StopParams, SweepParams, SynthParams, TemplateParams, TickParams,
                                        ServeCopyParams, UpdateParams, VerdictParams, VerifyParams, WriteParams)
from llorch_tui.protocol.status import HealthReport, PoolStatus
from llorch_tui.protocol.transfer import (ArchiveResult, ChunkData, ChunkWritten, FileFetched, FileVerified, MirrorReach,
                                          MirrorServing, ReceiveBegun, ServeCopyResult)
from llorch_tui.protocol.workers import LogsResult, SweepResult, TemplateStatus, WorkerRecord

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R")

# A streamed event as it crosses the wire: (name, data). Typed consumers get it parsed (`OpRef.event_sink`).
EventSink = Callable[[str, dict[str, Any]], None]


class OpCaller(Protocol):
    """What runs ops by name: a PoolClient (an agent session) or the agent's own InProcessExecutor."""

    async def call(self, op: str, params: dict[str, Any] | None = None, on_event: EventSink | None = None,
                   timeout: float | None = None) -> Any: ...


class PingResult(WireModel):
    pool_id: str
    agent_version: str
    time: float


class TicksResult(WireModel):
    ticks: int


@functools.cache
def _adapter(result: Any) -> TypeAdapter[Any]:
    return TypeAdapter(result)


@dataclass(frozen=True)
class OpRef(Generic[P, R]):
    """One op of the contract. `result` is a type pydantic validates: a model, `list[Model]` or a union.
    `events`: what it streams before its result, event name -> model (`protocol/events.py`)."""

    name: str
    params: type[P]
    result: Any
    events: EventModels = field(default_factory=dict, hash=False, compare=False)

    @property
    def streams(self) -> bool:
        return bool(self.events)

    def event_sink(self, handler: EventHandler) -> EventSink:
        """The raw sink for a call of this op that hands `handler` each event parsed into its declared model."""
        return typed_sink(self.events, handler)

    def check_event(self, name: str, event: BaseModel, payload: dict[str, Any]) -> None:
        """The agent's check of an event before it is sent: declared, and its document fits the declared model
        (a subclass instance or another model with the same fields fits: a fingerprint forwards spawn stages)."""
        model = self.events.get(name)
        if model is None:
            raise LlorchError(ErrorCode.INTERNAL, f"{self.name}: the agent emitted the undeclared event {name!r}",
                              "this is a bug in llorch's agent; please report it")
        if isinstance(event, model):
            return
        try:
            model.model_validate(payload)
        except ValidationError as exc:
            raise LlorchError(ErrorCode.INTERNAL, f"{self.name}: its {name!r} event does not fit {model.__name__}: "
                              f"{exc.errors()[0].get('msg')}",
                              "this is a bug in llorch's agent; please report it") from None

    def parse(self, raw: object, where: str = "") -> R:
        """The agent's answer as the declared type; a document that does not fit is a protocol mismatch.
        `where` prefixes the message (e.g. "pool gpu1: ")."""
        try:
            return cast(R, _adapter(self.result).validate_python(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or "result"
            raise LlorchError(ErrorCode.PROTOCOL_MISMATCH,
                              f"{where}{self.name}: the answer does not fit {_type_name(self.result)}: {field}: {first.get('msg')}",
                              "install the same llorch version on the pool and here") from None

    def dump(self, value: object) -> Any:
        """The JSON document for a handler's result, checked against the declared type first."""
        adapter = _adapter(self.result)
        return adapter.dump_python(adapter.validate_python(value), mode="json")


def _type_name(t: Any) -> str:
    if isinstance(t, type):
        return t.__name__
    return re.sub(r"llorch_tui\.protocol\.\w+\.", "", str(t))  # list[WorkerRecord], ModelEntry | RemoveResult


# The events streamed by more than one op.
_MODEL_STAGES: EventModels = {PROGRESS: ModelStage}
_DOWNLOAD: EventModels = {PROGRESS: DownloadProgress}

AGENT_PING: OpRef[NoParams, PingResult] = OpRef("agent.ping", NoParams, PingResult)
AGENT_TICKS: OpRef[TickParams, TicksResult] = OpRef("agent.ticks", TickParams, TicksResult, events={"tick": Tick})

MODELS_LIST: OpRef[NoParams, Catalog] = OpRef("models.list", NoParams, Catalog)
MODELS_REGISTER: OpRef[RegisterParams, ModelEntry] = OpRef("models.register", RegisterParams, ModelEntry, events=_MODEL_STAGES)
MODELS_UNREGISTER: OpRef[IdParams, ModelEntry] = OpRef("models.unregister", IdParams, ModelEntry)
MODELS_UPDATE: OpRef[UpdateParams, ModelEntry] = OpRef("models.update", UpdateParams, ModelEntry)
MODELS_RECORD_VERDICT: OpRef[VerdictParams, ModelEntry] = OpRef("models.record_verdict", VerdictParams, ModelEntry)
MODELS_SYNTH: OpRef[SynthParams, ModelEntry] = OpRef("models.synth", SynthParams, ModelEntry, events=_MODEL_STAGES)
MODELS_DOWNLOAD: OpRef[DownloadParams, DownloadResult] = OpRef("models.download", DownloadParams, DownloadResult,
                                                               events=_DOWNLOAD)
MODELS_VERIFY: OpRef[VerifyParams, VerifyResult] = OpRef("models.verify", VerifyParams, VerifyResult)
# keep_entry=true: the entry, now downloaded=false; keep_entry=false: what was removed.
MODELS_RM: OpRef[RmParams, ModelEntry | RemoveResult] = OpRef("models.rm", RmParams, ModelEntry | RemoveResult)
MODELS_FIT: OpRef[FitParams, FitReport] = OpRef("models.fit", FitParams, FitReport)
MODELS_EXPORT: OpRef[ExportParams, ArchiveResult] = OpRef("models.export", ExportParams, ArchiveResult, events=_DOWNLOAD)
MODELS_IMPORT: OpRef[ImportParams, ArchiveResult] = OpRef("models.import", ImportParams, ArchiveResult, events=_DOWNLOAD)
# A model copy between pools (fleet_ops/copy.py): the source's manifest and chunks, the target's receive_*.
MODELS_MANIFEST: OpRef[IdParams, ModelEntry] = OpRef("models.manifest", IdParams, ModelEntry)
MODELS_READ_CHUNK: OpRef[ChunkParams, ChunkData] = OpRef("models.read_chunk", ChunkParams, ChunkData)
MODELS_RECEIVE_BEGIN: OpRef[BeginParams, ReceiveBegun] = OpRef("models.receive_begin", BeginParams, ReceiveBegun)
MODELS_RECEIVE_CHUNK: OpRef[WriteParams, ChunkWritten] = OpRef("models.receive_chunk", WriteParams, ChunkWritten)
MODELS_RECEIVE_FILE: OpRef[FileParams, FileVerified] = OpRef("models.receive_file", FileParams, FileVerified)
MODELS_RECEIVE_COMMIT: OpRef[IdParams, ModelEntry] = OpRef("models.receive_commit", IdParams, ModelEntry)
# The direct route of a copy: the source serves the model through a loopback mirror (until the call is
# cancelled), the target fetches each file from it through a port the control plane forwards.
MODELS_SERVE_COPY: OpRef[ServeCopyParams, ServeCopyResult] = OpRef("models.serve_copy", ServeCopyParams,
                                                                   ServeCopyResult, events={"serving": MirrorServing})
MODELS_RECEIVE_FETCH: OpRef[FetchParams, FileFetched] = OpRef("models.receive_fetch", FetchParams, FileFetched,
                                                              events={PROGRESS: FileFetched})
# The LAN route's reachability check: can the target reach the source's LAN mirror (one byte, bounded time)?
MODELS_PROBE_FETCH: OpRef[FetchParams, MirrorReach] = OpRef("models.probe_fetch", FetchParams, MirrorReach)
MODELS_FETCH_EXAMPLE: OpRef[FetchExampleParams, ModelEntry] = OpRef("models.fetch_example", FetchExampleParams,
                                                                     ModelEntry, events=_MODEL_STAGES)
# Parity: a model's reference fingerprint (recorded once, compared by the matrix).
MODELS_REFERENCE: OpRef[IdParams, ModelReference] = OpRef("models.reference", IdParams, ModelReference)
MODELS_FINGERPRINT: OpRef[FingerprintParams, FingerprintReport] = OpRef("models.fingerprint", FingerprintParams,
                                                                        FingerprintReport, events={PROGRESS: FingerprintStage})
MODELS_SET_FINGERPRINT: OpRef[SetFingerprintParams, ModelEntry] = OpRef("models.set_fingerprint",
                                                                        SetFingerprintParams, ModelEntry)

WORKERS_SPAWN: OpRef[SpawnParams, WorkerRecord] = OpRef("workers.spawn", SpawnParams, WorkerRecord, events={PROGRESS: SpawnStage})
WORKERS_LIST: OpRef[ListParams, list[WorkerRecord]] = OpRef("workers.list", ListParams, list[WorkerRecord])
WORKERS_STOP: OpRef[StopParams, list[WorkerRecord]] = OpRef("workers.stop", StopParams, list[WorkerRecord])
WORKERS_LOGS: OpRef[LogsParams, LogsResult] = OpRef("workers.logs", LogsParams, LogsResult, events={"line": LogLine})
WORKERS_SWEEP: OpRef[SweepParams, SweepResult] = OpRef("workers.sweep", SweepParams, SweepResult)
WORKERS_TEMPLATE: OpRef[TemplateParams, TemplateStatus] = OpRef("workers.template", TemplateParams, TemplateStatus)

POOL_STATUS: OpRef[StatusParams, PoolStatus] = OpRef("pool.status", StatusParams, PoolStatus)
POOL_HEALTH: OpRef[StatusParams, HealthReport] = OpRef("pool.health", StatusParams, HealthReport)

ALL_OPS: tuple[OpRef[Any, Any], ...] = (
    AGENT_PING, AGENT_TICKS, MODELS_LIST, MODELS_REGISTER, MODELS_UNREGISTER, MODELS_UPDATE, MODELS_RECORD_VERDICT,
    MODELS_SYNTH, MODELS_DOWNLOAD, MODELS_VERIFY, MODELS_RM, MODELS_FIT, MODELS_EXPORT, MODELS_IMPORT, MODELS_MANIFEST,
    MODELS_READ_CHUNK, MODELS_RECEIVE_BEGIN, MODELS_RECEIVE_CHUNK, MODELS_RECEIVE_FILE, MODELS_RECEIVE_COMMIT, MODELS_FETCH_EXAMPLE, MODELS_REFERENCE,
    MODELS_SERVE_COPY, MODELS_RECEIVE_FETCH, MODELS_PROBE_FETCH,
    MODELS_FINGERPRINT, MODELS_SET_FINGERPRINT, WORKERS_SPAWN, WORKERS_LIST, WORKERS_STOP, WORKERS_LOGS,
    WORKERS_SWEEP, WORKERS_TEMPLATE, POOL_STATUS, POOL_HEALTH,
)
OPS_BY_NAME: dict[str, OpRef[Any, Any]] = {o.name: o for o in ALL_OPS}
