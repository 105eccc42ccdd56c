"""The aiohttp application: middleware (auth, JSON errors) and the native routes
/health, /execute, /cancel, /metrics. OpenAI-compatible routes live in openai_api.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

from aiohttp import web

from . import __version__
from .errors import ApiError
from .httpguard import bearer_token, token_matches
from .api import CancelRequest, ExecuteRequest
from .httpkit import (STATE_KEY, WorkerState, build_job, chat_prompt_of, collect, open_job_stream, read_request,
                      ready_state, send_sse, state_of)
from .info import add_info_route
from .openai_api import add_openai_routes
from .tokenize_api import add_tokenize_routes

log = logging.getLogger("llorch_worker.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(err: ApiError) -> web.Response:
    return web.json_response(err.body(), status=err.status, headers=err.headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    st = state_of(request)
    try:
        return await handler(request)
    except ApiError as e:
        if st.metrics is not None:
            st.metrics.observe_http_error(e.status)
        return error_response(e)
    except web.HTTPNotFound:
        return error_response(ApiError(404, "not_found", f"no route {request.method} {request.path}",
                                       hint="see /v1/models, /health, /execute, /v1/chat/completions"))
    except web.HTTPMethodNotAllowed as e:
        return error_response(ApiError(405, "method_not_allowed",
                                       f"{request.method} is not allowed on {request.path}; use {', '.join(sorted(e.allowed_methods))}"))
    except web.HTTPException:
        raise
    except ConnectionResetError:
        raise
    except Exception as e:  # never leak a stack trace as HTML; log it and answer JSON
        log.exception("unhandled error on %s", request.path)
        return error_response(ApiError(500, "internal", f"{type(e).__name__}: {e}"))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = state_of(request).token
    if token and request.path != "/health":
        if not token_matches(bearer_token(request.headers.get("Authorization")), token):
            return error_response(ApiError(401, "unauthorized", "missing or wrong bearer token",
                                           hint="send Authorization: Bearer <token> (the worker's --token)"))
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    st = state_of(request)
    eng = st.engine
    memory: dict[str, Any] = eng.memory() if eng is not None else _rss_only()
    body: dict[str, Any] = {
        "status": st.status,
        "worker_id": st.worker_id,
        "model": eng.name if eng is not None else st.model_path.rstrip("/").rsplit("/", 1)[-1],
        "model_path": st.model_path,
        "backend": st.backend,
        "device": st.device,
        "dtype": st.dtype,
        "memory": memory,
        "uptime_s": round(time.monotonic() - st.started, 3),
        "requests": st.requests,
        "queue_depth": st.scheduler.queue_depth if st.scheduler else 0,
        "in_flight": st.scheduler.in_flight if st.scheduler else 0,
        "tokens_generated": st.metrics.tokens_generated if st.metrics else 0,
        "version": __version__,
    }
    if eng is not None:
        body["context_length"] = eng.context_length
        body["startup"] = eng.stages
        body["vocab_size"] = eng.vocab_size
        faults = {"logit_noise": eng.noise.sigma} if eng.noise is not None else {}
        if st.scheduler is not None and st.scheduler.prefill_fault is not None:
            faults["prefill_token"] = st.scheduler.prefill_fault
        if faults:
            body["fault_injection"] = faults
        synthetic = getattr(eng.model.config, "llorch_synthetic", None)
        if synthetic:  # `models synth --like`: real shapes, random weights; never mistaken for the real model
            body["synthetic"] = synthetic
    if st.stopping:
        body["stopping"] = True
    if st.error:
        body["error"] = st.error
    return web.json_response(body)


def _rss_only() -> dict[str, Any]:
    import psutil

    return {"rss": psutil.Process().memory_info().rss, "device_allocated": None, "device_peak": None}


async def execute(request: web.Request) -> web.StreamResponse:
    st = ready_state(request)
    req = await read_request(request, ExecuteRequest)
    # `prompt` is raw text; `messages` is a chat, rendered by the model's chat template.
    if req.messages is not None and req.prompt is not None:
        raise ApiError(400, "invalid_field", "send either 'prompt' (raw text) or 'messages' (a chat), not both",
                       hint="drop one of the two fields", field="prompt")
    if req.messages is not None:
        prompt = await chat_prompt_of(st, req.messages)
    elif req.prompt is not None:
        prompt = req.prompt
    else:
        raise ApiError(400, "missing_field", "field 'prompt' is required",
                       hint="send 'prompt' (raw text) or 'messages' (a chat)", field="prompt")
    stream = bool(req.stream)
    job = await build_job(st, prompt, req, max_tokens_default=64, temperature_default=0.0, job_id=req.job_id,
                          templated=req.messages is not None, stream=stream)
    if not stream:
        summary = await collect(st, job)
        summary.pop("type", None)
        return web.json_response(summary)
    resp, stream_events = await open_job_stream(request, st, job)
    async with aclosing(stream_events) as events:
        async for event in events:
            await send_sse(resp, event)
    await resp.write_eof()
    return resp


async def cancel(request: web.Request) -> web.Response:
    st = ready_state(request)
    job_id = (await read_request(request, CancelRequest)).job_id
    if not st.scheduler.cancel(job_id):
        raise ApiError(404, "unknown_job", f"no queued or running job {job_id!r}",
                       hint="it may have finished already; job ids are those sent to /execute")
    return web.json_response({"job_id": job_id, "cancelled": True})


async def metrics(request: web.Request) -> web.Response:
    st = state_of(request)
    if st.metrics is None:
        raise ApiError(503, "loading", "the model is still loading", headers={"Retry-After": "1"})
    mem = st.engine.memory() if st.engine is not None else _rss_only()
    text = st.metrics.render(mem, st.scheduler.in_flight if st.scheduler else 0)
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Prometheus-Format": "0.0.4"})


def make_app(state: WorkerState) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=16 * 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_get("/health", health)
    app.router.add_post("/execute", execute)
    app.router.add_post("/cancel", cancel)
    app.router.add_get("/metrics", metrics)
    add_info_route(app)
    add_openai_routes(app)
    add_tokenize_routes(app)
    return app
