"""Connection limits for an aiohttp server: an idle/header timeout, a cap on open connections (in
all and per client) and a body-read deadline.

Used by the worker and by the pool's model mirror (`llorch_tui.pool.mirror`), the two HTTP
servers llorch runs. Plain aiohttp keeps a connection that sends half a request line open for an
hour and accepts connections without limit, so a few hundred idle sockets pin file descriptors
and memory. Here:

* `idle_timeout_s`: a connection that has not completed a request's headers within this time
  (from its opening, or from the end of its previous response) is closed. aiohttp's keep-alive
  timer does this when it also runs from the connection's start, as it does in aiohttp >= 3.10.
* `max_connections`: a connection beyond the cap gets `503` + `Retry-After: 1` with a JSON body
  and is closed at once, instead of a silent hang.
* `max_connections_per_client`: the same per peer address, below the total, answered `429`: one
  client cannot take every slot and lock the others out. Clients behind one address (an SSH
  forward, a NAT) share its share.
* `read_body`: a request body must keep arriving (no gap longer than `body_idle_s`) and be complete
  within `body_total_s`: a slow but progressing upload finishes, a trickle does not hold a slot.

Also the bearer-token check both servers make. Importing this module needs only aiohttp (no
torch), so the agent's mirror can use it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web

DEFAULT_IDLE_TIMEOUT_S = 15.0
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_BODY_IDLE_S = 30.0  # longest gap without a byte while a body arrives
DEFAULT_BODY_TOTAL_S = 600.0  # a 16 MiB body at 28 KiB/s still makes it


def default_per_client(max_connections: int) -> int:
    """Half the total (at least 1): one client can never lock out every other."""
    return max(1, max_connections // 2)


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_client: int | None = None  # None: default_per_client(max_connections)

    @property
    def per_client(self) -> int:
        if self.max_connections_per_client is None:
            return default_per_client(self.max_connections)
        return min(self.max_connections_per_client, self.max_connections)

    def runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner` (the idle/header timeout)."""
        return {"keepalive_timeout": self.idle_timeout_s}


class BodyTimeout(Exception):
    """The body stalled (no byte for `body_idle_s`) or took longer than `body_total_s` in all."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def read_body(request: web.Request, idle_s: float = DEFAULT_BODY_IDLE_S,
                    total_s: float = DEFAULT_BODY_TOTAL_S) -> bytes:
    """`request.read()` (with its size limit) under a no-progress deadline and a total ceiling.
    Progress is the byte count the connection has fed the body's stream so far."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(request.read())
    start = loop.time()
    seen, last_progress = request.content.total_bytes, start
    try:
        while True:
            now = loop.time()
            wait = min(last_progress + idle_s, start + total_s) - now
            done, _ = await asyncio.wait({task}, timeout=max(0.0, min(wait, 1.0)))
            if done:
                return task.result()
            now = loop.time()
            if request.content.total_bytes != seen:
                seen, last_progress = request.content.total_bytes, now
            if now - start >= total_s:
                raise BodyTimeout(f"the request body took longer than {total_s:g} s in all "
                                  f"({seen} bytes arrived)")
            if now - last_progress >= idle_s:
                raise BodyTimeout(f"the request body stopped arriving: no byte for {idle_s:g} s "
                                  f"({seen} bytes arrived)")
    finally:
        if not task.done():
            task.cancel()


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" when there is none). The scheme
    is case-insensitive (RFC 7235): `bearer x` is the same credential as `Bearer x`."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison (no timing hint at how much of a guess was right)."""
    return hmac.compare_digest(given.encode(), token.encode())


class _Refuse(asyncio.Protocol):
    """Answers one over-the-cap connection (503: the server is full; 429: this client holds its
    share) and closes it. The client's request is read and dropped until it stops sending (at most
    LINGER_S): closing with unread bytes would reset the connection and lose the answer."""

    LINGER_S = 2.0

    def __init__(self, status: str, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        body = json.dumps({"error": {"code": self.code, "message": self.message,
                                     "hint": "retry in a moment, or close idle connections"}}).encode()
        head = (f"HTTP/1.1 {self.status}\r\nRetry-After: 1\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        transport.write(head + body)
        transport.write_eof()
        asyncio.get_running_loop().call_later(self.LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client is done: close


def _peer_of(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


class _Gate(asyncio.Protocol):
    """The protocol of each accepted connection: asyncio creates it before the peer address is
    known, so the decision (serve, or refuse with 429/503) is made in `connection_made`, where the
    transport is. Counting happens there too, synchronously, so a burst cannot slip past a cap."""

    def __init__(self, factory: _CappedFactory) -> None:
        self.factory = factory
        self.inner: asyncio.Protocol | None = None
        self.counted_peer: str | None = None  # set while this connection holds a place

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        f, peer = self.factory, _peer_of(transport)
        if f.live >= f.limits.max_connections:
            self.inner = _Refuse("503 Service Unavailable", "too_many_connections",
                                 f"the server already has {f.limits.max_connections} open connections")
        elif f.per_peer.get(peer, 0) >= f.limits.per_client:
            self.inner = _Refuse("429 Too Many Requests", "too_many_connections_from_client",
                                 f"{peer} already has {f.limits.per_client} open connections to this server "
                                 f"(the most one client may hold of its {f.limits.max_connections})")
        else:
            f.take(peer)
            self.counted_peer = peer
            self.inner = f.server()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted_peer is not None:
            self.factory.release(self.counted_peer)
            self.counted_peer = None
        assert self.inner is not None
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        assert self.inner is not None
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        assert self.inner is not None
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        assert self.inner is not None
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        assert self.inner is not None
        self.inner.resume_writing()


class _CappedFactory:
    def __init__(self, server: web.Server, limits: ConnectionLimits) -> None:
        self.server, self.limits, self.live = server, limits, 0
        self.per_peer: dict[str, int] = {}

    def take(self, peer: str) -> None:
        self.live += 1
        self.per_peer[peer] = self.per_peer.get(peer, 0) + 1

    def release(self, peer: str) -> None:
        self.live -= 1
        left = self.per_peer.get(peer, 1) - 1
        if left > 0:
            self.per_peer[peer] = left
        else:
            self.per_peer.pop(peer, None)

    def __call__(self) -> asyncio.BaseProtocol:
        return _Gate(self)


class LimitedTCPSite(web.TCPSite):
    """A TCPSite whose listening socket refuses connections beyond `limits.max_connections` (503)
    and beyond `limits.per_client` from one peer address (429)."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int | None, limits: ConnectionLimits,
                 sock: socket.socket | None = None, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.limits = limits
        self._sock = sock  # an already listening socket (inherited): served as it is, host/port unused

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        factory = _CappedFactory(server, self.limits)
        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock, ssl=self._ssl_context,
                                                    backlog=self._backlog)
            self._bound_port = self._sock.getsockname()[1]
            return
        self._server = await loop.create_server(
            factory, self._host, self._port,
            ssl=self._ssl_context, backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
