"""The real `openai` Python client against the worker, plain and streaming."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def client(workers: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{workers['qwen2'].url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_list(client: openai.OpenAI, workers: dict) -> None:
    assert [m.id for m in client.models.list()] == [workers["qwen2"].ready["model"]]


def test_chat_plain_and_streaming_agree(client: openai.OpenAI) -> None:
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour 🎨"}]
    plain = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=10, temperature=0,
                                           extra_body={"ignore_eos": True})
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage is not None and plain.usage.completion_tokens == 10
    stream = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=10, temperature=0, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    parts, finish, usage, roles = [], None, None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                parts.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert roles == ["assistant"]
    assert "".join(parts) == plain.choices[0].message.content
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 10


def test_completions_plain_and_streaming_agree(client: openai.OpenAI) -> None:
    plain = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=8, temperature=0.9,
                                      seed=11, extra_body={"ignore_eos": True})
    assert plain.object == "text_completion" and plain.usage.completion_tokens == 8
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Once upon a time", max_tokens=8, temperature=0.9, seed=11, stream=True,
        extra_body={"ignore_eos": True}) if c.choices)
    assert text == plain.choices[0].text


def test_client_sees_api_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=0)
    assert exc.value.status_code == 400
    assert "max_tokens" in str(exc.value)
