"""PoolApi: the typed face of a pool agent. Every op is a method taking its parameter model and
returning its declared result model, derived from its entry in the op table (`protocol/ops.py`), so
consumers never spell an op name or read a result as a dict, and mypy catches a renamed field.

    api = fleet.api("gpu1")                       # or client.api, or PoolApi(InProcessExecutor(...))
    rec = await api.workers.spawn(SpawnParams(model="tiny-llama", backend="cpu"), on_event=show)
    print(rec.port)

It wraps anything with the `call(op, params, on_event, timeout)` shape: a PoolClient (a remote or local
agent session) or the agent's InProcessExecutor. Each streamed event reaches `on_event` parsed into the model
its op declares for it (`protocol/events.py`): consumers narrow with isinstance and read attributes.

A method is one line, `spawn = Op(ops.WORKERS_SPAWN)`: the descriptor binds the OpRef to the group's
caller, and its generic parameters carry the op's parameter and result types to every call site.
`OptionalParams` is for ops whose parameters all have defaults (`api.models.list()`).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from llorch_tui.protocol import ops
from llorch_tui.protocol.events import EventHandler
from llorch_tui.protocol.ops import OpCaller, OpRef

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R")


async def call_op(caller: OpCaller, ref: OpRef[P, R], params: P, on_event: EventHandler | None = None,
                  timeout: float | None = None) -> R:
    """One typed call. Only the top-level fields the caller set are sent (the agent applies its own defaults);
    a nested model goes whole: pydantic's exclude_unset would drop its defaults, timestamps included."""
    doc = params.model_dump(mode="json")
    sink = ref.event_sink(on_event) if on_event is not None else None
    raw = await caller.call(ref.name, {k: v for k, v in doc.items() if k in params.model_fields_set}, sink, timeout)
    pool = getattr(caller, "name", None)  # a PoolClient names its pool; the in-process executor does not
    return ref.parse(raw, f"pool {pool}: " if pool else "")


class _Group:
    def __init__(self, caller: OpCaller) -> None:
        self._caller = caller


class BoundOp(Generic[P, R]):
    """An op of one pool: `await bound(params, on_event=..., timeout=...) -> R`."""

    def __init__(self, caller: OpCaller, ref: OpRef[P, R]) -> None:
        self._caller, self.ref = caller, ref

    async def __call__(self, p: P, *, on_event: EventHandler | None = None, timeout: float | None = None) -> R:
        return await call_op(self._caller, self.ref, p, on_event, timeout)


class BoundOptionalOp(BoundOp[P, R]):
    """An op whose parameters all have defaults: the parameter model may be left out."""

    async def __call__(self, p: P | None = None, *, on_event: EventHandler | None = None,
                       timeout: float | None = None) -> R:
        return await call_op(self._caller, self.ref, p if p is not None else self.ref.params(), on_event, timeout)


class Op(Generic[P, R]):
    """A facade method derived from an op-table entry."""

    def __init__(self, ref: OpRef[P, R]) -> None:
        self.ref = ref

    @overload
    def __get__(self, group: None, owner: Any) -> Op[P, R]: ...
    @overload
    def __get__(self, group: _Group, owner: Any) -> BoundOp[P, R]: ...
    def __get__(self, group: _Group | None, owner: Any) -> Op[P, R] | BoundOp[P, R]:
        return self if group is None else BoundOp(group._caller, self.ref)


class OptionalParams(Op[P, R]):
    """`Op` for an op whose parameter model has a default for every field."""

    @overload
    def __get__(self, group: None, owner: Any) -> OptionalParams[P, R]: ...
    @overload
    def __get__(self, group: _Group, owner: Any) -> BoundOptionalOp[P, R]: ...
    def __get__(self, group: _Group | None, owner: Any) -> OptionalParams[P, R] | BoundOptionalOp[P, R]:
        return self if group is None else BoundOptionalOp(group._caller, self.ref)


class AgentApi(_Group):
    ping = OptionalParams(ops.AGENT_PING)
    ticks = Op(ops.AGENT_TICKS)


class ModelsApi(_Group):
    list = OptionalParams(ops.MODELS_LIST)
    register = Op(ops.MODELS_REGISTER)
    unregister = Op(ops.MODELS_UNREGISTER)
    update = Op(ops.MODELS_UPDATE)
    record_verdict = Op(ops.MODELS_RECORD_VERDICT)
    synth = Op(ops.MODELS_SYNTH)
    download = Op(ops.MODELS_DOWNLOAD)
    verify = Op(ops.MODELS_VERIFY)
    rm = Op(ops.MODELS_RM)
    fit = Op(ops.MODELS_FIT)
    export = Op(ops.MODELS_EXPORT)
    import_ = Op(ops.MODELS_IMPORT)
    # A copy between pools: the source side ...
    manifest = Op(ops.MODELS_MANIFEST)
    read_chunk = Op(ops.MODELS_READ_CHUNK)
    serve_copy = Op(ops.MODELS_SERVE_COPY)  # the direct route: the source's loopback mirror
    # ... and the receiving side.
    receive_begin = Op(ops.MODELS_RECEIVE_BEGIN)
    receive_chunk = Op(ops.MODELS_RECEIVE_CHUNK)
    receive_file = Op(ops.MODELS_RECEIVE_FILE)
    receive_commit = Op(ops.MODELS_RECEIVE_COMMIT)
    receive_fetch = Op(ops.MODELS_RECEIVE_FETCH)
    probe_fetch = Op(ops.MODELS_PROBE_FETCH)  # the LAN route: can this pool reach the source's mirror?
    fetch_example = Op(ops.MODELS_FETCH_EXAMPLE)
    # Parity references.
    reference = Op(ops.MODELS_REFERENCE)
    fingerprint = Op(ops.MODELS_FINGERPRINT)
    set_fingerprint = Op(ops.MODELS_SET_FINGERPRINT)


class WorkersApi(_Group):
    spawn = Op(ops.WORKERS_SPAWN)
    list = OptionalParams(ops.WORKERS_LIST)
    stop = Op(ops.WORKERS_STOP)
    logs = Op(ops.WORKERS_LOGS)
    sweep = OptionalParams(ops.WORKERS_SWEEP)
    template = OptionalParams(ops.WORKERS_TEMPLATE)


class PoolOpsApi(_Group):
    status = OptionalParams(ops.POOL_STATUS)
    health = OptionalParams(ops.POOL_HEALTH)


class PoolApi:
    """The typed facade of one pool: `api.agent`, `api.models`, `api.workers`, `api.pool`."""

    def __init__(self, caller: OpCaller) -> None:
        self.caller = caller
        self.agent = AgentApi(caller)
        self.models = ModelsApi(caller)
        self.workers = WorkersApi(caller)
        self.pool = PoolOpsApi(caller)
