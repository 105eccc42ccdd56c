"""The HTTP API of a real worker process, on all four architectures (shared workers)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from workerproc import ARCHS

pytestmark = pytest.mark.slow


async def post(url: str, body: Any, raw: bool = False) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as s:
        kw = {"data": body} if raw else {"json": body}
        async with s.post(url, **kw) as r:
            return r.status, await r.json(), dict(r.headers)


async def sse_events(url: str, body: dict[str, Any]) -> list[Any]:
    """POST and parse every `data:` line of the event stream."""
    events: list[Any] = []
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"].startswith("text/event-stream")
            async for line in r.content:
                text = line.decode().strip()
                if text.startswith("data: "):
                    payload = text[6:]
                    events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


@pytest.mark.parametrize("arch", ARCHS)
async def test_execute_and_chat_on_every_architecture(workers: dict, arch: str) -> None:
    url = workers[arch].url
    status, body, _ = await post(f"{url}/execute", {"job_id": f"j-{arch}", "prompt": "Hello there",
                                                     "max_tokens": 8, "seed": 1})
    assert status == 200, body
    assert body["job_id"] == f"j-{arch}"
    # a random model may pick end-of-sequence early ("stop"); otherwise it runs to max_tokens
    assert (body["finish_reason"], body["tokens_generated"] == 8) in (("length", True), ("stop", False))
    assert body["prompt_tokens"] > 0 and body["ttft_ms"] is not None and body["duration_ms"] > 0
    status, chat, _ = await post(f"{url}/v1/chat/completions", {
        "model": "whatever", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 6,
        "temperature": 0, "ignore_eos": True})
    assert status == 200, chat
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["usage"]["completion_tokens"] == 6
    # the chat template was applied: the prompt carries the role markers, more tokens than the text
    assert chat["usage"]["prompt_tokens"] > 3


async def test_health_fields(workers: dict) -> None:
    w = workers["qwen2"]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{w.url}/health") as r:
            h = await r.json()
    assert h["status"] == "ok"
    assert h["worker_id"] == "shared-qwen2"
    assert h["model"] == w.ready["model"]
    assert (h["backend"], h["device"], h["dtype"]) == ("cpu", "cpu", "float32")
    assert h["memory"]["rss"] > 0
    for key in ("uptime_s", "requests", "queue_depth", "tokens_generated", "in_flight"):
        assert isinstance(h[key], (int, float)), key


async def test_ready_line_fields(workers: dict) -> None:
    r = workers["phi3"].ready
    assert r["status"] == "ready" and r["backend"] == "cpu" and r["load_s"] > 0 and r["pid"] > 0
    assert r["port"] == int(workers["phi3"].url.rsplit(":", 1)[1])


async def test_stream_tokens_concatenate_to_summary(llama: str) -> None:
    events = await sse_events(f"{llama}/execute", {"prompt": "Stream me", "max_tokens": 12, "stream": True,
                                                   "seed": 3, "temperature": 0.7, "ignore_eos": True})
    tokens = [e for e in events if e["type"] == "token"]
    done = events[-1]
    assert done["type"] == "done" and [e for e in events if e["type"] == "done"] == [done]
    assert tokens, "expected at least one token event"
    assert "".join(e["text"] for e in tokens) == done["text"]
    # and the same request without streaming gives the same text (same seed)
    status, plain, _ = await post(f"{llama}/execute", {"prompt": "Stream me", "max_tokens": 12, "seed": 3,
                                                        "temperature": 0.7, "ignore_eos": True})
    assert status == 200 and plain["text"] == done["text"]


async def test_unicode_emoji_cjk_round_trip(llama: str, synth_models: dict) -> None:
    from tokenizers import Tokenizer

    text = "naïve café — 你好，世界 こんにちは 🦙🚀 👨‍👩‍👧 🇫🇷"
    tok = Tokenizer.from_file(str(synth_models["llama"] / "tokenizer.json"))
    ids = tok.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids) == text
    status, body, _ = await post(f"{llama}/execute", {"prompt": text, "max_tokens": 4})
    assert status == 200, body
    assert body["prompt_tokens"] == len(ids)
    status, chat, _ = await post(f"{llama}/v1/chat/completions",
                                 {"model": "m", "messages": [{"role": "user", "content": text}], "max_tokens": 3})
    assert status == 200, chat


BAD_EXECUTE = [
    ("malformed json", b"{not json", "invalid_json"),
    ("not an object", b"[1, 2]", "invalid_json"),
    ("missing prompt", {"max_tokens": 4}, "missing_field"),
    ("prompt wrong type", {"prompt": 42}, "invalid_field"),
    ("max_tokens wrong type", {"prompt": "hi", "max_tokens": "ten"}, "invalid_field"),
    ("max_tokens bool", {"prompt": "hi", "max_tokens": True}, "invalid_field"),
    ("seed wrong type", {"prompt": "hi", "seed": 1.5}, "invalid_field"),
    ("stream wrong type", {"prompt": "hi", "stream": "yes"}, "invalid_field"),
    ("temperature out of range", {"prompt": "hi", "temperature": -1}, "invalid_field"),
    ("empty prompt", {"prompt": ""}, "empty_prompt"),
    ("max_tokens zero", {"prompt": "hi", "max_tokens": 0}, "invalid_max_tokens"),
    ("max_tokens negative", {"prompt": "hi", "max_tokens": -5}, "invalid_max_tokens"),
    ("max_tokens above context", {"prompt": "hi", "max_tokens": 100000}, "invalid_max_tokens"),
]


@pytest.mark.parametrize("name,body,code", BAD_EXECUTE, ids=[b[0] for b in BAD_EXECUTE])
async def test_bad_input_is_a_clear_4xx(llama: str, name: str, body: Any, code: str) -> None:
    status, err, _ = await post(f"{llama}/execute", body, raw=isinstance(body, bytes))
    assert status == 400, err
    assert err["error"]["code"] == code
    assert err["error"]["message"]


async def test_prompt_longer_than_context_names_both_counts(llama: str) -> None:
    prompt = "The quick brown fox jumps over the lazy dog. " * 400
    status, err, _ = await post(f"{llama}/execute", {"prompt": prompt, "max_tokens": 4})
    assert status == 400 and err["error"]["code"] == "prompt_too_long"
    assert "2048" in err["error"]["message"]
    n = int(err["error"]["message"].split("prompt is ")[1].split(" ")[0])
    assert n > 2048


async def test_prompt_over_2000_tokens_within_context_generates(llama: str) -> None:
    # ~2030 tokens: inside the 2048 context; the answer is clipped to what is left
    word = "model "
    status, body, _ = await post(f"{llama}/execute", {"prompt": word * 2030, "max_tokens": 64})
    assert status == 200, body
    assert body["prompt_tokens"] > 2000
    assert body["prompt_tokens"] + body["tokens_generated"] <= 2048


async def test_cancel_unknown_job_is_404(llama: str) -> None:
    status, err, _ = await post(f"{llama}/cancel", {"job_id": "no-such-job"})
    assert status == 404 and err["error"]["code"] == "unknown_job"
    status, err, _ = await post(f"{llama}/cancel", {})
    assert status == 400 and err["error"]["code"] == "missing_field"


async def test_unknown_route_and_method_are_json(llama: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{llama}/nope") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        async with s.get(f"{llama}/execute") as r:
            assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"


async def test_chat_bad_messages(llama: str) -> None:
    for body, code in [({"model": "m"}, "missing_field"),
                       ({"model": "m", "messages": []}, "invalid_field"),
                       ({"model": "m", "messages": [{"content": "x"}]}, "invalid_field"),
                       ({"model": "m", "messages": [{"role": "user", "content": ""}]}, "empty_prompt"),
                       ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "unsupported")]:
        status, err, _ = await post(f"{llama}/v1/chat/completions", body)
        assert status == 400 and err["error"]["code"] == code, (body, err)


async def test_metrics_prometheus_text(llama: str) -> None:
    await post(f"{llama}/execute", {"prompt": "count me", "max_tokens": 3})
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{llama}/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples["llorch_tokens_generated_total"] >= 3
    assert sum(v for k, v in samples.items() if k.startswith("llorch_requests_total{")) >= 1
    assert samples['llorch_ttft_seconds_bucket{le="+Inf"}'] == samples["llorch_ttft_seconds_count"]
    assert "llorch_request_duration_seconds_sum" in samples and "llorch_queue_depth" in samples
    assert samples['llorch_memory_bytes{kind="rss"}'] > 0


async def test_v1_models(workers: dict) -> None:
    w = workers["mistral"]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{w.url}/v1/models") as r:
            body = await r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [w.ready["model"]]


async def test_stop_strings_cut_the_text(llama: str) -> None:
    base = {"prompt": "Once upon a time", "max_tokens": 24, "ignore_eos": True}
    status, full, _ = await post(f"{llama}/execute", base)
    assert status == 200 and len(full["text"]) >= 8, full
    stop = full["text"][4:6]
    expected = full["text"][: full["text"].find(stop)]
    status, cut, _ = await post(f"{llama}/execute", {**base, "stop": [stop, "never-there"]})
    assert status == 200, cut
    assert cut["text"] == expected and cut["finish_reason"] == "stop"
    events = await sse_events(f"{llama}/execute", {**base, "stop": stop, "stream": True})
    assert "".join(e["text"] for e in events if e["type"] == "token") == expected
    status, err, _ = await post(f"{llama}/execute", {**base, "stop": 5})
    assert status == 400 and err["error"]["code"] == "invalid_field"


async def test_info_reports_what_computes(workers: dict) -> None:
    import platform

    import torch
    import transformers

    async with aiohttp.ClientSession() as s:
        async with s.get(f"{workers['llama'].url}/info") as r:
            assert r.status == 200
            info = await r.json()
        async with s.get(f"{workers['llama'].url}/info") as r:
            assert await r.json() == info  # computed once per process
    assert (info["torch"], info["transformers"]) == (torch.__version__, transformers.__version__)
    assert (info["device"], info["dtype"], info["gpu"]) == ("cpu", "float32", None)
    assert info["python"] == platform.python_version() and info["kernel"] == platform.release()
    # a tiny model (hidden 64) computes on one thread: a second only adds a barrier per op
    assert info["threads"] == 1 and info["worker_version"]


async def test_shared_models_both_sides(llama: str) -> None:
    """The worker reads requests with the models WorkerClient sends (api.py): /execute by prompt and by
    messages, streamed and not, the OpenAI routes with log-probs, echo, token ids and logit_bias, tokenize
    round trips; and a body that does not fit is one 400 naming the field, why and what to do."""
    from llorch_worker.api import (ChatMessage, ChatRequest, CompletionRequest, DetokenizeRequest, ExecuteRequest,
                                   StreamOptions, TokenizeRequest)

    from llorch_tui.worker_client import WorkerClient

    chat = [ChatMessage(role="user", content="Name a colour")]
    async with aiohttp.ClientSession() as s:
        w = WorkerClient(s, llama, timeout=120)
        by_messages = await w.execute(ExecuteRequest(messages=chat, max_tokens=6, ignore_eos=True))
        streamed = [t async for t in w.execute_stream_timed(ExecuteRequest(messages=chat, max_tokens=6, ignore_eos=True))]
        answer = await w.chat(ChatRequest(messages=chat, max_tokens=6, temperature=0, ignore_eos=True))
        assert by_messages.tokens_generated == 6 and by_messages.text == answer.choices[0].message.content
        assert "".join(t.event.text or "" for t in streamed if t.event.type == "token") == by_messages.text
        assert streamed[-1].event.type == "done" and [t.at for t in streamed] == sorted(t.at for t in streamed)

        ids = (await w.tokenize(TokenizeRequest(prompt="Once upon a time", add_special_tokens=False))).tokens
        assert (await w.detokenize(DetokenizeRequest(tokens=ids))).prompt == "Once upon a time"
        forced = await w.completions(CompletionRequest(prompt=[ids], max_tokens=3, temperature=0, logprobs=2,
                                                       echo=True, ignore_eos=True, logit_bias={str(ids[1]): 100}))
        lp = forced.choices[0].logprobs
        assert lp is not None and lp.token_ids == ids + [ids[1]] * 3 and lp.token_logprobs[0] is None
        assert all(len(top or []) == 2 for top in (lp.top_token_logprobs or [])[1:])
        chunks = [c async for c in w.completions_stream(CompletionRequest(
            prompt=ids, max_tokens=4, temperature=0, ignore_eos=True, stream_options=StreamOptions(include_usage=True)))]
        usage = chunks[-1].event.usage
        assert usage is not None and usage.completion_tokens == 4 and usage.prompt_tokens == len(ids)
        assert "".join(ch.text for c in chunks for ch in c.event.choices) == (
            await w.completions(CompletionRequest(prompt=ids, max_tokens=4, temperature=0, ignore_eos=True))).choices[0].text

    for route, body, field, words in [
        ("/execute", {"prompt": "hi", "temperature": "hot"}, "temperature", "must be an integer or a number, got str"),
        ("/execute", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "a string or a list of text parts"),
        ("/execute", {"messages": [{"content": "x"}], "stream": True}, "messages[0].role", "is required"),
        ("/v1/chat/completions", {"messages": "hello"}, "messages", "non-empty list of {role, content} objects"),
        ("/v1/completions", {"prompt": [1, "a"], "logprobs": 1}, "prompt", "a string or a list of token ids"),
        ("/v1/completions", {"prompt": "hi", "logit_bias": {"5": -101}}, "logit_bias['5']", "at least -100"),
        ("/tokenize", {"messages": []}, "messages", "non-empty list"),
    ]:
        status, err, _ = await post(f"{llama}{route}", body)
        assert status == 400 and err["error"]["code"] == "invalid_field", (route, body, err)
        assert err["error"]["field"] == field and f"field {field!r}" in err["error"]["message"], err
        assert words in err["error"]["message"] and "docs/worker.md" in err["error"]["hint"], err
