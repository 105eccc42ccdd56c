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

from .errors import ApiError
from .httpkit import (WorkerState, build_job, chat_prompt_of, collect, get_bool, get_int, open_sse, read_json,
                      ready_state, run_events, send_sse, state_of)
from .logprobs import MAX_TOP_LOGPROBS

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


def _check_n(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n not in (None, 1):
        raise ApiError(400, "unsupported", f"n={n!r} is not supported; this worker returns one choice (n=1)")


def _prompt_of(body: dict[str, Any], vocab_size: int) -> str | list[int]:
    """Text (a string or a list of one string) or token ids (a list of ints or a list of one such list)."""
    if "prompt" not in body or body["prompt"] is None:
        raise ApiError(400, "missing_field", "field 'prompt' is required")
    p = body["prompt"]
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]
    if isinstance(p, str):
        return p
    if isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
        bad = next((i for i, t in enumerate(p) if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise ApiError(400, "invalid_field",
                           f"prompt token {bad} is {p[bad]}, outside this model's vocabulary (0..{vocab_size - 1})",
                           hint="send token ids of this model's tokenizer (see POST /tokenize)")
        return list(p)
    raise ApiError(400, "invalid_field", "field 'prompt' must be a string or a list of token ids "
                                         "(or a list of exactly one of these)")


def _logprobs_of(body: dict[str, Any], stream: bool) -> tuple[int | None, bool]:
    """(top-k or None, echo), validated: k in 0..MAX_TOP_LOGPROBS, no log-probs while streaming."""
    k = get_int(body, "logprobs", None)
    if k is not None and not 0 <= k <= MAX_TOP_LOGPROBS:
        raise ApiError(400, "invalid_field", f"logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {k}",
                       hint=f"ask for at most the top {MAX_TOP_LOGPROBS} alternatives per token")
    echo = get_bool(body, "echo")
    if stream and (k is not None or echo):
        raise ApiError(400, "unsupported", "logprobs and echo are not supported with stream: true",
                       hint="send the request without stream to get log-probabilities")
    return k, echo


def _logprobs_doc(st: WorkerState, s: dict[str, Any], k: int, echo: bool) -> dict[str, Any]:
    """The legacy OpenAI completions `logprobs` object, plus token ids (llorch's extension: a token's
    text is ambiguous, its id is not)."""
    eng = st.engine
    ids: list[int] = (s["prompt_ids"] if echo else []) + s["token_ids"]
    entries: list[Any] = ([None] + s["prompt_logprobs"] if echo else []) + s["token_logprobs"]
    tokens = [eng.token_text(t) for t in ids]
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    top_docs: list[dict[str, float] | None] = []
    top_ids: list[list[dict[str, Any]] | None] = []
    for e in entries:
        if e is None:
            top_docs.append(None)
            top_ids.append(None)
            continue
        doc: dict[str, float] = {}
        for tid, lp in e[1]:
            doc.setdefault(eng.token_text(tid), lp)  # two ids with the same text: the likelier one
        top_docs.append(doc)
        top_ids.append([{"token_id": tid, "token": eng.token_text(tid), "logprob": lp} for tid, lp in e[1]])
    return {"tokens": tokens, "token_logprobs": [None if e is None else e[0] for e in entries],
            "top_logprobs": top_docs if k > 0 else [None if e is None else {} for e in entries],
            "text_offset": offsets, "token_ids": ids, "top_token_logprobs": top_ids if k > 0 else None}


async def completions(request: web.Request) -> web.StreamResponse:
    st = ready_state(request)
    body = await read_json(request)
    _check_n(body)
    prompt = _prompt_of(body, st.engine.vocab_size)
    stream = get_bool(body, "stream")
    k, echo = _logprobs_of(body, stream)
    job = await build_job(st, prompt, body, max_tokens_default=16, temperature_default=1.0, stream=stream,
                          top_logprobs=k, echo=echo)
    cid, created, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), body.get("model") or _model_name(st)

    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        return {"id": cid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}

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
    return await _stream(request, st, job, lambda t: chunk(t, None),
                         lambda s: chunk("", _FINISH.get(s["finish_reason"], "stop")), body, cid, created, model)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    st = ready_state(request)
    body = await read_json(request)
    _check_n(body)
    prompt = await chat_prompt_of(st, body)
    stream = get_bool(body, "stream")
    job = await build_job(st, prompt, body, max_tokens_default=256, temperature_default=1.0, templated=True,
                          stream=stream)
    cid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.get("model") or _model_name(st)

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    if not stream:
        s = await collect(st, job)
        return web.json_response({
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": s["text"]},
                         "logprobs": None, "finish_reason": _FINISH.get(s["finish_reason"], "stop")}],
            "usage": _usage(s)})
    return await _stream(request, st, job, lambda t: chunk({"content": t}, None),
                         lambda s: chunk({}, _FINISH.get(s["finish_reason"], "stop")), body, cid, created, model,
                         first=chunk({"role": "assistant", "content": ""}, None))


async def _stream(request: web.Request, st: WorkerState, job: Any, token_chunk: Any, final_chunk: Any,
                  body: dict[str, Any], cid: str, created: int, model: str,
                  first: dict[str, Any] | None = None) -> web.StreamResponse:
    opts = body.get("stream_options") or {}
    include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
    resp = await open_sse(request)
    if first is not None:
        await send_sse(resp, first)
    async with aclosing(run_events(st, job)) as events:
        async for event in events:
            if event["type"] == "token":
                await send_sse(resp, token_chunk(event["text"]))
            elif event["type"] == "done":
                await send_sse(resp, final_chunk(event))
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
