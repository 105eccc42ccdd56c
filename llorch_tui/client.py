"""PoolClient: the control plane's one way to talk to a pool agent, over any Transport.

It holds one `llorch-pool serve --stdio` session, multiplexes concurrent calls by request id,
routes streamed events to each call's callback, and turns error documents back into LlorchError.
Same `call(op, params, on_event)` shape as the in-process executor, so every caller is transport-blind.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool_api import PoolApi
from llorch_tui.protocol import CANCEL_OP, PROTOCOL_VERSION, ErrorMsg, EventMsg, Hello, ResultMsg
from llorch_tui.protocol.ops import EventSink
from llorch_tui.transport import make_transport
from llorch_tui.transport.base import AgentChannel, Transport

log = logging.getLogger("llorch.client")
HELLO_TIMEOUT_S = 60.0
# What the agent sends after its hello, told apart by `type`.
_AGENT_MESSAGE: TypeAdapter[EventMsg | ResultMsg | ErrorMsg] = TypeAdapter(
    Annotated[EventMsg | ResultMsg | ErrorMsg, Field(discriminator="type")])


class _Pending:
    def __init__(self, on_event: EventSink | None) -> None:
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.on_event = on_event


class PoolClient:
    def __init__(self, pool: PoolConfig, transport: Transport | None = None) -> None:
        self.pool = pool
        self.transport = transport or make_transport(pool)
        self.hello: Hello | None = None
        self._channel: AgentChannel | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._start_lock = asyncio.Lock()
        self._starting: AgentChannel | None = None
        self._write_lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.pool.name

    @property
    def api(self) -> PoolApi:
        """This pool's ops, typed (`client.api.workers.spawn(...) -> WorkerRecord`)."""
        return PoolApi(self)

    @property
    def connected(self) -> bool:
        return self._channel is not None and self._reader is not None and not self._reader.done()

    async def start(self) -> Hello:
        async with self._start_lock:
            if self.connected and self.hello is not None:
                return self.hello
            if self.transport.state != "online":
                self.transport.set_state("connecting")
            await self._connect_transport()
            channel = await self.transport.start_agent(self.transport.agent_argv("serve", "--stdio"),
                                                       self.transport.agent_env())
            # Kept while we wait for the hello, so close() can stop an agent that hangs before answering.
            self._starting = channel
            try:
                self.hello = await self._read_hello(channel)
            except BaseException:
                await channel.close()
                raise
            finally:
                self._starting = None
            self._channel = channel
            self._reader = asyncio.create_task(self._read_loop(channel))
            # Online means the agent answered, not merely that a process or a TCP session exists.
            if self.transport.state != "online":
                self.transport.set_state("online")
            return self.hello

    async def _drop_stale_session(self) -> None:
        channel, reader = self._channel, self._reader
        self._channel = None
        if reader is not None and not reader.done():
            reader.cancel()  # its finally fails the pending calls with connection_lost
            try:
                await reader
            except (asyncio.CancelledError, Exception):
                pass
        if channel is not None:
            try:
                await channel.close()
            except Exception:  # the connection under it is gone already
                pass

    async def _connect_transport(self) -> None:
        """After a lost session, reconnect with backoff (SSHTransport.reconnect) — the pool may be
        restarting; a first connect fails fast so a dead pool is reported at once."""
        reconnect = getattr(self.transport, "reconnect", None)
        if self.hello is not None and reconnect is not None:
            await reconnect()
        else:
            await self.transport.connect()

    async def _read_hello(self, channel: AgentChannel) -> Hello:
        try:
            line = await asyncio.wait_for(channel.readline(), HELLO_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise LlorchError(ErrorCode.TIMEOUT, f"pool {self.name}: the agent did not answer within {HELLO_TIMEOUT_S:.0f}s",
                              "run `llorch pool doctor --host " + self.name + "`") from None
        if not line:
            tail = channel.stderr_tail().strip()
            missing = getattr(channel, "agent_missing", None)  # SSH channels know the exit status
            if missing is not None and not missing():
                raise LlorchError(ErrorCode.INTERNAL,
                                  f"pool {self.name}: the agent started but exited before saying hello"
                                  + (f": {tail.splitlines()[-1]}" if tail else ""),
                                  f"run `{self.pool.agent_command} serve --stdio` on the pool to see the full error, "
                                  f"or `llorch pool doctor --host {self.name}`", stderr=tail)
            raise LlorchError(ErrorCode.AGENT_MISSING,
                              f"pool {self.name}: the agent exited before saying hello" + (f": {tail.splitlines()[-1]}" if tail else ""),
                              f"check agent_command ({self.pool.agent_command!r}) is installed on the pool: "
                              "pip install llorch llorch-worker", stderr=tail)
        try:
            doc = json.loads(line)
            hello = Hello.model_validate(doc)
        except (ValueError, TypeError) as exc:
            raise LlorchError(ErrorCode.PROTOCOL_MISMATCH, f"pool {self.name}: the agent's first line is not a hello: {line[:120]!r}",
                              "make sure nothing on the pool prints to stdout before the agent (shell rc files)") from exc
        if hello.v != PROTOCOL_VERSION:
            raise LlorchError(ErrorCode.PROTOCOL_MISMATCH,
                              f"pool {self.name}: agent {hello.agent_version} speaks protocol v{hello.v}, "
                              f"this control plane speaks v{PROTOCOL_VERSION}",
                              "install the same llorch version on both sides")
        return hello

    async def _read_loop(self, channel: AgentChannel) -> None:
        try:
            while line := await channel.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.warning("pool %s: non-JSON line from agent: %r", self.name, line[:200])
                    continue
                self._route(msg)
        except (ConnectionError, OSError) as exc:
            log.info("pool %s: channel error: %s", self.name, exc)
        finally:
            tail = channel.stderr_tail().strip()
            err = LlorchError(ErrorCode.CONNECTION_LOST, f"pool {self.name}: lost the agent session",
                              "the call was interrupted; retry it (the agent reconnects on the next call)",
                              stderr=tail[-2000:])
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(err)
            self._pending.clear()
            if self._channel is channel:  # the session died under us (not a close()): say so
                self._channel = None
                if self.transport.state == "online":
                    self.transport.set_state("offline", "the agent session ended"
                                             + (f": {tail.splitlines()[-1]}" if tail else ""))

    def _route(self, msg: object) -> None:
        try:
            doc = _AGENT_MESSAGE.validate_python(msg)
        except ValidationError as exc:
            # A broken answer fails its call (not the session); a broken event or stray line is skipped.
            raw: dict[str, Any] = msg if isinstance(msg, dict) else {}
            pending = self._pending.get(str(raw.get("id")))
            if pending is not None and raw.get("type") in ("result", "error"):
                self._pending.pop(str(raw.get("id")), None)
                if not pending.future.done():
                    pending.future.set_exception(LlorchError(
                        ErrorCode.PROTOCOL_MISMATCH, f"pool {self.name}: the agent's answer is not a protocol message: "
                        f"{exc.errors()[0].get('msg')}", "install the same llorch version on the pool and here"))
            else:
                log.warning("pool %s: ignored a message that is not a protocol message: %r", self.name, str(msg)[:200])
            return
        pending = self._pending.get(doc.id)
        if pending is None:
            return
        if isinstance(doc, EventMsg):
            if pending.on_event is not None:
                try:
                    pending.on_event(doc.event, doc.data)
                except Exception:  # a UI callback bug must not break the session
                    log.exception("event callback failed")
        elif isinstance(doc, ResultMsg):
            self._pending.pop(doc.id, None)
            if not pending.future.done():
                pending.future.set_result(doc.result)
        else:
            self._pending.pop(doc.id, None)
            if not pending.future.done():
                pending.future.set_exception(LlorchError.from_doc(doc.error))

    async def _send(self, doc: dict[str, Any]) -> None:
        if self._channel is None:
            raise LlorchError(ErrorCode.CONNECTION_LOST, f"pool {self.name}: not connected")
        async with self._write_lock:
            self._channel.write((json.dumps(doc) + "\n").encode())
            await self._channel.drain()

    async def call(self, op: str, params: dict[str, Any] | None = None, on_event: EventSink | None = None,
                   timeout: float | None = None) -> Any:
        if self.connected and self.transport.state == "offline":
            # The transport saw its connection drop (keepalive, reset) before our reader noticed EOF.
            await self._drop_stale_session()
        if not self.connected:
            await self.start()
        rid = str(next(self._ids))
        pending = _Pending(on_event)
        self._pending[rid] = pending
        try:
            await self._send({"v": PROTOCOL_VERSION, "id": rid, "op": op, "params": params or {}})
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            # Tell the agent to stop the work too: a cancelled download must not go on in the background.
            self._pending.pop(rid, None)
            if self.connected:
                try:
                    await self._send({"v": PROTOCOL_VERSION, "id": f"c{rid}", "op": CANCEL_OP, "params": {"target": rid}})
                except LlorchError:
                    pass
            raise
        finally:
            self._pending.pop(rid, None)

    async def worker_url(self, port: int) -> str:
        """Base URL reaching a worker on the pool's loopback (tunnelled for SSH pools)."""
        local = await self.transport.forward_port(port)
        return f"http://127.0.0.1:{local}"

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        starting, self._starting = self._starting, None
        for ch in (channel, starting):
            if ch is not None:
                await ch.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        await self.transport.close()
