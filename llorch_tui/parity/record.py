"""Record a model's reference fingerprint from a worker (the reference backend: cpu, float32)."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from typing import Any

from llorch_tui.parity.suite import PERPLEXITY_VERSION, SuitePrompt, perplexity_text, prompt_suite
from llorch_tui.parity.worker_client import ParityHTTP
from llorch_tui.protocol.parity import EnvFingerprint, Fingerprint, FingerprintPrompt, FingerprintStep, TopLogprob


async def suite_prompt_ids(http: ParityHTTP, sp: SuitePrompt) -> tuple[list[int], str, bool]:
    """The token ids a suite prompt becomes on this worker: (ids, text as sent, chat template applied)."""
    if sp.messages is not None:
        return await http.tokenize_chat(sp.messages)
    assert sp.prompt is not None
    return await http.tokenize(sp.prompt), sp.prompt, False


def steps_of(doc: dict[str, Any], start: int = 0) -> list[FingerprintStep]:
    """FingerprintSteps from a worker's `logprobs` doc, from listing position `start` on."""
    steps = []
    for tid, text, lp, top in zip(doc["token_ids"][start:], doc["tokens"][start:], doc["token_logprobs"][start:],
                                  (doc.get("top_token_logprobs") or [])[start:]):
        steps.append(FingerprintStep(token_id=tid, text=text, logprob=lp,
                                     top=[TopLogprob(token_id=e["token_id"], logprob=e["logprob"], text=e.get("token"))
                                          for e in top or []]))
    return steps


def environment_of(info: dict[str, Any], weights_sha256: str | None) -> EnvFingerprint:
    """What the worker reported in `/info` (the facts that decide its numbers)."""
    return EnvFingerprint(worker_version=info.get("worker_version"), python=info.get("python"),
                          torch=info.get("torch"), transformers=info.get("transformers"), kernel=info.get("kernel"),
                          gpu=info.get("gpu"), cuda=info.get("cuda"), dtype=info.get("dtype"),
                          model_sha256=weights_sha256)


async def perplexity(http: ParityHTTP, version: str = PERPLEXITY_VERSION) -> float:
    """exp(mean negative log-likelihood) of the shipped text, teacher-forced in one request."""
    ids = await http.tokenize(perplexity_text(version))
    doc = await http.teacher_forced(ids, 0)
    lps = [lp for lp in doc["token_logprobs"][1:] if lp is not None]
    return math.exp(-sum(lps) / len(lps))


async def record_fingerprint(http: ParityHTTP, *, weights_sha256: str, pool_id: str,
                             version: str | None = None) -> Fingerprint:
    suite = prompt_suite(version) if version else prompt_suite()
    health = await http.health()

    async def one(sp: SuitePrompt) -> FingerprintPrompt:
        ids, text, chat = await suite_prompt_ids(http, sp)
        doc = await http.greedy(ids, suite.max_tokens, suite.top_k)
        return FingerprintPrompt(prompt_id=sp.id, prompt=text, chat=chat, prompt_token_ids=ids, steps=steps_of(doc))

    # all at once: the worker decodes them as one batch (a row's numbers do not depend on its neighbours)
    prompts = list(await asyncio.gather(*(one(sp) for sp in suite.prompts)))
    return Fingerprint(environment=environment_of(await http.info(), weights_sha256),
                       prompt_set_version=suite.version, backend=str(health.get("backend") or "cpu"),
                       dtype=str(health.get("dtype") or "float32"), top_k=suite.top_k, weights_sha256=weights_sha256,
                       perplexity=await perplexity(http), perplexity_text_version=PERPLEXITY_VERSION,
                       prompts=prompts, recorded_at=datetime.now(timezone.utc), recorded_on=pool_id)
