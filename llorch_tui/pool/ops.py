"""The op registry: every agent capability is one named async function with a pydantic params model.

The human CLI, the stdio service and (remotely) the `llorch` CLI all dispatch through here,
so a capability is written once. Handlers never print: they return a result (pydantic model,
dict or list) and stream progress through `ctx.emit`, which is safe to call from threads.
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

EventSink = Callable[[str, dict[str, Any]], None]
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

    def emit(self, event: str, data: BaseModel | dict[str, Any]) -> None:
        if self.sink is None:
            return
        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
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
    name: str
    params: type[BaseModel]
    handler: Handler
    streams: bool = False
    summary: str = ""


REGISTRY: dict[str, OpSpec] = {}


def op(name: str, params: type[BaseModel], *, streams: bool = False, summary: str = "") -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        REGISTRY[name] = OpSpec(name, params, fn, streams, summary or (fn.__doc__ or "").strip().split("\n")[0])
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


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


async def execute(name: str, params: dict[str, Any], ctx: OpContext) -> Any:
    """Validate params, run the op, return a JSON-able result. Raises LlorchError on any expected failure."""
    spec = load_ops().get(name)
    if spec is None:
        raise LlorchError(ErrorCode.UNKNOWN_OP, f"this agent has no operation {name!r}",
                          "upgrade llorch on the pool so both sides have the same version")
    try:
        parsed = spec.params.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "params"
        raise LlorchError(ErrorCode.BAD_REQUEST, f"{name}: {where}: {first.get('msg')}",
                          "check the command's --help for the expected arguments") from None
    if ctx.loop is None:
        ctx.loop = asyncio.get_running_loop()
    return to_jsonable(await spec.handler(ctx, parsed))


class InProcessExecutor:
    """Runs ops in this process: what `llorch-pool <command>` uses. Same call shape as PoolClient."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings

    async def call(self, op_name: str, params: dict[str, Any], on_event: EventSink | None = None) -> Any:
        ctx = OpContext(settings=self.settings, sink=on_event)
        return await execute(op_name, params, ctx)
