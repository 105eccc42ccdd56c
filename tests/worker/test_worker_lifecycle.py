"""One fresh worker, started here because these tests are about starting and stopping: loading
state, ready callback, bearer token, the bounded queue and SIGTERM. Tests run in file order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import psutil
import pytest

from workerproc import WorkerProc

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def fresh(synth_models: dict, callback) -> Iterator[tuple[WorkerProc, dict[str, Any]]]:
    w = WorkerProc(synth_models["llama"], "--max-batch", "1", "--queue-limit", "1",
                   "--shutdown-grace", "60", "--callback-url", callback.url, worker_id="fresh-1",
                   env={"LLORCH_WORKER_TOKEN": TOKEN})
    seen: dict[str, Any] = {}
    try:
        w.wait_listening()
        # /health answers as soon as the port is bound; before the ready line it must say loading
        health = asyncio.run(_get(w.url, "/health"))
        seen["early_health"] = health
        seen["ready_before_health"] = w.ready is not None
        w.wait_ready()
        yield w, seen
    finally:
        w.close()


async def _get(url: str, path: str, headers: dict[str, str] | None = None) -> Any:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}{path}", headers=headers) as r:
            return await r.json() if r.content_type == "application/json" else r.status


async def _post(url: str, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}{path}", json=body, headers=headers) as r:
            return r.status, await r.json(), r.headers


def test_health_during_loading_then_ready_callback(fresh, callback) -> None:
    w, seen = fresh
    early = seen["early_health"]
    assert early["worker_id"] == "fresh-1" and early["backend"] == "cpu"
    if not seen["ready_before_health"]:
        assert early["status"] == "loading"
    cb = callback.wait_for("fresh-1", "ready")
    for key in ("worker_id", "status", "port", "model", "backend", "load_s", "pid"):
        assert key in cb, key
    assert cb["port"] == w.ready["port"] and cb["pid"] == w.proc.pid and cb["backend"] == "cpu"


async def test_token_required_except_health(fresh) -> None:
    w, _ = fresh
    assert (await _get(w.url, "/health"))["status"] == "ok"
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, err, _ = await _post(w.url, "/execute", {"prompt": "hi", "max_tokens": 2}, headers)
        assert status == 401 and err["error"]["code"] == "unauthorized"
    assert (await _get(w.url, "/metrics"))["error"]["code"] == "unauthorized"
    status, body, _ = await _post(w.url, "/execute", {"prompt": "hi", "max_tokens": 2}, AUTH)
    assert status == 200 and body["tokens_generated"] >= 0
    # the scheme is case-insensitive (RFC 7235)
    status, body, _ = await _post(w.url, "/execute", {"prompt": "hi", "max_tokens": 2},
                                  {"Authorization": f"bearer {TOKEN}"})
    assert status == 200, body
    # the token came by environment: nothing on the command line shows it
    assert TOKEN not in " ".join(psutil.Process(w.proc.pid).cmdline())
    models = await _get(w.url, "/v1/models", AUTH)
    assert models["data"][0]["id"] == w.ready["model"]


async def _wait_health(url: str, pred: Any, what: str) -> dict[str, Any]:
    async def loop() -> dict[str, Any]:
        while True:
            h = await _get(url, "/health")
            if pred(h):
                return h
            await asyncio.sleep(0.02)
    try:
        return await asyncio.wait_for(loop(), 120)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_queue_limit_then_sigterm_finishes_in_flight(fresh) -> None:
    w, _ = fresh
    async with aiohttp.ClientSession(headers=AUTH) as s:
        # A occupies the only batch slot (--max-batch 1)
        a = await s.post(f"{w.url}/execute", json={"job_id": "A", "prompt": "go", "max_tokens": 1500,
                                                    "stream": True, "ignore_eos": True})
        assert a.status == 200
        assert json.loads((await a.content.readline()).decode()[6:])["type"] == "token"
        # B waits in the queue (--queue-limit 1) ...
        b = asyncio.ensure_future(s.post(f"{w.url}/execute", json={"job_id": "B", "prompt": "wait",
                                                                    "max_tokens": 4}))
        await _wait_health(w.url, lambda h: h["queue_depth"] == 1, "B to be queued")
        # ... so C is turned away with 503 + Retry-After
        async with s.post(f"{w.url}/execute", json={"prompt": "C", "max_tokens": 2}) as c:
            assert c.status == 503 and c.headers["Retry-After"] == "1"
            assert (await c.json())["error"]["code"] == "queue_full"
        # a streamed request is refused the same way: it is queued before any SSE header goes out
        async with s.post(f"{w.url}/v1/completions", json={"model": "m", "prompt": "C", "max_tokens": 2,
                                                          "stream": True}) as c:
            assert c.status == 503 and c.headers["Content-Type"].startswith("application/json")
            assert (await c.json())["error"]["code"] == "queue_full"
        # cancelling a queued job finishes it at once
        async with s.post(f"{w.url}/cancel", json={"job_id": "B"}) as r:
            assert r.status == 200
        b_resp = await b
        assert (await b_resp.json())["finish_reason"] == "cancelled"

        # SIGTERM with A still generating: stop accepting, let A finish, exit 0
        w.signal_term()
        await _wait_health(w.url, lambda h: h.get("stopping") is True, "the worker to start stopping")
        async with s.post(f"{w.url}/execute", json={"prompt": "late", "max_tokens": 2}) as late:
            assert late.status == 503 and (await late.json())["error"]["code"] == "shutting_down"
        done = None
        async for line in a.content:
            text = line.decode()
            if text.startswith("data: "):
                ev = json.loads(text[6:])
                if ev["type"] == "done":
                    done = ev
        a.close()
    assert done is not None and done["finish_reason"] == "length" and done["tokens_generated"] == 1500
    assert await asyncio.to_thread(w.wait_exit, 120) == 0
