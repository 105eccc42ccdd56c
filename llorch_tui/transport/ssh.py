"""One long-lived asyncssh connection per pool: the agent session, one-shot commands, port forwards.

Why one connection: a fresh `ssh host cmd` costs 150-300 ms before the command even starts;
a line on a held channel costs well under a millisecond. Everything rides on it: the
`llorch-pool serve --stdio` session (one channel), doctor's one-shot commands (one channel
each, briefly) and every TCP connection to a worker (a direct-tcpip channel each). sshd
caps *session* channels per connection (MaxSessions, default 10): sessions share a semaphore of
that size. Forwarded TCP connections are channels too but MaxSessions does not count them
(measured: 30 direct-tcpip channels open on one connection next to 9 sessions), so they have a
bound of their own — sharing one pool would let idle keep-alive HTTP connections starve sessions.

Host keys are checked strictly against known_hosts; an unknown or changed key is refused
with its fingerprint and the command to accept it (ssh_errors.host_key_error).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

import asyncssh

from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.transport import ssh_errors
from llorch_tui.transport.base import AgentChannel, ReverseForward, RunResult, Transport
from llorch_tui.transport.ssh_channel import (SSHAgentChannel, _ChannelSlot, _with_session_retry,
                                              env_handshake, one_shot_command, remote_command)
from llorch_tui.transport.ssh_config import ConnectPlan, Endpoint, plan_connection

DEFAULT_MAX_CHANNELS = 10  # OpenSSH's default MaxSessions
DEFAULT_MAX_FORWARDS = 64  # concurrent forwarded TCP connections per pool
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 15.0


class _LossWatcher(asyncssh.SSHClient):
    def __init__(self, transport: "SSHTransport") -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport._lost(exc)


class SSHTransport(Transport):
    def __init__(self, pool: PoolConfig, *, max_channels: int = DEFAULT_MAX_CHANNELS,
                 max_forwards: int = DEFAULT_MAX_FORWARDS) -> None:
        super().__init__(pool)
        self.max_channels = max_channels
        self._conn: asyncssh.SSHClientConnection | None = None
        self._jump: asyncssh.SSHClientConnection | None = None
        self._plan: ConnectPlan | None = None
        self._channels = asyncio.Semaphore(max_channels)  # session channels (MaxSessions)
        self._forward_slots = asyncio.Semaphore(max_forwards)  # direct-tcpip channels
        self._ever_online = False
        self._connect_lock = asyncio.Lock()
        self._forwards: dict[int, asyncio.Server] = {}
        self._pipes: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- connection -----------------------------------------------------------------------
    @property
    def connection(self) -> asyncssh.SSHClientConnection | None:
        return self._conn

    async def connect(self) -> None:
        """Open the connection (no-op when it is up). Raises a typed LlorchError, never a raw asyncssh one."""
        async with self._connect_lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            self._closed = False
            self.set_state("reconnecting" if self._ever_online else "connecting")
            await self._drop_jump()  # a hop left from the connection that died
            try:
                self._plan = plan = plan_connection(self.pool)
                self._jump = await self._open_jump(plan)
                # An explicit hop chain is passed as the tunnel, which overrides a ProxyJump in the ssh config.
                self._conn = await self._open(plan.target, tunnel=self._jump, watch=True)
            except LlorchError as e:
                await self._drop_jump()
                self.set_state("offline", e.message)
                raise
            self._ever_online = True
            self.set_state("online")

    async def reconnect(self, attempts: int = 6, *, first_delay: float = BACKOFF_START_S) -> None:
        """Connect with exponential backoff and jitter. Host key and auth errors are not retried:
        waiting does not fix them. Raises the last error when every attempt failed."""
        delay = first_delay
        for i in range(attempts):
            try:
                await self.connect()
                return
            except LlorchError as e:
                if e.code in (ErrorCode.HOST_KEY_CHANGED, ErrorCode.HOST_KEY_UNKNOWN, ErrorCode.AUTH_FAILED) \
                        or i == attempts - 1 or self._closed:
                    raise
                self.set_state("reconnecting", e.message)
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _open_jump(self, plan: ConnectPlan) -> asyncssh.SSHClientConnection | None:
        if not plan.jump:
            return None
        jump = None
        for hop in plan.jump:
            jump = await self._open(hop, tunnel=jump)
        return jump

    async def _open(self, ep: Endpoint, tunnel: asyncssh.SSHClientConnection | None,
                    watch: bool = False) -> asyncssh.SSHClientConnection:
        port, real_host = ep.real_port, ep.real_host
        extra: dict[str, Any] = {"client_factory": lambda: _LossWatcher(self)} if watch else {}
        try:
            # Keyword arguments, not options=: connect()'s own defaults would override host, port and tunnel.
            conn = await asyncssh.connect(ep.host, tunnel=tunnel or (), **ep.kwargs, **extra)
        except asyncssh.HostKeyNotVerifiable:
            raise await self._host_key_error(real_host, port, ep.known_hosts_files, tunnel) from None
        except LlorchError:
            raise
        except (OSError, asyncssh.Error, asyncio.TimeoutError, TimeoutError) as e:
            raise ssh_errors.connect_error(self.pool, e, real_host, port) from None
        conn.set_extra_info(llorch_pool=self.pool.name)
        return conn

    async def _host_key_error(self, host: str, port: int, files: list[str],
                              tunnel: asyncssh.SSHClientConnection | None) -> LlorchError:
        """Fetch the offered key to show its fingerprint, and tell unknown from changed."""
        fingerprint = None
        with contextlib.suppress(Exception):
            key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port, tunnel=tunnel or ()),
                                         self.pool.connect_timeout_s)
            if key is not None:
                fingerprint = key.get_fingerprint("sha256")
        changed = False
        with contextlib.suppress(Exception):
            existing = [f for f in files if Path(f).exists()]
            if existing:
                trusted = asyncssh.read_known_hosts(existing).match(host, "", port)[0]
                changed = bool(trusted)
        return ssh_errors.host_key_error(self.pool, host, port, fingerprint, changed, files)

    def _lost(self, exc: Exception | None) -> None:
        """The connection dropped (keepalive timeout, reset, sshd gone): say so at once, not at the next call."""
        if not self._closed and self.state == "online":
            self.set_state("offline", f"connection lost: {exc}" if exc else "connection closed by the pool")

    async def _drop_jump(self) -> None:
        if self._jump is not None:
            self._jump.close()
            with contextlib.suppress(Exception):
                await self._jump.wait_closed()
            self._jump = None

    async def _live(self) -> asyncssh.SSHClientConnection:
        if self._conn is None or self._conn.is_closed():
            if self.state == "online":
                self.set_state("offline", "connection lost")
            await self.connect()
        assert self._conn is not None
        return self._conn

    async def _slot(self, sem: asyncio.Semaphore | None = None) -> _ChannelSlot:
        sem = sem or self._channels
        await sem.acquire()
        return _ChannelSlot(sem)

    # -- sessions -------------------------------------------------------------------------
    async def start_agent(self, argv: list[str], env: dict[str, str]) -> AgentChannel:
        conn = await self._live()
        command = remote_command(argv, env)
        slot = await self._slot()
        try:
            proc = await _with_session_retry(lambda: conn.create_process(command, encoding=None))
            proc.stdin.write(env_handshake(env))
        except (asyncssh.Error, OSError) as e:
            slot.release()
            raise self._lost_or(e) from None
        return SSHAgentChannel(proc, slot, command)

    async def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> RunResult:
        conn = await self._live()
        command = one_shot_command(argv, env)
        slot = await self._slot()
        proc: asyncssh.SSHClientProcess[bytes] | None = None
        try:
            proc = created = await _with_session_retry(lambda: conn.create_process(command, encoding=None))
            created.stdin.write(env_handshake(env or {}))
            r = await asyncio.wait_for(created.wait(check=False), timeout)
        except asyncio.TimeoutError:
            raise LlorchError(ErrorCode.TIMEOUT, f"pool {self.pool.name}: `{argv[0]}` did not finish within {timeout:.0f}s",
                              "the pool may be overloaded; try again or raise the timeout") from None
        except (asyncssh.Error, OSError) as e:
            raise self._lost_or(e) from None
        finally:
            if proc is not None and not proc.is_closing():
                # A timed-out or cancelled command must not keep running nor hold its session.
                with contextlib.suppress(Exception):
                    proc.terminate()  # sshd delivers it (OpenSSH >= 7.9 honours "signal" requests)
                proc.close()
            slot.release()
        rc = r.exit_status if r.exit_status is not None else (128 + 9 if r.exit_signal else -1)
        return RunResult(rc, _text(r.stdout), _text(r.stderr))

    def _lost_or(self, e: BaseException) -> LlorchError:
        if isinstance(e, asyncssh.ChannelOpenError):
            return LlorchError(ErrorCode.UNREACHABLE, f"pool {self.pool.name}: the server refused a new channel: {e.reason}",
                               "sshd may limit sessions (MaxSessions) or forbid forwarding (AllowTcpForwarding)")
        return ssh_errors.connection_lost(self.pool, e)

    async def put_file(self, local: str, remote: str) -> None:
        """SFTP over the pool's existing connection (no second login); `remote` is written whole or fails."""
        conn = await self._live()
        try:
            async with conn.start_sftp_client() as sftp:
                await sftp.put(local, remote)
        except asyncssh.SFTPError as e:
            raise LlorchError(ErrorCode.BAD_REQUEST, f"pool {self.pool.name}: copying {local} to {remote} failed: "
                              f"{e.reason}", "check the directory exists and is writable on the pool") from None
        except asyncssh.ChannelOpenError as e:
            raise LlorchError(ErrorCode.UNREACHABLE, f"pool {self.pool.name}: the server refused an SFTP session: "
                              f"{e.reason}", "enable sshd's sftp subsystem on the pool (`Subsystem sftp "
                              "internal-sftp` in sshd_config)") from None
        except (asyncssh.Error, OSError) as e:
            raise self._lost_or(e) from None

    # -- port forwarding ------------------------------------------------------------------
    async def forward_port(self, remote_port: int) -> int:
        """A local 127.0.0.1 port that reaches the pool's 127.0.0.1:remote_port (cached per port).

        Each accepted TCP connection becomes one direct-tcpip channel, opened on whatever
        connection is live at that moment: a cached port keeps working across reconnects.
        """
        await self._live()
        server = self._forwards.get(remote_port)
        if server is None:
            server = await asyncio.start_server(
                lambda r, w: self._pipe(r, w, remote_port), host="127.0.0.1", port=0)
            self._forwards[remote_port] = server
        return server.sockets[0].getsockname()[1]

    async def close_forward(self, remote_port: int) -> None:
        """Stop forwarding to remote_port (its worker stopped)."""
        server = self._forwards.pop(remote_port, None)
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def reverse_forward(self, local_port: int) -> ReverseForward:
        """An SSH remote forward: sshd listens on the pool's 127.0.0.1 (a free port) and sends each
        connection back over this connection to our 127.0.0.1:local_port."""
        conn = await self._live()
        try:
            listener = await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", local_port)
        except (asyncssh.Error, OSError) as e:
            raise LlorchError(ErrorCode.UNREACHABLE,
                              f"pool {self.pool.name}'s sshd refused a port forward to this machine: {e}",
                              "allow it in the pool's sshd_config (AllowTcpForwarding yes or remote), "
                              "or copy with --route relay") from None
        return ReverseForward(listener.get_port(), listener)

    def forwarded_ports(self) -> dict[int, int]:
        return {rp: s.sockets[0].getsockname()[1] for rp, s in self._forwards.items() if s.sockets}

    def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote_port: int) -> None:
        task = asyncio.create_task(self._pipe_one(reader, writer, remote_port))
        self._pipes.add(task)
        task.add_done_callback(self._pipes.discard)

    async def _pipe_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote_port: int) -> None:
        slot = await self._slot(self._forward_slots)
        try:
            conn = await self._live()
            r_reader, r_writer = await conn.open_connection("127.0.0.1", remote_port, encoding=None)
        except (LlorchError, asyncssh.Error, OSError):
            slot.release()
            writer.close()
            return
        try:
            await asyncio.gather(_copy(reader, r_writer), _copy(r_reader, writer))
        finally:
            slot.release()
            for w in (writer, r_writer):
                with contextlib.suppress(Exception):
                    w.close()

    # -- teardown -------------------------------------------------------------------------
    async def close(self) -> None:
        self._closed = True
        for port in list(self._forwards):
            await self.close_forward(port)
        for t in list(self._pipes):
            t.cancel()
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.wait_closed(), 5)
            self._conn = None
        await self._drop_jump()
        self.set_state("offline")


async def _copy(src: Any, dst: Any) -> None:
    with contextlib.suppress(Exception):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    with contextlib.suppress(Exception):
        dst.write_eof()


def _text(v: str | bytes | None) -> str:
    if v is None:
        return ""
    return v.decode(errors="replace") if isinstance(v, bytes) else v
