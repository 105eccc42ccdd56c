"""Log-probabilities in OpenAI's two documents: the legacy completions `logprobs` object and the
chat `logprobs.content` list, for a whole answer or for the tokens of one streamed chunk.

`entries` are the scheduler's per-token records: (log-prob of the chosen token, [(id, log-prob)
top-k best first]), or None for a position without one (the first prompt token under echo).
"""

from __future__ import annotations

from typing import Any, Protocol

from .jobs import TokenLogprob


class TokenTexts(Protocol):
    def token_text(self, token_id: int) -> str: ...


def completion_logprobs(eng: TokenTexts, ids: list[int], entries: list[TokenLogprob | None], k: int,
                        text_offset: int = 0) -> dict[str, Any]:
    """The legacy completions `logprobs` object plus token ids (llorch's extension: a token's text
    is ambiguous, its id is not). `text_offset` is where the first token starts in the whole
    answer (a streamed chunk's tokens continue the offsets of the chunks before it)."""
    tokens = [eng.token_text(t) for t in ids]
    offsets, pos = [], text_offset
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    top_docs: list[dict[str, float] | None] = []
    top_ids: list[list[dict[str, Any]] | None] = []
    for e in entries:
        if e is None:
            top_docs.append(None)
            top_ids.append(None)
            continue
        doc: dict[str, float] = {}
        for tid, lp in e[1]:
            doc.setdefault(eng.token_text(tid), lp)  # two ids with the same text: the likelier one
        top_docs.append(doc)
        top_ids.append([{"token_id": tid, "token": eng.token_text(tid), "logprob": lp} for tid, lp in e[1]])
    return {"tokens": tokens, "token_logprobs": [None if e is None else e[0] for e in entries],
            "top_logprobs": top_docs if k > 0 else [None if e is None else {} for e in entries],
            "text_offset": offsets, "token_ids": ids, "top_token_logprobs": top_ids if k > 0 else None}


def _chat_token(eng: TokenTexts, tid: int, lp: float) -> dict[str, Any]:
    text = eng.token_text(tid)
    # `bytes`: the UTF-8 of the token's text (a token holding part of a character shows U+FFFD)
    return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8")), "token_id": tid}


def chat_logprobs(eng: TokenTexts, ids: list[int], entries: list[TokenLogprob], k: int) -> dict[str, Any]:
    """Chat completions' `logprobs`: {"content": [{token, logprob, bytes, top_logprobs}], "refusal": None},
    with `top_logprobs` cut to the k asked for (0: an empty list). `token_id` is llorch's extension."""
    content = []
    for tid, (lp, top) in zip(ids, entries):
        content.append({**_chat_token(eng, tid, lp),
                        "top_logprobs": [_chat_token(eng, t, v) for t, v in top[:k]]})
    return {"content": content, "refusal": None}
