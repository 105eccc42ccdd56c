"""Ops of the agent itself: ping (latency, liveness) and sleep-with-events (protocol tests, benchmarks)."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, Field

from llorch_tui import __version__
from llorch_tui.pool.ops import OpContext, op


class NoParams(BaseModel):
    pass


class TickParams(BaseModel):
    count: int = Field(default=3, ge=0, le=10_000)
    interval_s: float = Field(default=0.01, ge=0, le=60)


@op("agent.ping", NoParams, summary="liveness and round-trip latency")
async def ping(ctx: OpContext, _: NoParams) -> dict[str, object]:
    return {"pool_id": ctx.settings.pool_id, "agent_version": __version__, "time": time.time()}


@op("agent.ticks", TickParams, streams=True, summary="emit COUNT tick events (protocol self-test)")
async def ticks(ctx: OpContext, p: TickParams) -> dict[str, int]:
    for i in range(p.count):
        ctx.emit("tick", {"n": i})
        await asyncio.sleep(p.interval_s)
    return {"ticks": p.count}
