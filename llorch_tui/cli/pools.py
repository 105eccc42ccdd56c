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
    unknown = LlorchError(ErrorCode.NOT_FOUND, f"{host!r} is neither a configured pool nor [user@]host[:port]",
                          f"configured pools: {', '.join(p.name for p in config.pools) or '(none)'}")
    try:
        (user, hostname, port), = parse_hops(host)
    except ValueError:
        raise unknown from None
    if not hostname or (port is not None and not 0 < port < 65536):
        raise unknown  # "me@" or "box:99999": an empty host or an impossible port
    # The pool's name must pass the id rules (it lands in paths): no "..", 1-128 characters.
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]", "-", hostname)).strip("-._")[:128] or "pool"
    return PoolConfig(name=name, transport="ssh", host=hostname, user=user, port=port)
