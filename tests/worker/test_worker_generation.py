"""Generation semantics on shared workers: fresh cache per request, batching equality, cancel,
client disconnect, /health during a generation. Ordering is asserted through events, not time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import pytest

from workerproc import ARCHS

pytestmark = pytest.mark.slow

PROMPTS = ["Hi", "The quick brown fox jumps over the lazy dog " * 12, "你好🦙 café", "A pool is a machine. " * 3]
MAX_NEW = 12

_REFERENCE = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.manual_seed(0)
out = {}
for arch, path in json.loads(sys.argv[1]).items():
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    eos = list(model.generation_config.eos_token_id)
    texts = []
    for p in json.loads(sys.argv[2]):
        ids = torch.tensor([tok(p, add_special_tokens=False)["input_ids"]])
        gen = model.generate(ids, max_new_tokens=int(sys.argv[3]), do_sample=False, eos_token_id=eos, pad_token_id=0)
        texts.append(tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
    out[arch] = texts
print(json.dumps(out))
"""


async def execute(url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/execute", json=body) as r:
            data = await r.json()
            assert r.status == 200, data
            return data


async def get_json(url: str, path: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}{path}") as r:
            return await r.json()


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/metrics") as r:
            for line in (await r.text()).splitlines():
                if line.startswith(name + " "):
                    return float(line.rsplit(" ", 1)[1])
    return 0.0


async def wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    """Poll a condition (an observable state change, not a fixed delay)."""
    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(loop(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@asynccontextmanager
async def long_stream(url: str, job_id: str, max_tokens: int = 1500) -> AsyncIterator[tuple[Any, Any]]:
    """A streaming generation that is known to be running once the first token arrived."""
    session = aiohttp.ClientSession()
    resp = await session.post(f"{url}/execute", json={"job_id": job_id, "prompt": "Tell me a long story",
                                                      "max_tokens": max_tokens, "stream": True,
                                                      "ignore_eos": True})
    try:
        assert resp.status == 200
        first = await read_event(resp)
        assert first["type"] == "token"
        yield session, resp
    finally:
        resp.close()
        await session.close()


async def read_event(resp: Any) -> dict[str, Any]:
    while True:
        line = (await resp.content.readline()).decode()
        if not line:
            raise AssertionError("stream ended without a done event")
        if line.startswith("data: "):
            return json.loads(line[6:])


async def read_until_done(resp: Any) -> dict[str, Any]:
    while True:
        event = await read_event(resp)
        if event["type"] != "token":
            return event


def test_every_request_starts_with_a_fresh_cache(workers: dict, synth_models: dict) -> None:
    """After warmup and other traffic, prompts of different lengths in a row give exactly what a
    fresh process computes with plain `model.generate` (the original KV-cache bug would break this)."""
    paths = {a: str(synth_models[a]) for a in ARCHS}
    proc = subprocess.run([sys.executable, "-c", _REFERENCE, json.dumps(paths), json.dumps(PROMPTS), str(MAX_NEW)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = json.loads(proc.stdout.strip().splitlines()[-1])

    async def run() -> dict[str, list[str]]:
        got: dict[str, list[str]] = {}
        for arch in ARCHS:
            got[arch] = [(await execute(workers[arch].url, {"prompt": p, "max_tokens": MAX_NEW}))["text"]
                         for p in PROMPTS + PROMPTS[::-1]]
        return got

    got = asyncio.run(run())
    for arch in ARCHS:
        assert got[arch] == reference[arch] + reference[arch][::-1], arch


async def test_same_seed_same_text_alone_or_in_a_burst(llama: str) -> None:
    # rows finish at different steps; the long prompt finishes first, so the batch drops its rows
    # and cuts the cache columns nobody attends to any more, while the others keep decoding
    bodies = [{"prompt": PROMPTS[i % len(PROMPTS)], "seed": 100 + i, "ignore_eos": True,
               "max_tokens": 3 if i % len(PROMPTS) == 1 else 10 + i,
               "temperature": 0.9 if i % 2 else 0.0, "top_p": 0.95} for i in range(10)]
    before = await metric(llama, "llorch_batch_rows_max")
    burst = await asyncio.gather(*(execute(llama, b) for b in bodies))
    alone = [await execute(llama, b) for b in bodies]
    assert [r["text"] for r in burst] == [r["text"] for r in alone]
    assert [r["tokens_generated"] for r in burst] == [b["max_tokens"] for b in bodies]
    # different seeds really sample differently (else the equality above proves nothing)
    one, two = [await execute(llama, {"prompt": PROMPTS[0], "max_tokens": 16, "temperature": 1.0, "seed": s,
                                      "ignore_eos": True}) for s in (1, 2)]
    assert one["text"] != two["text"]
    assert max(before, await metric(llama, "llorch_batch_rows_max")) >= 2


async def test_request_joins_a_running_batch_with_identical_output(llama: str) -> None:
    body = {"prompt": PROMPTS[2], "max_tokens": 10, "seed": 5, "temperature": 0.8, "ignore_eos": True}
    alone = await execute(llama, body)
    steps_before = await metric(llama, "llorch_decode_steps_total")
    async with long_stream(llama, "long-runner") as (_, resp):
        joined = await execute(llama, body)  # arrives while long-runner is mid-generation
        health = await get_json(llama, "/health")
        async with aiohttp.ClientSession() as s:
            await s.post(f"{llama}/cancel", json={"job_id": "long-runner"})
        done = await read_until_done(resp)
    assert joined["text"] == alone["text"]
    assert done["finish_reason"] == "cancelled" and done["tokens_generated"] < 1500
    assert health["in_flight"] >= 1
    assert await metric(llama, "llorch_batch_rows_max") >= 2
    assert await metric(llama, "llorch_decode_steps_total") > steps_before


async def test_health_answers_during_a_generation(workers: dict) -> None:
    url = workers["mistral"].url
    async with long_stream(url, "health-probe") as (session, resp):
        health = await get_json(url, "/health")
        # the generation was still running when /health answered
        assert health["status"] == "ok" and health["in_flight"] == 1
        await session.post(f"{url}/cancel", json={"job_id": "health-probe"})
        done = await read_until_done(resp)
    assert done["finish_reason"] == "cancelled"


async def test_cancel_stops_a_generation(workers: dict) -> None:
    url = workers["phi3"].url
    async with long_stream(url, "to-cancel", max_tokens=2000) as (session, resp):
        async with session.post(f"{url}/cancel", json={"job_id": "to-cancel"}) as r:
            assert r.status == 200 and (await r.json())["cancelled"] is True
        done = await read_until_done(resp)
    assert done["type"] == "done" and done["finish_reason"] == "cancelled"
    assert 1 <= done["tokens_generated"] < 2000
    h = await get_json(url, "/health")
    assert h["in_flight"] == 0


async def test_client_disconnect_cancels(workers: dict) -> None:
    url = workers["qwen2"].url

    async def cancelled() -> float:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/metrics") as r:
                text = await r.text()
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                   if l.startswith('llorch_requests_total{finish_reason="cancelled"}'))

    base = await cancelled()
    async with long_stream(url, "walks-away"):
        pass  # leaving the block closes the connection mid-stream
    await wait_until(lambda: _gt(cancelled(), base), "the streaming job to be cancelled")

    # non-streaming: the client gives up while the job runs
    task = asyncio.ensure_future(execute(url, {"prompt": "long", "max_tokens": 2000, "ignore_eos": True}))
    await wait_until(lambda: _in_flight(url), "the job to start")
    task.cancel()
    await wait_until(lambda: _gt(cancelled(), base + 1), "the non-streaming job to be cancelled")
    assert (await get_json(url, "/health"))["in_flight"] == 0


async def _gt(value: Any, than: float) -> bool:
    return (await value) > than


async def _in_flight(url: str) -> bool:
    return (await get_json(url, "/health"))["in_flight"] >= 1
