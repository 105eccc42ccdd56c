"""From a PoolConfig (+ ~/.ssh/config) to asyncssh connection options, strict about host keys.

Explicit pool fields (user, port, identity_file, known_hosts, proxy_jump) win over the ssh
config, which fills in the rest (HostName aliases, User, Port, IdentityFile, ProxyJump,
UserKnownHostsFile). An explicit proxy_jump is opened by us, hop by hop, with the same key and
known_hosts options as the target: asyncssh's own string tunnels would use none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
KEEPALIVE_COUNT_MAX = 3  # missed keepalives before the connection counts as dead


@dataclass
class Endpoint:
    """One host to connect to: the keyword arguments for asyncssh.connect, and the options they
    resolve to (read for error messages: the real HostName, Port and known_hosts files)."""

    host: str
    kwargs: dict[str, Any]
    options: asyncssh.SSHClientConnectionOptions
    known_hosts_files: list[str] = field(default_factory=list)  # where a trusted key would be looked up

    @property
    def real_host(self) -> str:
        return self.options.host or self.host

    @property
    def real_port(self) -> int:
        return self.options.port or 22


@dataclass
class ConnectPlan:
    target: Endpoint
    jump: list[Endpoint] = field(default_factory=list)


def _common(pool: PoolConfig) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "connect_timeout": pool.connect_timeout_s,
        "login_timeout": max(pool.connect_timeout_s, 10.0),
        "keepalive_interval": pool.keepalive_interval_s,
        "keepalive_count_max": KEEPALIVE_COUNT_MAX,
        "encoding": None,
    }
    if pool.ssh_config:
        path = Path(pool.ssh_config).expanduser()
        if not path.is_file():
            raise LlorchError(ErrorCode.CONFIG_INVALID, f"pool {pool.name}: ssh_config {path} does not exist",
                              "fix the path in the pool's config, or drop it to use ~/.ssh/config")
        kw["config"] = [str(path)]
    if pool.identity_file:
        key = Path(pool.identity_file).expanduser()
        if not key.is_file():
            raise LlorchError(ErrorCode.CONFIG_INVALID, f"pool {pool.name}: identity_file {key} does not exist",
                              "fix identity_file in the pool's config, or drop it to use ssh-agent and ~/.ssh/id_*")
        kw["client_keys"] = [str(key)]
    if pool.known_hosts:
        kw["known_hosts"] = [str(Path(pool.known_hosts).expanduser())]
    return kw


def _endpoint(host: str, kw: dict[str, Any]) -> Endpoint:
    try:
        opts = asyncssh.SSHClientConnectionOptions(host=host, **kw)
    except (ValueError, OSError, asyncssh.Error) as e:
        raise LlorchError(ErrorCode.CONFIG_INVALID, f"cannot use the SSH settings for {host}: {e}",
                          "check ~/.ssh/config (or the pool's ssh_config) and the key file") from None
    kh = opts.known_hosts
    if isinstance(kh, (str, Path)):
        files = [str(kh)]
    elif isinstance(kh, (list, tuple)) and kh:
        files = [str(Path(x).expanduser()) for x in kh if isinstance(x, (str, Path))]
    else:
        # None would switch host key checks off (`UserKnownHostsFile none`): llorch never does that silently.
        files = [str(Path(DEFAULT_KNOWN_HOSTS).expanduser())]
    existing = [f for f in files if Path(f).is_file()]
    # No file yet means nothing is trusted (b"" = an empty known_hosts), not "do not check".
    kw = {**kw, "known_hosts": existing if existing else b""}
    return Endpoint(host, kw, opts, files)


def parse_hops(spec: str) -> list[tuple[str | None, str, int | None]]:
    """`[user@]host[:port][,...]` (OpenSSH ProxyJump syntax) -> [(user, host, port)]."""
    hops = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        part = part.removeprefix("ssh://")
        user, _, hostport = part.rpartition("@")
        host, port = hostport, None
        if hostport.startswith("["):  # [v6addr]:port
            host, _, rest = hostport[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else None
        elif hostport.count(":") == 1:
            host, p = hostport.split(":")
            port = int(p)
        hops.append((user or None, host, port))
    return hops


def plan_connection(pool: PoolConfig) -> ConnectPlan:
    assert pool.host, "an ssh pool has a host (validated by PoolConfig)"
    kw = _common(pool)
    target_kw = dict(kw)
    if pool.user:
        target_kw["username"] = pool.user
    if pool.port:
        target_kw["port"] = pool.port
    jump: list[Endpoint] = []
    if pool.proxy_jump and pool.proxy_jump.lower() != "none":
        try:
            hops = parse_hops(pool.proxy_jump)
        except ValueError:
            raise LlorchError(ErrorCode.CONFIG_INVALID, f"pool {pool.name}: cannot parse proxy_jump {pool.proxy_jump!r}",
                              "use OpenSSH syntax: [user@]host[:port][,[user@]host2[:port]]") from None
        for user, host, port in hops:
            hop_kw = dict(kw)
            if user:
                hop_kw["username"] = user
            if port:
                hop_kw["port"] = port
            jump.append(_endpoint(host, hop_kw))
    return ConnectPlan(_endpoint(pool.host, target_kw), jump)
