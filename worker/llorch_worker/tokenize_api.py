"""`POST /tokenize` and `POST /detokenize` (the shapes vLLM serves): what the worker's tokenizer
and chat template make of a text or a conversation. The parity recorder uses them to send every
backend the very same token ids."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .errors import ApiError
from .httpkit import chat_prompt_of, check_prompt_size, get_bool, read_json, ready_state


async def tokenize(request: web.Request) -> web.Response:
    st = ready_state(request)
    body = await read_json(request)
    eng = st.engine
    # like generation requests: bounded before any work, and tokenized off the event loop
    if body.get("messages") is not None:
        text = await chat_prompt_of(st, body)
        # the template carries its own special tokens
        ids = await asyncio.to_thread(eng.encode, text, add_special_tokens=False)
        templated = bool(getattr(eng.tokenizer, "chat_template", None))
    else:
        raw = body.get("prompt")
        if not isinstance(raw, str):
            raise ApiError(400, "missing_field", "send 'prompt' (a string) or 'messages' (a chat)")
        text = raw
        check_prompt_size(st, len(text))
        ids = await asyncio.to_thread(eng.encode, text, add_special_tokens=get_bool(body, "add_special_tokens", True))
        templated = False
    return web.json_response({"tokens": ids, "count": len(ids), "max_model_len": eng.context_length,
                              "prompt": text, "chat_template": templated})


async def detokenize(request: web.Request) -> web.Response:
    st = ready_state(request)
    body = await read_json(request)
    ids = body.get("tokens")
    vocab = st.engine.vocab_size
    if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab
                                            for t in ids):
        raise ApiError(400, "invalid_field", f"field 'tokens' must be a list of token ids in 0..{vocab - 1}")
    return web.json_response({"prompt": st.engine.decode(ids)})


def add_tokenize_routes(app: web.Application) -> None:
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
