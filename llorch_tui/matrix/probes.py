"""The probes a cell runs against its worker, over HTTP (aiohttp), through `client.worker_url(port)`.

Each probe checks one property of a healthy worker; the first that fails ends the cell with a
classified ReasonCode. The "second prompt of a different length" probe is the regression test for
the original project's KV-cache bug (a warm cache reused by the next request).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.protocol.matrix import Measurements, ReasonCode

FINISH_REASONS = ("length", "stop")
SAMPLE_CHARS = 120


class ProbeFailure(Exception):
    def __init__(self, code: str, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.hint = hint


@dataclass
class Generation:
    text: str
    tokens_generated: int
    finish_reason: str | None
    ttft_ms: float | None
    tokens_per_second: float | None
    duration_ms: float
    raw: dict[str, Any] = field(default_factory=dict)


class WorkerHTTP:
    """A thin client for one worker; also tracks the peak RSS/device memory seen in /health."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, request_timeout_s: float) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self.peak_rss: int | None = None
        self.device_peak: int | None = None
        self.last_rss: int | None = None

    async def health(self) -> dict[str, Any]:
        async with self.session.get(f"{self.base}/health", timeout=self.timeout) as resp:
            body = await resp.json(content_type=None)
        mem = body.get("memory") or {}
        rss, dpeak = mem.get("rss"), mem.get("device_peak")
        if isinstance(rss, int):
            self.last_rss = rss
            self.peak_rss = max(self.peak_rss or 0, rss)
        if isinstance(dpeak, int):
            self.device_peak = max(self.device_peak or 0, dpeak)
        return body

    async def execute(self, prompt: str, max_tokens: int, seed: int | None, job_id: str | None = None) -> Generation:
        """One non-streamed generation. HTTP errors become ProbeFailure with the worker's error code."""
        payload: dict[str, Any] = {"job_id": job_id or uuid.uuid4().hex, "prompt": prompt, "max_tokens": max_tokens}
        if seed is not None:
            payload["seed"] = seed
        async with self.session.post(f"{self.base}/execute", json=payload, timeout=self.timeout) as resp:
            try:
                body = await resp.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                body = {"error": {"code": "internal", "message": (await resp.text())[:300]}}
            if resp.status != 200:
                err = (body or {}).get("error") or {}
                code = ReasonCode.OOM if err.get("code") == "oom" or resp.status == 507 else ReasonCode.WRONG_OUTPUT
                raise ProbeFailure(code, f"/execute answered HTTP {resp.status} {err.get('code', '')}: "
                                         f"{err.get('message', '')}".strip(), err.get("hint"))
        return Generation(text=str(body.get("text") or ""), tokens_generated=int(body.get("tokens_generated") or 0),
                          finish_reason=body.get("finish_reason"), ttft_ms=body.get("ttft_ms"),
                          tokens_per_second=body.get("tokens_per_second"),
                          duration_ms=float(body.get("duration_ms") or 0.0), raw=body)

    async def cancel(self, job_id: str) -> int:
        async with self.session.post(f"{self.base}/cancel", json={"job_id": job_id}, timeout=self.timeout) as resp:
            await resp.read()
            return resp.status


def check_generation(gen: Generation, max_tokens: int, what: str) -> None:
    if gen.tokens_generated <= 0 or gen.text == "":
        raise ProbeFailure(ReasonCode.EMPTY_OUTPUT, f"{what}: the worker returned no text "
                                                    f"({gen.tokens_generated} tokens, finish_reason {gen.finish_reason!r})")
    if gen.finish_reason not in FINISH_REASONS:
        raise ProbeFailure(ReasonCode.WRONG_OUTPUT, f"{what}: unexpected finish_reason {gen.finish_reason!r}")
    if gen.tokens_generated > max_tokens:
        raise ProbeFailure(ReasonCode.WRONG_OUTPUT, f"{what}: {gen.tokens_generated} tokens for max_tokens {max_tokens}")
    if gen.finish_reason == "length" and gen.tokens_generated != max_tokens:
        raise ProbeFailure(ReasonCode.WRONG_OUTPUT,
                           f"{what}: finish_reason 'length' after {gen.tokens_generated} of {max_tokens} tokens")


async def run_probes(http: WorkerHTTP, options: MatrixOptions, m: Measurements) -> list[Generation]:
    """The correctness probes; fills `m` with what they measured. Raises ProbeFailure."""
    health = await http.health()
    if health.get("status") != "ok":
        raise ProbeFailure(ReasonCode.LOAD_ERROR, f"/health says {health.get('status')!r} after spawn: {health.get('error')}")
    gens: list[Generation] = []
    first = await http.execute(options.prompt, options.max_tokens, options.seed)
    check_generation(first, options.max_tokens, "seeded generation")
    gens.append(first)
    m.ttft_ms, m.tokens_per_second, m.tokens_generated = first.ttft_ms, first.tokens_per_second, first.tokens_generated
    m.sample_text = first.text[:SAMPLE_CHARS]
    again = await http.execute(options.prompt, options.max_tokens, options.seed)
    gens.append(again)
    if again.text != first.text:
        raise ProbeFailure(ReasonCode.NONDETERMINISTIC,
                           f"same prompt and seed {options.seed} gave different text: {first.text[:60]!r} vs {again.text[:60]!r}",
                           "the worker must seed every request and start from a fresh KV cache")
    # A prompt of another length with another budget, right after: a reused KV cache breaks here.
    second_max = max(1, options.max_tokens // 2 + 3)
    try:
        second = await http.execute(options.second_prompt, second_max, options.seed + 1)
        check_generation(second, second_max, "second prompt")
    except ProbeFailure as exc:
        raise ProbeFailure(ReasonCode.SECOND_PROMPT_FAILED, f"second prompt of a different length failed: {exc.reason}",
                           "every request must start with a fresh KV cache") from exc
    gens.append(second)
    await http.health()
    m.generation_s = round(sum(g.duration_ms for g in gens) / 1000, 4)
    m.peak_rss_bytes, m.device_peak_bytes = http.peak_rss, http.device_peak
    return gens
