"""Fleet: one PoolClient per configured pool, connected concurrently, with per-pool connection state.

A dead or slow pool never blocks the others: each connects in its own task, and its failure is
recorded as state ("offline" + reason) for the dashboard and the matrix to show.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Callable

from llorch_tui.client import PoolClient
from llorch_tui.config import Config, PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool_api import PoolApi
from llorch_tui.transport.base import ConnState
from llorch_tui.transport.jumps import with_jump_pools

log = logging.getLogger("llorch.fleet")
ChangeFn = Callable[[str, ConnState, "str | None"], object]  # the return value is ignored


@dataclass
class PoolState:
    state: ConnState = "offline"
    error: str | None = None
    hint: str | None = None
    agent_version: str | None = None


class Fleet:
    def __init__(self, config: Config, client_factory: Callable[[PoolConfig], PoolClient] = PoolClient) -> None:
        # A pool's proxy_jump may name another pool; resolve it once, as the CLI does.
        config = with_jump_pools(config)
        self.config = config
        self._client_factory = client_factory
        self.clients: dict[str, PoolClient] = {p.name: client_factory(p) for p in config.pools}
        self.states: dict[str, PoolState] = {name: PoolState() for name in self.clients}
        self._listeners: list[ChangeFn] = []
        for name, client in self.clients.items():
            client.transport.on_state_change(functools.partial(self._set, name))

    def on_change(self, fn: ChangeFn) -> None:
        self._listeners.append(fn)

    def _set(self, name: str, state: ConnState, error: str | None = None, hint: str | None = None) -> None:
        ps = self.states[name]
        ps.state, ps.error = state, error
        if hint is not None or state == "online":
            ps.hint = hint
        for fn in list(self._listeners):
            try:
                fn(name, state, error)
            except Exception:
                log.exception("fleet listener failed")

    def state(self, name: str) -> PoolState:
        return self.states[name]

    def client(self, name: str) -> PoolClient:
        try:
            return self.clients[name]
        except KeyError:
            raise LlorchError(ErrorCode.NOT_FOUND, f"no pool named {name!r} in the configuration",
                              f"configured pools: {', '.join(self.clients) or '(none)'}") from None

    async def connect(self, name: str) -> bool:
        client = self.client(name)
        self._set(name, "connecting")
        try:
            hello = await client.start()
        except LlorchError as exc:
            self._set(name, "offline", exc.message, exc.hint)
            return False
        except (OSError, asyncio.TimeoutError) as exc:
            self._set(name, "offline", f"{type(exc).__name__}: {exc}")
            return False
        self.states[name].agent_version = hello.agent_version
        self._set(name, "online")
        return True

    async def start(self, names: list[str] | None = None) -> dict[str, bool]:
        targets = names or list(self.clients)
        results = await asyncio.gather(*(self.connect(n) for n in targets))
        return dict(zip(targets, results))

    def online(self) -> list[str]:
        return [n for n, s in self.states.items() if s.state == "online"]

    async def reconfigure(self, pool: PoolConfig) -> None:
        """New settings for one configured pool (a new agent_command after an install): its connection is
        closed, and the next connect uses them."""
        old = self.client(pool.name)
        await old.close()
        pools = [pool if p.name == pool.name else p for p in self.config.pools]
        self.config = with_jump_pools(self.config.model_copy(update={"pools": pools}))
        client = self._client_factory(next(p for p in self.config.pools if p.name == pool.name))
        client.transport.on_state_change(functools.partial(self._set, pool.name))
        self.clients[pool.name] = client

    def api(self, pool: str) -> PoolApi:
        """The typed ops of one pool (`fleet.api("gpu1").models.list() -> Catalog`)."""
        return self.client(pool).api

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients.values()), return_exceptions=True)
