"""Correctness wire models: a model's reference fingerprint, a cell's parity certificate, and the
environment a cell ran in.

A *fingerprint* is recorded once per model on the reference backend (cpu, float32): greedy tokens
for a versioned prompt set, the top-k log-probabilities at every step, perplexity on a fixed text,
and the content hash of the weights it was taken from. It is stored on the catalog entry
(`ModelEntry.fingerprint`) and travels with the model to other pools.

A *certificate* (`ParityResult`) is what one matrix cell measured against that fingerprint.
Fields are only ever added (like every wire model).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import Field

from llorch_tui.protocol import WireModel

# The files a model's weights hash covers, and how: sha256 over one `NAME NUL SHA256 LF` line per weight
# file, sorted by name. The agent measures it on the files (pool/weights_hash.py); the matrix derives the
# same value from the catalog's per-file hashes when no parity check measured it.
WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")


def weights_digest(file_hashes: Iterable[tuple[str, str]]) -> str:
    """The weights hash from (file name, file sha256) pairs, in any order."""
    return hashlib.sha256("".join(f"{name}\0{sha}\n" for name, sha in sorted(file_hashes)).encode()).hexdigest()


ParityVerdict = Literal["pass", "parity_drift", "wrong_answer", "no_reference"]


class TopLogprob(WireModel):
    token_id: int
    logprob: float
    text: str | None = None     # the token decoded (special tokens shown)


class FingerprintStep(WireModel):
    """One greedy step of the reference: the chosen token and the top-k alternatives."""

    token_id: int
    text: str
    logprob: float
    top: list[TopLogprob] = Field(default_factory=list)  # k >= 5, best first


class FingerprintPrompt(WireModel):
    prompt_id: str
    prompt: str                 # as sent (chat template already applied when `chat` is true)
    chat: bool = False
    prompt_token_ids: list[int] = Field(default_factory=list)
    steps: list[FingerprintStep] = Field(default_factory=list)   # >= 32 greedy steps


class Fingerprint(WireModel):
    """The reference a model is compared against, on every pool and backend."""

    prompt_set_version: str
    backend: str = "cpu"
    dtype: str = "float32"
    top_k: int = 5
    weights_sha256: str         # content hash of the weight files it was recorded from
    perplexity: float | None = None
    perplexity_text_version: str | None = None
    prompts: list[FingerprintPrompt] = Field(default_factory=list)
    recorded_at: datetime
    recorded_on: str = ""       # pool id
    environment: "EnvFingerprint | None" = None


class Divergence(WireModel):
    prompt_id: str
    position: int               # index into the generated tokens (0 = first generated token)
    reference_token: str        # decoded
    got_token: str              # decoded
    reference_margin: float     # reference's top-1 minus top-2 log-prob at that step
    tie: bool = False           # margin under the tie threshold: not counted as a failure


class GoldenOutcome(WireModel):
    prompt_id: str
    question: str
    expected: str
    mode: Literal["contains", "exact"] = "contains"
    answer: str
    ok: bool


class ParityResult(WireModel):
    """A cell's correctness certificate against its model's fingerprint."""

    verdict: ParityVerdict
    reason: str | None = None
    dtype: str = "float32"
    prompt_set_version: str | None = None
    tokens_agreed: int = 0
    tokens_total: int = 0
    first_divergence: Divergence | None = None
    max_logprob_delta: float | None = None      # max |Δ log-prob| over the top-k, teacher-forced
    perplexity: float | None = None
    perplexity_ratio: float | None = None       # cell / reference
    golden_passed: int = 0
    golden_total: int = 0
    golden: list[GoldenOutcome] = Field(default_factory=list)
    golden_skipped_reason: str | None = None    # e.g. synthetic random weights
    weights_changed: bool = False               # weights hash differs from the fingerprint's
    weights_sha256: str | None = None
    tolerances: dict[str, float] = Field(default_factory=dict)  # the limits applied (per dtype)
    tokens_tied: int = 0                        # of tokens_agreed: disagreements within the tie margin
    first_free_divergence: Divergence | None = None  # where the free greedy text departs (what a user sees)
    reference_weights_sha256: str | None = None  # the fingerprint's weights hash
    golden_set_version: str | None = None


class ModelReference(WireModel):
    """`models.reference`: what a cell needs to certify a model on a pool."""

    model: str
    source: str = "hub"
    weights_sha256: str         # measured now, on the files
    fingerprint: Fingerprint | None = None
    weights_changed: bool = False   # a fingerprint exists and its hash is not weights_sha256


class FingerprintReport(WireModel):
    """`models.fingerprint`: the reference after the call, and whether this call recorded it."""

    model: str
    recorded: bool
    weights_sha256: str
    weights_changed: bool = False
    fingerprint: Fingerprint


class EnvFingerprint(WireModel):
    """What a cell ran on; the diff names what changed between two runs."""

    llorch_version: str | None = None
    worker_version: str | None = None
    python: str | None = None
    torch: str | None = None
    transformers: str | None = None
    os: str | None = None
    kernel: str | None = None
    cpu: str | None = None
    gpu: str | None = None
    driver: str | None = None
    cuda: str | None = None
    dtype: str | None = None
    model_sha256: str | None = None
    faults: str | None = None   # the worker's fault injection: "none", "logit_noise=1" (None: not reported)


Fingerprint.model_rebuild()
ModelReference.model_rebuild()
FingerprintReport.model_rebuild()
