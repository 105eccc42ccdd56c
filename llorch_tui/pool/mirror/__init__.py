"""A read-only, Hub-compatible HTTP server for the models a pool has downloaded.

Download once from the internet, then let every other pool fetch over the LAN with the
ordinary Hugging Face client (`HF_ENDPOINT=http://pool-a:PORT`, or `hf_endpoint` in the pool's
config). Tests use it as the Hub.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Callable

from aiohttp import web
from llorch_worker.httpguard import LimitedTCPSite

from llorch_tui.pool.mirror.index import MirrorIndex
from llorch_tui.pool.mirror.server import MirrorApp, MirrorOptions
from llorch_tui.pool.ops import AgentSettings

__all__ = ["MirrorApp", "MirrorIndex", "MirrorOptions", "serve_mirror", "start_mirror"]


async def start_mirror(settings: AgentSettings, host: str, port: int, options: MirrorOptions,
                       only: frozenset[str] | None = None) -> tuple[web.AppRunner, str, MirrorApp]:
    """Bind and start serving (only the model ids in `only`, when given); returns (runner, base url, app).
    Stop with `await runner.cleanup()`."""
    index = MirrorIndex(settings.paths, settings.pool_id, only=only)
    await asyncio.to_thread(index.repos)  # hash what needs hashing before saying we are ready
    mirror = MirrorApp(index, options)
    runner = web.AppRunner(mirror.app, access_log=None, **options.limits.runner_kwargs())
    await runner.setup()
    site = LimitedTCPSite(runner, host, port, options.limits)
    await site.start()
    bound_port = runner.addresses[0][1]  # the real port when 0 was asked
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound_port}", mirror


async def serve_mirror(settings: AgentSettings, host: str, port: int, options: MirrorOptions,
                       on_ready: Callable[[str, list[str]], None]) -> None:
    """Serve until SIGINT/SIGTERM."""
    runner, url, mirror = await start_mirror(settings, host, port, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        on_ready(url, sorted(mirror.index.repos()))
        await stop.wait()
    finally:
        await runner.cleanup()
