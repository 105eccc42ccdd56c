"""MatrixOptions: one run's settings, from the config's [matrix] table overlaid with CLI flags."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any

from llorch_tui.config import MatrixConfig
from llorch_tui.protocol.matrix import DEFAULT_DTYPE


@dataclass
class MatrixOptions:
    models: list[str] = field(default_factory=list)    # empty: every model in each pool's catalog
    backends: list[str] = field(default_factory=list)  # empty: cpu, cuda, metal (absent ones skipped)
    pools: list[str] = field(default_factory=list)     # empty: every configured pool
    dtypes: list[str] = field(default_factory=list)    # empty: the worker's default ("auto") only
    prompt: str = "The capital of France is"
    second_prompt: str = "Write one sentence about the sea, then stop."
    max_tokens: int = 16
    seed: int = 42
    download: bool = False
    load_timeout_s: float = 300.0
    request_timeout_s: float = 120.0
    report_dir: str | None = "reports"  # None: write no reports
    bench: int | None = None            # --bench N: N timed iterations per cell
    bench_pp: int = 128                 # --bench-pp: prompt tokens of the pp runs (llama-bench pp128)
    bench_tg: int = 32                  # --bench-tg: generated tokens of the tg runs and concurrency levels
    bench_concurrency: list[int] = field(default_factory=lambda: [1, 4])  # --bench-concurrency 1 4 16
    stability: bool = False
    stability_requests: int = 1000
    burst_size: int = 10
    bursts: int = 3
    record_verdicts: bool = True        # write verdicts/peak memory into the pools' catalogs
    parity: bool = True                 # certify every cell against its model's reference fingerprint
    command: str = "llorch-tui --run-matrix"  # shown in the reports' header

    @classmethod
    def from_config(cls, matrix: MatrixConfig, args: argparse.Namespace | None = None) -> "MatrixOptions":
        o = cls(models=list(matrix.models), backends=list(matrix.backends), pools=list(matrix.pools),
                dtypes=list(matrix.dtypes),
                prompt=matrix.prompt, second_prompt=matrix.second_prompt, max_tokens=matrix.max_tokens,
                seed=matrix.seed, download=matrix.download, load_timeout_s=matrix.load_timeout_s,
                request_timeout_s=matrix.request_timeout_s, report_dir=matrix.report_dir, parity=matrix.parity)
        if args is None:
            return o
        # Flags narrow or override the config; an absent flag leaves the config's value.
        if getattr(args, "models", None):
            o.models = list(args.models)
        if getattr(args, "backends", None):
            o.backends = list(args.backends)
        if getattr(args, "pools", None):
            o.pools = list(args.pools)
        if getattr(args, "dtypes", None):
            o.dtypes = list(dict.fromkeys(args.dtypes))  # a dtype named twice is one column
        if getattr(args, "report_dir", None):
            o.report_dir = args.report_dir
        if getattr(args, "download", False):
            o.download = True
        if getattr(args, "bench", None) is not None:
            o.bench = args.bench
        for name in ("bench_pp", "bench_tg", "bench_concurrency"):
            if getattr(args, name, None):
                setattr(o, name, getattr(args, name))
        if getattr(args, "stability", False):
            o.stability = True
        if getattr(args, "stability_requests", None):
            o.stability_requests = args.stability_requests
        if getattr(args, "no_parity", False):
            o.parity = False
        return o

    @property
    def cell_dtypes(self) -> list[str]:
        return list(dict.fromkeys(self.dtypes)) or [DEFAULT_DTYPE]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
