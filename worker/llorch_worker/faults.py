"""Fault injection, for tests and demos only: a worker that computes slightly wrong numbers.

`LLORCH_WORKER_FAULT_LOGIT_NOISE=SIGMA` adds SIGMA x a fixed standard-normal vector (one value per
vocabulary entry, seeded, so the worker stays deterministic: the same prompt gives the same wrong
answer) to every logit row before a token is chosen or a log-prob is reported. It simulates a
broken numeric path on an unchanged model, which the matrix's parity certificate must catch.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("llorch_worker.faults")
ENV_LOGIT_NOISE = "LLORCH_WORKER_FAULT_LOGIT_NOISE"
_SEED = 20240601


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
        banner = "!" * 72
        log.warning(banner)
        log.warning("FAULT INJECTION ON: %s=%s adds noise to every logit; this worker's answers are "
                    "deliberately WRONG (tests and demos only)", ENV_LOGIT_NOISE, self.sigma)
        log.warning(banner)
