"""The op registry: every agent capability is one named async function with a pydantic params model
and a declared result type (the table in `llorch_tui/protocol/ops.py`).

The human CLI, the stdio service and (remotely) the `llorch` CLI all dispatch through here,
so a capability is written once. Handlers never print: they return their declared result (checked
here before it is sent) and stream progress through `ctx.emit`, which is safe to call from threads.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from pydantic import BaseModel, ValidationError

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.paths import PoolPaths, pool_state_dir
from llorch_tui.protocol.events import Event, StageEvent
from llorch_tui.protocol.ops import EventSink, OpRef
from llorch_tui.protocol.params import build_params

Handler = Callable[["OpContext", Any], Awaitable[Any]]

# Modules that register ops when imported. Listed, not discovered, so startup cost is predictable.
OP_MODULES: tuple[str, ...] = (
    "llorch_tui.pool.core_ops",
    "llorch_tui.pool.models_ops",
    "llorch_tui.pool.synth_ops",
    "llorch_tui.pool.examples",
    "llorch_tui.pool.download_ops",
    "llorch_tui.pool.worker_ops",
    "llorch_tui.pool.status_ops",
    "llorch_tui.pool.fit_ops",
    "llorch_tui.pool.transfer_ops",
    "llorch_tui.pool.transfer_direct_ops",
    "llorch_tui.pool.archive_ops",
    "llorch_tui.pool.fingerprint_ops",
)


@dataclass
class AgentSettings:
    """What the agent knows about its pool. Built from flags / LLORCH_* variables, never from the control config."""

    state_dir: Path
    models_dir: Path | None = None
    pool_id: str = "local"
    hf_endpoint: str | None = None

    @classmethod
    def from_env(cls, state_dir: str | None = None, models_dir: str | None = None,
                 pool_id: str | None = None) -> "AgentSettings":
        md = models_dir or os.environ.get("LLORCH_MODELS_DIR")
        return cls(
            state_dir=pool_state_dir(state_dir),
            models_dir=Path(md).expanduser() if md else None,
            pool_id=pool_id or os.environ.get("LLORCH_POOL_ID") or socket.gethostname() or "local",
            hf_endpoint=os.environ.get("LLORCH_HF_ENDPOINT") or None,
        )

    @property
    def paths(self) -> PoolPaths:
        return PoolPaths(self.state_dir, self.models_dir)


@dataclass
class OpContext:
    settings: AgentSettings
    sink: EventSink | None = None
    # Set when the caller cancels; blocking code running in a thread polls it.
    cancelled: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    # The op being run (set by `execute`): its events are checked against what it declares.
    ref: OpRef[Any, Any] | None = None

    def emit(self, event: str, data: Event) -> None:
        payload = data.model_dump(mode="json", exclude_unset=isinstance(data, StageEvent))
        if self.ref is not None:
            self.ref.check_event(event, data, payload)
        if self.sink is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is not None and running is not self.loop:
            # Called from a worker thread (a download, a blocking probe): hop onto the loop.
            self.loop.call_soon_threadsafe(self.sink, event, payload)
        else:
            self.sink(event, payload)

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise LlorchError(ErrorCode.CANCELLED, "cancelled by the caller")


@dataclass(frozen=True)
class OpSpec:
    ref: OpRef[Any, Any]
    handler: Handler
    summary: str = ""

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def params(self) -> type[BaseModel]:
        return self.ref.params

    @property
    def streams(self) -> bool:
        return self.ref.streams


REGISTRY: dict[str, OpSpec] = {}


def op(ref: OpRef[Any, Any], *, summary: str = "") -> Callable[[Handler], Handler]:
    """Register a handler for one op of the contract (name, params and result come from `ref`)."""
    if not isinstance(ref, OpRef):
        raise TypeError(f"@op takes an OpRef from llorch_tui.protocol.ops (its name, params and result type), "
                        f"not {ref!r}: add the op to that table first")

    def deco(fn: Handler) -> Handler:
        REGISTRY[ref.name] = OpSpec(ref, fn, summary or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


_loaded = False


def load_ops() -> dict[str, OpSpec]:
    """Import every op module that exists (areas land independently; a missing module is not an error)."""
    global _loaded
    if not _loaded:
        for mod in OP_MODULES:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:
                    raise
        _loaded = True
    return REGISTRY



async def execute(name: str, params: dict[str, Any], ctx: OpContext) -> Any:
    """Validate params, run the op, return a JSON-able result. Raises LlorchError on any expected failure."""
    spec = load_ops().get(name)
    if spec is None:
        raise LlorchError(ErrorCode.UNKNOWN_OP, f"this agent has no operation {name!r}",
                          "upgrade llorch on the pool so both sides have the same version")
    parsed = build_params(spec.params, params, name)
    if ctx.loop is None:
        ctx.loop = asyncio.get_running_loop()
    ctx.ref = spec.ref
    result = await spec.handler(ctx, parsed)
    try:
        return spec.ref.dump(result)
    except ValidationError as exc:
        raise LlorchError(ErrorCode.INTERNAL, f"{name}: the agent's result does not fit its declared type: {exc}",
                          "this is a bug in llorch's agent; please report it") from None


class InProcessExecutor:
    """Runs ops in this process: what `llorch-pool <command>` uses. Same call shape as PoolClient."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings

    async def call(self, op_name: str, params: dict[str, Any] | None = None, on_event: EventSink | None = None,
                   timeout: float | None = None) -> Any:
        ctx = OpContext(settings=self.settings, sink=on_event)
        return await asyncio.wait_for(execute(op_name, params or {}, ctx), timeout)
