"""Turn asyncssh / socket failures into LlorchErrors that say what failed, why, and what to do.

Kept apart from ssh.py so the mapping can be read (and tested) on its own.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
from pathlib import Path

import asyncssh

from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError

INSTALL_HINT = "pip install llorch llorch-worker"


def target(pool: PoolConfig, host: str | None = None, port: int | None = None) -> str:
    """user@host:port as the operator would recognise it."""
    h = host or pool.host or "?"
    user = f"{pool.user}@" if pool.user else ""
    return f"{user}{h}:{port or pool.port or 22}"


def known_hosts_entry_name(host: str, port: int) -> str:
    """The name a known_hosts line uses for host:port (OpenSSH brackets non-default ports)."""
    return host if port == 22 else f"[{host}]:{port}"


def connect_error(pool: PoolConfig, exc: BaseException, host: str, port: int) -> LlorchError:
    """Map a failure of asyncssh.connect (not host keys: see host_key_error)."""
    where = target(pool, host, port)
    if isinstance(exc, asyncssh.PermissionDenied):
        key = f" with {pool.identity_file}" if pool.identity_file else ""
        return LlorchError(
            ErrorCode.AUTH_FAILED,
            f"pool {pool.name}: authentication to {where} failed{key} ({exc.reason})",
            "check the user and key: the public key must be in the pool's ~/.ssh/authorized_keys; "
            f"try `ssh -p {port} {shlex.quote((pool.user + '@') if pool.user else '')}{host}` by hand; "
            "load the key into ssh-agent or set identity_file in the pool's config",
            pool=pool.name,
        )
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        why = f"no answer within {pool.connect_timeout_s:g} s"
    elif isinstance(exc, socket.gaierror):
        why = f"cannot resolve {host!r} ({exc.strerror})"
    elif isinstance(exc, ConnectionRefusedError):
        why = "connection refused: is sshd running on that port?"
    elif isinstance(exc, asyncssh.ConnectionLost):
        why = "the connection closed before the SSH handshake finished (a firewall, or not an SSH server?)"
    elif isinstance(exc, asyncssh.DisconnectError):
        why = f"the server closed the connection: {exc.reason}"
    elif isinstance(exc, OSError):
        why = exc.strerror or str(exc)
    else:
        why = f"{type(exc).__name__}: {exc}"
    return LlorchError(
        ErrorCode.UNREACHABLE,
        f"pool {pool.name}: cannot reach {where} — {why}",
        f"check the host is up and the address and port are right (try `ssh -p {port} {host}` by hand); "
        "the dashboard keeps retrying on its own",
        pool=pool.name,
    )


def host_key_error(pool: PoolConfig, host: str, port: int, fingerprint: str | None,
                   changed: bool, known_hosts: list[str]) -> LlorchError:
    """Refuse an unknown or changed host key, with its fingerprint and the exact command to accept it."""
    kh = known_hosts[0] if known_hosts else str(Path("~/.ssh/known_hosts").expanduser())
    name = known_hosts_entry_name(host, port)
    fp = fingerprint or "(could not fetch the key)"
    trust = f"llorch pool trust --host {shlex.quote(pool.name)}"
    scan = f"ssh-keyscan -p {port} {shlex.quote(host)} >> {shlex.quote(kh)}"
    if changed:
        return LlorchError(
            ErrorCode.HOST_KEY_CHANGED,
            f"pool {pool.name}: the host key of {name} CHANGED — it is now {fp} and does not match {kh}. "
            "This can be a re-installed machine, or someone intercepting the connection.",
            f"verify the fingerprint on the pool itself (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`); "
            f"if it is right, remove the old entry with `ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(kh)}` "
            f"and accept the new one with `{trust}`",
            pool=pool.name, fingerprint=fingerprint, known_hosts=kh,
        )
    return LlorchError(
        ErrorCode.HOST_KEY_UNKNOWN,
        f"pool {pool.name}: the host key of {name} is not in {kh} (fingerprint {fp}); refusing to connect",
        f"compare the fingerprint with the pool's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there), "
        f"then accept it with `{trust}` (or `{scan}`)",
        pool=pool.name, fingerprint=fingerprint, known_hosts=kh,
    )


def looks_like_missing_command(rc: int | None, stderr: str) -> bool:
    """A shell that could not find or run the command exits 126/127 and says so on stderr."""
    low = stderr.lower()
    return rc in (126, 127) or "command not found" in low or ": not found" in low or ("no such file or directory" in low and rc not in (0, None))


def connection_lost(pool: PoolConfig, exc: BaseException | None = None) -> LlorchError:
    why = f": {exc}" if exc else ""
    return LlorchError(
        ErrorCode.CONNECTION_LOST,
        f"pool {pool.name}: the SSH connection was lost{why}",
        "llorch reconnects on its own; retry the command once the pool shows online",
        pool=pool.name,
    )
