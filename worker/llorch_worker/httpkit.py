"""Request parsing, validation and the bridge from scheduler events to asyncio, shared by the
native API (server.py) and the OpenAI-compatible API (openai_api.py)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .api import LOGIT_BIAS_MAX
from .errors import STATUS_FOR_GENERATION_ERROR, ApiError
from .httpguard import DEFAULT_BODY_IDLE_S, DEFAULT_BODY_TOTAL_S, BodyTimeout, read_body
from .jobs import Event, Job
from .sampling import SEED_MAX, SEED_MIN


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


def _type_error(name: str, want: str, value: Any) -> ApiError:
    return ApiError(400, "invalid_field", f"field {name!r} must be {want}, got {type(value).__name__} {value!r}"[:300])


def get_int(body: dict[str, Any], name: str, default: int | None, *, required: bool = False) -> int | None:
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, "missing_field", f"field {name!r} is required")
        return default
    v = body[name]
    if isinstance(v, bool) or not isinstance(v, int):
        raise _type_error(name, "an integer", v)
    return v


def get_int_range(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    v = get_int(body, name, None)
    if v is not None and not lo <= v <= hi:
        raise ApiError(400, "invalid_field", f"field {name!r} must be between {lo} and {hi}, got {v}"[:300])
    return v


def get_logit_bias(body: dict[str, Any], vocab_size: int) -> dict[int, float]:
    """OpenAI's `logit_bias`: {"token id": bias in -100..100}, added to that token's logit."""
    raw = body.get("logit_bias")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _type_error("logit_bias", 'an object {"token id": bias}', raw)
    if len(raw) > LOGIT_BIAS_MAX:
        raise ApiError(400, "invalid_field", f"field 'logit_bias' has {len(raw)} entries; at most {LOGIT_BIAS_MAX}")
    out: dict[int, float] = {}
    for key, bias in raw.items():
        tid = int(key) if isinstance(key, str) and key.isascii() and key.isdigit() and len(key) < 12 else -1
        if not 0 <= tid < vocab_size:
            raise ApiError(400, "invalid_field",
                           f"logit_bias key {key!r} is not a token id of this model (0..{vocab_size - 1})"[:300])
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
            raise ApiError(400, "invalid_field", f"logit_bias[{key!r}] must be a number from -100 to 100, got {bias!r}"[:300])
        out[tid] = float(bias)
    return out



def get_float(body: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _type_error(name, "a number", v)
    if not lo <= v <= hi:
        raise ApiError(400, "invalid_field", f"field {name!r} must be between {lo} and {hi}, got {v}")
    return float(v)


def get_bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    v = body.get(name, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _type_error(name, "true or false", v)
    return v


def get_str(body: dict[str, Any], name: str, default: str | None = None, *, required: bool = False) -> str | None:
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, "missing_field", f"field {name!r} is required")
        return default
    v = body[name]
    if not isinstance(v, str):
        raise _type_error(name, "a string", v)
    return v


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


def messages_of(body: dict[str, Any]) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if msgs is None:
        raise ApiError(400, "missing_field", "field 'messages' is required")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "invalid_field", "field 'messages' must be a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, "invalid_field", f"messages[{i}] must be an object with a string 'role'")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ApiError(400, "invalid_field", f"messages[{i}].content must be a string or a list of text parts")
        out.append({"role": m["role"], "content": content})
    if all(not m["content"] for m in out):
        raise ApiError(400, "empty_prompt", "every message is empty", hint="send at least one non-empty message")
    return out


async def chat_prompt_of(st: WorkerState, body: dict[str, Any]) -> str:
    """The request's `messages` rendered by the model's chat template (a transcript when it has none);
    shared by /v1/chat/completions and /execute, so both routes send the model the same prompt."""
    messages = messages_of(body)
    check_prompt_size(st, sum(len(m["content"]) + len(m["role"]) for m in messages))
    try:  # in a thread: a template over a large conversation is not free
        return str(await asyncio.to_thread(st.engine.chat_prompt, messages))
    except Exception as e:  # a template can reject role orders etc.; that is the client's input
        raise ApiError(400, "invalid_messages", f"the chat template rejected the messages: {e}") from e


async def build_job(st: WorkerState, prompt: str | list[int], body: dict[str, Any], *, max_tokens_default: int,
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
    max_tokens = get_int(body, "max_tokens", max_tokens_default)
    if body.get("max_completion_tokens") is not None:
        max_tokens = get_int(body, "max_completion_tokens", max_tokens_default)
    assert max_tokens is not None
    if max_tokens < 0 or (max_tokens == 0 and not echo):
        raise ApiError(400, "invalid_max_tokens", f"max_tokens must be at least {0 if echo else 1}, got {max_tokens}",
                       hint="max_tokens 0 is allowed only with echo (prompt log-probs)" if max_tokens == 0 else None)
    if max_tokens > eng.context_length:
        raise ApiError(400, "invalid_max_tokens",
                       f"max_tokens {max_tokens} exceeds the model's context length of {eng.context_length} tokens")
    temperature = get_float(body, "temperature", temperature_default, 0.0, 10.0)
    top_p = get_float(body, "top_p", 1.0, 0.0, 1.0)
    seed = get_int_range(body, "seed", SEED_MIN, SEED_MAX)
    logit_bias = get_logit_bias(body, eng.vocab_size)
    ignore_eos = get_bool(body, "ignore_eos")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is None:
        stop = []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 16:
        raise ApiError(400, "invalid_field", "field 'stop' must be a string or a list of at most 16 strings")
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
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue()

    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    job = Job(job_id=job_id or uuid.uuid4().hex, prompt_ids=ids, max_tokens=max_tokens, emit=emit,
              temperature=temperature, top_p=top_p, seed=seed, ignore_eos=ignore_eos,
              stop=[s for s in stop if s], incremental=stream or bool(stop), top_logprobs=top_logprobs,
              echo_logprobs=echo and top_logprobs is not None, logit_bias=logit_bias)
    job.queue = queue
    return job


async def run_events(st: WorkerState, job: Job) -> AsyncGenerator[Event, None]:
    """Submit and yield the job's events until done/error. If the consumer goes away (client
    disconnect cancels the handler, or the generator is closed early) the job is cancelled."""
    st.scheduler.submit(job)
    st.requests += 1
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


async def open_sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    return resp


async def send_sse(resp: web.StreamResponse, payload: Any) -> None:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    await resp.write(f"data: {data}\n\n".encode())
