"""Ops of the agent itself: ping (latency, liveness) and sleep-with-events (protocol tests, benchmarks)."""

from __future__ import annotations

import asyncio
import time

from llorch_tui import __version__
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.protocol.events import Tick
from llorch_tui.protocol.params import NoParams, TickParams


@op(ops.AGENT_PING, summary="liveness and round-trip latency")
async def ping(ctx: OpContext, _: NoParams) -> ops.PingResult:
    return ops.PingResult(pool_id=ctx.settings.pool_id, agent_version=__version__, time=time.time())


@op(ops.AGENT_TICKS, summary="emit COUNT tick events (protocol self-test)")
async def ticks(ctx: OpContext, p: TickParams) -> ops.TicksResult:
    for i in range(p.count):
        ctx.emit("tick", Tick(n=i))
        await asyncio.sleep(p.interval_s)
    return ops.TicksResult(ticks=p.count)
