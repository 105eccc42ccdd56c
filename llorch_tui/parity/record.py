"""Record a model's reference fingerprint from a worker (the reference backend: cpu, float32)."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone

from llorch_worker.api import CompletionLogprobs, WorkerInfo

from llorch_tui.parity import calls
from llorch_tui.parity.suite import PERPLEXITY_VERSION, SuitePrompt, perplexity_text, prompt_suite
from llorch_tui.protocol.parity import EnvFingerprint, Fingerprint, FingerprintPrompt, FingerprintStep, TopLogprob
from llorch_tui.worker_client import WorkerClient


async def suite_prompt_ids(worker: WorkerClient, sp: SuitePrompt) -> tuple[list[int], str, bool]:
    """The token ids a suite prompt becomes on this worker: (ids, text as sent, chat template applied)."""
    if sp.messages is not None:
        tok = await calls.tokenize_chat(worker, sp.messages)
        return tok.tokens, tok.prompt, tok.chat_template
    assert sp.prompt is not None
    return await calls.tokenize(worker, sp.prompt), sp.prompt, False


def steps_of(doc: CompletionLogprobs, start: int = 0) -> list[FingerprintStep]:
    """FingerprintSteps from a worker's `logprobs` answer, from listing position `start` on."""
    steps = []
    for tid, text, lp, top in zip(doc.token_ids[start:], doc.tokens[start:], doc.token_logprobs[start:],
                                  (doc.top_token_logprobs or [])[start:]):
        steps.append(FingerprintStep(token_id=tid, text=text, logprob=lp,
                                     top=[TopLogprob(token_id=e.token_id, logprob=e.logprob, text=e.token)
                                          for e in top or []]))
    return steps


def environment_of(info: WorkerInfo | None, weights_sha256: str | None) -> EnvFingerprint:
    """What the worker reported in `/info` (the facts that decide its numbers); nothing from an older worker."""
    i = info or WorkerInfo()
    return EnvFingerprint(worker_version=i.worker_version, python=i.python, torch=i.torch,
                          transformers=i.transformers, kernel=i.kernel, gpu=i.gpu, cuda=i.cuda, dtype=i.dtype,
                          model_sha256=weights_sha256)


async def perplexity(worker: WorkerClient, version: str = PERPLEXITY_VERSION) -> float:
    """exp(mean negative log-likelihood) of the shipped text, teacher-forced in one request."""
    ids = await calls.tokenize(worker, perplexity_text(version))
    doc = await calls.teacher_forced(worker, ids, 0)
    lps = [lp for lp in doc.token_logprobs[1:] if lp is not None]
    return math.exp(-sum(lps) / len(lps))


async def record_fingerprint(worker: WorkerClient, *, weights_sha256: str, pool_id: str,
                             version: str | None = None) -> Fingerprint:
    suite = prompt_suite(version) if version else prompt_suite()
    health = await worker.health()

    async def one(sp: SuitePrompt) -> FingerprintPrompt:
        ids, text, chat = await suite_prompt_ids(worker, sp)
        doc = await calls.greedy(worker, ids, suite.max_tokens, suite.top_k)
        return FingerprintPrompt(prompt_id=sp.id, prompt=text, chat=chat, prompt_token_ids=ids, steps=steps_of(doc))

    # all at once: the worker decodes them as one batch (a row's numbers do not depend on its neighbours)
    prompts = list(await asyncio.gather(*(one(sp) for sp in suite.prompts)))
    return Fingerprint(environment=environment_of(await worker.info(), weights_sha256),
                       prompt_set_version=suite.version, backend=health.backend or "cpu",
                       dtype=health.dtype or "float32", top_k=suite.top_k, weights_sha256=weights_sha256,
                       perplexity=await perplexity(worker), perplexity_text_version=PERPLEXITY_VERSION,
                       prompts=prompts, recorded_at=datetime.now(timezone.utc), recorded_on=pool_id)
