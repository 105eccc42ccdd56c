"""The operator's configuration: pools, model presets, matrix settings (TOML, validated by pydantic).

Lookup order: --config, $LLORCH_CONFIG, ~/.config/llorch/config.toml, else the embedded default
(one `local` pool and the four seed presets). Loading, provenance and friendly errors live in
config_load.py; this module holds only the schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llorch_tui.lan_address import check_lan_address
from llorch_tui.protocol.catalog import validate_model_id


class StrictModel(BaseModel):
    """Config models reject unknown keys: a typo must be an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class PoolConfig(StrictModel):
    name: str
    transport: Literal["local", "ssh"] = "local"
    # ssh: host may be an ~/.ssh/config alias; user/port/identity_file/proxy_jump override it.
    host: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None
    known_hosts: str | None = None  # default: ~/.ssh/known_hosts, strictly checked
    ssh_config: str | None = None  # default: ~/.ssh/config
    connect_timeout_s: float = 10.0
    keepalive_interval_s: float = 15.0
    # How to run the agent on that pool (a path or a command; arguments are appended).
    agent_command: str = "llorch-pool"
    state_dir: str | None = None
    models_dir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # Restrict the backends used on this pool (default: whatever the pool reports usable).
    backends: list[Literal["cpu", "cuda", "metal"]] | None = None
    hf_endpoint: str | None = None
    # Matrix cells run at once per device on this pool.
    max_parallel_per_device: int = Field(default=1, ge=1)
    # The pool's IP on the network its peers share: `models copy` (route lan/auto) serves from this pool's
    # mirror bound to it, so other pools fetch the bytes straight from here. Unset: no LAN route.
    lan_address: str | None = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        validate_model_id(v)  # same safe alphabet as model ids
        return v

    @field_validator("lan_address")
    @classmethod
    def _lan_address_ok(cls, v: str | None) -> str | None:
        return None if v is None else check_lan_address(v)

    @model_validator(mode="after")
    def _ssh_needs_host(self) -> "PoolConfig":
        if self.transport == "ssh" and not self.host:
            raise ValueError(f"pool {self.name!r}: transport 'ssh' needs host (a hostname or ~/.ssh/config alias)")
        return self


_ALL_BACKENDS: tuple[Literal["cpu", "cuda", "metal"], ...] = ("cpu", "cuda", "metal")


class ModelPreset(StrictModel):
    id: str
    name: str
    repo: str
    architecture: str
    context_length: int | None = None
    vocab_size: int | None = None
    revision: str | None = None
    backends: list[Literal["cpu", "cuda", "metal"]] = Field(default_factory=lambda: list(_ALL_BACKENDS))
    size_gb: float | None = None

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        return validate_model_id(v)


class MatrixConfig(StrictModel):
    models: list[str] = Field(default_factory=list)  # empty: every model in each pool's catalog
    backends: list[Literal["cpu", "cuda", "metal"]] = Field(default_factory=list)  # empty: all usable
    pools: list[str] = Field(default_factory=list)  # empty: all pools
    # Each dtype is its own column per backend; empty: the worker's default ("auto": cpu float32, cuda bf16/fp16)
    dtypes: list[Literal["auto", "float32", "bfloat16", "float16"]] = Field(default_factory=list)
    prompt: str = "The capital of France is"
    second_prompt: str = "Write one sentence about the sea, then stop."
    max_tokens: int = Field(default=16, ge=1)
    seed: int = 42
    download: bool = False  # download missing models before testing them
    load_timeout_s: float = 300.0
    request_timeout_s: float = 120.0
    report_dir: str = "reports"
    parity: bool = True  # certify each cell against the model's reference fingerprint (docs/matrix.md)


class Config(StrictModel):
    pools: list[PoolConfig] = Field(default_factory=list)
    models: list[ModelPreset] = Field(default_factory=list)
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)

    @model_validator(mode="after")
    def _unique(self) -> "Config":
        for what, names in (("pool", [p.name for p in self.pools]), ("model preset", [m.id for m in self.models])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate {what} name(s): {', '.join(dup)} — each must be unique")
        return self

    def pool(self, name: str) -> PoolConfig | None:
        return next((p for p in self.pools if p.name == name), None)

    def preset(self, model_id: str) -> ModelPreset | None:
        return next((m for m in self.models if m.id == model_id), None)


SEED_PRESETS: list[ModelPreset] = [
    ModelPreset(id="tinyllama", name="TinyLlama-1.1B-Chat-v1.0", repo="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
                architecture="llama", context_length=2048, vocab_size=32000, size_gb=2.2),
    ModelPreset(id="qwen-0.5b", name="Qwen2.5-0.5B-Instruct", repo="Qwen/Qwen2.5-0.5B-Instruct",
                architecture="qwen2", context_length=32768, vocab_size=151936, size_gb=1.0),
    ModelPreset(id="phi3", name="Phi-3-mini-4k-instruct", repo="microsoft/Phi-3-mini-4k-instruct",
                architecture="phi3", context_length=4096, vocab_size=32064, size_gb=7.6),
    ModelPreset(id="mistral", name="Mistral-7B-Instruct-v0.2", repo="mistralai/Mistral-7B-Instruct-v0.2",
                architecture="mistral", context_length=32768, vocab_size=32000, size_gb=14.5),
]


def default_config() -> Config:
    """The embedded default: works on a fresh machine with no SSH and no config file."""
    return Config(pools=[PoolConfig(name="local", transport="local")], models=list(SEED_PRESETS))
