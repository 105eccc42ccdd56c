"""--bench N and --stability: what a cell does after its probes passed, on the same worker."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Awaitable, Callable

import aiohttp

from llorch_tui.bench_metrics import percentile
from llorch_tui.matrix.bench_run import run_llama_bench
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.matrix.probes import ProbeFailure, WorkerHTTP
from llorch_tui.protocol.matrix import BenchResult, StabilityResult

Progress = Callable[[float, str], None]

LONG_PROMPT = "The quick brown fox jumps over the lazy dog. " * 250  # > 2000 tokens on any tokenizer
UNICODE_PROMPT = "Grüße aus Zürich — 日本語のテキスト, emoji 🦙🚀✨, RTL שלום, math ∑∫√"
MAX_ERROR_SAMPLES = 10


async def run_bench(http: WorkerHTTP, options: MatrixOptions, progress: Progress) -> BenchResult:
    n = max(1, options.bench or 1)
    tps: list[float] = []
    ttft: list[float] = []
    for i in range(n):
        gen = await http.execute(options.prompt, options.max_tokens, options.seed + i)
        tps.append(float(gen.tokens_per_second or 0.0))
        ttft.append(float(gen.ttft_ms or 0.0))
        progress((i + 1) / n, f"iteration {i + 1}/{n}: {gen.tokens_per_second or 0:.1f} tok/s")
    health = await http.health()
    std = await run_llama_bench(http, n, options.bench_pp, options.bench_tg, options.bench_concurrency, options.seed,
                                progress)
    return BenchResult(iterations=n, max_tokens=options.max_tokens, **std, startup=health.startup,
                       tokens_per_second_mean=round(statistics.fmean(tps), 3),
                       tokens_per_second_p50=round(statistics.median(tps), 3),
                       ttft_ms_mean=round(statistics.fmean(ttft), 3), ttft_ms_p50=round(statistics.median(ttft), 3),
                       peak_rss_bytes=http.peak_rss, device_peak_bytes=http.device_peak, samples_tokens_per_second=tps)


class _Tally:
    def __init__(self) -> None:
        self.errors = 0
        self.samples: list[str] = []

    def add(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(what)


async def _timed(http: WorkerHTTP, prompt: str, max_tokens: int, seed: int, tally: _Tally,
                 lat: list[float]) -> None:
    t = time.perf_counter()
    try:
        gen = await http.execute(prompt, max_tokens, seed)
        if gen.tokens_generated <= 0:
            tally.add(f"empty answer (seed {seed})")
    except ProbeFailure as exc:
        tally.add(exc.reason)
    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
        tally.add(f"{type(exc).__name__}: {exc}")
    lat.append((time.perf_counter() - t) * 1000)


async def _edge(name: str, fn: Callable[[], Awaitable[str]]) -> tuple[str, str]:
    try:
        return name, await fn()
    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
        return name, f"{type(exc).__name__}: {exc}"


async def _graceful(http: WorkerHTTP, prompt: str, max_tokens: int, want_text: bool) -> str:
    """ok when the worker answers with text, or (want_text False) with a clean 4xx JSON error."""
    try:
        gen = await http.execute(prompt, max_tokens, 1)
    except ProbeFailure as exc:
        if not want_text and "HTTP 4" in exc.reason:
            return "ok"
        return exc.reason
    return "ok" if gen.tokens_generated > 0 or not want_text else "empty answer"


async def _cancel_case(http: WorkerHTTP) -> str:
    """Start a generation as long as the context allows, cancel it while it runs: it must end `cancelled`
    promptly, and (checked after all cases) the worker must stay healthy."""
    health = await http.health()
    budget = max(16, (health.context_length or 512) - 64)
    job = uuid.uuid4().hex
    task = asyncio.create_task(http.execute("Count slowly:", budget, 7, job_id=job))
    status = 404
    while not task.done():
        status = await http.cancel(job)
        if status == 200:
            break
        await asyncio.sleep(0.005)  # not queued yet: poll, there is no event to wait on
    try:
        gen = await task
    except ProbeFailure as exc:
        return exc.reason
    if status != 200:
        return f"the generation ended ({gen.tokens_generated} tokens) before /cancel found it"
    if gen.finish_reason != "cancelled":
        return f"cancelled job ended with finish_reason {gen.finish_reason!r}"
    return "ok"


async def run_stability(http: WorkerHTTP, options: MatrixOptions, progress: Progress) -> StabilityResult:
    t0 = time.perf_counter()
    await http.health()
    rss_start = http.last_rss
    tally = _Tally()
    lat: list[float] = []
    n = options.stability_requests
    step = max(1, n // 50)
    for i in range(n):
        await _timed(http, options.prompt, options.max_tokens, options.seed + i, tally, lat)
        if (i + 1) % step == 0 or i + 1 == n:
            progress((i + 1) / (n + options.bursts + 1) if n else 0.0, f"sequential {i + 1}/{n}, {tally.errors} errors")
    for b in range(options.bursts):
        await asyncio.gather(*(_timed(http, options.prompt, options.max_tokens, b * 100 + j, tally, lat)
                               for j in range(options.burst_size)))
        progress((n + b + 1) / (n + options.bursts + 1), f"burst {b + 1}/{options.bursts} of {options.burst_size}")
    edges = dict(await asyncio.gather(
        _edge("long_prompt", lambda: _graceful(http, LONG_PROMPT, options.max_tokens, want_text=False)),
        _edge("empty_prompt", lambda: _graceful(http, "", options.max_tokens, want_text=False)),
        _edge("unicode_prompt", lambda: _graceful(http, UNICODE_PROMPT, options.max_tokens, want_text=True)),
        _edge("cancel", lambda: _cancel_case(http)),
    ))
    try:
        health = await http.health()
        edges["healthy_after"] = "ok" if health.status == "ok" else f"status {health.status!r}"
    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
        edges["healthy_after"] = f"{type(exc).__name__}: {exc}"
    for case, outcome in edges.items():
        if outcome != "ok":
            tally.add(f"{case}: {outcome}")
    rss_end = http.last_rss
    progress(1.0, f"{tally.errors} errors")
    return StabilityResult(
        requests=n, errors=tally.errors, error_samples=tally.samples,
        latency_ms_p50=round(percentile(lat, 50), 3) if lat else None,
        latency_ms_p99=round(percentile(lat, 99), 3) if lat else None,
        bursts=options.bursts, burst_size=options.burst_size, edge_cases=edges,
        rss_start_bytes=rss_start, rss_end_bytes=rss_end,
        rss_growth_bytes=(rss_end - rss_start) if rss_start is not None and rss_end is not None else None,
        duration_s=round(time.perf_counter() - t0, 3))
