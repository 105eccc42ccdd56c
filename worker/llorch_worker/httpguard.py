"""Connection limits for an aiohttp server: an idle/header timeout and a cap on open connections.

Used by the worker and by the pool's model mirror (`llorch_tui.pool.mirror`), the two HTTP
servers llorch runs. Plain aiohttp keeps a connection that sends half a request line open for an
hour and accepts connections without limit, so a few hundred idle sockets pin file descriptors
and memory. Here:

* `idle_timeout_s`: a connection that has not completed a request's headers within this time
  (from its opening, or from the end of its previous response) is closed. aiohttp's keep-alive
  timer does this when it also runs from the connection's start, as it does in aiohttp >= 3.10.
* `max_connections`: a connection beyond the cap gets `503` + `Retry-After: 1` with a JSON body
  and is closed at once, instead of a silent hang.

Also the bearer-token check both servers make. Importing this module needs only aiohttp (no
torch), so the agent's mirror can use it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

DEFAULT_IDLE_TIMEOUT_S = 15.0
DEFAULT_MAX_CONNECTIONS = 256


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner` (the idle/header timeout)."""
        return {"keepalive_timeout": self.idle_timeout_s}


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" when there is none). The scheme
    is case-insensitive (RFC 7235): `bearer x` is the same credential as `Bearer x`."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison (no timing hint at how much of a guess was right)."""
    return hmac.compare_digest(given.encode(), token.encode())


class _Refuse(asyncio.Protocol):
    """Answers one over-the-cap connection with a 503 and closes it. The client's request is read
    and dropped until it stops sending (at most LINGER_S): closing with unread bytes would reset
    the connection and lose the answer."""

    LINGER_S = 2.0

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        body = json.dumps({"error": {"code": "too_many_connections",
                                     "message": f"the server already has {self.cap} open connections",
                                     "hint": "retry in a moment, or close idle connections"}}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        transport.write(head + body)
        transport.write_eof()
        asyncio.get_running_loop().call_later(self.LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client is done: close


class _Counted(asyncio.Protocol):
    """Forwards every transport callback to aiohttp's handler and counts the connection until it
    is lost (counted from the moment it is accepted, so a burst cannot slip past the cap)."""

    def __init__(self, inner: asyncio.Protocol, factory: _CappedFactory) -> None:
        self.inner, self.factory = inner, factory

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.factory.live -= 1
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _CappedFactory:
    def __init__(self, server: web.Server, cap: int) -> None:
        self.server, self.cap, self.live = server, cap, 0

    def __call__(self) -> asyncio.BaseProtocol:
        if self.live >= self.cap:
            return _Refuse(self.cap)
        self.live += 1
        return _Counted(self.server(), self)


class LimitedTCPSite(web.TCPSite):
    """A TCPSite whose listening socket refuses connections beyond `limits.max_connections`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            _CappedFactory(server, self.limits.max_connections), self._host, self._port,
            ssl=self._ssl_context, backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
