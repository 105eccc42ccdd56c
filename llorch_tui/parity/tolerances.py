"""How far a worker may be from the cpu/float32 reference, per dtype. The one place these live
(docs/matrix.md explains them).

* `max_logprob_delta`: the largest |Δ log-prob| allowed over the reference's top-k at any step,
  teacher-forced along the reference's tokens (and along the free greedy run while it agrees).
* `tie_margin`: at a step where the reference's top-1 beats its top-2 by less than this, a worker
  choosing another token is a tie, not a failure (the comparison goes on teacher-forced).
* `perplexity_ratio`: |cell perplexity / reference perplexity - 1| allowed, on the shipped text.

Figures measured on SmolLM2-135M-Instruct, cpu, against cpu float32: another float32 worker on
the same machine agrees exactly (Δ 0); bfloat16 differs by up to 0.2–0.3 in top-5 log-probs
and flips greedy tokens where the reference margin is small. float16 keeps 3 more mantissa bits
than bfloat16 and gets a tighter bound. float32 on another backend (CUDA, Metal) sums in another
order: 1e-3-level differences, well inside 0.02.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Tolerances:
    dtype: str
    max_logprob_delta: float
    tie_margin: float
    perplexity_ratio: float

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, float)}


TOLERANCES: dict[str, Tolerances] = {
    "float32": Tolerances("float32", max_logprob_delta=0.02, tie_margin=0.02, perplexity_ratio=0.005),
    "float16": Tolerances("float16", max_logprob_delta=0.25, tie_margin=0.25, perplexity_ratio=0.03),
    "bfloat16": Tolerances("bfloat16", max_logprob_delta=0.5, tie_margin=0.5, perplexity_ratio=0.05),
}


def for_dtype(dtype: str | None) -> Tolerances:
    """The tolerances of a dtype; an unknown one (a future quantized path) gets bfloat16's, the loosest."""
    return TOLERANCES.get(dtype or "float32", TOLERANCES["bfloat16"])
