"""The direct and LAN routes of `llorch models copy`: each target downloads from the source's mirror over HTTP.

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

The LAN route binds the same mirror to the source's LAN address instead, and each target fetches from
it over the LAN: the bytes never cross this machine (a laptop on Wi-Fi driving pools on a 10 GbE LAN).
The token then crosses the LAN in clear HTTP: it is single-use (one copy), opens only that model, read
only, and dies with the mirror; the files are verified against the catalog sha256 sent over SSH, so a
peer on the LAN can read the weights but cannot change them unnoticed (docs/fleet.md).
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
from llorch_tui.lan_address import url_host
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
PROBE_TIMEOUT_S = 30.0  # the whole probe call (the agent bounds its connection attempt to a few seconds)


class DirectRoute:
    """An open route: the source's mirror and, per target, the base URL that reaches it (a forwarded port on
    the target's loopback, or the source's LAN address)."""

    def __init__(self, token: str, serving: MirrorServing, bases: dict[str, str], lan: bool = False) -> None:
        self._token = token
        self.serving = serving
        self.bases = bases
        self.lan = lan

    def url(self, target: str, f: ModelFile) -> str:
        s = self.serving
        return f"{self.bases[target]}/{s.repo}/resolve/{s.revision}/{quote(f.name)}"

    def params(self, target: str, model_id: str, f: ModelFile) -> FetchParams:
        return FetchParams(id=model_id, file=f.name, url=self.url(target, f), token=self._token, lan=self.lan)


@contextlib.asynccontextmanager
async def _serving(fleet: Fleet, source: str, model_id: str, rate_limit_bps: float | None,
                   bind: str | None = None) -> AsyncIterator[tuple[str, MirrorServing]]:
    """The source's mirror of that one model with a fresh token: (token, where it serves); stopped on exit."""
    token = secrets.token_urlsafe(32)
    started: asyncio.Future[MirrorServing] = asyncio.get_running_loop().create_future()

    def on_event(ev: Event) -> None:
        if isinstance(ev, MirrorServing) and not started.done():
            started.set_result(ev)

    src = fleet.client(source)
    serve = asyncio.create_task(src.api.models.serve_copy(
        ServeCopyParams(id=model_id, token=token, rate_limit_bps=rate_limit_bps, bind=bind), on_event=on_event))
    try:
        waiting: set[asyncio.Future[Any]] = {serve, started}
        await asyncio.wait(waiting, timeout=SERVE_START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            if serve.done():
                serve.result()  # its error (an older agent: unknown_op)
            raise LlorchError(ErrorCode.TIMEOUT, f"pool {source} did not start serving {model_id} within "
                              f"{SERVE_START_TIMEOUT_S:.0f}s", "copy with --route relay")
        yield token, started.result()
    finally:
        await _stop_serving(src, serve, model_id, token)


@contextlib.asynccontextmanager
async def open_route(fleet: Fleet, source: str, model_id: str, targets: list[str],
                     rate_limit_bps: float | None = None) -> AsyncIterator[DirectRoute]:
    """Start the source's loopback mirror and forward a port on every target to it; all of it closed on exit."""
    src = fleet.client(source)
    async with _serving(fleet, source, model_id, rate_limit_bps) as (token, serving):
        forwards: list[ReverseForward] = []
        try:
            here = await src.transport.forward_port(serving.port)  # this machine's loopback -> the source's
            bases: dict[str, str] = {}
            for t in targets:
                fwd = await fleet.client(t).transport.reverse_forward(here)  # the target's loopback -> here
                forwards.append(fwd)
                bases[t] = f"http://127.0.0.1:{fwd.port}"
            yield DirectRoute(token, serving, bases)
        finally:
            for fwd in forwards:
                await fwd.close()
            close_forward = getattr(src.transport, "close_forward", None)
            if close_forward is not None:
                await close_forward(serving.port)


@contextlib.asynccontextmanager
async def open_lan_route(fleet: Fleet, source: str, model_id: str, targets: list[str], address: str,
                         probe: ModelFile, rate_limit_bps: float | None = None) -> AsyncIterator[DirectRoute]:
    """Start the source's mirror on its LAN `address` and check that every target reaches it (one byte of
    `probe`, with the token, within seconds); UNREACHABLE naming the first target that does not."""
    async with _serving(fleet, source, model_id, rate_limit_bps, bind=address) as (token, serving):
        if serving.host != address:  # an agent older than this route ignores `bind`
            raise LlorchError(ErrorCode.UNREACHABLE, f"pool {source}'s agent cannot serve on its LAN address",
                              f"upgrade it: llorch pool install --host {source} --upgrade")
        base = f"http://{url_host(address)}:{serving.port}"
        route = DirectRoute(token, serving, {t: base for t in targets}, lan=True)

        async def reach(t: str) -> str | None:
            try:
                res = await fleet.client(t).api.models.probe_fetch(route.params(t, model_id, probe),
                                                                   timeout=PROBE_TIMEOUT_S)
            except LlorchError as e:  # an older agent: unknown_op
                return e.message
            except asyncio.TimeoutError:
                return f"no answer within {PROBE_TIMEOUT_S:.0f}s"
            return None if res.ok else res.reason or "unreachable"

        for t, why in zip(targets, await asyncio.gather(*(reach(t) for t in targets))):
            if why is not None:
                raise LlorchError(ErrorCode.UNREACHABLE, f"pool {t} cannot reach {source}'s mirror on {base}: {why}",
                                  f"check pool {source}'s lan_address, or copy with --route direct")
        yield route


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
