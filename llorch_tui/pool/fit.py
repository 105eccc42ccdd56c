"""Will it fit? Memory a worker needs for a model, from its config.json and safetensors headers only.

estimate = weights + KV cache + activations + runtime overhead, per backend and dtype:

* weights: the parameter count (summed from the safetensors headers: exact; else computed from
  the config's shapes) times the bytes of the dtype the worker loads it as (`--dtype auto`: float32
  on cpu, bfloat16/float16 on cuda, float16 on metal — the worker's own choice, engine.resolve_dtype).
* conversion (cpu, metal): a checkpoint stored in another dtype than it is loaded as (bfloat16 on disk,
  float32 in a cpu worker) is held twice while it converts: the stored bytes are added.
* KV cache: 2 (K and V) x layers x kv heads x head dim x context x batch x dtype bytes; a sliding
  window caps the context it keeps.
* activations of the largest step, the prefill of a full context: on cpu and metal, torch's attention
  materialises one layer's score matrix (heads x context^2, measured: +128 MiB for 8 heads at 2000
  tokens), plus the MLP's intermediate; on cuda the fused kernels keep no score matrix.
* overhead: the worker process before any weights (interpreter, torch, transformers, tokenizer,
  HTTP server: measured 384 MiB RSS on Linux x86-64), plus the CUDA context on cuda.

Nothing here imports torch; the remote reader fetches config.json and the first bytes of each
safetensors file (the header) with ranged GETs, from the Hub or a llorch mirror.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.protocol.fit import FitEstimate
from llorch_tui.protocol.params import WORKER_MAX_BATCH
from llorch_tui.protocol.status import PoolStatus
from llorch_tui.units import fmt_bytes

MiB = 1024**2
# The worker process with nothing loaded (measured: tests/fleet/test_fit_measured.py prints it).
RUNTIME_OVERHEAD_BYTES = 384 * MiB
CUDA_CONTEXT_BYTES = 512 * MiB  # the CUDA context and cuBLAS workspace, outside torch's allocator
MAX_HEADER_BYTES = 100 * MiB  # a safetensors header is JSON of names and shapes; larger is not one
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# safetensors dtype tags -> bytes per element
ST_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                  "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    context: int
    tied: bool
    qkv_bias: bool
    sliding_window: int | None


def _first(cfg: dict[str, Any], *keys: str) -> Any:
    return next((cfg[k] for k in keys if cfg.get(k) is not None), None)


def shape_from_config(cfg: dict[str, Any]) -> ModelShape:
    """The shapes that size a decoder-only transformer, from a Hugging Face config.json."""
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the language model here
        cfg = {**cfg, **cfg["text_config"]}
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(cfg, "num_attention_heads", "n_head")
    vocab = _first(cfg, "vocab_size")
    missing = [k for k, v in (("hidden_size", hidden), ("num_hidden_layers", layers),
                              ("num_attention_heads", heads), ("vocab_size", vocab)) if not v]
    if missing:
        raise LlorchError(ErrorCode.MODEL_INVALID, f"config.json lacks {', '.join(missing)}",
                          "llorch sizes decoder-only transformers from their config.json; this one is not such a "
                          "config (or is damaged)")
    kv = _first(cfg, "num_key_value_heads", "n_head_kv") or heads
    head_dim = _first(cfg, "head_dim") or int(hidden) // int(heads)
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    return ModelShape(
        layers=int(layers), hidden=int(hidden), heads=int(heads), kv_heads=int(kv), head_dim=int(head_dim),
        intermediate=int(_first(cfg, "intermediate_size", "n_inner", "ffn_dim") or 4 * int(hidden)),
        vocab=int(vocab), context=int(_first(cfg, "max_position_embeddings", "n_positions", "seq_length") or 2048),
        tied=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=bool(cfg.get("attention_bias") or cfg.get("model_type") == "qwen2"),
        sliding_window=int(window) if isinstance(window, int) and window > 0 else None)


def params_from_shape(s: ModelShape) -> int:
    """Parameters of a llama-family decoder (gated MLP, RMSNorm): embeddings, layers, head."""
    attn = s.hidden * s.heads * s.head_dim * 2 + s.hidden * s.kv_heads * s.head_dim * 2
    if s.qkv_bias:
        attn += (s.heads + 2 * s.kv_heads) * s.head_dim
    per_layer = attn + 3 * s.hidden * s.intermediate + 2 * s.hidden
    return s.vocab * s.hidden * (1 if s.tied else 2) + s.layers * per_layer + s.hidden


def params_from_header(header: dict[str, Any]) -> int:
    """Elements of every tensor a safetensors header lists."""
    n = 0
    for name, t in header.items():
        if name == "__metadata__" or not isinstance(t, dict):
            continue
        count = 1
        for d in t.get("shape") or []:
            count *= int(d)
        n += count
    return n


def stored_bytes_from_header(header: dict[str, Any]) -> int:
    """Bytes of every tensor a safetensors header lists, as stored (its own dtype: BF16 2, F32 4, ...)."""
    n = 0
    for name, t in header.items():
        if name == "__metadata__" or not isinstance(t, dict):
            continue
        start, end = (t.get("data_offsets") or [0, 0])[:2]
        n += int(end) - int(start)
    return n


def parse_header(prefix: bytes, source: str) -> int:
    """The header length from a safetensors file's first 8 bytes (little-endian u64)."""
    if len(prefix) < 8:
        raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{source} is shorter than a safetensors header",
                          "the file is truncated: download it again")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n < 2 or n > MAX_HEADER_BYTES:
        raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{source}: a header of {n} bytes is not a safetensors header",
                          "the file is damaged or not safetensors: download it again")
    return int(n)


def decode_header(raw: bytes, source: str) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{source}: the safetensors header is not JSON",
                          "the file is damaged: download it again") from None
    if not isinstance(header, dict):
        raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{source}: the safetensors header is not a JSON object",
                          "the file is damaged: download it again")
    return header


def local_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        n = parse_header(fh.read(8), str(path))
        return decode_header(fh.read(n), str(path))


def local_shapes(model_dir: Path) -> tuple[dict[str, Any], int | None]:
    """(config.json, parameter count from the headers or None) of a checkpoint directory."""
    cfg_path = model_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlorchError(ErrorCode.MODEL_INVALID, f"{cfg_path} is missing", "download the model again") from None
    except (OSError, ValueError) as exc:
        raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{cfg_path} is unreadable: {exc}",
                          "download the model again") from None
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        return cfg, None
    return cfg, sum(params_from_header(local_header(p)) for p in shards)


def local_stored_bytes(model_dir: Path) -> int | None:
    """Bytes of the weights as stored in a checkpoint directory's safetensors files (None without any)."""
    shards = sorted(model_dir.glob("*.safetensors"))
    return sum(stored_bytes_from_header(local_header(p)) for p in shards) if shards else None


def default_dtype(backend: str) -> str:
    """The worker's `--dtype auto` (engine.resolve_dtype); bfloat16 on cuda (every GPU llorch targets has it)."""
    return {"cuda": "bfloat16", "metal": "float16"}.get(backend, "float32")


def estimate(model: str, cfg: dict[str, Any], params: int | None, backend: str, *, dtype: str | None = None,
             context: int | None = None, batch: int = WORKER_MAX_BATCH, stored_bytes: int | None = None) -> FitEstimate:
    """The estimate alone (no free memory, no measurement): see the module docstring for the terms.
    `stored_bytes`: the weights as stored (safetensors headers); a load into another dtype costs them once more."""
    shape = shape_from_config(cfg)
    dt = dtype if dtype and dtype != "auto" else default_dtype(backend)
    if dt not in DTYPE_BYTES:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"unknown dtype {dt!r}", f"choose one of {', '.join(DTYPE_BYTES)}")
    b = DTYPE_BYTES[dt]
    n_params = params if params else params_from_shape(shape)
    ctx = min(context, shape.context) if context else shape.context
    kept = min(ctx, shape.sliding_window) if shape.sliding_window else ctx
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * kept * batch * b
    mlp = batch * ctx * (shape.intermediate + 2 * shape.hidden) * b
    scores = batch * shape.heads * ctx * kept * b if backend != "cuda" else 0
    logits = batch * shape.vocab * 4  # the last position only (logits_to_keep=1), upcast to float32
    activations = mlp + scores + logits
    overhead = RUNTIME_OVERHEAD_BYTES + (CUDA_CONTEXT_BYTES if backend == "cuda" else 0)
    weights = n_params * b
    # Loading into another dtype than stored holds both copies at the peak, in RAM (not on a GPU: the
    # conversion happens before the move). Measured: tinyllama bfloat16 -> float32 peaks at 6.5 GiB, not 4.5.
    conversion = stored_bytes if stored_bytes and stored_bytes != weights and backend != "cuda" else 0
    total = weights + conversion + kv + activations + overhead
    return FitEstimate(model=model, backend=backend, dtype=dt, params=n_params,
                       param_source="safetensors" if params else "config", context=ctx, batch=batch,
                       weights_bytes=weights, conversion_bytes=conversion, kv_cache_bytes=kv,
                       activation_bytes=activations,
                       overhead_bytes=overhead, estimate_bytes=total, need_bytes=total)


def decide(est: FitEstimate, free: int | None, measured: int | None, pool: str, gpu: int | None = None) -> FitEstimate:
    """Fill in the measurement, the free memory and the verdict with the numbers in the reason."""
    est.measured_bytes = measured
    est.need_bytes = measured if measured else est.estimate_bytes
    est.free_bytes, est.gpu = free, gpu
    basis = (f"measured peak {fmt_bytes(measured)} (estimate {fmt_bytes(est.estimate_bytes)})" if measured
             else f"estimate {fmt_bytes(est.estimate_bytes)} = weights {fmt_bytes(est.weights_bytes)} + "
                  + (f"{fmt_bytes(est.conversion_bytes)} stored weights while converting + "
                     if est.conversion_bytes else "") + "KV cache "
                  f"{fmt_bytes(est.kv_cache_bytes)} ({est.context} tokens x {est.batch}) + activations "
                  f"{fmt_bytes(est.activation_bytes)} + runtime {fmt_bytes(est.overhead_bytes)}")
    where = (f"GPU {gpu} has" if gpu is not None else "the pool has") if est.backend == "cuda" else "the pool has"
    if free is None:
        est.fits = None
        est.reason = f"{est.model} on {est.backend} ({est.dtype}): {basis}; free memory on {pool} unknown"
    else:
        est.fits = est.need_bytes <= free
        verdict = "fits" if est.fits else "does not fit"
        mem = "free GPU memory" if est.backend == "cuda" else "available RAM"
        est.reason = (f"{est.model} on {est.backend} ({est.dtype}) {verdict}: {basis}; {where} "
                      f"{fmt_bytes(free)} {mem}")
    return est


def free_memory(status: PoolStatus, backend: str) -> tuple[int | None, int | None]:
    """(bytes a new worker could use, GPU index): the emptiest GPU on cuda, available RAM otherwise."""
    if backend == "cuda":
        frees = [(g.memory_total - (g.memory_used or 0), g.index) for g in status.gpus if g.memory_total]
        if not frees:
            return None, None
        free, idx = max(frees)
        return free, idx
    return status.ram.available, None


# -- remote: the Hub or a mirror, without downloading the weights ---------------------------
def _ranged(url: str, start: int, length: int) -> bytes:
    """`length` bytes from `start` of a remote file (a ranged GET; a server that ignores Range is cut short)."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    headers = build_hf_headers()
    headers["Accept-Encoding"] = "identity"
    headers["Range"] = f"bytes={start}-{start + length - 1}"
    out = bytearray()
    with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=30) as resp:
        hf_raise_for_status(resp)
        skip = start if resp.status_code == 200 else 0
        for chunk in resp.iter_bytes():
            if skip:
                cut = min(skip, len(chunk))
                chunk, skip = chunk[cut:], skip - cut
            out += chunk
            if len(out) >= length:
                break
    return bytes(out[:length])


def remote_shapes(repo: str, endpoint: str, revision: str | None) -> tuple[dict[str, Any], int | None, int | None]:
    """(config.json, parameter count, bytes of the stored weights) from the Hub/mirror metadata only."""
    from huggingface_hub import hf_hub_url

    from llorch_tui.pool.hub_fetch import hub_error, plan_download

    plan = plan_download(repo, endpoint, revision)
    names = {f.name: f for f in plan.files}
    if "config.json" not in names:
        raise LlorchError(ErrorCode.MODEL_INVALID, f"{repo} on {endpoint} has no config.json",
                          "llorch needs a transformers checkpoint (config.json + safetensors)")
    try:
        cfg_raw = _ranged(hf_hub_url(repo, "config.json", revision=plan.commit, endpoint=endpoint), 0,
                          names["config.json"].size)
        cfg = json.loads(cfg_raw)
        params = stored = 0
        for f in plan.files:
            if not f.name.endswith(".safetensors"):
                continue
            url = hf_hub_url(repo, f.name, revision=plan.commit, endpoint=endpoint)
            n = parse_header(_ranged(url, 0, 8), f"{repo}/{f.name}")
            header = decode_header(_ranged(url, 8, n), f"{repo}/{f.name}")
            params += params_from_header(header)
            stored += stored_bytes_from_header(header)
    except LlorchError:
        raise
    except ValueError:
        raise LlorchError(ErrorCode.MODEL_INVALID, f"{repo}: config.json on {endpoint} is not JSON",
                          "the repository is damaged or not a transformers checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - mapped to a stable code with a hint
        raise hub_error(exc, repo, endpoint) from None
    return cfg, params or None, stored or None
