"""WorkerClient: the one HTTP client of an inference worker, used by `llorch jobs`, the matrix probes and
benchmark, the parity recorder and certificate, and the agent's health checks. Requests and answers are the worker's own models (`llorch_worker.api`,
pydantic only: importing it pulls no torch), so a renamed field fails mypy instead of a consumer.

    async with aiohttp.ClientSession() as session:
        worker = WorkerClient(session, await client.worker_url(rec.port), timeout=60)
        health = await worker.health()
        result = await worker.execute(ExecuteRequest(prompt="Hello", max_tokens=8, seed=1))

A 4xx/5xx answer raises WorkerHTTPError (status plus the worker's {code, message, hint}); an answer
that does not fit its model raises LlorchError(protocol_mismatch). Connection failures stay
aiohttp/asyncio errors: each caller decides what a lost worker means for it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Generic, TypeVar

import aiohttp
from llorch_worker.api import (CancelRequest, CancelResult, ChatCompletion, ChatRequest, Completion,
                               CompletionRequest, DetokenizeRequest, Detokenized, ErrorBody, ExecuteRequest,
                               ExecuteResult, Health, StreamEvent, Tokenized, TokenizeRequest, WorkerInfo)
from pydantic import BaseModel, ValidationError

from llorch_tui.errors import ErrorCode, LlorchError

A = TypeVar("A", bound=BaseModel)
MISMATCH_HINT = "install the same llorch-worker version on the pool as llorch here"


@dataclass(frozen=True)
class Timed(Generic[A]):
    """A streamed event and when its line arrived (`time.perf_counter()`), for TTFT/ITL measured by the client."""

    at: float
    event: A


class WorkerHTTPError(LlorchError):
    """The worker answered an error status; `worker_code` is its own code (oom, loading, invalid_field...)."""

    def __init__(self, status: int, worker_code: str, message: str, hint: str | None = None) -> None:
        super().__init__(ErrorCode.WORKER_FAILED, message, hint, status=status, worker_code=worker_code)
        self.status, self.worker_code = status, worker_code


def _parse(model: type[A], doc: object, what: str) -> A:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise LlorchError(ErrorCode.PROTOCOL_MISMATCH, f"{what}: the worker's answer does not fit: {where}: {first.get('msg')}",
                          "install the same llorch-worker version on the pool as llorch here") from None


class WorkerClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, timeout: float | None = None,
                 token: str | None = None) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        # Unset: the session's own timeout (aiohttp reads an explicit None as "no timeout at all").
        self._timeout: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout is not None else {}
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def _error(self, resp: aiohttp.ClientResponse, what: str) -> WorkerHTTPError:
        text = await resp.text(errors="replace")
        try:
            err = ErrorBody.model_validate_json(text).error
            return WorkerHTTPError(resp.status, err.code, f"{what} answered HTTP {resp.status}: {err.message}", err.hint)
        except ValidationError:
            return WorkerHTTPError(resp.status, "internal", f"{what} answered HTTP {resp.status}: {text[:300]}")

    async def _json(self, resp: aiohttp.ClientResponse, what: str) -> Any:
        if resp.status != 200:
            raise await self._error(resp, what)
        try:
            return await resp.json(content_type=None)
        except ValueError:
            raise LlorchError(ErrorCode.PROTOCOL_MISMATCH, f"{what}: the worker's answer is not JSON",
                              MISMATCH_HINT) from None

    async def _get(self, path: str, model: type[A]) -> A:
        async with self.session.get(f"{self.base}{path}", headers=self.headers, **self._timeout) as resp:
            return _parse(model, await self._json(resp, f"GET {path}"), f"GET {path}")

    async def _post(self, path: str, body: BaseModel, model: type[A]) -> A:
        payload = body.model_dump(mode="json", exclude_none=True)
        async with self.session.post(f"{self.base}{path}", json=payload, headers=self.headers,
                                     **self._timeout) as resp:
            return _parse(model, await self._json(resp, f"POST {path}"), f"POST {path}")

    async def health(self) -> Health:
        """GET /health: answers while loading too (status "loading")."""
        return await self._get("/health", Health)

    async def info(self) -> WorkerInfo | None:
        """GET /info, or None from a worker too old to have it (404)."""
        try:
            return await self._get("/info", WorkerInfo)
        except WorkerHTTPError as exc:
            if exc.status == 404:
                return None
            raise

    async def execute(self, req: ExecuteRequest) -> ExecuteResult:
        """One generation, answered when it is done."""
        return await self._post("/execute", req.model_copy(update={"stream": False}), ExecuteResult)

    async def _sse(self, path: str, body: BaseModel) -> AsyncIterator[tuple[float, Any]]:
        """The JSON documents of a server-sent event stream, each with its arrival time; stops at [DONE].
        Leaving the iteration early closes the connection, which cancels the job."""
        payload = body.model_dump(mode="json", exclude_none=True)
        async with self.session.post(f"{self.base}{path}", json=payload, headers=self.headers,
                                     **self._timeout) as resp:
            if resp.status != 200:
                raise await self._error(resp, f"POST {path}")
            async for raw in resp.content:
                at = time.perf_counter()
                line = raw.decode(errors="replace").rstrip("\r\n")
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    doc = json.loads(data)
                except ValueError:
                    raise LlorchError(ErrorCode.PROTOCOL_MISMATCH, f"the worker sent a malformed event: {line[:120]!r}",
                                      MISMATCH_HINT) from None
                yield at, doc

    async def execute_stream(self, req: ExecuteRequest) -> AsyncIterator[StreamEvent]:
        """A streamed generation: token events, then one done (read it with `ExecuteResult.model_validate`)
        or error event. Leaving the iteration early closes the connection, which cancels the job."""
        async for timed in self.execute_stream_timed(req):
            yield timed.event

    async def execute_stream_timed(self, req: ExecuteRequest) -> AsyncIterator[Timed[StreamEvent]]:
        """`execute_stream` with each event's arrival time (per-token timestamps for TTFT and ITL)."""
        async for at, doc in self._sse("/execute", req.model_copy(update={"stream": True})):
            yield Timed(at, _parse(StreamEvent, doc, "an /execute event"))

    async def completions(self, req: CompletionRequest) -> Completion:
        """POST /v1/completions without streaming (log-probs and echo when the request asks)."""
        return await self._post("/v1/completions", req.model_copy(update={"stream": False}), Completion)

    async def completions_stream(self, req: CompletionRequest) -> AsyncIterator[Timed[Completion]]:
        """A streamed /v1/completions: one chunk per piece of text, each with its arrival time; `usage` on the
        last one when `stream_options.include_usage`. An error the worker streams raises WorkerHTTPError."""
        async for at, doc in self._sse("/v1/completions", req.model_copy(update={"stream": True})):
            if isinstance(doc, dict) and "error" in doc:
                err = _parse(ErrorBody, doc, "a /v1/completions chunk").error
                raise WorkerHTTPError(200, err.code, f"POST /v1/completions failed while streaming: {err.message}",
                                      err.hint)
            yield Timed(at, _parse(Completion, doc, "a /v1/completions chunk"))

    async def chat(self, req: ChatRequest) -> ChatCompletion:
        """POST /v1/chat/completions without streaming."""
        return await self._post("/v1/chat/completions", req.model_copy(update={"stream": False}), ChatCompletion)

    async def tokenize(self, req: TokenizeRequest) -> Tokenized:
        """POST /tokenize: the ids of a text, or of a conversation as the chat template renders it."""
        return await self._post("/tokenize", req, Tokenized)

    async def detokenize(self, req: DetokenizeRequest) -> Detokenized:
        return await self._post("/detokenize", req, Detokenized)

    async def cancel(self, job_id: str) -> CancelResult:
        """POST /cancel; a job the worker no longer knows is WorkerHTTPError 404 (unknown_job)."""
        return await self._post("/cancel", CancelRequest(job_id=job_id), CancelResult)

    async def metrics(self) -> str:
        """GET /metrics: Prometheus text."""
        async with self.session.get(f"{self.base}/metrics", headers=self.headers, **self._timeout) as resp:
            if resp.status != 200:
                raise await self._error(resp, "GET /metrics")
            return await resp.text()
