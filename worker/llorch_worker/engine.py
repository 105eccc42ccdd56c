"""Backend resolution and model loading: the only place that knows about devices and dtypes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .check import check_files, raise_for
from .errors import WorkerError
from .gguf_file import gguf_location

_DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(backend: str, gpu: int) -> str:
    """Map a backend name to a torch device string, or raise backend_unavailable."""
    import torch

    if backend == "cpu":
        return "cpu"
    if backend == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise WorkerError("backend_unavailable",
                              f"backend cuda is not available: {why} (torch {torch.__version__}); "
                              "use --backend cpu, or install a CUDA build of torch on a machine with an NVIDIA GPU")
        n = torch.cuda.device_count()
        if not 0 <= gpu < n:
            raise WorkerError("backend_unavailable", f"--gpu {gpu} does not exist: this machine has {n} CUDA device(s)")
        return f"cuda:{gpu}"
    if backend == "metal":
        mps = getattr(torch.backends, "mps", None)
        if not (mps and mps.is_available()):
            raise WorkerError("backend_unavailable",
                              "backend metal is not available: torch reports no MPS device "
                              "(needs Apple silicon and a macOS build of torch); use --backend cpu")
        return "mps"
    raise WorkerError("usage", f"unknown backend {backend!r}; choose cpu, cuda or metal")


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype not in _DTYPES:
        raise WorkerError("usage", f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32
    return getattr(torch, dtype)


def check_dtype(device: str, torch_dtype: Any) -> None:
    """Fail before loading when the device cannot compute in the dtype (some CPUs and older GPUs lack
    half-precision kernels): a clear `dtype_unsupported` instead of a crash or NaNs mid-request. The test
    is the kind of work a forward pass does: a matmul, a softmax, a reduction."""
    import torch

    name = str(torch_dtype).removeprefix("torch.")
    try:
        a = torch.full((8, 8), 0.5, dtype=torch_dtype, device=device)
        out = torch.softmax(a @ a, dim=-1).sum(dim=-1)
        finite = bool(torch.isfinite(out.float()).all().item())
    except (RuntimeError, TypeError, NotImplementedError) as e:
        raise WorkerError("dtype_unsupported", f"{device} cannot compute in {name} here: {type(e).__name__}: {e}; "
                                               "use another --dtype (auto picks one the device supports)") from e
    if not finite:
        raise WorkerError("dtype_unsupported", f"{device} gives non-finite results in {name} for a plain matmul; "
                                               "use another --dtype (auto picks one the device supports)")


def torch_sync(device: str) -> None:
    import torch

    torch.cuda.synchronize(device)


# Below this hidden size a matrix product is microseconds of work: a second intra-op thread only adds
# a barrier per op, and on a busy machine that barrier waits for a descheduled partner. Measured at
# load 14 on 2 cores, a tiny (hidden 64) llama's 4-token warm-up took 0.7-1.3 s on 2 threads and
# 0.01-0.04 s on 1.
SINGLE_THREAD_HIDDEN = 512


def configure_threads(hidden_size: int | None = None) -> int:
    """Use every core we are allowed on (one, for a model narrower than SINGLE_THREAD_HIDDEN);
    one inter-op thread (the scheduler thread is the only caller). $LLORCH_WORKER_THREADS overrides."""
    import torch

    n = int(os.environ.get("LLORCH_WORKER_THREADS", "0"))
    if not n:
        narrow = hidden_size is not None and hidden_size < SINGLE_THREAD_HIDDEN
        n = 1 if narrow else len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, n))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    return n


def prompt_char_limit(tokenizer: Any, context_length: int) -> int:
    """A token covers at most as many characters as its longest vocabulary entry (x4 for
    normalizers that fold several characters into one), so a longer text is more tokens than
    the context holds."""
    longest = max((len(t) for t in tokenizer.get_vocab()), default=1)
    return context_length * max(longest, 1) * 4


@dataclass
class Engine:
    model: Any
    tokenizer: Any
    device: str
    dtype: Any
    path: Path
    name: str
    context_length: int
    eos_ids: set[int]
    pad_id: int
    load_s: float = 0.0
    cache_kw: str = "past_key_values"
    # More characters than this cannot fit the context whatever the tokenizer does (see
    # prompt_char_limit); checked before tokenizing, so a 15 MB prompt costs nothing.
    max_prompt_chars: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    noise: Any = None  # faults.LogitNoise when fault injection is on (tests and demos only)
    # Start-up stages in seconds (definitions: llorch_tui/bench_metrics.py): weights_to_ram, to_device,
    # then warmup and process added by the worker's start-up.
    stages: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, backend: str, gpu: int, dtype: str, logit_noise: float = 0.0) -> Engine:
        t0 = time.monotonic()
        path = Path(path).expanduser().resolve()
        raise_for(check_files(path))
        device = resolve_device(backend, gpu)
        torch_dtype = resolve_dtype(dtype, device)
        check_dtype(device, torch_dtype)
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        # A GGUF is loaded directly (dequantized on every load); the agent converts registered ones to
        # safetensors once so a worker normally lands in the plain branch.
        gguf = gguf_location(path)
        source, kw = (str(gguf[0]), {"gguf_file": gguf[1]}) if gguf else (str(path), {})
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kw)
        except Exception as e:
            raise WorkerError("tokenizer_missing", f"{path}: the tokenizer does not load: {type(e).__name__}: {e}",
                              file=str(path if gguf else path / "tokenizer.json")) from e
        t_weights = time.monotonic()
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kw)
        except (ValueError, KeyError, OSError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and "out of memory" in str(e).lower():
                raise WorkerError("oom", f"out of memory loading {path}: {e}") from e
            raise WorkerError("checkpoint_corrupt", f"{path}: the model does not load: {type(e).__name__}: {e}",
                              file=str(path)) from e
        t_device = time.monotonic()
        try:
            model.to(device)
            if device.startswith("cuda"):
                torch_sync(device)  # the copy is asynchronous: count it here, not in the warm-up
        except RuntimeError as e:
            code = "oom" if "out of memory" in str(e).lower() else "internal"
            raise WorkerError(code, f"moving the model to {device} failed: {e}") from e
        stages = {"weights_to_ram": round(t_device - t_weights, 3), "to_device": round(time.monotonic() - t_device, 3)}
        model.eval()
        if device == "cpu":
            configure_threads(getattr(model.config, "hidden_size", None))
        import inspect

        # transformers renamed past_key_values -> cache; use whichever this version takes
        params = inspect.signature(model.forward).parameters
        cache_kw = "cache" if "cache" in params else "past_key_values"
        config = model.config
        context = int(getattr(config, "max_position_embeddings", 0) or tokenizer.model_max_length or 2048)
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(int(tokenizer.eos_token_id))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos_ids) if eos_ids else 0)
        # what the weights really are once loaded (a checkpoint can override the requested dtype)
        loaded_dtype = next(model.parameters()).dtype
        noise = None
        if logit_noise > 0:
            from .faults import LogitNoise

            noise = LogitNoise(logit_noise)
        return cls(model=model, tokenizer=tokenizer, device=device, dtype=loaded_dtype, path=path,
                   name=path.stem if gguf and path.is_file() else path.name, context_length=context,
                   eos_ids=eos_ids, pad_id=int(pad),
                   load_s=time.monotonic() - t0, cache_kw=cache_kw, noise=noise,
                   max_prompt_chars=prompt_char_limit(tokenizer, context), stages=stages)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding: every valid token id is below this."""
        return int(self.model.get_input_embeddings().num_embeddings)

    def adjust_logits(self, logits: Any) -> Any:
        """The logits tokens are chosen from: as computed, unless fault injection is on."""
        return self.noise.apply(logits) if self.noise is not None else logits

    def token_text(self, token_id: int) -> str:
        """One token as text, special tokens included (for log-prob listings)."""
        return str(self.tokenizer.decode([token_id], skip_special_tokens=False))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Raw prompts get the tokenizer's own special tokens (a BOS where the model expects one);
        chat prompts are rendered by the template, which already has them (add_special_tokens=False)."""
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The tokenizer's chat template when it has one, else a plain `role: content` transcript."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate_one_token(self) -> int:
        """Used by `check --load`: a real forward pass on a throwaway cache."""
        import torch

        ids = self.encode("Hello") or [self.pad_id]
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=False)
        return int(out.logits[0, -1].argmax())

    def memory(self) -> dict[str, int | None]:
        import psutil
        import torch

        rss = psutil.Process().memory_info().rss
        alloc = peak = None
        if self.device.startswith("cuda"):
            alloc = int(torch.cuda.memory_allocated(self.device))
            peak = int(torch.cuda.max_memory_allocated(self.device))
        elif self.device == "mps":
            alloc = int(torch.mps.current_allocated_memory())
        return {"rss": rss, "device_allocated": alloc, "device_peak": peak}

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "path": str(self.path), "device": self.device, "dtype": self.dtype_name,
                "context_length": self.context_length,
                "architecture": getattr(self.model.config, "model_type", None)}
