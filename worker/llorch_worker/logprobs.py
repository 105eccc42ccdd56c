"""Log-probabilities for the OpenAI `logprobs` / `echo` fields.

Always computed as float32 log-softmax of the logits, whatever dtype the model runs in, so two
backends are compared on their logits and not on the rounding of a bf16 softmax.
"""

from __future__ import annotations

import torch

from .api import TOP_LOGPROBS_MAX as MAX_TOP_LOGPROBS  # noqa: F401  (one definition of the API bound)
from .jobs import TokenLogprob

# Rows of prompt logits turned into log-probs at once: bounds the float32 copy of a long prompt
# (rows x vocabulary) instead of materialising all of it.
_CHUNK_ROWS = 256


def _pick(lp: torch.Tensor, tokens: torch.Tensor, k: int) -> list[TokenLogprob]:
    chosen = lp.gather(-1, tokens[:, None])[:, 0].tolist()
    if k <= 0:
        return [(c, []) for c in chosen]
    values, ids = lp.topk(k, dim=-1)
    return [(c, list(zip(i, v))) for c, i, v in zip(chosen, ids.tolist(), values.tolist())]


def token_logprob(logits: torch.Tensor, token: int, k: int) -> TokenLogprob:
    """One row of logits [V]: the chosen token's log-prob and the top-k (id, log-prob), best first."""
    lp = torch.log_softmax(logits.float()[None, :], dim=-1)
    return _pick(lp, torch.tensor([token], device=lp.device), k)[0]


def prompt_logprobs(logits: torch.Tensor, prompt_ids: list[int], k: int) -> list[TokenLogprob]:
    """logits [>= n-1, V] at the prompt's positions: the log-prob of prompt token t+1 given tokens <= t."""
    out: list[TokenLogprob] = []
    n = len(prompt_ids) - 1
    targets = torch.tensor(prompt_ids[1:], dtype=torch.long, device=logits.device)
    for start in range(0, n, _CHUNK_ROWS):
        end = min(n, start + _CHUNK_ROWS)
        lp = torch.log_softmax(logits[start:end].float(), dim=-1)
        out += _pick(lp, targets[start:end], k)
    return out
