"""The worker calls a fingerprint or a certificate needs, over its HTTP API (aiohttp)."""

from __future__ import annotations

from typing import Any

import aiohttp


class WorkerAnswerError(Exception):
    """The worker refused or failed a parity request (status and its error document)."""

    def __init__(self, what: str, status: int, body: Any) -> None:
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        self.status, self.code = status, str(err.get("code") or "")
        super().__init__(f"{what}: the worker answered HTTP {status} {self.code}: {err.get('message') or body}"[:500])


class ParityHTTP:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout_s: float = 300.0,
                 headers: dict[str, str] | None = None) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.headers = headers or {}

    async def _get(self, path: str) -> dict[str, Any]:
        async with self.session.get(f"{self.base}{path}", timeout=self.timeout, headers=self.headers) as r:
            body = await r.json(content_type=None)
            if r.status != 200:
                raise WorkerAnswerError(f"GET {path}", r.status, body)
            return body

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(f"{self.base}{path}", json=payload, timeout=self.timeout,
                                     headers=self.headers) as r:
            try:
                body = await r.json(content_type=None)
            except ValueError:
                body = {"error": {"message": (await r.text())[:300]}}
            if r.status != 200:
                raise WorkerAnswerError(f"POST {path}", r.status, body)
            return body

    async def health(self) -> dict[str, Any]:
        return await self._get("/health")

    async def info(self) -> dict[str, Any]:
        """The worker's software and device facts (`GET /info`); empty from a worker without the route."""
        try:
            return await self._get("/info")
        except WorkerAnswerError:
            return {}

    async def tokenize(self, text: str) -> list[int]:
        return list((await self._post("/tokenize", {"prompt": text}))["tokens"])

    async def tokenize_chat(self, messages: list[dict[str, str]]) -> tuple[list[int], str, bool]:
        """(token ids, the rendered prompt, whether the model has a chat template)."""
        body = await self._post("/tokenize", {"messages": messages})
        return list(body["tokens"]), str(body["prompt"]), bool(body.get("chat_template"))

    async def greedy(self, prompt_ids: list[int], max_tokens: int, top_k: int) -> dict[str, Any]:
        """A greedy run of exactly max_tokens (eos ignored) with top-k log-probs: the `logprobs` doc."""
        body = await self._post("/v1/completions", {"prompt": prompt_ids, "max_tokens": max_tokens, "temperature": 0,
                                                    "logprobs": top_k, "ignore_eos": True})
        return body["choices"][0]["logprobs"]

    async def teacher_forced(self, ids: list[int], top_k: int) -> dict[str, Any]:
        """Log-probs of every token of `ids` given the ones before it (echo, nothing generated)."""
        body = await self._post("/v1/completions", {"prompt": ids, "max_tokens": 0, "logprobs": top_k, "echo": True})
        return body["choices"][0]["logprobs"]

    async def chat(self, question: str, max_tokens: int) -> str:
        body = await self._post("/v1/chat/completions", {"messages": [{"role": "user", "content": question}],
                                                         "max_tokens": max_tokens, "temperature": 0})
        return str(body["choices"][0]["message"]["content"])
