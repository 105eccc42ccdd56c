"""Next-token choice per batch row: greedy at temperature 0, else seeded top-p sampling.

Each request owns a `torch.Generator` seeded from its seed, so a request draws the same random
numbers whether it runs alone or inside a batch.

One row's numbers never fail another row: a row whose logits are not finite (NaN, +inf, or all
-inf: a model or dtype fault for that prompt) gets a `SamplingError` in its place and the other
rows keep their tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from .api import SEED_MAX, SEED_MIN  # noqa: F401  (the API bounds: what torch.Generator.manual_seed accepts)

# Below this the distribution is the argmax to float precision, and dividing by it overflows
# (a subnormal temperature turns every logit into inf and softmax into NaN): sample greedily.
GREEDY_BELOW = 1e-5


class SamplingError(Exception):
    """This row's logits cannot be sampled; `code` becomes the request's error code."""

    code = "non_finite_logits"


def make_generator(seed: int | None) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed) if seed is not None else int(torch.seed()))
    return g


def is_greedy(temperature: float) -> bool:
    return temperature < GREEDY_BELOW


def choose(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Pick one token id from a 1-D row of finite logits (float32, on cpu)."""
    if is_greedy(temperature):
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if 0.0 < top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cum = torch.cumsum(sorted_probs, dim=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        keep = (cum - sorted_probs) < top_p
        sorted_probs = sorted_probs * keep
        pick = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return int(order[pick])
    return int(torch.multinomial(probs, 1, generator=generator))


def apply_logit_bias(logits: torch.Tensor, rows: list[Any]) -> None:
    """Add each row's OpenAI-style `logit_bias` (token id -> bias) to its logits, in place."""
    for i, r in enumerate(rows):
        bias = getattr(r, "logit_bias", None)
        if bias:
            ids = torch.tensor(list(bias), dtype=torch.long)
            logits[i, ids] += torch.tensor(list(bias.values()), dtype=logits.dtype)


def choose_batch(logits: torch.Tensor, rows: list[Any]) -> list[int | SamplingError]:
    """logits: [B, V]; rows: objects with temperature, top_p, generator, logit_bias (one per row).
    Returns a token id per row, or a SamplingError for a row whose logits are not usable."""
    logits = logits.float().cpu()
    apply_logit_bias(logits, rows)
    # One reduction gives both the greedy choice (first maximum, as argmax) and the check: max()
    # propagates NaN, and shows +inf and an all -inf row.
    best, best_ids = logits.max(dim=-1)
    finite = torch.isfinite(best).tolist()
    if all(finite) and all(is_greedy(r.temperature) for r in rows):
        return best_ids.tolist()
    out: list[int | SamplingError] = []
    for i, r in enumerate(rows):
        if not finite[i]:
            out.append(SamplingError("the model produced non-finite logits (NaN or inf) for this request"))
            continue
        try:
            out.append(choose(logits[i], r.temperature, r.top_p, r.generator))
        except RuntimeError as e:  # e.g. multinomial on probabilities that overflowed
            out.append(SamplingError(f"sampling failed for this request: {e}"))
    return out
