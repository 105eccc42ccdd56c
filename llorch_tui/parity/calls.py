"""The worker requests a fingerprint or a certificate makes, as typed `WorkerClient` calls."""

from __future__ import annotations

from llorch_worker.api import (ChatMessage, ChatRequest, Completion, CompletionLogprobs, CompletionRequest, Tokenized,
                               TokenizeRequest)

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.worker_client import MISMATCH_HINT, WorkerClient

PARITY_TIMEOUT_S = 300.0  # a whole suite is batched into one worker: generous per request


def _logprobs(answer: Completion, what: str) -> CompletionLogprobs:
    lp = answer.choices[0].logprobs if answer.choices else None
    if lp is None:
        raise LlorchError(ErrorCode.PROTOCOL_MISMATCH, f"{what}: the worker answered without log-probs", MISMATCH_HINT)
    return lp


async def tokenize(worker: WorkerClient, text: str) -> list[int]:
    return (await worker.tokenize(TokenizeRequest(prompt=text))).tokens


async def tokenize_chat(worker: WorkerClient, messages: list[dict[str, str]]) -> Tokenized:
    """The ids of a conversation, the prompt the chat template rendered, and whether the model has one."""
    return await worker.tokenize(TokenizeRequest(messages=[ChatMessage.model_validate(m) for m in messages]))


async def greedy(worker: WorkerClient, prompt_ids: list[int], max_tokens: int, top_k: int) -> CompletionLogprobs:
    """A greedy run of exactly max_tokens (eos ignored) with top-k log-probs."""
    answer = await worker.completions(CompletionRequest(prompt=prompt_ids, max_tokens=max_tokens, temperature=0,
                                                        logprobs=top_k, ignore_eos=True))
    return _logprobs(answer, "a greedy run")


async def teacher_forced(worker: WorkerClient, ids: list[int], top_k: int) -> CompletionLogprobs:
    """Log-probs of every token of `ids` given the ones before it (echo, nothing generated)."""
    answer = await worker.completions(CompletionRequest(prompt=ids, max_tokens=0, logprobs=top_k, echo=True))
    return _logprobs(answer, "a teacher-forced run")


async def chat(worker: WorkerClient, question: str, max_tokens: int) -> str:
    answer = await worker.chat(ChatRequest(messages=[ChatMessage(role="user", content=question)],
                                           max_tokens=max_tokens, temperature=0))
    return (answer.choices[0].message.content or "") if answer.choices else ""
