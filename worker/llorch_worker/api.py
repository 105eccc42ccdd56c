"""The worker's HTTP API as pydantic models: the requests it accepts and the documents it answers.

The control plane's `llorch_tui.worker_client.WorkerClient` builds requests and reads every answer with
it; the worker's handlers read every request body with it (`validation.py` turns a ValidationError into
one clear 400 naming the field). A field's `description` is what the 400 says the field must be. It
imports pydantic and nothing else of the worker, so the control plane and the pool agent can import it without
torch (an import contract in pyproject.toml keeps it so).

Response models accept unknown fields (a newer worker may add some); request models ignore unknown
fields, as the OpenAI routes must (clients send parameters this worker does not implement).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

# Bounds shared by the validation and the docs (docs/worker.md).
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # anything torch.manual_seed accepts
STOP_MAX = 16  # stop strings per request
LOGIT_BIAS_MAX = 1024  # entries in one request's logit_bias
TOP_LOGPROBS_MAX = 20

Number = StrictInt | StrictFloat  # JSON numbers; true/false are not numbers here


class Answer(BaseModel):
    """Base of the worker's answers: unknown fields from a newer worker are kept."""

    model_config = ConfigDict(extra="allow")


class Request(BaseModel):
    """Base of request bodies: strict JSON types (no "3" for 3, no true for 1); unknown fields ignored."""

    model_config = ConfigDict(extra="ignore")


# ------------------------------------------------------------------------------------ requests
class GenerationParams(Request):
    """What every generating route accepts (native /execute and the OpenAI routes)."""

    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None  # OpenAI's newer name; wins over max_tokens
    temperature: Number | None = Field(default=None, ge=0.0, le=10.0)
    top_p: Number | None = Field(default=None, ge=0.0, le=1.0)
    seed: StrictInt | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    ignore_eos: StrictBool | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=STOP_MAX)] | None = Field(
        default=None, description=f"a string or a list of at most {STOP_MAX} strings")
    # {"token id": bias in -100..100}; ids are checked against the loaded model's vocabulary.
    logit_bias: dict[str, Annotated[Number, Field(ge=-100, le=100)]] | None = Field(
        default=None, max_length=LOGIT_BIAS_MAX,
        description=f'an object {{"token id": bias from -100 to 100}} of at most {LOGIT_BIAS_MAX} entries')
    stream: StrictBool | None = None

    @property
    def token_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


MESSAGES_WANT = "a non-empty list of {role, content} objects"


class ChatMessage(Request):
    role: StrictStr
    content: StrictStr | list[dict[str, Any]] | None = Field(default=None, description="a string or a list of text parts")


class ExecuteRequest(GenerationParams):
    """POST /execute: one generation of raw text (`prompt`) or of a chat (`messages`, rendered by the model's
    chat template); exactly one of the two. `job_id` lets the caller cancel it (POST /cancel)."""

    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, description=MESSAGES_WANT)
    job_id: StrictStr | None = None


class CancelRequest(Request):
    job_id: StrictStr


class StreamOptions(Request):
    include_usage: StrictBool | None = None


class CompletionRequest(GenerationParams):
    """POST /v1/completions. `prompt` is text, token ids, or a one-element list of either."""

    model: StrictStr | None = None
    prompt: StrictStr | list[StrictInt] | list[StrictStr] | list[list[StrictInt]] = Field(
        description="a string or a list of token ids (or a list of exactly one of these)")
    logprobs: StrictInt | None = Field(default=None, ge=0, le=TOP_LOGPROBS_MAX)
    echo: StrictBool | None = None
    n: StrictInt | None = None  # only 1 is served
    stream_options: StreamOptions | None = None


class ChatRequest(GenerationParams):
    """POST /v1/chat/completions."""

    model: StrictStr | None = None
    messages: list[ChatMessage] = Field(min_length=1, description=MESSAGES_WANT)
    n: StrictInt | None = None  # only 1 is served
    stream_options: StreamOptions | None = None
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=TOP_LOGPROBS_MAX)  # needs logprobs: true


class TokenizeRequest(Request):
    """POST /tokenize: a text (`prompt`) or a conversation (`messages`, rendered by the chat template)."""

    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, description=MESSAGES_WANT)
    add_special_tokens: StrictBool | None = None


class DetokenizeRequest(Request):
    tokens: list[StrictInt] = Field(description="a list of token ids")


# ------------------------------------------------------------------------------------ answers
class Memory(Answer):
    rss: int | None = None
    device_allocated: int | None = None
    device_peak: int | None = None


class Health(Answer):
    """GET /health (no token needed). `status` is loading, ok or failed; `error` after a failed load."""

    status: Literal["loading", "ok", "failed"] | str
    worker_id: str | None = None
    model: str | None = None
    model_path: str | None = None
    backend: str | None = None
    device: str | None = None
    dtype: str | None = None
    memory: Memory = Field(default_factory=Memory)
    uptime_s: float | None = None
    requests: int | None = None
    queue_depth: int | None = None
    in_flight: int | None = None
    tokens_generated: int | None = None
    version: str | None = None
    context_length: int | None = None
    vocab_size: int | None = None
    stopping: bool = False
    error: Any = None
    startup: dict[str, Any] = Field(default_factory=dict)  # seconds per start-up stage (import, load, warmup...)
    synthetic: dict[str, Any] | None = None  # config.json's `llorch_synthetic` block: random weights
    fault_injection: dict[str, Any] | None = None  # {"logit_noise": sigma, "prefill_token": id}: faults injected


class ExecuteResult(Answer):
    """POST /execute without streaming; also the `done` event of a streamed one (with "type")."""

    job_id: str
    text: str = ""
    tokens_generated: int = 0
    prompt_tokens: int | None = None
    finish_reason: Literal["stop", "length", "cancelled"] | str | None = None
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    tokens_per_second: float | None = None


class StreamEvent(Answer):
    """One server-sent event of a streamed /execute: token {text}, then done (ExecuteResult) or error."""

    type: Literal["token", "done", "error"] | str
    text: str | None = None
    code: str | None = None
    message: str | None = None


class CancelResult(Answer):
    job_id: str
    cancelled: bool


class WorkerInfo(Answer):
    """GET /info: the software and device facts that decide this worker's numbers."""

    worker_version: str | None = None
    python: str | None = None
    torch: str | None = None
    transformers: str | None = None
    cuda: str | None = None
    cudnn: int | None = None
    device: str | None = None
    dtype: str | None = None
    gpu: str | None = None
    gpu_capability: str | None = None
    kernel: str | None = None
    machine: str | None = None
    threads: int | None = None
    faults: str | None = None  # "none", or the fault injection in effect ("logit_noise=1")


class TopTokenLogprob(Answer):
    """One alternative of a position (llorch's extension of the legacy format: the id is unambiguous)."""

    token_id: int
    logprob: float
    token: str | None = None


class CompletionLogprobs(Answer):
    """The legacy OpenAI completions `logprobs` object, plus token ids. With `echo`, the prompt's positions
    come first (the first has no log-prob: None)."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int] = Field(default_factory=list)
    token_ids: list[int] = Field(default_factory=list)
    top_token_logprobs: list[list[TopTokenLogprob] | None] | None = None


class Usage(Answer):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class OpenAIAnswer(Answer):
    """What the OpenAI routes' answers share; `object` names the kind, `usage` counts the tokens."""

    id: str = ""
    object: str = ""
    created: int = 0
    model: str = ""
    usage: Usage | None = None


class CompletionChoice(Answer):
    text: str = ""
    index: int = 0
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class Completion(OpenAIAnswer):
    """POST /v1/completions (object "text_completion"); also each chunk of a streamed one (then `usage`
    only on the last, if asked)."""

    choices: list[CompletionChoice] = Field(default_factory=list)


class ChatAnswerMessage(Answer):
    role: str = "assistant"
    content: str | None = None


class ChatChoice(Answer):
    index: int = 0
    message: ChatAnswerMessage = Field(default_factory=ChatAnswerMessage)
    finish_reason: str | None = None


class ChatCompletion(OpenAIAnswer):
    """POST /v1/chat/completions without streaming (object "chat.completion")."""

    choices: list[ChatChoice] = Field(default_factory=list)


class Tokenized(Answer):
    """POST /tokenize: the ids, and the text they came from (the rendered chat prompt for `messages`)."""

    tokens: list[int]
    count: int = 0
    max_model_len: int | None = None
    prompt: str = ""
    chat_template: bool = False  # the messages were rendered by the model's own chat template


class Detokenized(Answer):
    prompt: str


class CheckProblem(Answer):
    file: str = "(model)"
    problem: str


class CheckReport(Answer):
    """`python -m llorch_worker.check --json` (the agent's `models.verify` load check): its last line."""

    ok: bool = False
    problems: list[CheckProblem] = Field(default_factory=list)


class ErrorDetail(Answer):
    code: str
    message: str
    hint: str | None = None
    field: str | None = None  # the request field at fault, as the client wrote it ("messages[0].role")


class WorkerCallback(Answer):
    """What a worker POSTs once to the agent's --callback-url (and prints after `LLORCH_WORKER_READY `):
    `ready` with how it loaded, or `failed` with why. Sent without the fields that are None."""

    worker_id: str
    status: str  # "ready" | "failed"
    port: int | None = None
    model: str | None = None
    model_path: str | None = None
    backend: str | None = None
    device: str | None = None
    dtype: str | None = None
    load_s: float | None = None
    pid: int | None = None
    startup: dict[str, float] | None = None  # seconds per loading stage (process, weights_to_ram, ...)
    error: ErrorDetail | None = None  # failed


class ErrorBody(Answer):
    """Every 4xx/5xx: {"error": {code, message, hint?}}."""

    error: ErrorDetail
