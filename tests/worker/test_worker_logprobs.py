"""Log-probabilities on /v1/completions (`logprobs` top-k, `echo`, token-id prompts), /tokenize,
the dtype /health reports and the logit-noise fault injection, against real workers."""

from __future__ import annotations

import concurrent.futures
import math
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from workerproc import WorkerProc

pytestmark = pytest.mark.slow


def post(url: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{url}{path}", json=body, timeout=120)


def greedy(url: str, prompt: Any, n: int, k: int = 5, **extra: Any) -> dict[str, Any]:
    r = post(url, "/v1/completions", {"prompt": prompt, "max_tokens": n, "temperature": 0, "logprobs": k,
                                      "ignore_eos": True, **extra})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]


@pytest.fixture
def client(workers: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{workers['qwen2'].url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_openai_client_reads_top_k_logprobs(client: openai.OpenAI) -> None:
    out = client.completions.create(model="tiny", prompt="The sea is", max_tokens=8, temperature=0, logprobs=5,
                                    extra_body={"ignore_eos": True})
    lp = out.choices[0].logprobs
    assert lp is not None
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8
    for token, chosen, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert 1 <= len(top) <= 5 and all(v <= 0 for v in top.values())
        values = list(top.values())
        assert values == sorted(values, reverse=True)  # best first
        # greedy: the chosen token is the most likely one
        assert chosen == pytest.approx(values[0], abs=1e-6)
        assert top.get(token, chosen) == pytest.approx(chosen, abs=1e-6)
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    # llorch's extension, read through the client's extra fields: ids next to every top entry
    ids = out.choices[0].logprobs.model_extra["top_token_logprobs"]
    assert [len(row) for row in ids] == [5] * 8
    assert [row[0]["token_id"] for row in ids] == out.choices[0].logprobs.model_extra["token_ids"]


def test_streaming_and_chat_logprobs_through_the_openai_client(client: openai.OpenAI) -> None:
    """Streamed completions carry each chunk's tokens' log-probs, adding up to the plain answer's;
    chat answers (plain and streamed) carry OpenAI's `logprobs.content`."""
    ask = {"model": "tiny", "prompt": "The sea is", "max_tokens": 10, "temperature": 0, "logprobs": 3,
           "extra_body": {"ignore_eos": True}}
    whole = client.completions.create(**ask).choices[0]
    chunks = [c.choices[0] for c in client.completions.create(**ask, stream=True) if c.choices]
    got: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for c in chunks:
        if c.text:  # a chunk with text carries the log-probs of the tokens that make it
            assert c.logprobs is not None and c.logprobs.tokens, c
        if c.logprobs is not None:
            for key in got:
                got[key] += getattr(c.logprobs, key)
    assert "".join(c.text for c in chunks) == whole.text
    assert whole.logprobs is not None
    assert got["tokens"] == whole.logprobs.tokens and got["text_offset"] == whole.logprobs.text_offset
    assert got["token_logprobs"] == pytest.approx(whole.logprobs.token_logprobs, abs=1e-4)
    assert [list(t) for t in got["top_logprobs"]] == [list(t) for t in whole.logprobs.top_logprobs or []]

    chat = {"model": "tiny", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8,
            "temperature": 0, "logprobs": True, "top_logprobs": 4, "extra_body": {"ignore_eos": True}}
    plain = client.chat.completions.create(**chat)
    lp = plain.choices[0].logprobs
    assert lp is not None and lp.content is not None and plain.usage is not None
    assert len(lp.content) == plain.usage.completion_tokens == 8
    for entry in lp.content:
        assert len(entry.top_logprobs) == 4 and entry.logprob <= 0
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob, abs=1e-6)  # greedy: the best
        assert entry.bytes == list(entry.token.encode("utf-8"))
    streamed = [c.choices[0] for c in client.chat.completions.create(**chat, stream=True) if c.choices]
    content = [e for c in streamed if c.logprobs is not None for e in c.logprobs.content or []]
    assert [e.token for e in content] == [e.token for e in lp.content]
    assert [e.logprob for e in content] == pytest.approx([e.logprob for e in lp.content], abs=1e-4)
    assert "".join(c.delta.content or "" for c in streamed) == plain.choices[0].message.content
    # without top_logprobs: the chosen tokens only; top_logprobs alone or out of range: 400
    bare = client.chat.completions.create(**{**chat, "top_logprobs": None}).choices[0].logprobs
    assert bare is not None and bare.content and all(e.top_logprobs == [] for e in bare.content)
    for bad in ({"logprobs": None, "top_logprobs": 2}, {"top_logprobs": 21}, {"logprobs": "yes"}):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(**{**chat, **bad})


def test_probabilities_are_normalised_log_softmax(llama: str) -> None:
    """With k = 20 on a 512-token vocabulary the top mass is a real share of 1, never above it."""
    choice = greedy(llama, "Hello", 4, k=20)
    for row in choice["logprobs"]["top_token_logprobs"]:
        mass = sum(math.exp(e["logprob"]) for e in row)
        assert 0 < mass <= 1 + 1e-5


def test_echo_teacher_forcing_matches_the_decode_path(workers: dict) -> None:
    """The log-probs of a greedy run (KV-cached decode steps) equal those of one teacher-forced
    forward pass over prompt + the same tokens (echo, max_tokens 0), for every architecture."""
    for arch, proc in workers.items():
        ids = post(proc.url, "/tokenize", {"prompt": "Write one sentence about the sea"}).json()["tokens"]
        run = greedy(proc.url, ids, 12)["logprobs"]
        r = post(proc.url, "/v1/completions", {"prompt": ids + run["token_ids"], "max_tokens": 0, "logprobs": 5,
                                               "echo": True})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["usage"]["completion_tokens"] == 0 and body["choices"][0]["finish_reason"] == "length"
        echo = body["choices"][0]["logprobs"]
        assert echo["token_ids"] == ids + run["token_ids"]
        assert echo["token_logprobs"][0] is None and echo["top_logprobs"][0] is None
        forced = echo["token_logprobs"][len(ids):]
        assert len(forced) == 12
        worst = max(abs(a - b) for a, b in zip(forced, run["token_logprobs"]))
        assert worst < 1e-3, f"{arch}: teacher-forced vs decode differ by {worst}"
        forced_top = [row[0]["token_id"] for row in echo["top_token_logprobs"][len(ids):]]
        assert forced_top == run["token_ids"], arch


def test_token_id_prompt_equals_text_prompt(llama: str) -> None:
    ids = post(llama, "/tokenize", {"prompt": "Once upon a time"}).json()["tokens"]
    by_text = greedy(llama, "Once upon a time", 6)
    by_ids = greedy(llama, ids, 6)
    by_nested = greedy(llama, [ids], 6)
    assert by_text["text"] == by_ids["text"] == by_nested["text"]
    assert by_text["logprobs"]["token_logprobs"] == by_ids["logprobs"]["token_logprobs"]
    assert post(llama, "/detokenize", {"tokens": ids}).json()["prompt"].endswith("Once upon a time")


def test_echo_text_and_offsets(llama: str) -> None:
    choice = greedy(llama, "Once upon a time", 3, k=2, echo=True)
    lp = choice["logprobs"]
    assert choice["text"].startswith("Once upon a time")
    n_prompt = len(lp["tokens"]) - 3
    assert lp["token_logprobs"][0] is None and all(v is not None for v in lp["token_logprobs"][1:])
    assert lp["text_offset"] == [sum(len(t) for t in lp["tokens"][:i]) for i in range(len(lp["tokens"]))]
    assert n_prompt >= 2


def test_chat_tokenize_renders_the_template(llama: str) -> None:
    body = post(llama, "/tokenize", {"messages": [{"role": "user", "content": "Hi"}]}).json()
    assert body["chat_template"] is True and body["count"] == len(body["tokens"]) > 0
    assert "Hi" in body["prompt"]


@pytest.mark.parametrize("bad", [
    {"logprobs": -1}, {"logprobs": 21}, {"logprobs": 10 ** 12}, {"logprobs": True}, {"logprobs": "5"},
    {"echo": "yes"}, {"prompt": [-1]}, {"prompt": [10 ** 12]}, {"prompt": [1, "a"]}, {"prompt": [[1], [2]]},
    {"prompt": []}, {"max_tokens": 0}, {"max_tokens": -1, "echo": True},
    {"stream": True, "echo": True},
])
def test_hostile_values_are_4xx(llama: str, bad: dict[str, Any]) -> None:
    r = post(llama, "/v1/completions", {"prompt": "hi", "max_tokens": 2, **bad})
    assert r.status_code == 400, (bad, r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] in ("invalid_field", "empty_prompt", "invalid_max_tokens", "unsupported") and err["message"]


def test_tokenize_rejects_bad_input(llama: str) -> None:
    assert post(llama, "/tokenize", {}).status_code == 400
    assert post(llama, "/detokenize", {"tokens": [-5]}).status_code == 400


def test_logprob_requests_batch_with_plain_ones(llama: str) -> None:
    """A burst mixing echo, top-k and plain requests gives each the answer it gets alone."""
    bodies = [{"prompt": p, "max_tokens": 6, "temperature": 0, "ignore_eos": True, **extra}
              for p in ("a b c", "The sea is blue and", "x") for extra in ({}, {"logprobs": 3}, {"logprobs": 3, "echo": True})]
    alone = [post(llama, "/v1/completions", b).json()["choices"][0] for b in bodies]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as ex:
        together = [f.result().json()["choices"][0] for f in [ex.submit(post, llama, "/v1/completions", b) for b in bodies]]
    for a, t in zip(alone, together):
        assert a["text"] == t["text"]
        if a["logprobs"]:
            assert a["logprobs"]["token_ids"] == t["logprobs"]["token_ids"]
            worst = max((abs(x - y) for x, y in zip(a["logprobs"]["token_logprobs"], t["logprobs"]["token_logprobs"])
                         if x is not None), default=0.0)
            assert worst < 1e-3


@pytest.fixture(scope="module")
def noisy_bf16(synth_models: dict[str, Path]) -> Any:
    """A bfloat16 worker with the logit-noise fault injected (one start for both checks)."""
    proc = WorkerProc(synth_models["llama"], "--dtype", "bfloat16", worker_id="noisy",
                      env={"LLORCH_WORKER_FAULT_LOGIT_NOISE": "1.5", "LLORCH_WORKER_LOG": "INFO"})
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


def test_health_reports_loaded_dtype_and_fault(noisy_bf16: WorkerProc, llama: str) -> None:
    health = requests.get(f"{noisy_bf16.url}/health", timeout=30).json()
    assert health["dtype"] == "bfloat16" and noisy_bf16.ready["dtype"] == "bfloat16"
    assert health["fault_injection"] == {"logit_noise": 1.5}
    assert "FAULT INJECTION ON" in noisy_bf16.stderr()
    clean = requests.get(f"{llama}/health", timeout=30).json()
    assert clean["dtype"] == "float32" and "fault_injection" not in clean


def test_fault_noise_changes_answers_deterministically(noisy_bf16: WorkerProc, llama: str) -> None:
    ids = post(llama, "/tokenize", {"prompt": "The capital of France is"}).json()["tokens"]
    clean = greedy(llama, ids, 16)["logprobs"]
    noisy = [greedy(noisy_bf16.url, ids, 16)["logprobs"] for _ in range(2)]
    assert noisy[0]["token_ids"] == noisy[1]["token_ids"]  # still deterministic
    assert noisy[0]["token_ids"] != clean["token_ids"]


@pytest.mark.parametrize("name", ["LLORCH_WORKER_FAULT_LOGIT_NOISE", "LLORCH_WORKER_FAULT_PREFILL_TOKEN"])
def test_bad_fault_setting_is_a_usage_error(synth_models: dict[str, Path], name: str) -> None:
    proc = WorkerProc(synth_models["llama"], worker_id="badfault", env={name: "lots"})
    try:
        assert proc.wait_exit() == 2
        assert name in proc.stderr()
    finally:
        proc.close()
