"""A pool's proxy_jump may name another configured pool (no asyncssh import: used when loading a config)."""

from __future__ import annotations

from llorch_tui.config import Config
from llorch_tui.errors import ErrorCode, LlorchError


def with_jump_pools(config: Config) -> Config:
    """A pool's proxy_jump may name another configured pool: replace it by that pool's [user@]host[:port]."""
    pools = []
    for p in config.pools:
        jump = config.pool(p.proxy_jump) if p.proxy_jump else None
        if jump is not None and jump.name != p.name:
            if jump.transport != "ssh" or not jump.host:
                raise LlorchError(ErrorCode.CONFIG_INVALID,
                                  f"pool {p.name}: proxy_jump names pool {jump.name!r}, which is not an ssh pool",
                                  "proxy_jump takes an ssh pool's name or [user@]host[:port]")
            spec = (f"{jump.user}@" if jump.user else "") + jump.host + (f":{jump.port}" if jump.port else "")
            p = p.model_copy(update={"proxy_jump": spec})
        pools.append(p)
    return config.model_copy(update={"pools": pools})
