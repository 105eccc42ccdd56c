"""Certify a worker against a model's reference fingerprint: token agreement with ties, the
log-prob drift over the reference's top-k, the perplexity ratio and the golden answers.

Everything is compared along the reference's own tokens (teacher forcing): a backend whose free
greedy text departs at a near-tie step would otherwise look broken for the rest of the answer,
while its numbers are fine. The free greedy run is compared too, while it agrees, because it goes
through the KV-cached decode path that teacher forcing does not exercise.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field

from llorch_tui.parity import calls
from llorch_tui.parity.record import environment_of, perplexity, steps_of, suite_prompt_ids
from llorch_tui.parity.suite import GoldenPrompt, golden_suite, prompt_suite
from llorch_tui.parity.tolerances import Tolerances, for_dtype
from llorch_tui.protocol.parity import (Divergence, EnvFingerprint, Fingerprint, FingerprintPrompt, FingerprintStep,
                                       GoldenOutcome, ParityResult)
from llorch_tui.worker_client import WorkerClient

# Alternatives asked of the cell per step: the reference's top-k (5) must be found among them.
CELL_TOP_K = 20


@dataclass
class PromptCheck:
    prompt_id: str
    agreed: int = 0
    tied: int = 0
    total: int = 0
    max_delta: float = 0.0
    max_delta_step: int = 0
    divergence: Divergence | None = None          # first teacher-forced disagreement (tie or not)
    failure: Divergence | None = None             # first one that is not a tie
    free_divergence: Divergence | None = None     # where the free greedy text departs
    problems: list[str] = field(default_factory=list)


def _margin(step: FingerprintStep) -> float:
    return step.top[0].logprob - step.top[1].logprob if len(step.top) >= 2 else math.inf


def _delta(ref: FingerprintStep, cell: FingerprintStep) -> float:
    """max |Δ log-prob| over the reference's top-k (and its chosen token) at one step. A reference
    alternative missing from the cell's top-20 counts with the least it can differ by."""
    got = {t.token_id: t.logprob for t in cell.top}
    if cell.token_id == ref.token_id:
        got.setdefault(ref.token_id, cell.logprob)
    floor = min(got.values()) if got else -math.inf
    worst = abs(ref.logprob - got[ref.token_id]) if ref.token_id in got else max(0.0, ref.logprob - floor)
    for t in ref.top:
        d = abs(t.logprob - got[t.token_id]) if t.token_id in got else max(0.0, t.logprob - floor)
        worst = max(worst, d)
    return worst


def compare_prompt(ref: FingerprintPrompt, free: list[FingerprintStep], forced: list[FingerprintStep],
                   tol: Tolerances) -> PromptCheck:
    """`free`: the cell's greedy run from the same prompt ids; `forced`: its teacher-forced steps
    along the reference's tokens (step i = the cell's distribution after the reference's first i)."""
    c = PromptCheck(ref.prompt_id, total=len(ref.steps))
    for i, (r, f) in enumerate(zip(ref.steps, forced)):
        d = _delta(r, f)
        if d > c.max_delta:
            c.max_delta, c.max_delta_step = d, i
        best = f.top[0] if f.top else None
        if best is None or best.token_id == r.token_id:
            c.agreed += 1
            continue
        margin = _margin(r)
        tie = margin < tol.tie_margin
        div = Divergence(prompt_id=ref.prompt_id, position=i, reference_token=r.text,
                         got_token=_text_of(best.token_id, f, free, ref), reference_margin=round(margin, 4), tie=tie)
        c.tied += tie
        c.divergence = c.divergence or div
        if not tie and c.failure is None:
            c.failure = div
    if len(forced) < len(ref.steps):
        c.problems.append(f"{ref.prompt_id}: the worker returned {len(forced)} of {len(ref.steps)} teacher-forced steps")
    # the free run (decode path), while it agrees with the reference, and at the step it departs
    for i, (r, f) in enumerate(zip(ref.steps, free)):
        d = _delta(r, f)
        if d > c.max_delta:
            c.max_delta, c.max_delta_step = d, i
        if f.token_id != r.token_id:
            margin = _margin(r)
            c.free_divergence = Divergence(prompt_id=ref.prompt_id, position=i, reference_token=r.text,
                                           got_token=f.text, reference_margin=round(margin, 4),
                                           tie=margin < tol.tie_margin)
            break
    return c


def _text_of(token_id: int, forced_step: FingerprintStep, free: list[FingerprintStep], ref: FingerprintPrompt) -> str:
    """A token's text: the cell reported it with its top-k; the free run or the reference may know it too."""
    for t in forced_step.top:
        if t.token_id == token_id and t.text is not None:
            return t.text
    for s in [*free, *ref.steps]:
        if s.token_id == token_id:
            return s.text
    return f"<id {token_id}>"


def golden_ok(answer: str, g: GoldenPrompt) -> bool:
    if g.mode == "exact":
        return answer.strip().rstrip(".!").casefold() == g.expected.strip().casefold()
    return re.search(rf"(?<!\w){re.escape(g.expected)}(?!\w)", answer, re.IGNORECASE) is not None


async def run_golden(worker: WorkerClient) -> tuple[str, list[GoldenOutcome]]:
    suite = golden_suite()
    answers = await asyncio.gather(*(calls.chat(worker, g.question, suite.max_tokens) for g in suite.prompts))
    return suite.version, [GoldenOutcome(prompt_id=g.id, question=g.question, expected=g.expected, mode=g.mode,
                                         answer=a, ok=golden_ok(a, g)) for g, a in zip(suite.prompts, answers)]


async def certify(worker: WorkerClient, fp: Fingerprint, *, weights_sha256: str | None,
                  golden_skip: str | None) -> ParityResult:
    """Compare the worker with the fingerprint; golden prompts unless `golden_skip` says why not."""
    health = await worker.health()
    dtype = health.dtype or "float32"
    tol = for_dtype(dtype)
    suite = {p.id: p for p in prompt_suite(fp.prompt_set_version).prompts}
    problems: list[str] = []

    async def one(ref: FingerprintPrompt) -> PromptCheck:
        sp = suite.get(ref.prompt_id)
        if sp is not None:  # the same text must give the same ids here (tokenizer / chat template drift)
            ids = (await suite_prompt_ids(worker, sp))[0]
            if ids != ref.prompt_token_ids:
                at = next((i for i, (a, b) in enumerate(zip(ids, ref.prompt_token_ids)) if a != b),
                          min(len(ids), len(ref.prompt_token_ids)))
                problems.append(f"{ref.prompt_id}: the tokenizer gives other ids here ({len(ids)} vs "
                                f"{len(ref.prompt_token_ids)} in the reference, first difference at {at})")
        free, forced = await asyncio.gather(
            calls.greedy(worker, ref.prompt_token_ids, len(ref.steps), CELL_TOP_K),
            calls.teacher_forced(worker, ref.prompt_token_ids + [s.token_id for s in ref.steps], CELL_TOP_K))
        return compare_prompt(ref, steps_of(free), steps_of(forced, len(ref.prompt_token_ids)), tol)

    # every request at once: the worker batches them (golden prompts and perplexity too)
    ppl_task = (asyncio.ensure_future(perplexity(worker, fp.perplexity_text_version))
                if fp.perplexity_text_version else None)
    golden_task = asyncio.ensure_future(run_golden(worker)) if not golden_skip else None
    try:
        checks = list(await asyncio.gather(*(one(ref) for ref in fp.prompts)))
        ppl = await ppl_task if ppl_task is not None else None
        golden = await golden_task if golden_task is not None else None
    finally:
        for t in (ppl_task, golden_task):
            if t is not None and not t.done():
                t.cancel()
    ratio = ppl / fp.perplexity if ppl is not None and fp.perplexity else None

    result = ParityResult(verdict="pass", dtype=dtype, prompt_set_version=fp.prompt_set_version,
                          tokens_agreed=sum(c.agreed + c.tied for c in checks), tokens_total=sum(c.total for c in checks),
                          tokens_tied=sum(c.tied for c in checks),
                          perplexity=_r(ppl), perplexity_ratio=_r(ratio, 5), weights_sha256=weights_sha256,
                          weights_changed=bool(weights_sha256) and weights_sha256 != fp.weights_sha256,
                          reference_weights_sha256=fp.weights_sha256, tolerances=tol.as_dict())
    worst = max(checks, key=lambda c: c.max_delta, default=None)
    result.max_logprob_delta = _r(worst.max_delta if worst else 0.0, 5)
    failures = [c.failure for c in checks if c.failure]
    result.first_divergence = failures[0] if failures else next((c.divergence for c in checks if c.divergence), None)
    result.first_free_divergence = next((c.free_divergence for c in checks if c.free_divergence), None)
    for c in checks:
        problems += c.problems
    if failures:
        f = failures[0]
        problems.append(f"{len(failures)} prompt(s) disagree beyond a tie; first: {f.prompt_id} token {f.position}: "
                        f"reference {f.reference_token!r} (margin {f.reference_margin:.3f} ≥ tie {tol.tie_margin}), "
                        f"got {f.got_token!r}")
    if worst is not None and worst.max_delta > tol.max_logprob_delta:
        problems.append(f"max |Δ log-prob| {worst.max_delta:.4f} > {tol.max_logprob_delta} allowed for {dtype} "
                        f"({worst.prompt_id} token {worst.max_delta_step})")
    if ratio is not None and abs(ratio - 1) > tol.perplexity_ratio:
        problems.append(f"perplexity {ppl:.4f} vs {fp.perplexity:.4f} in the reference (ratio {ratio:.4f}, "
                        f"allowed 1 ± {tol.perplexity_ratio})")

    if golden is None:
        result.golden_skipped_reason = golden_skip
    else:
        result.golden_set_version, result.golden = golden
        result.golden_total = len(result.golden)
        result.golden_passed = sum(g.ok for g in result.golden)

    figures = (f"{result.tokens_agreed}/{result.tokens_total} tokens agree ({result.tokens_tied} ties), "
               f"max |Δ log-prob| {result.max_logprob_delta}, perplexity ratio {result.perplexity_ratio}"
               + (f", golden {result.golden_passed}/{result.golden_total}" if result.golden_total else ""))
    changed = (f"the weights changed since the reference was recorded (sha256 {fp.weights_sha256[:12]}… → "
               f"{(weights_sha256 or '')[:12]}…); " if result.weights_changed else "")
    wrong = [g for g in result.golden if not g.ok]
    if problems:
        result.verdict = "parity_drift"
        result.reason = f"{changed}drifts from the reference ({dtype} tolerances): " + "; ".join(problems) + f" — {figures}"
        moved = env_moves(fp.environment, environment_of(await worker.info(), weights_sha256))
        if moved:
            result.reason += f"; this worker vs the reference's: {', '.join(moved)}"
    elif wrong:
        result.verdict = "wrong_answer"
        g = wrong[0]
        result.reason = (f"{changed}{len(wrong)} golden answer(s) wrong; first: {g.question!r} expected "
                         f"{g.expected!r}, got {g.answer[:120]!r} — {figures}")
    else:
        result.reason = f"{changed}matches the reference: {figures}"
    return result


# the facts of a worker that decide its numbers, as the drift evidence names them
_ENV_FACTS = {"torch": "torch", "transformers": "transformers", "python": "Python", "cuda": "CUDA", "gpu": "GPU",
              "dtype": "dtype", "worker_version": "llorch-worker"}


def env_moves(ref: EnvFingerprint | None, now: EnvFingerprint) -> list[str]:
    """"torch 2.13.0 → 2.14.0" for each fact known on both sides that differs."""
    if ref is None:
        return []
    out = []
    for name, label in _ENV_FACTS.items():
        a, b = getattr(ref, name), getattr(now, name)
        if a is not None and b is not None and a != b:
            out.append(f"{label} {a} → {b}")
    return out


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(v, nd)
