"""`llorch pool trust --host H`: fetch a pool's host key, show its fingerprint, add it to known_hosts.

Trust on first use, but never silently: the caller shows the fingerprint and asks first, and a
key that differs from a known one is only replaced when asked to (--replace).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fsutil import file_lock, save_state_file
from llorch_tui.transport import ssh_errors
from llorch_tui.transport.ssh import SSHTransport
from llorch_tui.transport.ssh_config import plan_connection


@dataclass
class HostKeyInfo:
    pool: str
    host: str
    port: int
    entry_name: str  # as written in known_hosts: host or [host]:port
    key_line: str  # "<entry_name> <type> <base64>"
    fingerprint: str
    known_hosts: str
    status: str  # "trusted" (already), "unknown", "changed"


async def fetch_host_key(pool: PoolConfig) -> HostKeyInfo:
    plan = plan_connection(pool)
    transport = SSHTransport(pool)
    jump = None
    try:
        jump = await transport._open_jump(plan)  # hops are checked strictly like any connection
        ep = plan.target
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(ep.real_host, ep.real_port, tunnel=jump or ()), pool.connect_timeout_s)
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
            raise ssh_errors.connect_error(pool, e, ep.real_host, ep.real_port) from None
    finally:
        if jump is not None:
            jump.close()
    if key is None:
        raise LlorchError(ErrorCode.UNREACHABLE, f"pool {pool.name}: the server offered no host key")
    name = ssh_errors.known_hosts_entry_name(ep.real_host, ep.real_port)
    kh = ep.known_hosts_files[0]
    status = "unknown"
    existing = [f for f in ep.known_hosts_files if Path(f).is_file()]
    if existing:
        trusted = asyncssh.read_known_hosts(existing).match(ep.real_host, "", ep.real_port)[0]
        if trusted:
            status = "trusted" if any(k.public_data == key.public_data for k in trusted) else "changed"
    pub = key.export_public_key("openssh").decode().split()
    return HostKeyInfo(pool.name, ep.real_host, ep.real_port, name, f"{name} {pub[0]} {pub[1]}",
                       key.get_fingerprint("sha256"), kh, status)


def add_to_known_hosts(info: HostKeyInfo, replace: bool = False) -> None:
    """Append the key (atomically, under a lock); with replace, drop the host's other keys first."""
    if info.status == "trusted":
        return
    if info.status == "changed" and not replace:
        raise LlorchError(ErrorCode.HOST_KEY_CHANGED,
                          f"pool {info.pool}: {info.known_hosts} holds a different key for {info.entry_name}",
                          "verify the new fingerprint on the pool itself, then run again with --replace")
    path = Path(info.known_hosts)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".llorch.lock")):
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines()
        if replace:
            lines = [ln for ln in lines if not _names_host(ln, info.entry_name)]
        lines.append(info.key_line)
        save_state_file(path, "\n".join(lines) + "\n", "known_hosts file")
        with contextlib.suppress(OSError):
            path.chmod(0o600)


def _names_host(line: str, name: str) -> bool:
    parts = line.split()
    if not parts or parts[0].startswith("#") or parts[0].startswith("|"):
        return False  # hashed entries are left alone (ssh-keygen -R handles those)
    return name in parts[0].split(",")
