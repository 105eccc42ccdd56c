"""The one definition of every benchmark figure llorch prints (matrix `--bench`, `bench/*.py`).

Written down in docs/benchmarks.md ("Metrics"); the conventions are those users compare with:
llama-bench's separate prompt-processing (pp) and token-generation (tg) rates at fixed lengths with
mean ± σ over repetitions, and vLLM/guidellm's TTFT, TPOT and inter-token-latency percentiles per
concurrency level. All times are taken by the client (the caller of the worker's HTTP API), so they
include what a user waits for: HTTP, queueing, the scheduler.

* **TTFT** (ms): request sent → first streamed token received.
* **TPOT** (ms): per request, (last token − first token) ÷ (tokens − 1): the mean time per output
  token after the first. A request with one token has none.
* **ITL** (ms): every gap between two consecutive streamed chunks of one request, pooled over all
  requests of a level (a chunk is one token, except where a UTF-8 character spans tokens).
* **pp tok/s**: prompt tokens ÷ prefill time, the prefill time being the client's wall time of a
  non-streamed request of exactly N prompt token ids for one token (llama-bench's `pp N`).
* **tg tok/s**: (generated tokens − 1) ÷ (last token − first token) of a request for exactly
  N tokens with `ignore_eos` (llama-bench's `tg N`: the decode rate, prefill excluded), clocked by
  the worker around its decode loop, so a busy client cannot distort it. The client-side view of
  the same thing is TPOT.
* **throughput tok/s** (a concurrency level): all generated tokens ÷ wall time from the first
  request sent to the last response complete.
* **percentiles**: nearest rank (p99 of 1000 samples is the 990th sorted value, never an
  interpolation between two); **mean ± σ**: arithmetic mean and sample standard deviation (n − 1),
  σ = 0 for one sample.
* **start-up stages** (s): `process` (process start and imports, or the fork of a warm template),
  `weights_to_ram` (safetensors read from disk), `to_device` (RAM → device), `warmup`, `ready`
  (spawn → ready, the sum as the agent sees it) and `first_token` (ready → first token of the first request).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Iterable

PERCENTILES = (50, 90, 99)


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): p99 of 1000 samples is the 990th, not an interpolation."""
    s = sorted(values)
    if not s:
        return 0.0
    rank = max(1, min(len(s), math.ceil(q / 100 * len(s) - 1e-9)))
    return s[rank - 1]


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Arithmetic mean and sample standard deviation (0 for a single sample); (0, 0) for none."""
    v = list(values)
    if not v:
        return 0.0, 0.0
    return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0


def fmt_mean_sd(values: Iterable[float], digits: int = 1) -> str:
    m, sd = mean_sd(values)
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


@dataclass
class RequestTiming:
    """One request as the client saw it: monotonic seconds of sending and of each streamed chunk."""

    sent: float
    chunks: list[float] = field(default_factory=list)
    tokens: int = 0          # generated tokens (the worker's count, from the final summary)
    prompt_tokens: int = 0
    done: float = 0.0        # response complete

    @property
    def ttft_ms(self) -> float | None:
        return (self.chunks[0] - self.sent) * 1000 if self.chunks else None

    @property
    def tpot_ms(self) -> float | None:
        if len(self.chunks) < 2 or self.tokens < 2:
            return None
        return (self.chunks[-1] - self.chunks[0]) * 1000 / (self.tokens - 1)

    @property
    def itl_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.chunks, self.chunks[1:])]

    @property
    def decode_tps(self) -> float | None:
        """tg tok/s of this request: (tokens − 1) ÷ (last − first token)."""
        span = self.chunks[-1] - self.chunks[0] if len(self.chunks) >= 2 else 0.0
        return (self.tokens - 1) / span if span > 0 and self.tokens > 1 else None


def distribution(values: Iterable[float], prefix: str, digits: int = 3) -> dict[str, float]:
    v = list(values)
    return {f"{prefix}_p{q}": round(percentile(v, q), digits) for q in PERCENTILES}


def level_summary(concurrency: int, timings: list[RequestTiming]) -> dict[str, float | int]:
    """The figures of one concurrency level: TTFT/TPOT/ITL percentiles and the aggregate throughput."""
    ttft = [t.ttft_ms for t in timings if t.ttft_ms is not None]
    tpot = [t.tpot_ms for t in timings if t.tpot_ms is not None]
    itl = [gap for t in timings for gap in t.itl_ms]
    start = min((t.sent for t in timings), default=0.0)
    end = max((t.done for t in timings), default=0.0)
    tokens = sum(t.tokens for t in timings)
    out: dict[str, float | int] = {"concurrency": concurrency, "requests": len(timings), "tokens": tokens,
                                   "throughput_tps": round(tokens / (end - start), 3) if end > start else 0.0}
    out.update(distribution(ttft, "ttft_ms"))
    out.update(distribution(tpot, "tpot_ms"))
    out.update(distribution(itl, "itl_ms"))
    return out


def pp_tps(prompt_tokens: int, prefill_s: float) -> float:
    return prompt_tokens / prefill_s if prefill_s > 0 else 0.0


def roofline_tps(weight_bytes: int, bandwidth_bytes_per_s: float) -> float:
    """Decode upper bound of a memory-bound model: every token reads every weight once."""
    return bandwidth_bytes_per_s / weight_bytes if weight_bytes > 0 else 0.0
