"""OpenAI-compatible routes: /v1/models, /v1/completions, /v1/chat/completions (plain and SSE).

The worker serves one model; the `model` field of a request is accepted as given (clients must
send one) and echoed back, so tools that use a catalog id or the path both work.
"""

from __future__ import annotations

import time
import uuid
from contextlib import aclosing
from typing import Any

from aiohttp import web

from .api import ChatRequest, CompletionRequest, StreamOptions
from .errors import ApiError
from .httpkit import (WorkerState, build_job, chat_prompt_of, collect, open_job_stream, read_request, ready_state,
                      send_sse, state_of)
from .openai_logprobs import chat_logprobs, completion_logprobs

_FINISH = {"stop": "stop", "length": "length", "cancelled": "stop"}


def _model_name(st: WorkerState) -> str:
    return st.engine.name if st.engine is not None else st.model_path.rstrip("/").rsplit("/", 1)[-1]


async def list_models(request: web.Request) -> web.Response:
    st = state_of(request)
    name = _model_name(st)
    return web.json_response({"object": "list", "data": [
        {"id": name, "object": "model", "created": int(st.started_wall), "owned_by": "llorch",
         "root": st.model_path}]})


def _usage(summary: dict[str, Any]) -> dict[str, int]:
    p, c = summary["prompt_tokens"], summary["tokens_generated"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _check_n(n: int | None) -> None:
    if n not in (None, 1):
        raise ApiError(400, "unsupported", f"n={n!r} is not supported; this worker returns one choice (n=1)",
                       hint="send n=1 (or leave it out) and repeat the request for more choices", field="n")


def _prompt_of(req: CompletionRequest, vocab_size: int) -> str | list[int]:
    """Text (a string or a list of one string) or token ids (a list of ints or a list of one such list)."""
    p = req.prompt
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]
    if isinstance(p, str):
        return p
    if p and not isinstance(p[0], int):  # several prompts in one request
        raise ApiError(400, "invalid_field", "field 'prompt' must be a string or a list of token ids "
                                             "(or a list of exactly one of these)",
                       hint="send one prompt per request", field="prompt")
    ids = [t for t in p if isinstance(t, int)]
    bad = next((i for i, t in enumerate(ids) if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise ApiError(400, "invalid_field",
                       f"prompt token {bad} is {ids[bad]}, outside this model's vocabulary (0..{vocab_size - 1})",
                       hint="send token ids of this model's tokenizer (see POST /tokenize)", field="prompt")
    return ids


def _logprobs_of(req: CompletionRequest, stream: bool) -> tuple[int | None, bool]:
    """(top-k or None, echo): the model bounds k; no echo while streaming."""
    echo = bool(req.echo)
    if stream and echo:
        raise ApiError(400, "unsupported", "echo is not supported with stream: true",
                       hint="send the request without stream to get the prompt back with its log-probabilities",
                       field="echo")
    return req.logprobs, echo


def _chat_logprobs_of(req: ChatRequest) -> int | None:
    """Chat's `logprobs: true` [+ `top_logprobs: k`] as top-k (0 without top_logprobs); None: not asked."""
    if req.top_logprobs is not None and not req.logprobs:
        raise ApiError(400, "invalid_field", "top_logprobs needs logprobs: true",
                       hint="send logprobs: true with top_logprobs", field="top_logprobs")
    return (req.top_logprobs or 0) if req.logprobs else None


def _logprobs_doc(st: WorkerState, s: dict[str, Any], k: int, echo: bool) -> dict[str, Any]:
    ids: list[int] = (s["prompt_ids"] if echo else []) + s["token_ids"]
    entries: list[Any] = ([None] + s["prompt_logprobs"] if echo else []) + s["token_logprobs"]
    return completion_logprobs(st.engine, ids, entries, k)


class _ChunkLogprobs:
    """Splits a streamed answer's log-probs over its chunks: each token event says how many tokens
    its text covers; the final chunk gets whatever is left (tokens whose text never showed, e.g. a
    stop string's)."""

    def __init__(self, st: WorkerState, job: Any, k: int, chat: bool) -> None:
        self.st, self.job, self.k, self.chat = st, job, k, chat
        self.sent = 0
        self.offset = 0  # characters of the completions tokens sent so far (text_offset)

    def _doc(self, ids: list[int], entries: list[Any]) -> dict[str, Any]:
        self.sent += len(ids)
        if self.chat:
            return chat_logprobs(self.st.engine, ids, entries, self.k)
        doc = completion_logprobs(self.st.engine, ids, entries, self.k, self.offset)
        self.offset += sum(len(t) for t in doc["tokens"])
        return doc

    def for_token(self, event: dict[str, Any]) -> dict[str, Any]:
        n = event["tokens"]  # entries below n were recorded before this event was emitted
        return self._doc(self.job.generated[self.sent:n], self.job.token_logprobs[self.sent:n])

    def for_done(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        ids, entries = summary["token_ids"][self.sent:], summary["token_logprobs"][self.sent:]
        return self._doc(ids, entries) if ids else None


async def completions(request: web.Request) -> web.StreamResponse:
    st = ready_state(request)
    req = await read_request(request, CompletionRequest)
    _check_n(req.n)
    prompt = _prompt_of(req, st.engine.vocab_size)
    stream = bool(req.stream)
    k, echo = _logprobs_of(req, stream)
    job = await build_job(st, prompt, req, max_tokens_default=16, temperature_default=1.0, stream=stream,
                          top_logprobs=k, echo=echo)
    cid, created, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), req.model or _model_name(st)

    def chunk(text: str, finish: str | None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": cid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}]}

    if not stream:
        s = await collect(st, job)
        text = s["text"]
        if echo:
            text = (prompt if isinstance(prompt, str) else st.engine.decode(prompt)) + text
        out = chunk(text, _FINISH.get(s["finish_reason"], "stop"))
        if k is not None:
            out["choices"][0]["logprobs"] = _logprobs_doc(st, s, k, echo)
        out["usage"] = _usage(s)
        return web.json_response(out)
    split = _ChunkLogprobs(st, job, k, chat=False) if k is not None else None
    return await _stream(request, st, job, lambda t, lp: chunk(t, None, lp),
                         lambda s, lp: chunk("", _FINISH.get(s["finish_reason"], "stop"), lp), req.stream_options, cid,
                         created, model, split)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    st = ready_state(request)
    req = await read_request(request, ChatRequest)
    _check_n(req.n)
    prompt = await chat_prompt_of(st, req.messages)
    stream = bool(req.stream)
    k = _chat_logprobs_of(req)
    job = await build_job(st, prompt, req, max_tokens_default=256, temperature_default=1.0, templated=True,
                          stream=stream, top_logprobs=k)
    cid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), req.model or _model_name(st)

    def chunk(delta: dict[str, Any], finish: str | None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

    if not stream:
        s = await collect(st, job)
        logprobs = chat_logprobs(st.engine, s["token_ids"], s["token_logprobs"], k) if k is not None else None
        return web.json_response({
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": s["text"]},
                         "logprobs": logprobs, "finish_reason": _FINISH.get(s["finish_reason"], "stop")}],
            "usage": _usage(s)})
    split = _ChunkLogprobs(st, job, k, chat=True) if k is not None else None
    return await _stream(request, st, job, lambda t, lp: chunk({"content": t}, None, lp),
                         lambda s, lp: chunk({}, _FINISH.get(s["finish_reason"], "stop"), lp), req.stream_options, cid,
                         created, model, split, first=chunk({"role": "assistant", "content": ""}, None))


async def _stream(request: web.Request, st: WorkerState, job: Any, token_chunk: Any, final_chunk: Any,
                  options: StreamOptions | None, cid: str, created: int, model: str, split: _ChunkLogprobs | None,
                  first: dict[str, Any] | None = None) -> web.StreamResponse:
    include_usage = options is not None and bool(options.include_usage)
    resp, stream = await open_job_stream(request, st, job)
    async with aclosing(stream) as events:
        if first is not None:
            await send_sse(resp, first)
        async for event in events:
            if event["type"] == "token":
                await send_sse(resp, token_chunk(event["text"], split.for_token(event) if split else None))
            elif event["type"] == "done":
                await send_sse(resp, final_chunk(event, split.for_done(event) if split else None))
                if include_usage:
                    obj = "chat.completion.chunk" if cid.startswith("chat") else "text_completion"
                    await send_sse(resp, {"id": cid, "object": obj, "created": created, "model": model,
                                          "choices": [], "usage": _usage(event)})
            else:
                await send_sse(resp, {"error": {"code": event.get("code", "internal"),
                                                "message": event.get("message", "generation failed")}})
    await send_sse(resp, "[DONE]")
    await resp.write_eof()
    return resp


def add_openai_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
