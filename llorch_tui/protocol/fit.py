"""Fit estimates: how much memory a model needs on a backend, before a byte of weights is downloaded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llorch_tui.protocol import WireModel

ParamSource = Literal["safetensors", "config"]


class FitEstimate(WireModel):
    """One model on one backend of one pool. Every figure is bytes."""

    model: str
    backend: str
    dtype: str  # what the worker would load it as (its `--dtype auto` choice unless one was asked for)
    params: int
    param_source: ParamSource  # the safetensors headers (exact) or the config's shapes (formula)
    context: int  # tokens per sequence the KV cache is sized for
    batch: int  # sequences decoded together
    weights_bytes: int
    kv_cache_bytes: int
    conversion_bytes: int = 0  # the stored weights, held while converting to another dtype (cpu, metal)
    activation_bytes: int
    overhead_bytes: int  # the runtime itself: interpreter, torch, CUDA context
    estimate_bytes: int  # weights + conversion + kv cache + activations + overhead
    measured_bytes: int | None = None  # measured peak of a worker serving it here (the catalog), if any
    need_bytes: int  # what the fit decision uses: the measurement when there is one, else the estimate
    free_bytes: int | None = None  # available RAM (cpu, metal) or the best GPU's free memory (cuda)
    gpu: int | None = None  # the GPU with the most free memory (cuda)
    fits: bool | None = None  # None when free memory is unknown
    reason: str = ""


class FitReport(WireModel):
    pool_id: str
    model: str
    source: str  # where the shapes came from: "local files", or the endpoint read without downloading
    estimates: list[FitEstimate] = Field(default_factory=list)
