"""The `local` pool: the agent as a child process. No SSH, no network: the embedded default."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import sys

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.transport.base import AgentChannel, RunResult, Transport

STDERR_LINES = 50


def _on_this_interpreter(argv: list[str]) -> list[str]:
    """The local pool's default agent runs on this interpreter: works from a venv that is not on PATH."""
    if argv and argv[0] == "llorch-pool" and shutil.which("llorch-pool") is None:
        return [sys.executable, "-m", "llorch_tui.pool.cli.main", *argv[1:]]
    return argv


class LocalAgentChannel:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._stderr_task = asyncio.create_task(self._collect_stderr())

    async def _collect_stderr(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())

    async def readline(self) -> bytes:
        assert self.proc.stdout is not None
        return await self.proc.stdout.readline()

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    async def drain(self) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.drain()

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # EOF: the service cancels its ops and exits by itself
                await asyncio.wait_for(self.proc.wait(), 5)
            except (asyncio.TimeoutError, ConnectionError, BrokenPipeError):
                self.proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self.proc.wait(), 5)
                except asyncio.TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()
        self._stderr_task.cancel()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)


class LocalTransport(Transport):
    async def connect(self) -> None:
        # Nothing to connect: the pool is "online" once its agent says hello (PoolClient sets it).
        return None

    def _resolve(self, argv: list[str]) -> list[str]:
        argv = _on_this_interpreter(argv)
        exe = argv[0]
        if os.sep not in exe and shutil.which(exe) is None:
            raise LlorchError(ErrorCode.AGENT_MISSING, f"the pool agent {exe!r} is not on PATH",
                              "install it: pip install -e . (from the llorch checkout), or set agent_command in the config")
        return argv

    async def start_agent(self, argv: list[str], env: dict[str, str]) -> AgentChannel:
        argv = self._resolve(argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **env}, limit=16 * 1024 * 1024,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise LlorchError(ErrorCode.AGENT_MISSING, f"cannot start the pool agent {argv[0]!r}: {exc.strerror}",
                              "install llorch (pip install -e .) or fix agent_command in the config") from None
        return LocalAgentChannel(proc)

    async def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> RunResult:
        argv = _on_this_interpreter(argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **(env or {})})
        except (FileNotFoundError, PermissionError) as exc:
            # What a shell on an SSH pool answers too: callers classify both the same way (exit 127 / 126).
            return RunResult(127 if isinstance(exc, FileNotFoundError) else 126, "",
                             f"{argv[0]}: {exc.strerror or 'command not found'}")
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            raise LlorchError(ErrorCode.TIMEOUT, f"{argv[0]} did not finish within {timeout:.0f}s",
                              "the machine may be overloaded; try again") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: the command must not outlive its caller
                proc.kill()
                await asyncio.shield(proc.wait())
        return RunResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))

    async def forward_port(self, remote_port: int) -> int:
        return remote_port

    async def put_file(self, local: str, remote: str) -> None:
        await asyncio.to_thread(shutil.copyfile, local, remote)

    async def close(self) -> None:
        self.set_state("offline")
