"""A network fault between client and mirror: a proxy that stops sending a file midway (a stalled link)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
from aiohttp import web


class StallProxy:
    """Forwards everything to `upstream`; the first GET of `stall_file` (every GET with stall_every_time)
    sends `stall_after` bytes of the body and then nothing, keeping the connection open."""

    def __init__(self, upstream: str, stall_file: str, stall_after: int, stall_every_time: bool = False) -> None:
        self.upstream, self.stall_file, self.stall_after = upstream, stall_file, stall_after
        self.stall_every_time = stall_every_time
        self.stalls = 0
        self.ranges_seen: list[str] = []  # Range headers of GETs of stall_file after the first
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stop = asyncio.Event()

    def __enter__(self) -> "StallProxy":
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        self._stop.set()
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        target = self.upstream + request.path_qs
        is_file = request.method == "GET" and "/resolve/" in request.path and \
            request.path.endswith("/" + self.stall_file)
        if is_file and self.stalls > 0:
            self.ranges_seen.append(request.headers.get("Range", ""))
        async with self._session.request(request.method, target, headers=headers, allow_redirects=False) as up:
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in ("transfer-encoding",)}
            resp = web.StreamResponse(status=up.status, headers=out_headers)
            await resp.prepare(request)
            stall = is_file and (self.stall_every_time or self.stalls == 0)
            sent = 0
            if stall:
                self.stalls += 1
                if self.stall_after:
                    body = await up.content.readexactly(self.stall_after)
                    await resp.write(body)
                    sent = len(body)
                while not self._stop.is_set() and request.transport is not None and not request.transport.is_closing():
                    await asyncio.sleep(0.05)  # hold the connection open, send nothing
                return resp
            async for chunk in up.content.iter_chunked(64 * 1024):
                await resp.write(chunk)
                sent += len(chunk)
            await resp.write_eof()
            return resp
