"""Which pool `--host H` means: a configured pool by name, else an ad-hoc SSH target ([user@]host[:port] or alias)."""

from __future__ import annotations

import re

from llorch_tui.config import Config, PoolConfig
from llorch_tui.config_load import load_config
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.transport.jumps import with_jump_pools
from llorch_tui.transport.ssh_config import parse_hops


def load(config_path: str | None) -> Config:
    return with_jump_pools(load_config(config_path).config)


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
