"""How the control plane reaches a pool: local subprocess or one long-lived SSH connection."""

from __future__ import annotations

from llorch_tui.config import PoolConfig
from llorch_tui.transport.base import Transport


def make_transport(pool: PoolConfig) -> Transport:
    if pool.transport == "local":
        from llorch_tui.transport.local import LocalTransport

        return LocalTransport(pool)
    from llorch_tui.transport.ssh import SSHTransport  # asyncssh is only imported when a pool needs it

    return SSHTransport(pool)
