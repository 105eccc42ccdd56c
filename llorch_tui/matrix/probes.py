"""The probes a cell runs against its worker, over HTTP (aiohttp), through `client.worker_url(port)`.

Each probe checks one property of a healthy worker; the first that fails ends the cell with a
classified ReasonCode. The "second prompt of a different length" probe is the regression test for
the original project's KV-cache bug (a warm cache reused by the next request).
"""

from __future__ import annotations

import uuid

import aiohttp
from llorch_worker.api import ExecuteRequest, ExecuteResult, Health

from llorch_tui.errors import LlorchError
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.protocol.matrix import Measurements, ReasonCode
from llorch_tui.worker_client import WorkerClient, WorkerHTTPError

FINISH_REASONS = ("length", "stop")
SAMPLE_CHARS = 120


class ProbeFailure(Exception):
    def __init__(self, code: str, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.hint = hint


# One generation as the worker answered it (POST /execute).
Generation = ExecuteResult


class WorkerHTTP:
    """The cell's WorkerClient, plus the peak RSS/device memory seen in /health; worker errors
    become ProbeFailure with a classified reason."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, request_timeout_s: float) -> None:
        self.worker = WorkerClient(session, base_url, timeout=request_timeout_s)
        self.peak_rss: int | None = None
        self.device_peak: int | None = None
        self.last_rss: int | None = None

    async def health(self) -> Health:
        health = await self.worker.health()
        rss, dpeak = health.memory.rss, health.memory.device_peak
        if rss is not None:
            self.last_rss = rss
            self.peak_rss = max(self.peak_rss or 0, rss)
        if dpeak is not None:
            self.device_peak = max(self.device_peak or 0, dpeak)
        return health

    async def execute(self, prompt: str, max_tokens: int, seed: int | None, job_id: str | None = None,
                      ignore_eos: bool | None = None) -> Generation:
        """One non-streamed generation. HTTP errors become ProbeFailure with the worker's error code."""
        req = ExecuteRequest(job_id=job_id or uuid.uuid4().hex, prompt=prompt, max_tokens=max_tokens, seed=seed,
                             ignore_eos=ignore_eos)
        try:
            return await self.worker.execute(req)
        except LlorchError as err:
            raise probe_failure(err, "/execute") from None

    async def cancel(self, job_id: str) -> int:
        """The HTTP status of POST /cancel: 200 cancelled, 404 not (or no longer) running."""
        try:
            await self.worker.cancel(job_id)
        except WorkerHTTPError as err:
            return err.status
        return 200


def probe_failure(err: LlorchError, route: str) -> ProbeFailure:
    """A WorkerClient error as a cell's failure: the worker's own code (oom is OOM), or an answer that does not
    fit the worker API (wrong output)."""
    if isinstance(err, WorkerHTTPError):
        code = ReasonCode.OOM if err.worker_code == "oom" or err.status == 507 else ReasonCode.WRONG_OUTPUT
        return ProbeFailure(code, f"{route} answered HTTP {err.status} {err.worker_code}: "
                                  f"{err.message.partition(': ')[2]}".strip(), err.hint)
    return ProbeFailure(ReasonCode.WRONG_OUTPUT, err.message, err.hint)


def check_generation(gen: Generation, max_tokens: int, what: str) -> None:
    if gen.tokens_generated <= 0 or gen.text == "":
        raise ProbeFailure(ReasonCode.EMPTY_OUTPUT, f"{what}: the worker returned no text "
                                                    f"({gen.tokens_generated} tokens, finish_reason {gen.finish_reason!r})")
    if gen.finish_reason not in FINISH_REASONS:
        raise ProbeFailure(ReasonCode.WRONG_OUTPUT, f"{what}: unexpected finish_reason {gen.finish_reason!r}")
    if gen.tokens_generated > max_tokens:
        raise ProbeFailure(ReasonCode.WRONG_OUTPUT, f"{what}: {gen.tokens_generated} tokens for max_tokens {max_tokens}")
    if gen.finish_reason == "length" and gen.tokens_generated != max_tokens:
        raise ProbeFailure(ReasonCode.WRONG_OUTPUT,
                           f"{what}: finish_reason 'length' after {gen.tokens_generated} of {max_tokens} tokens")


async def run_probes(http: WorkerHTTP, options: MatrixOptions, m: Measurements) -> list[Generation]:
    """The correctness probes; fills `m` with what they measured. Raises ProbeFailure."""
    health = await http.health()
    if health.status != "ok":
        raise ProbeFailure(ReasonCode.LOAD_ERROR, f"/health says {health.status!r} after spawn: {health.error}")
    gens: list[Generation] = []
    first = await http.execute(options.prompt, options.max_tokens, options.seed)
    check_generation(first, options.max_tokens, "seeded generation")
    gens.append(first)
    m.ttft_ms, m.tokens_per_second, m.tokens_generated = first.ttft_ms, first.tokens_per_second, first.tokens_generated
    m.sample_text = first.text[:SAMPLE_CHARS]
    again = await http.execute(options.prompt, options.max_tokens, options.seed)
    gens.append(again)
    if again.text != first.text:
        raise ProbeFailure(ReasonCode.NONDETERMINISTIC,
                           f"same prompt and seed {options.seed} gave different text: {first.text[:60]!r} vs {again.text[:60]!r}",
                           "the worker must seed every request and start from a fresh KV cache")
    # A prompt of another length with another budget, right after: a reused KV cache breaks here.
    second_max = max(1, options.max_tokens // 2 + 3)
    try:
        second = await http.execute(options.second_prompt, second_max, options.seed + 1)
        check_generation(second, second_max, "second prompt")
    except ProbeFailure as exc:
        raise ProbeFailure(ReasonCode.SECOND_PROMPT_FAILED, f"second prompt of a different length failed: {exc.reason}",
                           "every request must start with a fresh KV cache") from exc
    gens.append(second)
    await http.health()
    m.generation_s = round(sum(g.duration_ms for g in gens) / 1000, 4)
    m.peak_rss_bytes, m.device_peak_bytes = http.peak_rss, http.device_peak
    return gens
