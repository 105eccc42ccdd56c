"""The direct route of `llorch models copy`: each target downloads from the source's mirror over HTTP.

The source serves the model through a mirror on its own 127.0.0.1 with a one-time token
(`models.serve_copy`); this machine forwards a port on each target's 127.0.0.1 to that mirror (an
SSH remote forward on the target's connection, joined to a direct-tcpip channel on the source's), and
each target's agent fetches the rest of every file with a Range request (`models.receive_fetch`) into
the same staging as the relayed route, then verifies it against the source's catalog sha256. Nothing
listens on any address but loopback; the token travels only inside the agents' SSH sessions (never
argv, never a log) and dies with the mirror. Bytes move as raw TCP inside SSH: no base64, no JSON
Lines, no agent in the middle re-encoding them, which is what makes this route several times faster.
Everything opened here (mirror, forwards) is closed on every way out: the copy's end, an error, a
cancel; a killed control plane takes its SSH connections, so the mirror's session and the forwards go
with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TYPE_CHECKING, Any, AsyncIterator
from urllib.parse import quote

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.client import PoolClient
from llorch_tui.fleet import Fleet
from llorch_tui.protocol import ops
from llorch_tui.protocol.catalog import ModelFile
from llorch_tui.protocol.events import Event
from llorch_tui.protocol.params import FetchParams, ServeCopyParams
from llorch_tui.protocol.transfer import FileFetched, MirrorServing, ServeCopyResult
from llorch_tui.transport.base import ReverseForward

if TYPE_CHECKING:
    from llorch_tui.fleet_ops.copy import _Copy

SERVE_START_TIMEOUT_S = 300.0  # the source may hash files its catalog has no sha256 for first
STOP_TIMEOUT_S = 30.0


class DirectRoute:
    """An open route: the source's mirror and, per target, the loopback port that reaches it."""

    def __init__(self, token: str, serving: MirrorServing, ports: dict[str, int]) -> None:
        self._token = token
        self.serving = serving
        self.ports = ports

    def url(self, target: str, f: ModelFile) -> str:
        s = self.serving
        return f"http://127.0.0.1:{self.ports[target]}/{s.repo}/resolve/{s.revision}/{quote(f.name)}"

    def params(self, target: str, model_id: str, f: ModelFile) -> FetchParams:
        return FetchParams(id=model_id, file=f.name, url=self.url(target, f), token=self._token)


@contextlib.asynccontextmanager
async def open_route(fleet: Fleet, source: str, model_id: str, targets: list[str],
                     rate_limit_bps: float | None = None) -> AsyncIterator[DirectRoute]:
    """Start the source's mirror and forward a port on every target to it; all of it closed on exit."""
    token = secrets.token_urlsafe(32)
    started: asyncio.Future[MirrorServing] = asyncio.get_running_loop().create_future()

    def on_event(ev: Event) -> None:
        if isinstance(ev, MirrorServing) and not started.done():
            started.set_result(ev)

    src = fleet.client(source)
    serve = asyncio.create_task(src.api.models.serve_copy(
        ServeCopyParams(id=model_id, token=token, rate_limit_bps=rate_limit_bps), on_event=on_event))
    forwards: list[ReverseForward] = []
    mirror_port: int | None = None
    try:
        waiting: set[asyncio.Future[Any]] = {serve, started}
        await asyncio.wait(waiting, timeout=SERVE_START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            if serve.done():
                serve.result()  # its error (an older agent: unknown_op)
            raise LlorchError(ErrorCode.TIMEOUT, f"pool {source} did not start serving {model_id} within "
                              f"{SERVE_START_TIMEOUT_S:.0f}s", "copy with --route relay")
        serving = started.result()
        mirror_port = serving.port
        here = await src.transport.forward_port(mirror_port)  # this machine's loopback -> the source's
        ports: dict[str, int] = {}
        for t in targets:
            fwd = await fleet.client(t).transport.reverse_forward(here)  # the target's loopback -> here
            forwards.append(fwd)
            ports[t] = fwd.port
        yield DirectRoute(token, serving, ports)
    finally:
        for fwd in forwards:
            await fwd.close()
        close_forward = getattr(src.transport, "close_forward", None)
        if mirror_port is not None and close_forward is not None:
            await close_forward(mirror_port)
        await _stop_serving(src, serve, model_id, token)


async def _stop_serving(src: PoolClient, serve: "asyncio.Task[ServeCopyResult]", model_id: str, token: str) -> None:
    """Stop the source's mirror and wait for its answer (sent once the mirror is closed); cancel the call
    if the source cannot be told (its session is gone: the mirror went with it)."""
    if not serve.done():
        try:
            await src.api.models.serve_copy(ServeCopyParams(id=model_id, token=token, stop=True),
                                            timeout=STOP_TIMEOUT_S)
            await asyncio.wait_for(asyncio.shield(serve), STOP_TIMEOUT_S)
        except (LlorchError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            serve.cancel()
            raise
    serve.cancel()
    with contextlib.suppress(BaseException):
        await serve


async def fetch_file(job: "_Copy", route: DirectRoute, f: ModelFile) -> None:
    """Every active target fetches the rest of `f` from the source's mirror, concurrently, then verifies it.
    Progress counts the slowest target's bytes (each target reads the source's file once)."""
    targets = [t for t in job.active() if job.have[t].get(f.name, 0) < f.size]
    reported = min((job.have[t].get(f.name, 0) for t in targets), default=f.size)

    def progress() -> None:
        nonlocal reported
        low = min((job.have[t].get(f.name, 0) for t in targets if job.results[t].error is None), default=f.size)
        if low > reported:
            job.reporter.add_bytes(low - reported)
            reported = low

    async def one(t: str) -> None:
        start = job.have[t].get(f.name, 0)

        def on_event(ev: Event) -> None:
            if isinstance(ev, FileFetched):
                job.have[t][f.name] = ev.have
                progress()

        try:
            res = await job.call(t, ops.MODELS_RECEIVE_FETCH, route.params(t, job.id, f), on_event=on_event)
        except LlorchError as e:
            job.fail(t, e)
            return
        job.have[t][f.name] = res.have
        job.results[t].bytes_sent += res.have - start
        progress()

    if targets:
        job.reporter.send("downloading", file=f.name, force=True)
        await asyncio.gather(*(one(t) for t in targets))
    await asyncio.gather(*(job.verify(t, f) for t in job.active()))
    job.reporter.file_done(f.name)
