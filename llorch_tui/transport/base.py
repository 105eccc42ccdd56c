"""The one interface every transport implements. Everything above it is the same for local and SSH."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol

from llorch_tui.config import PoolConfig

ConnState = Literal["connecting", "online", "offline", "reconnecting"]


class AgentChannel(Protocol):
    """A running `llorch-pool serve --stdio` on the pool."""

    async def readline(self) -> bytes: ...  # b"" at EOF

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def close(self) -> None: ...  # stop the agent process and wait for it

    def stderr_tail(self) -> str: ...


@dataclass
class RunResult:
    rc: int
    stdout: str
    stderr: str


class ReverseForward:
    """A listener on the pool (see Transport.reverse_forward); `close()` stops it (idempotent)."""

    def __init__(self, port: int, listener: Any = None) -> None:
        self.port = port
        self._listener = listener

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), 5)


class Transport(ABC):
    def __init__(self, pool: PoolConfig) -> None:
        self.pool = pool
        self.state: ConnState = "offline"
        self.last_error: str | None = None
        self._listeners: list[Callable[[ConnState, str | None], None]] = []

    def on_state_change(self, fn: Callable[[ConnState, str | None], None]) -> None:
        self._listeners.append(fn)

    def set_state(self, state: ConnState, error: str | None = None) -> None:
        self.state, self.last_error = state, error
        for fn in list(self._listeners):
            fn(state, error)

    def agent_argv(self, *args: str) -> list[str]:
        """The agent command for this pool (config may give a path or a command with arguments)."""
        argv = shlex.split(self.pool.agent_command)
        if self.pool.state_dir:
            argv += ["--state-dir", self.pool.state_dir]
        if self.pool.models_dir:
            argv += ["--models-dir", self.pool.models_dir]
        argv += ["--pool-id", self.pool.name]
        return argv + list(args)

    def agent_env(self) -> dict[str, str]:
        env = dict(self.pool.env)
        if self.pool.hf_endpoint:
            env["LLORCH_HF_ENDPOINT"] = self.pool.hf_endpoint
        return env

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def start_agent(self, argv: list[str], env: dict[str, str]) -> AgentChannel: ...

    @abstractmethod
    async def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> RunResult: ...

    @abstractmethod
    async def forward_port(self, remote_port: int) -> int: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def reverse_forward(self, local_port: int) -> "ReverseForward":
        """A port on the pool's 127.0.0.1 whose connections reach this machine's 127.0.0.1:local_port.
        Close it when done. The local transport's pool is this machine: the port itself."""
        return ReverseForward(local_port)

    async def put_file(self, local: str, remote: str) -> None:
        """Copy a file of this machine to `remote` (an absolute path) on the pool: SFTP over SSH."""
        raise NotImplementedError(f"{type(self).__name__} cannot copy files")
