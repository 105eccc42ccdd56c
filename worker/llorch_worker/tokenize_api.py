"""`POST /tokenize` and `POST /detokenize` (the shapes vLLM serves): what the worker's tokenizer
and chat template make of a text or a conversation. The parity recorder uses them to send every
backend the very same token ids."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .api import DetokenizeRequest, TokenizeRequest
from .errors import ApiError
from .httpkit import chat_prompt_of, check_prompt_size, read_request, ready_state


async def tokenize(request: web.Request) -> web.Response:
    st = ready_state(request)
    req = await read_request(request, TokenizeRequest)
    eng = st.engine
    # like generation requests: bounded before any work, and tokenized off the event loop
    if req.messages is not None:
        text = await chat_prompt_of(st, req.messages)
        # the template carries its own special tokens
        ids = await asyncio.to_thread(eng.encode, text, add_special_tokens=False)
        templated = bool(getattr(eng.tokenizer, "chat_template", None))
    else:
        if req.prompt is None:
            raise ApiError(400, "missing_field", "send 'prompt' (a string) or 'messages' (a chat)", field="prompt")
        text = req.prompt
        check_prompt_size(st, len(text))
        special = True if req.add_special_tokens is None else req.add_special_tokens
        ids = await asyncio.to_thread(eng.encode, text, add_special_tokens=special)
        templated = False
    return web.json_response({"tokens": ids, "count": len(ids), "max_model_len": eng.context_length,
                              "prompt": text, "chat_template": templated})


async def detokenize(request: web.Request) -> web.Response:
    st = ready_state(request)
    ids = (await read_request(request, DetokenizeRequest)).tokens
    vocab = st.engine.vocab_size
    if not all(0 <= t < vocab for t in ids):
        raise ApiError(400, "invalid_field", f"field 'tokens' must be a list of token ids in 0..{vocab - 1}",
                       hint="send token ids of this model's tokenizer (see POST /tokenize)", field="tokens")
    return web.json_response({"prompt": st.engine.decode(ids)})


def add_tokenize_routes(app: web.Application) -> None:
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
