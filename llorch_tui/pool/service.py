"""`llorch-pool serve --stdio`: one long-lived agent per control session, JSON Lines on stdin/stdout.

Requests run concurrently as tasks; events and results are written as they come, each line
whole (one writer lock). stdout carries nothing but protocol lines: logs go to stderr.
EOF at stdin cancels everything still running and exits, so a dropped SSH channel leaves no orphan work.

Every line gets an answer and no line can stop the service: a line over MAX_LINE is skipped up
to its newline (never read as the start of another request), anything that is not a request
(not JSON, not UTF-8, nested too deeply, wrong types) gets a `bad_request` error naming the id
when one can be seen in the line's first bytes, and an unexpected failure while dispatching is
an `internal` error for that line only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from llorch_tui import __version__
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.ops import AgentSettings, OpContext, execute, load_ops
from llorch_tui.protocol import (CANCEL_OP, PROTOCOL_VERSION, CancelParams, ErrorDoc, ErrorMsg, EventMsg, Hello, Request,
                                 ResultMsg)

log = logging.getLogger("llorch.pool.service")
MAX_LINE = 16 * 1024 * 1024
# After stdin's EOF, cancelled ops get this long to finish their cleanup (a thread cannot be
# interrupted; ops poll ctx.cancelled) before the agent exits regardless.
EXIT_GRACE_S = 10.0
_ID_RE = re.compile(rb'"id"\s*:\s*"((?:[^"\\]|\\.){0,200})"')


class StdioService:
    def __init__(self, settings: AgentSettings, reader: asyncio.StreamReader, writer: Any) -> None:
        self.settings = settings
        self.reader = reader
        self.writer = writer
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.contexts: dict[str, OpContext] = {}
        self._lock = asyncio.Lock()

    def _send_now(self, msg: dict[str, Any]) -> None:
        self.writer.write((json.dumps(msg, separators=(",", ":"), default=str) + "\n").encode())

    async def send(self, msg: dict[str, Any]) -> None:
        async with self._lock:
            self._send_now(msg)
            await self.writer.drain()

    async def run(self) -> None:
        ops = load_ops()
        await self.send(Hello(agent_version=__version__, pool_id=self.settings.pool_id,
                              hostname=socket.gethostname(), ops=sorted(ops)).model_dump(mode="json"))
        try:
            while True:
                line = await self._next_line()
                if line is None:
                    break
                if not line.strip():
                    continue
                try:
                    self._dispatch(line)
                except Exception as exc:  # a bug in dispatching answers this line and serving goes on
                    log.exception("dispatching a request line failed")
                    self._reply_error(_best_effort_id(line), ErrorCode.INTERNAL,
                                      f"the agent could not handle this line: {type(exc).__name__}: {exc}",
                                      "this is a bug in llorch-pool; the pool's stderr has the traceback")
        finally:
            for ctx in list(self.contexts.values()):
                ctx.cancelled.set()
            for task in list(self.tasks.values()):
                task.cancel()
            if self.tasks:
                await asyncio.wait(list(self.tasks.values()), timeout=EXIT_GRACE_S)

    async def _next_line(self) -> bytes | None:
        """The next line (None at EOF). A line over MAX_LINE is read to its end and dropped, and
        answered with an error: its tail must not be taken for the next request."""
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # EOF; a last line without its newline still counts
            return exc.partial or None
        except asyncio.LimitOverrunError as exc:
            head = await self.reader.readexactly(exc.consumed)
        size, eof = len(head), False
        while True:
            try:
                size += len(await self.reader.readuntil(b"\n"))
                break
            except asyncio.LimitOverrunError as more:
                size += len(await self.reader.readexactly(more.consumed))
            except asyncio.IncompleteReadError as end:
                size, eof = size + len(end.partial), True
                break
        self._reply_error(_best_effort_id(head), ErrorCode.BAD_REQUEST,
                          f"request line of {size} bytes is longer than the limit of {MAX_LINE} bytes; it was skipped",
                          "send large inputs as files on the pool and pass their paths")
        return None if eof else b"\n"

    def _reply_error(self, rid: str, code: str, message: str, hint: str | None = None) -> None:
        doc = ErrorDoc(code=code, message=message, hint=hint)
        asyncio.ensure_future(self._send_quietly(ErrorMsg(id=rid, error=doc).model_dump(mode="json")))

    def _dispatch(self, line: bytes) -> None:
        try:
            req = Request.model_validate_json(line)
        except ValidationError as exc:
            self._reply_error(_best_effort_id(line), ErrorCode.BAD_REQUEST,
                              f"malformed request line: {exc.errors()[0]['msg']}"[:500],
                              "send one JSON object per line: {\"v\":1,\"id\":...,\"op\":...,\"params\":{}}")
            return
        if req.v != PROTOCOL_VERSION:
            doc = ErrorDoc(code=ErrorCode.PROTOCOL_MISMATCH,
                           message=f"request speaks protocol v{req.v}, this agent speaks v{PROTOCOL_VERSION}",
                           hint="install the same llorch version on the control machine and the pool")
            asyncio.ensure_future(self.send(ErrorMsg(id=req.id, error=doc).model_dump(mode="json")))
            return
        if req.op == CANCEL_OP:
            try:
                target = CancelParams.model_validate(req.params).target
            except ValidationError as exc:
                self._reply_error(req.id, ErrorCode.BAD_REQUEST, f"$cancel: {exc.errors()[0]['msg']}",
                                  "send {\"target\": ID}: the id of the call to cancel")
                return
            ctx = self.contexts.get(target)
            if ctx is not None:
                ctx.cancelled.set()
            task = self.tasks.get(target)
            if task is not None:
                task.cancel()
            asyncio.ensure_future(self.send(ResultMsg(id=req.id, result={"cancelled": task is not None}).model_dump(mode="json")))
            return
        if req.id in self.tasks:
            doc = ErrorDoc(code=ErrorCode.BAD_REQUEST, message=f"request id {req.id!r} is already running")
            asyncio.ensure_future(self.send(ErrorMsg(id=req.id, error=doc).model_dump(mode="json")))
            return
        task = asyncio.create_task(self._run_one(req))
        self.tasks[req.id] = task
        task.add_done_callback(functools.partial(self._cancelled_before_start, req.id, req.op))

    def _cancelled_before_start(self, rid: str, op_name: str, task: "asyncio.Task[None]") -> None:
        # A $cancel read in the same burst as its request cancels the task before its first step: the
        # coroutine never runs, so no reply and no cleanup would happen. Do both here.
        if not task.cancelled():
            return
        if self.tasks.get(rid) is task:
            self.tasks.pop(rid, None)
            self.contexts.pop(rid, None)
        doc = ErrorDoc(code=ErrorCode.CANCELLED, message=f"{op_name} cancelled")
        asyncio.ensure_future(self._send_quietly(ErrorMsg(id=rid, error=doc).model_dump(mode="json")))

    async def _send_quietly(self, msg: dict[str, Any]) -> None:
        try:
            await self.send(msg)
        except (ConnectionError, RuntimeError):  # the pipe may be gone at shutdown
            pass

    async def _run_one(self, req: Request) -> None:
        def sink(event: str, data: dict[str, Any]) -> None:
            # Events are written in order without awaiting: the lock-free write keeps emit synchronous.
            self._send_now(EventMsg(id=req.id, event=event, data=data).model_dump(mode="json"))

        ctx = OpContext(settings=self.settings, sink=sink, loop=asyncio.get_running_loop())
        self.contexts[req.id] = ctx
        try:
            result = await execute(req.op, req.params, ctx)
            await self.send(ResultMsg(id=req.id, result=result).model_dump(mode="json"))
        except asyncio.CancelledError:
            ctx.cancelled.set()
            doc = ErrorDoc(code=ErrorCode.CANCELLED, message=f"{req.op} cancelled")
            try:
                await self.send(ErrorMsg(id=req.id, error=doc).model_dump(mode="json"))
            except Exception:  # the pipe may be gone at shutdown
                pass
        except LlorchError as exc:
            await self.send(ErrorMsg(id=req.id, error=exc.to_doc()).model_dump(mode="json"))
        except Exception as exc:  # a bug must not kill the session: report it with its type
            log.exception("op %s failed", req.op)
            doc = ErrorDoc(code=ErrorCode.INTERNAL, message=f"{req.op}: {type(exc).__name__}: {exc}",
                           hint="this is a bug in llorch-pool; the pool's stderr has the traceback")
            await self.send(ErrorMsg(id=req.id, error=doc).model_dump(mode="json"))
        finally:
            self.tasks.pop(req.id, None)
            self.contexts.pop(req.id, None)


def _best_effort_id(line: bytes) -> str:
    """The request id of a line that is not a valid request, read from its first bytes without
    parsing the whole line (which may be huge or nested without end); "?" when none is seen."""
    m = _ID_RE.search(line[:4096])
    if m is None:
        return "?"
    try:
        return str(json.loads(b'"' + m.group(1) + b'"'))
    except ValueError:
        return m.group(1).decode("utf-8", "replace")


def run_stdio_service(settings: AgentSettings) -> None:
    """Serve until EOF, then exit within EXIT_GRACE_S even if an op's thread ignores its cancel
    (asyncio.run would wait for every executor thread, and a dropped session would leave the
    agent behind)."""
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix="llorch-op")
    loop.set_default_executor(executor)
    status = 0
    try:
        loop.run_until_complete(serve_stdio(settings))
    except BaseException:
        status = 1
        raise
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        executor.shutdown(wait=False, cancel_futures=True)
        loop.close()
        _leave_lingering_ops(status)


def _leave_lingering_ops(status: int) -> None:
    """Give op threads EXIT_GRACE_S to finish; past that, exit without them (an exception on its
    way out is logged first, since the interpreter will not get to print it)."""
    deadline = time.monotonic() + EXIT_GRACE_S
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        if status:
            log.error("the agent failed", exc_info=sys.exc_info()[1])
        log.warning("ops still running %.0f s after the session ended; exiting without them", EXIT_GRACE_S)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):  # stdout's pipe is closed with the loop
                stream.flush()
        os._exit(status)


async def serve_stdio(settings: AgentSettings) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    await StdioService(settings, reader, writer).run()
