"""`--bench N` of a matrix cell, llama-bench and vLLM style (definitions: llorch_tui/bench_metrics.py).

On the cell's worker, after its probes passed:
1. **pp**: N requests whose prompt is exactly `bench_pp` token ids and which ask for one token:
   prompt tokens ÷ the request's time, mean ± σ.
2. **tg**: N requests of a short fixed prompt for exactly `bench_tg` tokens (`ignore_eos`): the decode
   rate after the first token as the worker clocks it, mean ± σ.
3. **levels**: for each concurrency c in `bench_concurrency`, c streamed requests at once (tg length),
   N rounds: TTFT, TPOT and ITL p50/p90/p99 and the aggregate throughput.
Prompts are token ids sent to `/v1/completions`, so the lengths are exact whatever the tokenizer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from llorch_worker.api import CompletionRequest, StreamOptions

from llorch_tui.bench_metrics import RequestTiming, level_summary, mean_sd, pp_tps
from llorch_tui.errors import LlorchError
from llorch_tui.matrix.probes import ProbeFailure, WorkerHTTP, probe_failure
from llorch_tui.protocol.matrix import ReasonCode


Progress = Callable[[float, str], None]
FIRST_ID = 7  # past the special tokens of every checkpoint llorch synthesizes; plain text ids elsewhere too
SHORT_PROMPT_TOKENS = 8
TG_PROMPT = "Once upon a time"


def prompt_ids(n: int, vocab_size: int, salt: int = 0) -> list[int]:
    """n token ids cycling through the ordinary part of the vocabulary (salt: a different prompt per request)."""
    span = max(1, min(vocab_size, 500) - FIRST_ID)
    return [FIRST_ID + (i * 7 + salt * 13) % span for i in range(n)]


async def decode_rate(http: WorkerHTTP, tg: int, seed: int) -> float:
    """tg tok/s of one request for exactly `tg` tokens, as the worker clocks its decode loop."""
    gen = await http.execute(TG_PROMPT, tg, seed, ignore_eos=True)
    if gen.tokens_generated != tg:
        raise ProbeFailure(ReasonCode.WRONG_OUTPUT, f"/execute for {tg} tokens generated {gen.tokens_generated}")
    return gen.tokens_per_second or 0.0


async def stream_completion(http: WorkerHTTP, ids: list[int], max_tokens: int, seed: int,
                            stream: bool = True) -> RequestTiming:
    """One /v1/completions request, timed by the client (streamed: chunk by chunk, as each arrives)."""
    req = CompletionRequest(prompt=ids, max_tokens=max_tokens, temperature=0, seed=seed, ignore_eos=True,
                            stream_options=StreamOptions(include_usage=True) if stream else None)
    timing = RequestTiming(sent=time.perf_counter(), prompt_tokens=len(ids))
    try:
        if not stream:
            answer = await http.worker.completions(req)
            timing.done = time.perf_counter()
            if answer.usage is not None:
                timing.tokens = answer.usage.completion_tokens
                timing.prompt_tokens = answer.usage.prompt_tokens or timing.prompt_tokens
            return timing
        async for chunk in http.worker.completions_stream(req):
            if chunk.event.usage is not None:
                timing.tokens = chunk.event.usage.completion_tokens
                timing.prompt_tokens = chunk.event.usage.prompt_tokens or timing.prompt_tokens
            if any(c.text for c in chunk.event.choices):
                timing.chunks.append(chunk.at)
    except LlorchError as err:
        raise probe_failure(err, "/v1/completions") from None
    timing.done = time.perf_counter()
    if not timing.tokens:
        timing.tokens = len(timing.chunks)
    return timing


async def run_llama_bench(http: WorkerHTTP, reps: int, pp: int, tg: int, levels: list[int], seed: int,
                          progress: Progress) -> dict[str, Any]:
    health = await http.health()
    vocab = health.vocab_size or 512
    context = health.context_length or 2048
    pp = max(1, min(pp, context - 2))
    tg = max(2, min(tg, context - SHORT_PROMPT_TOKENS - 1))
    steps = reps * (2 + len(levels))
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        progress(done / steps, what)

    pp_rates: list[float] = []
    for i in range(reps):
        t = await stream_completion(http, prompt_ids(pp, vocab, i), 1, seed + i, stream=False)
        pp_rates.append(pp_tps(t.prompt_tokens, t.done - t.sent))
        step(f"pp{pp} {i + 1}/{reps}: {pp_rates[-1]:.1f} tok/s")
    tg_rates: list[float] = []
    for i in range(reps):
        tg_rates.append(await decode_rate(http, tg, seed + i))
        step(f"tg{tg} {i + 1}/{reps}: {tg_rates[-1]:.1f} tok/s")
    summaries = []
    for c in levels:
        timings: list[RequestTiming] = []
        for r in range(reps):
            batch = await asyncio.gather(*(stream_completion(http, prompt_ids(SHORT_PROMPT_TOKENS, vocab, r * c + k),
                                                             tg, seed + k) for k in range(c)))
            timings += batch
            step(f"concurrency {c}: round {r + 1}/{reps}")
        summaries.append(level_summary(c, timings))
    await http.health()
    pp_mean, pp_sd = mean_sd(pp_rates)
    tg_mean, tg_sd = mean_sd(tg_rates)
    return {"pp_tokens": pp, "tg_tokens": tg, "pp_tps_mean": round(pp_mean, 3), "pp_tps_sd": round(pp_sd, 3),
            "tg_tps_mean": round(tg_mean, 3), "tg_tps_sd": round(tg_sd, 3), "levels": summaries}
