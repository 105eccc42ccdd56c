"""Which pool `--host H` means: a configured pool by name, else an ad-hoc SSH target ([user@]host[:port] or alias)."""

from __future__ import annotations

import re

from llorch_tui.config import Config, PoolConfig
from llorch_tui.config_load import load_config
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.transport.ssh_config import parse_hops


def load(config_path: str | None) -> Config:
    return with_jump_pools(load_config(config_path).config)


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


def resolve(config: Config, host: str) -> PoolConfig:
    """--host NAME: the configured pool NAME, or an SSH target not in the config (strict host keys still apply)."""
    pool = config.pool(host)
    if pool is not None:
        return pool
    if host == "local":
        return PoolConfig(name="local", transport="local")
    try:
        (user, hostname, port), = parse_hops(host)
    except ValueError:
        raise LlorchError(ErrorCode.NOT_FOUND, f"{host!r} is neither a configured pool nor [user@]host[:port]",
                          f"configured pools: {', '.join(p.name for p in config.pools) or '(none)'}") from None
    name = re.sub(r"[^A-Za-z0-9._-]", "-", hostname).strip("-.") or "pool"
    return PoolConfig(name=name, transport="ssh", host=hostname, user=user, port=port)


def all_pools(config: Config) -> list[PoolConfig]:
    return list(config.pools)
