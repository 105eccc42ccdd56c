"""Prometheus text exposition, written by hand (no client library needed for a handful of series)."""

from __future__ import annotations

import threading
from typing import Any

_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
        self.total += 1
        self.sum += value

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for b, c in zip(self.buckets, self.counts):
            lines.append(f'{name}_bucket{{le="{b}"}} {c}')
        lines += [f'{name}_bucket{{le="+Inf"}} {self.total}', f"{name}_sum {self.sum:.6f}", f"{name}_count {self.total}"]
        return lines


class Metrics:
    """Updated by the scheduler thread and the HTTP handlers; a lock keeps histograms consistent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}  # by finish reason / outcome
        self.http_errors: dict[int, int] = {}
        self.prompt_tokens = 0
        self.tokens_generated = 0
        self.queue_depth = 0
        self.decode_steps = 0
        self.batch_rows_max = 0  # widest batch decoded so far (proves batching happened)
        self.ttft = Histogram(_TTFT_BUCKETS)
        self.latency = Histogram(_LATENCY_BUCKETS)

    @property
    def requests_total(self) -> int:
        return sum(self.requests.values())

    def observe_job(self, summary: dict[str, Any]) -> None:
        with self._lock:
            reason = summary.get("finish_reason") or "error"
            self.requests[reason] = self.requests.get(reason, 0) + 1
            self.tokens_generated += int(summary.get("tokens_generated") or 0)
            self.prompt_tokens += int(summary.get("prompt_tokens") or 0)
            if summary.get("ttft_ms") is not None:
                self.ttft.observe(summary["ttft_ms"] / 1000)
            self.latency.observe(summary["duration_ms"] / 1000)

    def observe_http_error(self, status: int) -> None:
        with self._lock:
            self.http_errors[status] = self.http_errors.get(status, 0) + 1

    def render(self, memory: dict[str, int | None], in_flight: int) -> str:
        with self._lock:
            lines = ["# HELP llorch_requests_total Generation requests finished, by finish reason.",
                     "# TYPE llorch_requests_total counter"]
            for reason, n in sorted(self.requests.items()):
                lines.append(f'llorch_requests_total{{finish_reason="{reason}"}} {n}')
            lines += ["# HELP llorch_http_errors_total Requests rejected with an HTTP error, by status.",
                      "# TYPE llorch_http_errors_total counter"]
            for status, n in sorted(self.http_errors.items()):
                lines.append(f'llorch_http_errors_total{{status="{status}"}} {n}')
            lines += [
                "# HELP llorch_tokens_generated_total Tokens generated.",
                "# TYPE llorch_tokens_generated_total counter",
                f"llorch_tokens_generated_total {self.tokens_generated}",
                "# HELP llorch_prompt_tokens_total Prompt tokens processed.",
                "# TYPE llorch_prompt_tokens_total counter",
                f"llorch_prompt_tokens_total {self.prompt_tokens}",
                "# HELP llorch_queue_depth Requests waiting for a batch slot.",
                "# TYPE llorch_queue_depth gauge",
                f"llorch_queue_depth {self.queue_depth}",
                "# HELP llorch_decode_steps_total Batched decode steps run.",
                "# TYPE llorch_decode_steps_total counter",
                f"llorch_decode_steps_total {self.decode_steps}",
                "# HELP llorch_batch_rows_max Widest batch decoded since start.",
                "# TYPE llorch_batch_rows_max gauge",
                f"llorch_batch_rows_max {self.batch_rows_max}",
                "# HELP llorch_requests_in_flight Requests queued or generating.",
                "# TYPE llorch_requests_in_flight gauge",
                f"llorch_requests_in_flight {in_flight}",
            ]
            lines += self.ttft.render("llorch_ttft_seconds", "Time to first token.")
            lines += self.latency.render("llorch_request_duration_seconds", "Request latency, submit to done.")
            lines += ["# HELP llorch_memory_bytes Memory use.", "# TYPE llorch_memory_bytes gauge"]
            for kind, value in memory.items():
                if value is not None:
                    lines.append(f'llorch_memory_bytes{{kind="{kind}"}} {value}')
        return "\n".join(lines) + "\n"
