"""Fault injection, for tests and demos only: a worker that computes slightly wrong numbers, or
whose prefill fails for some prompts.

`LLORCH_WORKER_FAULT_LOGIT_NOISE=SIGMA` adds SIGMA x a fixed standard-normal vector (one value per
vocabulary entry, seeded, so the worker stays deterministic: the same prompt gives the same wrong
answer) to every logit row before a token is chosen or a log-prob is reported. It simulates a
broken numeric path on an unchanged model, which the matrix's parity certificate must catch.

`LLORCH_WORKER_FAULT_PREFILL_TOKEN=ID` makes the prefill forward pass of any group of requests
with token ID in a prompt raise, as a failing kernel would: the scheduler must fail only the
requests whose prompt holds it (retrying the others alone) and never the batch already decoding.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("llorch_worker.faults")
ENV_LOGIT_NOISE = "LLORCH_WORKER_FAULT_LOGIT_NOISE"
ENV_PREFILL_TOKEN = "LLORCH_WORKER_FAULT_PREFILL_TOKEN"
_SEED = 20240601
_BANNER = "!" * 72


class PrefillFault(RuntimeError):
    """The injected prefill failure."""


def prefill_fault_from_env() -> int | None:
    """The token id whose prompts fail their prefill (None = off). Raises ValueError with a readable message."""
    raw = os.environ.get(ENV_PREFILL_TOKEN, "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise ValueError(f"{ENV_PREFILL_TOKEN}={raw!r} is not a token id; set a non-negative integer, or unset it")
    token = int(raw)
    log.warning(_BANNER)
    log.warning("FAULT INJECTION ON: %s=%d fails the prefill of every prompt holding that token "
                "(tests and demos only)", ENV_PREFILL_TOKEN, token)
    log.warning(_BANNER)
    return token


def logit_noise_from_env() -> float:
    """SIGMA from the environment (0 = off). Raises ValueError with a readable message."""
    raw = os.environ.get(ENV_LOGIT_NOISE, "").strip()
    if not raw:
        return 0.0
    try:
        sigma = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_LOGIT_NOISE}={raw!r} is not a number; set a standard deviation such as 0.5, "
                         "or unset it") from None
    if not 0.0 <= sigma <= 100.0 or sigma != sigma:
        raise ValueError(f"{ENV_LOGIT_NOISE}={raw!r} must be between 0 and 100")
    return sigma


class LogitNoise:
    """Adds the fixed noise vector to logits [..., V]; built lazily for the model's vocabulary."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self._vec: Any = None

    def apply(self, logits: Any) -> Any:
        import torch

        if self._vec is None or self._vec.shape[-1] != logits.shape[-1] or self._vec.device != logits.device:
            g = torch.Generator(device="cpu").manual_seed(_SEED)
            self._vec = (torch.randn(logits.shape[-1], generator=g) * self.sigma).to(logits.device)
        return logits.float() + self._vec

    def warn(self) -> None:
        log.warning(_BANNER)
        log.warning("FAULT INJECTION ON: %s=%s adds noise to every logit; this worker's answers are "
                    "deliberately WRONG (tests and demos only)", ENV_LOGIT_NOISE, self.sigma)
        log.warning(_BANNER)
