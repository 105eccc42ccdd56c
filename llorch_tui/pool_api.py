"""PoolApi: the typed face of a pool agent. Every op is a method taking its parameter model and
returning its declared result model (the table in `protocol/ops.py`), so consumers never spell an op
name or read a result as a dict, and mypy catches a renamed field.

    api = fleet.api("gpu1")                       # or client.api, or PoolApi(InProcessExecutor(...))
    rec = await api.workers.spawn(SpawnParams(model="tiny-llama", backend="cpu"), on_event=show)
    print(rec.port)

It wraps anything with the `call(op, params, on_event, timeout)` shape: a PoolClient (a remote or local
agent session) or the agent's InProcessExecutor. Events are passed through as (name, data) as sent.
"""

from __future__ import annotations

import builtins  # the groups have a list() method: `list[...]` inside them would name it
from typing import TypeVar

from pydantic import BaseModel

from llorch_tui.protocol import ops
from llorch_tui.protocol.catalog import Catalog, ModelEntry
from llorch_tui.protocol.downloads import DownloadResult, RemoveResult, VerifyResult
from llorch_tui.protocol.fit import FitReport
from llorch_tui.protocol.params import (BeginParams, ChunkParams, DownloadParams, ExportParams, FetchExampleParams,
                                        FileParams,
                                        FingerprintParams, FitParams, IdParams, ImportParams, ListParams, LogsParams,
                                        NoParams, RegisterParams, RmParams, SetFingerprintParams, SpawnParams,
                                        StatusParams, StopParams, SweepParams, SynthParams, TemplateParams, TickParams,
                                        UpdateParams, VerdictParams, VerifyParams, WriteParams)
from llorch_tui.protocol.parity import FingerprintReport, ModelReference
from llorch_tui.protocol.status import HealthReport, PoolStatus
from llorch_tui.protocol.transfer import ArchiveResult, ChunkData, ChunkWritten, FileVerified, ReceiveBegun
from llorch_tui.protocol.workers import LogsResult, SweepResult, TemplateStatus, WorkerRecord

from llorch_tui.protocol.ops import EventSink, OpCaller

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R")


async def call_op(caller: OpCaller, ref: ops.OpRef[P, R], params: P, on_event: EventSink | None = None,
                  timeout: float | None = None) -> R:
    """One typed call. Only the top-level fields the caller set are sent (the agent applies its own defaults);
    a nested model goes whole: pydantic's exclude_unset would drop its defaults, timestamps included."""
    doc = params.model_dump(mode="json")
    raw = await caller.call(ref.name, {k: v for k, v in doc.items() if k in params.model_fields_set}, on_event, timeout)
    pool = getattr(caller, "name", None)  # a PoolClient names its pool; the in-process executor does not
    return ref.parse(raw, f"pool {pool}: " if pool else "")


class _Group:
    def __init__(self, caller: OpCaller) -> None:
        self._caller = caller


class AgentApi(_Group):
    async def ping(self, *, timeout: float | None = None) -> ops.PingResult:
        return await call_op(self._caller, ops.AGENT_PING, NoParams(), timeout=timeout)

    async def ticks(self, p: TickParams, *, on_event: EventSink | None = None,
                    timeout: float | None = None) -> ops.TicksResult:
        return await call_op(self._caller, ops.AGENT_TICKS, p, on_event, timeout)


class ModelsApi(_Group):
    async def list(self, *, timeout: float | None = None) -> Catalog:
        return await call_op(self._caller, ops.MODELS_LIST, NoParams(), timeout=timeout)

    async def register(self, p: RegisterParams, *, on_event: EventSink | None = None,
                       timeout: float | None = None) -> ModelEntry:
        return await call_op(self._caller, ops.MODELS_REGISTER, p, on_event, timeout)

    async def unregister(self, p: IdParams, *, timeout: float | None = None) -> ModelEntry:
        return await call_op(self._caller, ops.MODELS_UNREGISTER, p, timeout=timeout)

    async def update(self, p: UpdateParams, *, timeout: float | None = None) -> ModelEntry:
        return await call_op(self._caller, ops.MODELS_UPDATE, p, timeout=timeout)

    async def record_verdict(self, p: VerdictParams, *, timeout: float | None = None) -> ModelEntry:
        return await call_op(self._caller, ops.MODELS_RECORD_VERDICT, p, timeout=timeout)

    async def synth(self, p: SynthParams, *, on_event: EventSink | None = None,
                    timeout: float | None = None) -> ModelEntry:
        return await call_op(self._caller, ops.MODELS_SYNTH, p, on_event, timeout)

    async def download(self, p: DownloadParams, *, on_event: EventSink | None = None,
                       timeout: float | None = None) -> DownloadResult:
        return await call_op(self._caller, ops.MODELS_DOWNLOAD, p, on_event, timeout)

    async def verify(self, p: VerifyParams, *, timeout: float | None = None) -> VerifyResult:
        return await call_op(self._caller, ops.MODELS_VERIFY, p, timeout=timeout)

    async def rm(self, p: RmParams, *, timeout: float | None = None) -> ModelEntry | RemoveResult:
        return await call_op(self._caller, ops.MODELS_RM, p, timeout=timeout)

    async def fit(self, p: FitParams, *, timeout: float | None = None) -> FitReport:
        return await call_op(self._caller, ops.MODELS_FIT, p, timeout=timeout)

    async def export(self, p: ExportParams, *, on_event: EventSink | None = None,
                     timeout: float | None = None) -> ArchiveResult:
        return await call_op(self._caller, ops.MODELS_EXPORT, p, on_event, timeout)

    async def import_(self, p: ImportParams, *, on_event: EventSink | None = None,
                      timeout: float | None = None) -> ArchiveResult:
        return await call_op(self._caller, ops.MODELS_IMPORT, p, on_event, timeout)

    # A copy between pools: the source side ...
    async def manifest(self, p: IdParams, *, timeout: float | None = None) -> ModelEntry:
        return await call_op(self._caller, ops.MODELS_MANIFEST, p, timeout=timeout)

    async def read_chunk(self, p: ChunkParams, *, timeout: float | None = None) -> ChunkData:
        return await call_op(self._caller, ops.MODELS_READ_CHUNK, p, timeout=timeout)

    # ... and the receiving side.
    async def receive_begin(self, p: BeginParams, *, timeout: float | None = None) -> ReceiveBegun:
        return await call_op(self._caller, ops.MODELS_RECEIVE_BEGIN, p, timeout=timeout)

    async def receive_chunk(self, p: WriteParams, *, timeout: float | None = None) -> ChunkWritten:
        return await call_op(self._caller, ops.MODELS_RECEIVE_CHUNK, p, timeout=timeout)

    async def receive_file(self, p: FileParams, *, timeout: float | None = None) -> FileVerified:
        return await call_op(self._caller, ops.MODELS_RECEIVE_FILE, p, timeout=timeout)

    async def receive_commit(self, p: IdParams, *, timeout: float | None = None) -> ModelEntry:
        return await call_op(self._caller, ops.MODELS_RECEIVE_COMMIT, p, timeout=timeout)

    async def fetch_example(self, p: FetchExampleParams, *, on_event: EventSink | None = None,
                            timeout: float | None = None) -> ModelEntry:
        return await call_op(self._caller, ops.MODELS_FETCH_EXAMPLE, p, on_event, timeout)

    # Parity references.
    async def reference(self, p: IdParams, *, timeout: float | None = None) -> ModelReference:
        return await call_op(self._caller, ops.MODELS_REFERENCE, p, timeout=timeout)

    async def fingerprint(self, p: FingerprintParams, *, on_event: EventSink | None = None,
                          timeout: float | None = None) -> FingerprintReport:
        return await call_op(self._caller, ops.MODELS_FINGERPRINT, p, on_event, timeout)

    async def set_fingerprint(self, p: SetFingerprintParams, *, timeout: float | None = None) -> ModelEntry:
        return await call_op(self._caller, ops.MODELS_SET_FINGERPRINT, p, timeout=timeout)


class WorkersApi(_Group):
    async def spawn(self, p: SpawnParams, *, on_event: EventSink | None = None,
                    timeout: float | None = None) -> WorkerRecord:
        return await call_op(self._caller, ops.WORKERS_SPAWN, p, on_event, timeout)

    async def list(self, p: ListParams | None = None, *, timeout: float | None = None) -> builtins.list[WorkerRecord]:
        return await call_op(self._caller, ops.WORKERS_LIST, p or ListParams(), timeout=timeout)

    async def stop(self, p: StopParams, *, timeout: float | None = None) -> builtins.list[WorkerRecord]:
        return await call_op(self._caller, ops.WORKERS_STOP, p, timeout=timeout)

    async def logs(self, p: LogsParams, *, on_event: EventSink | None = None,
                   timeout: float | None = None) -> LogsResult:
        return await call_op(self._caller, ops.WORKERS_LOGS, p, on_event, timeout)

    async def sweep(self, p: SweepParams | None = None, *, timeout: float | None = None) -> SweepResult:
        return await call_op(self._caller, ops.WORKERS_SWEEP, p or SweepParams(), timeout=timeout)

    async def template(self, p: TemplateParams | None = None, *, timeout: float | None = None) -> TemplateStatus:
        return await call_op(self._caller, ops.WORKERS_TEMPLATE, p or TemplateParams(), timeout=timeout)


class PoolOpsApi(_Group):
    async def status(self, p: StatusParams | None = None, *, timeout: float | None = None) -> PoolStatus:
        return await call_op(self._caller, ops.POOL_STATUS, p or StatusParams(), timeout=timeout)

    async def health(self, p: StatusParams | None = None, *, timeout: float | None = None) -> HealthReport:
        return await call_op(self._caller, ops.POOL_HEALTH, p or StatusParams(), timeout=timeout)


class PoolApi:
    """The typed facade of one pool: `api.agent`, `api.models`, `api.workers`, `api.pool`."""

    def __init__(self, caller: OpCaller) -> None:
        self.caller = caller
        self.agent = AgentApi(caller)
        self.models = ModelsApi(caller)
        self.workers = WorkersApi(caller)
        self.pool = PoolOpsApi(caller)
