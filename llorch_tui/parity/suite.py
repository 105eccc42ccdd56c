"""The versioned data a fingerprint is recorded on, shipped in `llorch_tui/parity/data/`.

Changing a prompt, an expected answer or the perplexity text means a new file with a new version
(prompts-v2.json ...): a fingerprint names the versions it was recorded with, and comparing a
worker against it always uses those.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llorch_tui.errors import ErrorCode, LlorchError

PROMPTS_VERSION = "prompts-v1"
GOLDEN_VERSION = "golden-v1"
PERPLEXITY_VERSION = "perplexity-v1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuitePrompt(_Strict):
    id: str
    prompt: str | None = None                       # plain text, sent as is
    messages: list[dict[str, str]] | None = None    # a chat, rendered by the model's own template

    @model_validator(mode="after")
    def _one_of(self) -> "SuitePrompt":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError(f"prompt {self.id!r}: give exactly one of 'prompt' and 'messages'")
        return self


class PromptSuite(_Strict):
    version: str
    max_tokens: int = Field(ge=32)   # greedy steps recorded per prompt
    top_k: int = Field(ge=5, le=20)  # alternatives recorded per step
    prompts: list[SuitePrompt]


class GoldenPrompt(_Strict):
    id: str
    question: str
    expected: str
    mode: Literal["contains", "exact"] = "contains"


class GoldenSuite(_Strict):
    version: str
    max_tokens: int = Field(ge=1)
    prompts: list[GoldenPrompt]


def _read(name: str) -> str:
    try:
        return resources.files("llorch_tui.parity").joinpath("data", name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LlorchError(ErrorCode.NOT_FOUND, f"no parity data file {name!r} in this llorch installation",
                          "the reference was recorded with a suite version this llorch does not ship; "
                          "upgrade llorch, or record a new reference with `llorch-pool models fingerprint ID --accept`") from None


@cache
def prompt_suite(version: str = PROMPTS_VERSION) -> PromptSuite:
    return PromptSuite.model_validate(json.loads(_read(f"{version}.json")))


@cache
def golden_suite(version: str = GOLDEN_VERSION) -> GoldenSuite:
    return GoldenSuite.model_validate(json.loads(_read(f"{version}.json")))


@cache
def perplexity_text(version: str = PERPLEXITY_VERSION) -> str:
    return _read(f"{version}.txt")
