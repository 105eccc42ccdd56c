"""Request reading (bodies become the request models of api.py, see validation.py), the checks that need
the loaded model, and the bridge from scheduler events to asyncio, shared by the native API (server.py)
and the OpenAI-compatible API (openai_api.py)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from .api import ChatMessage, GenerationParams
from .errors import STATUS_FOR_GENERATION_ERROR, ApiError
from .httpguard import DEFAULT_BODY_IDLE_S, DEFAULT_BODY_TOTAL_S, BodyTimeout, read_body
from .jobs import Event, Job
from .outbox import outbox_for
from .validation import parse

R = TypeVar("R", bound=BaseModel)


@dataclass
class WorkerState:
    """Everything the handlers share; `engine`/`scheduler` appear once loading finishes."""

    worker_id: str
    model_path: str
    backend: str
    token: str | None = None
    status: str = "loading"  # loading | ok | error
    error: dict[str, Any] | None = None
    engine: Any = None
    scheduler: Any = None
    metrics: Any = None
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    requests: int = 0
    stopping: bool = False
    dtype: str | None = None
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # per-process caches of optional routes (/info)


STATE_KEY = web.AppKey("state", WorkerState)


def state_of(request: web.Request) -> WorkerState:
    return request.app[STATE_KEY]


# a body may pause this long between bytes, and take this long in all, once the headers are in
BODY_TIMEOUT_S = float(os.environ.get("LLORCH_WORKER_BODY_TIMEOUT_S", str(DEFAULT_BODY_IDLE_S)))
BODY_TOTAL_S = float(os.environ.get("LLORCH_WORKER_BODY_TOTAL_S", str(DEFAULT_BODY_TOTAL_S)))
_PARSE_OFF_LOOP = 1 << 20  # bodies above 1 MiB are parsed in a thread: /health keeps answering


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        raw = await read_body(request, BODY_TIMEOUT_S, BODY_TOTAL_S)
    except BodyTimeout as e:
        raise ApiError(408, "request_timeout", e.message, hint="send the whole body without pausing") from None
    try:
        body = await asyncio.to_thread(json.loads, raw) if len(raw) > _PARSE_OFF_LOOP else json.loads(raw)
    except ValueError as e:  # not JSON, not UTF-8, or a number of over 4300 digits
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {e}"[:300],
                       hint="send a JSON object with Content-Type: application/json") from e
    except RecursionError:
        raise ApiError(400, "invalid_json", "the request body is nested too deeply to parse",
                       hint="send a flat JSON object (the API nests at most a few levels)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", f"the request body must be a JSON object, not {type(body).__name__}")
    return body


async def read_request(request: web.Request, model: type[R]) -> R:
    """The body as the route's request model (api.py): a clear 400 naming the field when it does not fit.
    A large body (a long list of token ids) is checked in a thread, like its parsing."""
    body = await read_json(request)
    if (request.content_length or 0) > _PARSE_OFF_LOOP:
        return await asyncio.to_thread(parse, model, body)
    return parse(model, body)


def logit_bias_of(params: GenerationParams, vocab_size: int) -> dict[int, float]:
    """OpenAI's `logit_bias` by token id (the model checked the values and the size; the ids need the vocabulary)."""
    out: dict[int, float] = {}
    for key, bias in (params.logit_bias or {}).items():
        tid = int(key) if key.isascii() and key.isdigit() and len(key) < 12 else -1
        if not 0 <= tid < vocab_size:
            raise ApiError(400, "invalid_field",
                           f"logit_bias key {key!r} is not a token id of this model (0..{vocab_size - 1})"[:300],
                           hint="send token ids of this model's tokenizer (see POST /tokenize)", field="logit_bias")
        out[tid] = float(bias)
    return out


def ready_state(request: web.Request) -> WorkerState:
    """The state, or a 503 while the model loads / after a failure / while shutting down."""
    st = state_of(request)
    if st.status == "loading":
        raise ApiError(503, "loading", "the model is still loading", hint="wait for /health status ok",
                       headers={"Retry-After": "1"})
    if st.status != "ok" or st.engine is None:
        raise ApiError(503, "not_ready", f"the worker is in state {st.status!r}")
    if st.stopping:
        raise ApiError(503, "shutting_down", "the worker is shutting down", headers={"Retry-After": "1"})
    return st


def check_prompt_size(st: WorkerState, chars: int) -> None:
    """Refuse text that cannot fit the context before any work is spent on it (tokenizing 15 MB
    takes seconds and leaves the process hundreds of MB larger)."""
    limit = st.engine.max_prompt_chars
    if chars > limit:
        raise ApiError(400, "prompt_too_long",
                       f"the prompt is {chars} characters; this model's context of {st.engine.context_length} "
                       f"tokens cannot hold more than {limit} characters", hint="shorten the prompt")


def messages_of(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """The chat as the template takes it: content parts reduced to their text."""
    out = []
    for m in messages:
        content = m.content
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p["text"] for p in content if p.get("type") == "text" and isinstance(p.get("text"), str))
        out.append({"role": m.role, "content": content or ""})
    if all(not m["content"] for m in out):
        raise ApiError(400, "empty_prompt", "every message is empty", hint="send at least one non-empty message")
    return out


async def chat_prompt_of(st: WorkerState, messages: list[ChatMessage]) -> str:
    """The request's `messages` rendered by the model's chat template (a transcript when it has none);
    shared by /v1/chat/completions, /execute and /tokenize, so all send the model the same prompt."""
    chat = messages_of(messages)
    check_prompt_size(st, sum(len(m["content"]) + len(m["role"]) for m in chat))
    try:  # in a thread: a template over a large conversation is not free
        return str(await asyncio.to_thread(st.engine.chat_prompt, chat))
    except Exception as e:  # a template can reject role orders etc.; that is the client's input
        raise ApiError(400, "invalid_messages", f"the chat template rejected the messages: {e}") from e


async def build_job(st: WorkerState, prompt: str | list[int], params: GenerationParams, *, max_tokens_default: int,
                    temperature_default: float, job_id: str | None = None, templated: bool = False,
                    stream: bool = True, top_logprobs: int | None = None, echo: bool = False) -> Job:
    """Validate generation parameters against the loaded model and make a Job (not yet submitted).
    `prompt` is text, or token ids used as they are. With `echo`, max_tokens may be 0: only the
    prompt's log-probs are computed (teacher forcing). Text is size-checked, then tokenized in a
    thread, so the event loop keeps answering."""
    eng = st.engine
    if prompt == "" or prompt == []:
        raise ApiError(400, "empty_prompt", "the prompt is empty", hint="send at least one character of text")
    if isinstance(prompt, str):
        check_prompt_size(st, len(prompt))
    budget = params.token_budget
    max_tokens = max_tokens_default if budget is None else budget
    if max_tokens < 0 or (max_tokens == 0 and not echo):
        raise ApiError(400, "invalid_max_tokens", f"max_tokens must be at least {0 if echo else 1}, got {max_tokens}",
                       hint="max_tokens 0 is allowed only with echo (prompt log-probs)" if max_tokens == 0 else None)
    if max_tokens > eng.context_length:
        raise ApiError(400, "invalid_max_tokens",
                       f"max_tokens {max_tokens} exceeds the model's context length of {eng.context_length} tokens")
    temperature = float(temperature_default if params.temperature is None else params.temperature)
    top_p = 1.0 if params.top_p is None else float(params.top_p)
    logit_bias = logit_bias_of(params, eng.vocab_size)
    if isinstance(prompt, list):
        ids = list(prompt)
    else:
        ids = await asyncio.to_thread(eng.encode, prompt, add_special_tokens=not templated)
    if not ids:
        raise ApiError(400, "empty_prompt", "the prompt encodes to zero tokens")
    if len(ids) >= eng.context_length:
        raise ApiError(400, "prompt_too_long",
                       f"the prompt is {len(ids)} tokens but the model's context is {eng.context_length} tokens "
                       "(at least one must remain for the answer)",
                       hint="shorten the prompt")
    queue: asyncio.Queue[Event] = asyncio.Queue()
    emit = outbox_for(asyncio.get_running_loop()).sender(queue)
    stop = [s for s in params.stop_list if s]
    job = Job(job_id=job_id or uuid.uuid4().hex, prompt_ids=ids, max_tokens=max_tokens, emit=emit,
              temperature=temperature, top_p=top_p, seed=params.seed, ignore_eos=bool(params.ignore_eos),
              stop=stop, incremental=stream or bool(stop), top_logprobs=top_logprobs,
              echo_logprobs=echo and top_logprobs is not None, logit_bias=logit_bias)
    job.queue = queue
    return job


def _submit(st: WorkerState, job: Job) -> None:
    st.scheduler.submit(job)  # a full queue or a duplicate job id raises its ApiError here
    st.requests += 1


async def run_events(st: WorkerState, job: Job, *, submitted: bool = False) -> AsyncGenerator[Event, None]:
    """Submit (unless `submitted`) and yield the job's events until done/error. If the consumer goes
    away (client disconnect cancels the handler, or the generator is closed early) the job is cancelled."""
    if not submitted:
        _submit(st, job)
    queue = job.queue
    if queue is None:
        raise RuntimeError("run_events needs a job built by build_job: it owns the job's event queue")
    finished = False
    try:
        while True:
            event = await queue.get()
            yield event
            if event["type"] in ("done", "error"):
                finished = True
                return
    finally:
        if not finished:
            st.scheduler.cancel(job.job_id)


async def collect(st: WorkerState, job: Job) -> Event:
    """Run a job to the end; the final event (done or error)."""
    last: Event = {}
    async for event in run_events(st, job):
        last = event
    if last.get("type") == "error":
        status = STATUS_FOR_GENERATION_ERROR.get(last.get("code", ""), 500)
        raise ApiError(status, last.get("code", "internal"), last.get("message", "generation failed"))
    return last


async def open_job_stream(request: web.Request, st: WorkerState,
                          job: Job) -> tuple[web.StreamResponse, AsyncGenerator[Event, None]]:
    """Start a streamed job: submit it, then send the SSE headers, and return both. Submitting first
    queues the request before the loop spends time on the response: under load a burst of streamed
    requests otherwise reached the scheduler spread out past its gather window, each then costing a
    prefill of its own. And a full queue is still a plain 503 answer, not an error inside a stream."""
    _submit(st, job)
    try:
        resp = await open_sse(request)
    except BaseException:  # the client left before the headers went out
        st.scheduler.cancel(job.job_id)
        raise
    return resp, run_events(st, job, submitted=True)


async def open_sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    return resp


async def send_sse(resp: web.StreamResponse, payload: Any) -> None:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    await resp.write(f"data: {data}\n\n".encode())
