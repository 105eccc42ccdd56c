"""Hostile requests against a real worker: one request never fails another, and every bad input
is a clear 4xx (never a 500, never a stall of the event loop)."""

from __future__ import annotations

import asyncio
import json
import select
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from test_worker_generation import long_stream, read_event, read_until_done
from workerproc import WorkerProc

pytestmark = pytest.mark.slow

VICTIMS = [
    {"prompt": "A pool is a machine.", "max_tokens": 12, "seed": 7, "temperature": 0.8, "ignore_eos": True},
    {"prompt": "Hi", "max_tokens": 10, "temperature": 0, "ignore_eos": True},
    {"prompt": "The quick brown fox", "max_tokens": 14, "seed": 3, "temperature": 1.2, "top_p": 0.9,
     "ignore_eos": True},
]


async def post(url: str, body: Any, raw: bool = False) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url, **({"data": body} if raw else {"json": body})) as r:
            return r.status, await r.json()


async def ok(url: str, body: dict[str, Any]) -> dict[str, Any]:
    status, data = await post(f"{url}/execute", body)
    assert status == 200, data
    return data


async def test_subnormal_temperature_in_a_running_batch_harms_nobody(llama: str) -> None:
    alone = [await ok(llama, b) for b in VICTIMS]
    greedy = await ok(llama, {"prompt": "Hello there", "max_tokens": 8, "temperature": 0, "ignore_eos": True})
    async with long_stream(llama, "runner-subnormal") as (session, resp):
        tiny = [{"prompt": "Hello there", "max_tokens": 8, "temperature": t, "ignore_eos": True}
                for t in (1e-40, 5e-324, 1e-7)]
        got = await asyncio.gather(*(ok(llama, b) for b in VICTIMS + tiny))
        await session.post(f"{llama}/cancel", json={"job_id": "runner-subnormal"})
        done = await read_until_done(resp)
    assert [g["text"] for g in got[:len(VICTIMS)]] == [a["text"] for a in alone]
    # a temperature this small is the argmax: the same text as temperature 0
    assert [g["text"] for g in got[len(VICTIMS):]] == [greedy["text"]] * 3
    assert done["type"] == "done" and done["finish_reason"] == "cancelled"


BAD = [
    ("seed above 2**64-1", {"prompt": "hi", "seed": 2**64}, "invalid_field"),
    ("seed below -2**63", {"prompt": "hi", "seed": -(2**63) - 1}, "invalid_field"),
    ("5000-digit seed", b'{"prompt": "hi", "seed": ' + b"9" * 5000 + b"}", "invalid_json"),
    ("deeply nested json", b'{"prompt": "hi", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}", "invalid_json"),
    ("NaN temperature", b'{"prompt": "hi", "temperature": NaN}', "invalid_field"),
    ("infinite top_p", b'{"prompt": "hi", "top_p": Infinity}', "invalid_field"),
    ("logit_bias not an object", {"prompt": "hi", "logit_bias": [1, 2]}, "invalid_field"),
    ("logit_bias id out of vocab", {"prompt": "hi", "logit_bias": {"99999": 5}}, "invalid_field"),
    ("logit_bias id not a number", {"prompt": "hi", "logit_bias": {"abc": 5}}, "invalid_field"),
    ("logit_bias value out of range", {"prompt": "hi", "logit_bias": {"5": 101}}, "invalid_field"),
]


@pytest.mark.parametrize("name,body,code", BAD, ids=[b[0] for b in BAD])
async def test_former_500s_are_clear_400s(llama: str, name: str, body: Any, code: str) -> None:
    for route in ("/execute", "/v1/completions"):
        status, err = await post(f"{llama}{route}", body, raw=isinstance(body, bytes))
        assert status == 400, (route, err)
        assert err["error"]["code"] == code and err["error"]["message"], err


async def test_logit_bias_is_applied(llama: str, synth_models: dict) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(synth_models["llama"] / "tokenizer.json"))
    forced = tok.encode("fox", add_special_tokens=False).ids[0]
    base = {"prompt": "Hi", "max_tokens": 6, "temperature": 0, "ignore_eos": True}
    plain = await ok(llama, base)
    pushed = await ok(llama, {**base, "logit_bias": {str(forced): 100}})
    assert pushed["text"] == tok.decode([forced] * 6)
    assert plain["text"] != pushed["text"]
    # the OpenAI route takes the same field, and a negative bias bans a token
    other = tok.encode("dog", add_special_tokens=False).ids[0]
    for bias, winner in (({str(forced): 50, str(other): 100}, other), ({str(forced): 50, str(other): -100}, forced)):
        status, out = await post(f"{llama}/v1/completions", {**base, "model": "m", "logit_bias": bias})
        assert status == 200, out
        assert out["choices"][0]["text"] == tok.decode([winner] * 6)


async def test_huge_prompt_is_refused_before_tokenizing(workers: dict) -> None:
    url = workers["qwen2"].url

    async def health() -> dict[str, Any]:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/health") as r:
                return await r.json()

    rss_before = (await health())["memory"]["rss"]
    prompt = "All work and no play makes a dull model. " * 360_000  # ~15 MB
    for route, body in (("/execute", {"prompt": prompt}),
                        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": prompt}]})):
        refused = asyncio.ensure_future(post(f"{url}{route}", body))
        during = await health()  # the event loop answers while the big body is handled
        status, err = await refused
        assert status == 400 and err["error"]["code"] == "prompt_too_long", err
        assert f"the prompt is {len(prompt)}" in err["error"]["message"] or route != "/execute"
        assert "characters" in err["error"]["message"] and "2048 tokens" in err["error"]["message"]
        assert during["status"] == "ok"
    # tokenizing 15 MB used to leave the worker ~1.3 GB larger per request
    assert (await health())["memory"]["rss"] - rss_before < 400 * 2**20


def _poisoned_copy(src: Path, dst: Path, token_id: int) -> Path:
    """The checkpoint with one token's embedding set to NaN: any row that reads it gets NaN logits."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    tensors = load_file(str(weights))
    key = next(k for k in tensors if k.endswith("embed_tokens.weight"))
    tensors[key][token_id, :] = float("nan")
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return dst


async def test_non_finite_logits_fail_only_their_request(tmp_path: Path, synth_models: dict) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(synth_models["llama"] / "tokenizer.json"))
    poison = tok.encode(" zebra", add_special_tokens=False).ids[-1]
    crash = tok.encode(" walrus", add_special_tokens=False).ids[-1]  # its prompts' prefill raises (fault injection)
    for v in [*VICTIMS, {"prompt": "Tell me a long story"}]:
        assert not {poison, crash} & set(tok.encode(v["prompt"]).ids)
    model = _poisoned_copy(synth_models["llama"], tmp_path / "poisoned", poison)
    # the victims can never sample the poisoned token, so only the attacker's row reads it
    victims = [{**v, "logit_bias": {str(poison): -100}} for v in VICTIMS]
    w = WorkerProc(model, "--dtype", "float32", worker_id="poisoned",
                   env={"LLORCH_WORKER_FAULT_PREFILL_TOKEN": str(crash)})
    try:
        w.wait_ready()
        alone = [await ok(w.url, b) for b in victims]
        attack = {"prompt": "Hello zebra", "max_tokens": 8}
        results = await asyncio.gather(*(post(f"{w.url}/execute", b) for b in [*victims, attack, attack]))
        assert [r[0] for r in results[:len(victims)]] == [200] * len(victims), results
        assert [r[1]["text"] for r in results[:len(victims)]] == [a["text"] for a in alone]
        assert [r[1]["finish_reason"] for r in results[:len(victims)]] == ["length"] * len(victims)
        for status, err in results[len(victims):]:
            assert status == 422 and err["error"]["code"] == "non_finite_logits", err
        # streaming: the error is the request's last event; the worker keeps serving
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{w.url}/execute", json={**attack, "stream": True}) as r:
                events = [json.loads(line[6:]) for line in (await r.text()).splitlines() if line.startswith("data: ")]
        assert events[-1]["type"] == "error" and events[-1]["code"] == "non_finite_logits"
        assert (await ok(w.url, victims[1]))["text"] == alone[1]["text"]
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{w.url}/health") as r:
                assert (await r.json())["fault_injection"] == {"prefill_token": crash}
        await _bad_prefill_fails_only_the_newcomers(w.url, victims, alone, attack, poison)
    finally:
        w.close()


async def _bad_prefill_fails_only_the_newcomers(url: str, victims: list[dict[str, Any]], alone: list[dict[str, Any]],
                                                attack: dict[str, Any], poison: int) -> None:
    """While a batch decodes, newcomers join it after a prefill of their own: attackers whose
    prefill gives non-finite logits, or raises (the injected fault), fail alone; the newcomers
    prefilled with them and the request already running give their solo text."""
    runner = {"job_id": "runner-prefill", "prompt": "Tell me a long story", "max_tokens": 1500, "stream": True,
              "ignore_eos": True, "logit_bias": {str(poison): -100}}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/execute", json=runner) as resp:
            assert resp.status == 200
            text = [(await read_event(resp))["text"]]  # its first token: it is running
            crasher = {"prompt": "Hello walrus", "max_tokens": 8}
            results = await asyncio.gather(*(post(f"{url}/execute", b) for b in [attack, crasher, *victims, attack]))
            # still running after the attack (else the cancel is a 404): the attackers joined a live batch
            async with s.post(f"{url}/cancel", json={"job_id": "runner-prefill"}) as c:
                assert c.status == 200, await c.text()
            while (event := await read_event(resp))["type"] == "token":
                text.append(event["text"])
    assert [r[0] for r in (results[0], results[-1])] == [422, 422], results
    assert all(r[1]["error"]["code"] == "non_finite_logits" and r[1]["error"]["message"] for r in (results[0], results[-1]))
    status, err = results[1]  # a server-side failure: 500, named, and only for that request
    assert status == 500 and err["error"]["code"] == "internal" and "injected prefill failure" in err["error"]["message"]
    assert [r[1]["text"] for r in results[2:-1]] == [a["text"] for a in alone]
    assert event["type"] == "done" and event["finish_reason"] == "cancelled", event
    solo = await ok(url, {**runner, "stream": False, "job_id": None, "max_tokens": event["tokens_generated"]})
    assert "".join(text) == solo["text"]


async def test_idle_connections_are_closed_and_connections_capped(tmp_path: Path, synth_models: dict) -> None:
    from netprobe import closed_by_server, connect, half_request, raw_get, read_to_end

    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    w = WorkerProc(synth_models["llama"], "--idle-timeout", "2", "--max-connections", "4",
                   "--max-connections-per-client", "3", "--token-file", str(token_file), worker_id="limits",
                   env={"LLORCH_WORKER_BODY_TIMEOUT_S": "1.5", "LLORCH_WORKER_BODY_TOTAL_S": "4"})
    try:
        w.wait_ready()
        # one client (127.0.0.1) holds its share: its next connection is refused, another client's is not
        slow = [half_request(w.url) for _ in range(3)]
        status, refused = raw_get(w.url, "/health")
        assert status == 429 and b"too_many_connections_from_client" in refused and b"Retry-After: 1" in refused
        assert raw_get(w.url, "/health", source="127.0.0.2")[0] == 200
        # the total cap still holds: with a fourth connection open, a third client gets 503
        slow.append(half_request(w.url, source="127.0.0.2"))
        status, refused = raw_get(w.url, "/health", source="127.0.0.3")
        assert status == 503 and b'"too_many_connections"' in refused and b"Retry-After: 1" in refused
        # the half-sent requests are closed by the idle timeout, which frees their places
        assert all(closed_by_server(s) for s in slow)
        status, health = raw_get(w.url, "/health")
        assert status == 200 and b'"status": "ok"' in health
        # the token came from the file; it is nowhere on the command line
        status, _ = raw_get(w.url, "/v1/models", "Authorization: Bearer file-token\r\n")
        assert status == 200
        assert raw_get(w.url, "/v1/models", "Authorization: Bearer other\r\n")[0] == 401
        assert "file-token" not in " ".join(w.cmd)

        def upload(body: bytes, pieces: list[bytes], gap_s: float) -> bytes:
            """POST /execute announcing `body`'s length, sending `pieces` with a pause before each."""
            s = connect(w.url)
            s.sendall(b"POST /execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer file-token\r\n"
                      b"Content-Type: application/json\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body))
            for piece in pieces:
                # the pacing of a slow link is what is under test; stop once the server has answered
                if select.select([s], [], [], gap_s)[0]:
                    break
                s.sendall(piece)
            try:
                return read_to_end(s)
            finally:
                s.close()

        # a slow upload that keeps progressing (3 s in all, twice the 1.5 s allowed without progress) is served
        body = json.dumps({"prompt": "Hello", "max_tokens": 2, "pad": " " * 200}).encode()
        answer = await asyncio.to_thread(upload, body, [body[i:i + 18] for i in range(0, len(body), 18)], 0.25)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        # a body that stops arriving is a 408, not a handler waiting for ever
        answer = await asyncio.to_thread(upload, b"x" * 100, [b'{"prompt": '], 0)
        assert answer.startswith(b"HTTP/1.1 408") and b"stopped arriving" in answer, answer[:300]
        # a trickle that never ends is cut at the total ceiling (4 s) although it never pauses long
        answer = await asyncio.to_thread(upload, b"x" * 10_000, [b" "] * 40, 0.25)
        assert answer.startswith(b"HTTP/1.1 408") and b"in all" in answer, answer[:300]
    finally:
        w.close()


def test_token_on_the_command_line_is_refused(synth_models: dict) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "llorch_worker", "--worker-id", "x", "--model",
                           str(synth_models["llama"]), "--backend", "cpu", "--port", "0", "--token", "visible"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "visible to every user" in proc.stderr and "LLORCH_WORKER_TOKEN" in proc.stderr
