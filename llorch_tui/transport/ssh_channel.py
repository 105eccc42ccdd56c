"""The pieces of an SSH session: the remote command line, channel slots, the agent channel.

Split from ssh.py (the connection itself) so each file says one thing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shlex
from typing import Awaitable, Callable, TypeVar

import asyncssh

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.transport import ssh_errors

STDERR_LINES = 50
EOF_SETTLE_S = 5.0  # upper bound on waiting for an ended agent's stderr and exit status
SESSION_RETRY_DELAYS_S = (0.02, 0.05, 0.1, 0.2)
T = TypeVar("T")


# The environment of a remote command arrives on its stdin, one `K=V` line each and an empty line
# last, read by shell builtins and exported before the command replaces the shell: values never
# appear in any process's argv (`ps`, /proc/PID/cmdline on the pool) nor in sshd's logs. sshd
# usually refuses client-sent variables (AcceptEnv), and a command-line `env K=V` shows them to
# every user of the pool. `read` takes a pipe byte by byte, so the command's stdin starts just
# after the empty line.
ENV_WRAPPER = 'while IFS= read -r kv && [ -n "$kv" ]; do export "$kv"; done; exec "$@"'


def remote_command(argv: list[str], env: dict[str, str] | None = None) -> str:
    """A shell command line for the pool, every value shlex-quoted. With `env`, the command reads
    its variables from stdin first: write `env_handshake(env)` before anything else. A leading
    `~/` stays expandable by the remote shell."""
    words = [_quote(a) for a in argv]
    if env:
        env_handshake(env)  # refuse a bad name or value before anything runs
        words = ["sh", "-c", shlex.quote(ENV_WRAPPER), "sh", *words]
    return " ".join(words)


def env_handshake(env: dict[str, str]) -> bytes:
    """What `remote_command(argv, env)` expects on stdin before the command's own input."""
    for k, v in env.items():
        if not k or not k.replace("_", "a").isalnum() or not k.isascii() or k[0].isdigit():
            raise LlorchError(ErrorCode.CONFIG_INVALID, f"invalid environment variable name {k!r}",
                              "names may hold letters, digits and _ and must not start with a digit")
        if "\n" in v or "\r" in v or "\0" in v:
            raise LlorchError(ErrorCode.CONFIG_INVALID, f"the value of environment variable {k} holds a line "
                              "break or NUL", "put a multi-line value in a file on the pool and pass its path")
    return "".join(f"{k}={v}\n" for k, v in env.items()).encode() + b"\n" if env else b""


# One-shot commands run under this POSIX sh wrapper: when the channel closes (we timed out, were
# cancelled, or the connection died) the watcher sees EOF on the session's stdin and stops the
# command. Needed because sshd refuses "signal" requests for root sessions (privilege separation),
# and a stray probe importing torch must not outlive its caller.
RUN_WRAPPER = (
    'exec 3<&0; "$@" & p=$!; '
    '( cat <&3 >/dev/null 2>&1; kill -TERM "$p" 2>/dev/null ) >/dev/null 2>&1 & w=$!; '
    'exec 3<&-; wait "$p"; rc=$?; kill "$w" 2>/dev/null; exit $rc'
)


def one_shot_command(argv: list[str], env: dict[str, str] | None = None) -> str:
    """remote_command for a command that must die with its channel (see RUN_WRAPPER). Its stdin
    (after `env_handshake(env)`) gets nothing."""
    return remote_command(["sh", "-c", RUN_WRAPPER, "sh", *argv], env)


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
            # Let stderr and the exit status catch up so callers see why the agent ended (e.g.
            # "command not found", rc 127): on a busy machine they arrive well after stdout's EOF.
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), EOF_SETTLE_S)
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self.proc.wait_closed(), EOF_SETTLE_S)
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


async def _with_session_retry(open_fn: Callable[[], Awaitable[T]]) -> T:
    """sshd frees a closed session's slot a moment after the close reaches us, so a new session
    opened right then can be refused although we are under MaxSessions: retry briefly."""
    for delay in SESSION_RETRY_DELAYS_S:
        try:
            return await open_fn()
        except asyncssh.ChannelOpenError:
            await asyncio.sleep(delay)
    return await open_fn()
