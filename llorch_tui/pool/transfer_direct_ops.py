"""The direct route of a model copy: the source serves, the target fetches, over a forwarded port.

`models.serve_copy` (on the source) serves one downloaded model through a Hub-compatible mirror bound
to the pool's 127.0.0.1, protected by a one-time token the control plane made, for as long as the
call lasts: the control plane cancels it when the copy ends, and it ends with the agent's session
when the control plane dies. `models.receive_fetch` (on the target) appends the rest of one file
being received (the staging of receive.py: the same `.part`, so the relayed and direct routes resume
each other's bytes) from a loopback URL, which the control plane forwards to the source's mirror.
The target then verifies the file against the source's catalog sha256 (`models.receive_file`), never
against what the HTTP server says.

The LAN route is the same with the mirror bound to the source's LAN address (`bind`, an IP literal,
never a wildcard) and the target fetching from that address (`lan`), after `models.probe_fetch` has
shown, within a few seconds, that it reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

import aiohttp

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.lan_address import check_lan_address
from llorch_tui.pool.models_ops import store_of
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.pool.receive import Incoming
from llorch_tui.pool.transfer_ops import manifest
from llorch_tui.protocol import ops
from llorch_tui.protocol.params import FetchParams, ServeCopyParams
from llorch_tui.protocol.transfer import FileFetched, MirrorReach, MirrorServing, ServeCopyResult

LOOPBACK = ("127.0.0.1", "::1", "localhost")
# A mirror nobody fetched from for this long stops by itself: a safety net for a control plane that
# kept its session open but forgot the copy (it normally cancels the call at once).
SERVE_IDLE_S = 600.0
IDLE_CHECK_S = 5.0
READ_CHUNK = 1024 * 1024
PROGRESS_EVERY_S = 0.25
STALL_S = 60.0  # no byte for this long from the forwarded port: the route is broken
PROBE_S = 5.0  # the LAN probe: a peer that cannot be reached within this is not worth waiting for


_SERVING: dict[str, asyncio.Event] = {}  # token -> set to stop that mirror


@op(ops.MODELS_SERVE_COPY, summary="serve one downloaded model through a token-protected loopback mirror "
                                   "until stopped (the direct route of a copy)")
async def serve_copy(ctx: OpContext, p: ServeCopyParams) -> ServeCopyResult:
    if p.stop:
        stop = _SERVING.get(p.token)
        if stop is not None:
            stop.set()
        return ServeCopyResult(stopped=stop is not None)
    from llorch_tui.pool.mirror import MirrorOptions, start_mirror

    host = "127.0.0.1"
    if p.bind is not None:
        try:
            host = check_lan_address(p.bind)
        except ValueError as e:
            raise LlorchError(ErrorCode.BAD_REQUEST, str(e), "set the pool's lan_address to its LAN IP") from None
    entry = await asyncio.to_thread(manifest, store_of(ctx), p.id, ctx.cancelled)  # downloaded, hashed
    try:
        runner, _, app = await start_mirror(ctx.settings, host, 0,
                                            MirrorOptions(token=p.token, rate_limit_bps=p.rate_limit_bps),
                                            only=frozenset({entry.id}))
    except OSError as e:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"cannot serve on {host}: {e.strerror or e}",
                          "is it one of this pool's addresses? check its lan_address (`ip addr` on the pool)") from None
    stop = _SERVING.setdefault(p.token, asyncio.Event())
    try:
        repo = next((r for r in app.index.repos().values() if r.model_id == entry.id), None)
        if repo is None:
            raise LlorchError(ErrorCode.NOT_DOWNLOADED, f"model {p.id} has no files the mirror can serve",
                              f"`llorch-pool models verify {p.id}` says what is wrong")
        ctx.emit("serving", MirrorServing(port=runner.addresses[0][1], repo=repo.repo, revision=repo.commit,
                                          host=host))
        seen, quiet_since = (-1, -1), time.monotonic()
        while not stop.is_set() and time.monotonic() - quiet_since < SERVE_IDLE_S:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), IDLE_CHECK_S)
            now = (app.stats.requests, app.stats.bytes_served)  # is anyone still fetching?
            if now != seen:
                seen, quiet_since = now, time.monotonic()
        return ServeCopyResult(bytes_served=app.stats.bytes_served)
    finally:
        _SERVING.pop(p.token, None)
        await runner.cleanup()


def _check_url(p: FetchParams) -> None:
    parts = urlsplit(p.url)
    if p.lan and parts.scheme == "http" and parts.hostname:
        try:  # the LAN route: the source's address as an IP literal, as the control plane checked it
            check_lan_address(parts.hostname)
            return
        except ValueError as e:
            raise LlorchError(ErrorCode.BAD_REQUEST, f"refusing to fetch from {p.url!r}: {e}") from None
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        # The token goes with the request: only ever to this machine's loopback, where the forward ends.
        raise LlorchError(ErrorCode.BAD_REQUEST, f"refusing to fetch from {p.url!r}: only http://127.0.0.1 URLs",
                          "the direct route fetches through a port forwarded to this pool's loopback")


async def _fetch(ctx: OpContext, p: FetchParams, inc: Incoming) -> FileFetched:
    f = inc.expected().get(p.file)
    if f is None:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"{p.file} is not a file of {p.id}")
    have = start = inc.have(f)
    if have >= f.size:
        return FileFetched(file=p.file, have=have, fetched=0)
    headers = {"Authorization": f"Bearer {p.token}", "Range": f"bytes={have}-{f.size - 1}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=STALL_S)
    last = 0.0
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(p.url, headers=headers, allow_redirects=False) as r:
            if r.status != 206:
                raise LlorchError(ErrorCode.NETWORK, f"the source's mirror answered {r.status} for {p.file} "
                                  f"(bytes {have}-)", "run the copy again; `--route relay` avoids the mirror",
                                  status=r.status)
            with inc.part(p.file).open("ab") as out:
                async for chunk in r.content.iter_chunked(READ_CHUNK):
                    chunk = chunk[:f.size - have]
                    await asyncio.to_thread(out.write, chunk)
                    have += len(chunk)
                    if time.monotonic() - last >= PROGRESS_EVERY_S or have >= f.size:
                        last = time.monotonic()
                        ctx.emit("progress", FileFetched(file=p.file, have=have, fetched=have - start))
                    if have >= f.size:
                        break
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise LlorchError(ErrorCode.NETWORK, f"fetching {p.file} from the source's mirror failed after "
                          f"{have - start} bytes: {type(exc).__name__}: {exc}",
                          "run the copy again: it resumes from the bytes received") from None
    if have < f.size:
        raise LlorchError(ErrorCode.NETWORK, f"the source's mirror ended {p.file} at byte {have} of {f.size}",
                          "run the copy again: it resumes from the bytes received")
    return FileFetched(file=p.file, have=have, fetched=have - start)


@op(ops.MODELS_RECEIVE_FETCH, summary="fetch the rest of a file being received from a loopback mirror URL "
                                      "(the direct route of a copy)")
async def receive_fetch(ctx: OpContext, p: FetchParams) -> FileFetched:
    _check_url(p)
    inc = Incoming(ctx.settings.paths, p.id, any_thread=True)
    await asyncio.to_thread(inc.acquire)
    try:
        return await _fetch(ctx, p, inc)
    finally:
        await asyncio.to_thread(inc.release)


@op(ops.MODELS_PROBE_FETCH, summary="check within seconds that the sender's LAN mirror answers (one byte of a file, "
                                    "with the copy's token): the LAN route's reachability probe")
async def probe_fetch(ctx: OpContext, p: FetchParams) -> MirrorReach:
    _check_url(p)
    headers = {"Authorization": f"Bearer {p.token}", "Range": "bytes=0-0"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_S)) as session, \
                session.get(p.url, headers=headers, allow_redirects=False) as r:
            await r.read()
            if r.status != 206:
                return MirrorReach(ok=False, reason=f"the mirror answered HTTP {r.status}")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return MirrorReach(ok=False, reason=f"{type(exc).__name__}: {exc}" if str(exc) else
                           f"no answer within {PROBE_S:.0f}s")
    return MirrorReach(ok=True)
