"""Matrix wire models: cell keys, measurements, verdicts and the versioned JSON report.

The engine's events carry these; the JSON report *is* `MatrixReport.model_dump_json()`, so a
reader (the diff, CI, the TUI's export) validates a file with `MatrixReport.model_validate_json`.
Fields are only ever added; MATRIX_REPORT_VERSION changes on an incompatible change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llorch_tui.protocol.catalog import DEFAULT_DTYPE, DTYPES, Verdict, device_key
from llorch_tui.protocol.parity import EnvFingerprint, ParityResult

# Re-exported: the matrix's dtype dimension; a cell's verdict is what the catalog records per device.
__all__ = ["DEFAULT_DTYPE", "DTYPES", "Verdict"]

MATRIX_REPORT_VERSION = 1
Stage = Literal["queued", "downloading", "spawning", "loading", "probing", "parity", "benchmark", "stability", "stopping"]


class ReasonCode:
    """Why a cell failed or was skipped. Strings (stable, only added), like ErrorCode."""

    # skipped
    BACKEND_ABSENT = "backend_absent"            # the pool has no usable such backend
    BACKEND_UNSUPPORTED = "backend_unsupported"  # the model's catalog entry lacks the backend
    NOT_DOWNLOADED = "not_downloaded"            # missing on the pool and downloads are off
    NOT_IN_CATALOG = "not_in_catalog"            # asked for (--models / config) but unknown to the pool
    WILL_NOT_FIT = "will_not_fit"                # measured peak memory > the pool's free RAM/VRAM
    POOL_OFFLINE = "pool_offline"                # the pool could not be reached
    STOPPED = "stopped"                          # the run was stopped before the cell started
    # failed
    DOWNLOAD_FAILED = "download_failed"
    CHECKPOINT_CORRUPT = "checkpoint_corrupt"
    MODEL_INVALID = "model_invalid"
    TOKENIZER_MISSING = "tokenizer_missing"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    PORT_IN_USE = "port_in_use"
    OOM = "oom"
    LOAD_ERROR = "load_error"                    # spawn failed for another/unknown reason
    TIMEOUT = "timeout"
    CRASH = "crash"                              # the worker died (exit code / signal in `exit_code`/reason)
    EMPTY_OUTPUT = "empty_output"
    WRONG_OUTPUT = "wrong_output"                # too many tokens, bad finish_reason, malformed answer
    NONDETERMINISTIC = "nondeterministic"        # same seed, different text
    SECOND_PROMPT_FAILED = "second_prompt_failed"  # the old KV-cache bug
    UNSTABLE = "unstable"                        # --stability: errors, a crash or a hang under load
    CONNECTION_LOST = "connection_lost"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    # skipped after the spawn: the backend cannot compute in the cell's dtype (the worker's test op failed)
    DTYPE_UNSUPPORTED = "dtype_unsupported"
    # failed, but the worker runs: its answers differ from the model's reference fingerprint
    PARITY_DRIFT = "parity_drift"                # tokens / log-probs / perplexity beyond the dtype's tolerance
    WRONG_ANSWER = "wrong_answer"                # a golden prompt's expected answer is missing


class CellKey(BaseModel):
    """One cell of the grid. Hashable; `id` is the stable string key: "pool/backend/model", with the
    dtype after the backend when it is not the worker's default ("pool/backend:dtype/model")."""

    model_config = ConfigDict(frozen=True)
    pool: str
    backend: str
    model: str
    dtype: str = DEFAULT_DTYPE  # a cell of a report written before dtype was a dimension reads as the default

    @property
    def device(self) -> str:
        """The backend, qualified by the dtype when one was asked for: "cpu", "cpu:bfloat16"."""
        return device_key(self.backend, self.dtype)

    @property
    def id(self) -> str:
        return f"{self.pool}/{self.device}/{self.model}"

    @property
    def column(self) -> str:
        return f"{self.pool}/{self.device}"

    @classmethod
    def parse(cls, key: str) -> "CellKey":
        pool, device, model = key.split("/", 2)
        backend, _, dtype = device.partition(":")
        return cls(pool=pool, backend=backend, model=model, dtype=dtype or DEFAULT_DTYPE)


class Measurements(BaseModel):
    """Everything measured for a cell; None = not measured (e.g. the cell failed before)."""

    load_s: float | None = None            # the worker's own load time (its ready callback)
    spawn_s: float | None = None           # engine wall time of workers.spawn (process start + load)
    worker_start_s: float | None = None    # the agent's spawn-to-ready (WorkerRecord ready_at - started_at)
    stop_s: float | None = None            # engine wall time of workers.stop
    probe_s: float | None = None           # engine wall time of the correctness probes (HTTP included)
    record_s: float | None = None          # engine wall time of models.record_verdict
    ttft_ms: float | None = None           # first probe generation
    tokens_per_second: float | None = None  # first probe generation (decode rate)
    tokens_generated: int | None = None
    generation_s: float | None = None      # sum of worker-reported request durations
    peak_rss_bytes: int | None = None      # from /health
    device_peak_bytes: int | None = None   # from /health (cuda/metal), None on cpu
    # models.fit's estimate for the matrix's workload, asked before the run: reports show it beside the peak
    fit_estimate_bytes: int | None = None
    cell_s: float | None = None            # engine wall time for the whole cell
    # cell_s - worker_start_s - generation_s - bench/stability wall - stop_s: what the engine itself costs
    overhead_s: float | None = None
    parity_s: float | None = None          # engine wall time of the parity certificate (recording included)
    sample_text: str | None = None         # the first probe's text (truncated)

    def peak_bytes(self, backend: str) -> int | None:
        """The peak where the model lived: the device's on a GPU backend, else the process's RSS."""
        return self.device_peak_bytes if backend != "cpu" and self.device_peak_bytes else self.peak_rss_bytes


class BenchLevel(BaseModel):
    """One concurrency level of a cell's --bench: latency percentiles (ms) and throughput."""

    concurrency: int
    requests: int
    tokens: int = 0
    throughput_tps: float = 0.0
    ttft_ms_p50: float = 0.0
    ttft_ms_p90: float = 0.0
    ttft_ms_p99: float = 0.0
    tpot_ms_p50: float = 0.0
    tpot_ms_p90: float = 0.0
    tpot_ms_p99: float = 0.0
    itl_ms_p50: float = 0.0
    itl_ms_p90: float = 0.0
    itl_ms_p99: float = 0.0


class BenchResult(BaseModel):
    iterations: int
    max_tokens: int
    tokens_per_second_mean: float
    tokens_per_second_p50: float
    ttft_ms_mean: float
    ttft_ms_p50: float
    peak_rss_bytes: int | None = None
    device_peak_bytes: int | None = None
    samples_tokens_per_second: list[float] = Field(default_factory=list)
    # llama-bench / vLLM conventions (definitions: llorch_tui/bench_metrics.py, docs/benchmarks.md):
    pp_tokens: int | None = None       # prompt length of the pp runs (exact, token ids)
    tg_tokens: int | None = None       # generated tokens of the tg runs and the concurrency levels
    pp_tps_mean: float | None = None
    pp_tps_sd: float | None = None
    tg_tps_mean: float | None = None
    tg_tps_sd: float | None = None
    levels: list[BenchLevel] = Field(default_factory=list)
    startup: dict[str, float] = Field(default_factory=dict)  # stage -> seconds (process, weights_to_ram, ...)


class StabilityResult(BaseModel):
    requests: int                      # sequential requests sent
    errors: int                        # sequential + burst + edge-case failures that should not happen
    error_samples: list[str] = Field(default_factory=list)
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    bursts: int = 0                    # bursts of `burst_size` concurrent requests
    burst_size: int = 10
    edge_cases: dict[str, str] = Field(default_factory=dict)  # case -> "ok" or what went wrong
    rss_start_bytes: int | None = None
    rss_end_bytes: int | None = None
    rss_growth_bytes: int | None = None
    duration_s: float = 0.0


class CellResult(BaseModel):
    key: CellKey
    verdict: Verdict
    reason_code: str | None = None     # a ReasonCode, for fail/skipped
    reason: str | None = None          # human sentence: what and why
    hint: str | None = None            # what to do next
    exit_code: int | None = None       # the worker's, when it died
    log_tail: list[str] = Field(default_factory=list)
    measurements: Measurements = Field(default_factory=Measurements)
    bench: BenchResult | None = None
    stability: StabilityResult | None = None
    worker_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    parity: ParityResult | None = None          # the correctness certificate against the fingerprint
    environment: EnvFingerprint | None = None   # what the cell ran on (versions, hardware, dtype, hash)


class RunSummary(BaseModel):
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    duration_s: float = 0.0

    @property
    def line(self) -> str:
        return f"Test Results: {self.passed} passed, {self.failed} failed, {self.skipped} skipped"


class PoolInfo(BaseModel):
    """What the run saw of a pool (for the report's header)."""

    name: str
    online: bool = False
    error: str | None = None
    hostname: str | None = None
    backends: list[str] = Field(default_factory=list)
    gpus: list[str] = Field(default_factory=list)
    ram_total_bytes: int | None = None


class MatrixReport(BaseModel):
    version: int = MATRIX_REPORT_VERSION
    llorch_version: str = ""
    started_at: datetime
    finished_at: datetime | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    pools: list[PoolInfo] = Field(default_factory=list)
    cells: list[CellResult] = Field(default_factory=list)
    summary: RunSummary = Field(default_factory=RunSummary)
    # Not a whole run: stopped before every planned cell ran, or written while still running (an export
    # mid-run). A partial report is written but never becomes the baseline the next run is compared with.
    partial: bool = False
