"""Next-token choice per batch row: greedy at temperature 0, else seeded top-p sampling.

Each request owns a `torch.Generator` seeded from its seed, so a request draws the same random
numbers whether it runs alone or inside a batch.
"""

from __future__ import annotations

from typing import Any

import torch


def make_generator(seed: int | None) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed) if seed is not None else int(torch.seed()))
    return g


def choose(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Pick one token id from a 1-D row of logits (float32, on cpu)."""
    if temperature <= 0.0:
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


def choose_batch(logits: torch.Tensor, rows: list[Any]) -> list[int]:
    """logits: [B, V]; rows: objects with temperature, top_p, generator (one per batch row)."""
    logits = logits.float().cpu()
    if all(r.temperature <= 0.0 for r in rows):
        return torch.argmax(logits, dim=-1).tolist()
    return [choose(logits[i], r.temperature, r.top_p, r.generator) for i, r in enumerate(rows)]
