"""The regression sentinel: what the diff against the previous run says about each cell present in both.

* Correctness drift is reported always: a verdict change, any change of the parity certificate's
  figures (tokens agreed, first divergence, max |Δ log-prob|, perplexity ratio, golden answers), and
  weights that no longer match the reference.
* A performance change is reported only when it is beyond the noise of the cell's own repeated
  measurements (`--bench N` samples of tokens/s in both runs; see `perf_change` for the rule).
* Whatever changed in the cell's environment (versions, hardware, dtype, weights) is named next to it.
"""

from __future__ import annotations

import math
import statistics
from typing import Literal

from pydantic import BaseModel, Field

from llorch_tui.matrix.environment import env_changes
from llorch_tui.protocol.matrix import CellResult
from llorch_tui.protocol.parity import ParityResult

# The noise rule, written down in docs/matrix.md ("Regression sentinel"): a change of the median is real
# when it exceeds NOISE_K pooled robust standard deviations of both runs' samples AND NOISE_FLOOR of the old
# median (identical samples have no spread, yet a 0.3 % move is not news), with MIN_SAMPLES per run.
NOISE_K = 3.0
NOISE_FLOOR = 0.02
MIN_SAMPLES = 3
MAD_TO_SIGMA = 1.4826  # the median absolute deviation of a normal sample, scaled to its standard deviation


class PerfChange(BaseModel):
    metric: str = "tokens/s"
    before_median: float
    after_median: float
    change: float                  # (after - before) / before
    noise: float                   # the relative change the rule required (max of k·σ_pooled and the floor)
    before_samples: int
    after_samples: int
    verdict: Literal["faster", "slower", "within_noise"]


class CellSentinel(BaseModel):
    key: str
    correctness: list[str] = Field(default_factory=list)   # drift, always reported
    performance: PerfChange | None = None                   # judged only with enough samples on both sides
    performance_note: str | None = None                     # why it was not judged
    environment: list[str] = Field(default_factory=list)   # "torch 2.13.0 → 2.14.0", ...

    @property
    def flagged(self) -> bool:
        """Worth a reader's attention: drift, a performance change beyond noise, or a new environment."""
        perf = self.performance is not None and self.performance.verdict != "within_noise"
        return bool(self.correctness or perf or self.environment)


def _robust_sigma(xs: list[float]) -> float:
    med = statistics.median(xs)
    return MAD_TO_SIGMA * statistics.median(abs(x - med) for x in xs)


def perf_change(before: list[float], after: list[float]) -> PerfChange | None:
    """The rule: with m = median and σ = 1.4826·MAD of each run's samples,
    changed ⇔ |m_after − m_before| > max(3·√((σ_before² + σ_after²)/2), 0.02·m_before).
    None when either run has fewer than MIN_SAMPLES samples (one sample has no noise to compare with)."""
    before, after = [x for x in before if x > 0], [x for x in after if x > 0]
    if len(before) < MIN_SAMPLES or len(after) < MIN_SAMPLES:
        return None
    mb, ma = statistics.median(before), statistics.median(after)
    pooled = math.sqrt((_robust_sigma(before) ** 2 + _robust_sigma(after) ** 2) / 2)
    bound = max(NOISE_K * pooled, NOISE_FLOOR * mb)
    delta = ma - mb
    verdict: Literal["faster", "slower", "within_noise"] = (
        "within_noise" if abs(delta) <= bound else "faster" if delta > 0 else "slower")
    return PerfChange(before_median=mb, after_median=ma, change=delta / mb, noise=bound / mb,
                      before_samples=len(before), after_samples=len(after), verdict=verdict)


def _fmt(v: float | None, spec: str = ".4g") -> str:
    return "—" if v is None else format(v, spec)


def parity_drift(before: ParityResult | None, after: ParityResult | None) -> list[str]:
    """Every figure of the certificate that moved, as phrases ("tokens agreed 64/64 → 40/64")."""
    if after is None:
        return []
    if before is None:
        return [f"parity {after.verdict} (no certificate in the previous run)"] if after.verdict != "pass" else []
    out: list[str] = []
    if before.verdict != after.verdict:
        out.append(f"parity {before.verdict} → {after.verdict}")
    if (before.tokens_agreed, before.tokens_total) != (after.tokens_agreed, after.tokens_total):
        out.append(f"tokens agreed {before.tokens_agreed}/{before.tokens_total} → {after.tokens_agreed}/{after.tokens_total}")
    bd, ad = before.first_divergence, after.first_divergence
    if (bd and (bd.prompt_id, bd.position, bd.got_token)) != (ad and (ad.prompt_id, ad.position, ad.got_token)):
        where = "none" if ad is None else (f"{ad.prompt_id} token {ad.position}: {ad.got_token!r} instead of "
                                           f"{ad.reference_token!r}" + (" (a tie)" if ad.tie else ""))
        out.append(f"first divergence {'none' if bd is None else f'{bd.prompt_id} token {bd.position}'} → {where}")
    for name, label in (("max_logprob_delta", "max |Δ log-prob|"), ("perplexity_ratio", "perplexity ratio")):
        b, a = getattr(before, name), getattr(after, name)
        if b != a:
            out.append(f"{label} {_fmt(b)} → {_fmt(a)}")
    if (before.golden_passed, before.golden_total) != (after.golden_passed, after.golden_total):
        out.append(f"golden {before.golden_passed}/{before.golden_total} → {after.golden_passed}/{after.golden_total}")
    if after.weights_changed and not before.weights_changed:
        out.append("the weights no longer match the reference fingerprint")
    return out


def _samples(c: CellResult) -> list[float]:
    return list(c.bench.samples_tokens_per_second) if c.bench else []


def cell_sentinel(before: CellResult, after: CellResult) -> CellSentinel:
    s = CellSentinel(key=after.key.id)
    if before.verdict != after.verdict or before.reason_code != after.reason_code:
        s.correctness.append(f"verdict {before.verdict}{f' ({before.reason_code})' if before.reason_code else ''} → "
                             f"{after.verdict}{f' ({after.reason_code})' if after.reason_code else ''}")
    s.correctness += parity_drift(before.parity, after.parity)
    if before.verdict == "pass" and after.verdict == "pass":
        s.performance = perf_change(_samples(before), _samples(after))
        if s.performance is None:
            n = min(len(_samples(before)), len(_samples(after)))
            s.performance_note = (f"performance not judged: {n} tokens/s sample(s) in the poorer run, "
                                  f"{MIN_SAMPLES} needed in both (run both with --bench {MIN_SAMPLES} or more)")
    s.environment = env_changes(before.environment, after.environment)
    return s


def sentinel_markdown(entries: list[CellSentinel], heading: str = "###") -> list[str]:
    flagged = [e for e in entries if e.flagged]
    out = [f"{heading} Regression sentinel", ""]
    if not entries:
        return out + ["_No cell ran in both runs._", ""]
    judged = sum(e.performance is not None for e in entries)
    out.append(f"_{len(flagged)} of {len(entries)} cells flagged; performance judged on {judged} "
               f"(median tokens/s beyond {NOISE_K:g} pooled robust σ and {NOISE_FLOOR:.0%})._")
    for e in flagged:
        parts: list[str] = []
        if e.correctness:
            parts.append("**correctness**: " + "; ".join(e.correctness))
        p = e.performance
        if p is not None and p.verdict != "within_noise":
            parts.append(f"**performance {p.verdict}**: {p.before_median:.1f} → {p.after_median:.1f} {p.metric} "
                         f"({p.change:+.1%}, noise bound ±{p.noise:.1%}, {p.before_samples}/{p.after_samples} samples)")
        if e.environment:
            parts.append("**environment**: " + "; ".join(e.environment))
        out.append(f"* `{e.key}` — " + " · ".join(parts).replace("\n", " "))
    return out + [""]
