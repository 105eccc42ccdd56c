"""One long-lived asyncssh connection per pool: the agent session, one-shot commands, port forwards.

Why one connection: a fresh `ssh host cmd` costs 150-300 ms before the command even starts;
a line on a held channel costs well under a millisecond. Everything rides on it: the
`llorch-pool serve --stdio` session (one channel), doctor's one-shot commands (one channel
each, briefly) and every TCP connection to a worker (a direct-tcpip channel each). sshd
caps channels per connection (MaxSessions, default 10), so all of them share a semaphore.

Host keys are checked strictly against known_hosts; an unknown or changed key is refused
with its fingerprint and the command to accept it (ssh_errors.host_key_error).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import shlex
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import asyncssh

from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.transport import ssh_errors
from llorch_tui.transport.base import AgentChannel, RunResult, Transport
from llorch_tui.transport.ssh_config import ConnectPlan, Endpoint, plan_connection

STDERR_LINES = 50
DEFAULT_MAX_CHANNELS = 10  # OpenSSH's default MaxSessions
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 15.0
SESSION_RETRY_DELAYS_S = (0.02, 0.05, 0.1, 0.2)
T = TypeVar("T")


def remote_command(argv: list[str], env: dict[str, str] | None = None) -> str:
    """A shell command line for the pool: every value shlex-quoted, env as an `env K=V` prefix.

    sshd usually refuses client-sent environment (AcceptEnv), so variables travel in the
    command itself. A leading `~/` stays expandable by the remote shell.
    """
    words = [_quote(a) for a in argv]
    if env:
        for k in env:
            if not k.replace("_", "a").isalnum() or k[0].isdigit():
                raise LlorchError(ErrorCode.CONFIG_INVALID, f"invalid environment variable name {k!r}",
                                  "names may hold letters, digits and _ and must not start with a digit")
        words = ["env", *(shlex.quote(f"{k}={v}") for k, v in env.items()), *words]
    return " ".join(words)


def _quote(arg: str) -> str:
    if arg.startswith("~/"):
        return '"$HOME"/' + shlex.quote(arg[2:])
    return shlex.quote(arg)


class _ChannelSlot:
    """Holds one of the connection's channel slots until released (idempotent)."""

    def __init__(self, sem: asyncio.Semaphore) -> None:
        self._sem, self._held = sem, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._sem.release()


class SSHAgentChannel:
    """`llorch-pool serve --stdio` running in an SSH session channel."""

    def __init__(self, proc: asyncssh.SSHClientProcess[bytes], slot: _ChannelSlot, command: str) -> None:
        self.proc = proc
        self.command = command
        self._slot = slot
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._stderr_task = asyncio.create_task(self._collect_stderr())

    async def _collect_stderr(self) -> None:
        with contextlib.suppress(Exception):
            while line := await self.proc.stderr.readline():
                self._stderr.append(line.decode(errors="replace").rstrip())

    async def readline(self) -> bytes:
        try:
            line = await self.proc.stdout.readline()
        except (asyncssh.Error, OSError, asyncio.IncompleteReadError, BrokenPipeError):
            line = b""
        if not line:
            # Let stderr catch up so callers see why the agent ended (e.g. "command not found").
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), 1.0)
            self._slot.release()
        return line

    def write(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
        except (asyncssh.Error, OSError, BrokenPipeError) as e:
            raise LlorchError(ErrorCode.CONNECTION_LOST, f"cannot write to the pool agent: {e}",
                              "the SSH connection dropped; llorch reconnects on its own") from None

    async def drain(self) -> None:
        try:
            await self.proc.stdin.drain()
        except (asyncssh.Error, OSError, BrokenPipeError) as e:
            raise LlorchError(ErrorCode.CONNECTION_LOST, f"cannot write to the pool agent: {e}",
                              "the SSH connection dropped; llorch reconnects on its own") from None

    def exit_status(self) -> int | None:
        return self.proc.exit_status

    def agent_missing(self) -> bool:
        return ssh_errors.looks_like_missing_command(self.proc.exit_status, self.stderr_tail())

    async def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self.proc.stdin.write_eof()  # EOF: the service cancels its ops and exits by itself
            try:
                await asyncio.wait_for(self.proc.wait_closed(), 5)
            except (asyncio.TimeoutError, Exception):
                with contextlib.suppress(Exception):
                    self.proc.terminate()
                self.proc.close()
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(self.proc.wait_closed(), 2)
        finally:
            self._stderr_task.cancel()
            self._slot.release()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)


class SSHTransport(Transport):
    def __init__(self, pool: PoolConfig, *, max_channels: int = DEFAULT_MAX_CHANNELS) -> None:
        super().__init__(pool)
        self.max_channels = max_channels
        self._conn: asyncssh.SSHClientConnection | None = None
        self._jump: asyncssh.SSHClientConnection | None = None
        self._plan: ConnectPlan | None = None
        self._channels = asyncio.Semaphore(max_channels)
        self._connect_lock = asyncio.Lock()
        self._forwards: dict[int, asyncio.AbstractServer] = {}
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
            self.set_state("connecting" if self.state == "offline" else "reconnecting")
            try:
                self._plan = plan = plan_connection(self.pool)
                self._jump = await self._open_jump(plan)
                # An explicit hop chain is passed as the tunnel, which overrides a ProxyJump in the ssh config.
                self._conn = await self._open(plan.target, tunnel=self._jump)
            except LlorchError as e:
                await self._drop_jump()
                self.set_state("offline", e.message)
                raise
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

    async def _open(self, ep: Endpoint, tunnel: asyncssh.SSHClientConnection | None) -> asyncssh.SSHClientConnection:
        port, real_host = ep.real_port, ep.real_host
        try:
            # Keyword arguments, not options=: connect()'s own defaults would override host, port and tunnel.
            conn = await asyncssh.connect(ep.host, tunnel=tunnel or (), **ep.kwargs)
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

    async def _slot(self) -> _ChannelSlot:
        await self._channels.acquire()
        return _ChannelSlot(self._channels)

    # -- sessions -------------------------------------------------------------------------
    async def start_agent(self, argv: list[str], env: dict[str, str]) -> AgentChannel:
        conn = await self._live()
        command = remote_command(argv, env)
        slot = await self._slot()
        try:
            proc = await _with_session_retry(lambda: conn.create_process(command, encoding=None))
        except (asyncssh.Error, OSError) as e:
            slot.release()
            raise self._lost_or(e) from None
        return SSHAgentChannel(proc, slot, command)

    async def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> RunResult:
        conn = await self._live()
        command = remote_command(argv, env)
        slot = await self._slot()
        try:
            r = await asyncio.wait_for(_with_session_retry(lambda: conn.run(command, check=False)), timeout)
        except asyncio.TimeoutError:
            raise LlorchError(ErrorCode.TIMEOUT, f"pool {self.pool.name}: `{argv[0]}` did not finish within {timeout:.0f}s",
                              "the pool may be overloaded; try again or raise the timeout") from None
        except (asyncssh.Error, OSError) as e:
            raise self._lost_or(e) from None
        finally:
            slot.release()
        rc = r.exit_status if r.exit_status is not None else (128 + 9 if r.exit_signal else -1)
        return RunResult(rc, _text(r.stdout), _text(r.stderr))

    def _lost_or(self, e: BaseException) -> LlorchError:
        if isinstance(e, asyncssh.ChannelOpenError):
            return LlorchError(ErrorCode.UNREACHABLE, f"pool {self.pool.name}: the server refused a new channel: {e.reason}",
                               "sshd may limit sessions (MaxSessions) or forbid forwarding (AllowTcpForwarding)")
        return ssh_errors.connection_lost(self.pool, e)

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

    def forwarded_ports(self) -> dict[int, int]:
        return {rp: s.sockets[0].getsockname()[1] for rp, s in self._forwards.items() if s.sockets}

    def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote_port: int) -> None:
        task = asyncio.create_task(self._pipe_one(reader, writer, remote_port))
        self._pipes.add(task)
        task.add_done_callback(self._pipes.discard)

    async def _pipe_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote_port: int) -> None:
        slot = await self._slot()
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

    def drop_connection_for_test(self) -> None:
        """Abort the TCP connection as a network failure would (used by tests and the bench)."""
        if self._conn is not None:
            self._conn.abort()


async def _with_session_retry(open_fn: Callable[[], Awaitable[T]]) -> T:
    """sshd frees a closed session's slot a moment after the close reaches us, so a new session
    opened right then can be refused although we are under MaxSessions: retry briefly."""
    for delay in SESSION_RETRY_DELAYS_S:
        try:
            return await open_fn()
        except asyncssh.ChannelOpenError:
            await asyncio.sleep(delay)
    return await open_fn()


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
