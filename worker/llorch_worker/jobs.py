"""One generation request as the scheduler sees it, and its incremental detokenizer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
TokenLogprob = tuple[float, list[tuple[int, float]]]


@dataclass(eq=False)
class Job:
    job_id: str
    prompt_ids: list[int]
    max_tokens: int
    emit: Callable[[Event], None]  # called on the scheduler thread; must not block
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False  # benchmarks and tests want exactly max_tokens
    stop: list[str] = field(default_factory=list)  # stop strings (OpenAI `stop`)
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit
    # False for non-streaming requests: no per-token detokenizing or events (each event wakes the
    # event loop, which competes with the decode thread for the GIL); the text is decoded once
    incremental: bool = True
    # log-probabilities (OpenAI `logprobs`/`echo`): None = not wanted; k = the top-k alternatives
    # recorded for every generated token (0: the chosen token's log-prob only)
    top_logprobs: int | None = None
    echo_logprobs: bool = False  # also the log-prob of every prompt token (teacher forcing)
    generated: list[int] = field(default_factory=list)
    # one (log-prob of the token, [(token id, log-prob) top-k best first]) per generated token
    token_logprobs: list[TokenLogprob] = field(default_factory=list)
    # the same per prompt token from the second on (the first has no context to be predicted from)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    t_submit: float = field(default_factory=time.monotonic)
    t_first: float | None = None
    t_done: float | None = None
    # incremental detokenization offsets (into `generated`)
    _prefix: int = 0
    _read: int = 0
    _held: str = ""
    # Where emit() delivers on the event loop (set by httpkit.build_job; the scheduler never touches it).
    queue: asyncio.Queue[Event] | None = None
    stopped_by_string: bool = False  # text that may be the start of a stop string, not yet emitted

    def __post_init__(self) -> None:
        from .sampling import make_generator  # torch: imported lazily so the CLI fails fast without it

        self.generator = make_generator(self.seed)

    def cancel(self) -> None:
        self.cancelled.set()

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def push_token(self, token: int, decode: Callable[[list[int]], str]) -> str:
        """Append a token and return the text it completes (held back mid UTF-8 sequence)."""
        if self.t_first is None:
            self.t_first = time.monotonic()
        self.generated.append(token)
        if not self.incremental:
            return ""
        prefix_text = decode(self.generated[self._prefix:self._read])
        new_text = decode(self.generated[self._prefix:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text):]
            self._prefix, self._read = self._read, len(self.generated)
            return delta
        return ""

    def token_event(self, text: str) -> Event:
        """A `token` event; with log-probs wanted it also says how many tokens the text so far
        covers (`tokens`), so a streamed chunk carries the log-probs of exactly its tokens."""
        event: Event = {"type": "token", "text": text}
        if self.top_logprobs is not None:
            event["tokens"] = len(self.generated)
        return event

    def accept_text(self, delta: str) -> tuple[str, bool]:
        """Record decoded text; return (text to emit now, whether a stop string was hit).
        A tail that could begin a stop string is held back until it is decided."""
        text = self._held + delta
        self._held = ""
        hits = [i for i in (text.find(s) for s in self.stop if s) if i >= 0]
        if hits:
            out = text[: min(hits)]
            self.text_parts.append(out)
            return out, True
        keep = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if s.startswith(text[-k:]):
                    keep = max(keep, k)
                    break
        out, self._held = text[: len(text) - keep], text[len(text) - keep:]
        self.text_parts.append(out)
        return out, False

    def flush_text(self, decode: Callable[[list[int]], str]) -> str:
        """At the end, emit whatever was held back (an incomplete byte sequence decodes to U+FFFD)."""
        if not self.incremental:
            self.text_parts = [decode(self.generated)]
            return ""
        full = decode(self.generated[self._prefix:])
        prefix_text = decode(self.generated[self._prefix:self._read])
        delta = full[len(prefix_text):] if len(full) > len(prefix_text) else ""
        out, self._held = self._held + delta, ""
        self.text_parts.append(out)
        return out

    def summary(self) -> Event:
        end = self.t_done or time.monotonic()
        duration = end - self.t_submit
        gen_time = end - self.t_first if self.t_first else 0.0
        n = len(self.generated)
        return {
            "job_id": self.job_id,
            "text": "".join(self.text_parts),
            "tokens_generated": n,
            "prompt_tokens": len(self.prompt_ids),
            "finish_reason": self.finish_reason,
            "ttft_ms": round((self.t_first - self.t_submit) * 1000, 3) if self.t_first else None,
            "duration_ms": round(duration * 1000, 3),
            # decode rate after the first token; with a single token, the whole request
            "tokens_per_second": round((n - 1) / gen_time, 3) if n > 1 and gen_time > 0
            else (round(n / duration, 3) if duration > 0 else 0.0),
            **self._logprob_fields(),
        }

    def _logprob_fields(self) -> Event:
        """Token ids and log-probs for the OpenAI layer; only when the request asked for them."""
        if self.top_logprobs is None and not self.echo_logprobs:
            return {}
        return {"prompt_ids": list(self.prompt_ids), "token_ids": list(self.generated),
                "token_logprobs": list(self.token_logprobs), "prompt_logprobs": list(self.prompt_logprobs)}
