"""Real-size synthetic checkpoints: the exact configuration of an original model, random weights.

`python -m llorch_worker.synth --out DIR --like tinyllama|qwen-0.5b|phi3|mistral [--dtype D]`.
Layers, hidden size, heads, KV heads, vocabulary and context are those of the original (its
`config.json` ships in `like_configs/`), so compute and memory per token, tokens/s, TTFT and peak
memory are real figures, while the text is noise. The checkpoint says so everywhere: its
config.json has a `llorch_synthetic` block (the worker's /health reports it), and the catalog entry
is `source: synthetic` with SYNTHETIC in its name.

Built without holding the model in RAM: the model is instantiated on the meta device only to learn
the tensor names and shapes; each tensor is then drawn, written to the safetensors file and
dropped, so the peak is the largest single tensor (the embedding), not the model, let alone two
copies. The tokenizer is the small trained byte-level BPE of the tiny checkpoints: its ids are a
subset of the model's vocabulary, and the output rows of every other id are zero, so greedy
decoding emits only tokens that decode to text (the compute still covers the whole vocabulary).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Iterator

LIKE = {  # --like name -> (original repository, architecture)
    "tinyllama": ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "llama"),
    "qwen-0.5b": ("Qwen/Qwen2.5-0.5B-Instruct", "qwen2"),
    "phi3": ("microsoft/Phi-3-mini-4k-instruct", "phi3"),
    "mistral": ("mistralai/Mistral-7B-Instruct-v0.2", "mistral"),
}
DTYPES = ("bfloat16", "float16", "float32")
SAFETENSORS_DTYPE = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
TOKENIZER_VOCAB = 1024
TOKENIZER_REPEAT = 600
HASH_CHUNK = 64 << 20
CHUNK_ELEMENTS = 16 << 20  # values drawn at a time: 64 MB in float32
SPECIAL_IDS = range(7)  # synth.SPECIAL_TOKENS: pad, bos, eos and the four role tokens


def original_config(like: str) -> dict[str, Any]:
    if like not in LIKE:
        raise ValueError(f"unknown --like {like!r}; choose one of {', '.join(LIKE)}")
    text = resources.files("llorch_worker").joinpath("like_configs", f"{like}.json").read_text()
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc


def synthetic_config(like: str, dtype: str, seed: int) -> dict[str, Any]:
    """The original config.json with the synthetic tokenizer's special ids and the marker block."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    cfg = original_config(like)
    cfg.pop("torch_dtype", None)
    cfg.update(dtype=dtype, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg["llorch_synthetic"] = {
        "like": like, "original": LIKE[like][0], "seed": seed, "dtype": dtype, "random_weights": True,
        "note": f"random weights with the exact configuration of {LIKE[like][0]}: "
                "performance figures are real, the text it generates is noise",
    }
    return cfg


def _shapes(cfg: dict[str, Any], dtype: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor the checkpoint holds, tied weights once, from a meta-device model."""
    import torch
    import transformers

    fields = {k: v for k, v in cfg.items() if k not in ("model_type", "llorch_synthetic", "architectures")}
    config = transformers.AutoConfig.for_model(cfg["model_type"], **fields)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    unique = {name for name, _ in model.named_parameters()}  # remove_duplicate: a tied lm_head is not listed
    every = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    state = model.state_dict()
    keep = [k for k in sorted(state) if k in unique or k not in every]  # + persistent buffers
    return [(k, tuple(state[k].shape)) for k in keep]


def _chunks(name: str, shape: tuple[int, ...], cfg: dict[str, Any], gen: Any, dtype: str,
            vocab_used: int) -> Iterator[Any]:
    """The tensor's values, CHUNK_ELEMENTS at a time along its first dimension (an embedding of a
    150k vocabulary would otherwise be the peak)."""
    import torch

    rows = shape[0] if shape else 1
    per_row = _numel(shape[1:]) if shape else 1
    step = max(1, CHUNK_ELEMENTS // max(1, per_row))
    out_rows = name == "lm_head.weight" or (name.endswith("embed_tokens.weight") and cfg.get("tie_word_embeddings"))
    for r0 in range(0, rows, step):
        part = (min(step, rows - r0), *shape[1:]) if shape else ()
        if name.endswith("norm.weight"):
            t = torch.ones(part)
        elif name.endswith(".bias"):
            t = torch.zeros(part)
        else:
            t = torch.empty(part).normal_(0.0, float(cfg.get("initializer_range", 0.02)), generator=gen)
        if out_rows:
            # Only ids the tokenizer knows may win an argmax (their max logit is clearly positive, these
            # are 0); the special tokens are zeroed too, so a reply is never empty at once (see synth.py).
            lo = max(vocab_used - r0, 0)
            t[lo:] = 0.0
            t[: max(0, len(SPECIAL_IDS) - r0)] = 0.0
        yield t.to(getattr(torch, dtype)).contiguous()


def _write_safetensors(path: Path, items: list[tuple[str, tuple[int, ...]]], dtype: str, make: Any) -> tuple[str, int]:
    """A safetensors file written tensor by tensor (header first: the offsets follow from the shapes)."""
    itemsize = {"bfloat16": 2, "float16": 2, "float32": 4}[dtype]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in items:
        n = itemsize
        for d in shape:
            n *= d
        header[name] = {"dtype": SAFETENSORS_DTYPE[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        _put(fh, digest, struct.pack("<Q", len(raw)) + raw)
        import torch

        for name, shape in items:
            for t in make(name, shape):
                _put(fh, digest, memoryview(t.view(torch.uint8).numpy()).cast("B"))  # no copy of the tensor
        fh.flush()
        os.fsync(fh.fileno())
    return digest.hexdigest(), 8 + len(raw) + offset


def _put(fh: BinaryIO, digest: Any, data: Any) -> None:
    view = memoryview(data)
    for i in range(0, len(view), HASH_CHUNK):
        part = view[i:i + HASH_CHUNK]
        fh.write(part)
        digest.update(part)


def synthesize_like(out_dir: Path, like: str, dtype: str = "bfloat16", seed: int = 0) -> dict[str, Any]:
    """Write the checkpoint into out_dir; returns the same description as synth.synthesize."""
    import torch

    from .synth import SPECIAL_TOKENS, _atomic_write, _dump, _tokenizer_files, _train_tokenizer

    assert len(SPECIAL_TOKENS) == len(SPECIAL_IDS)

    cfg = synthetic_config(like, dtype, seed)
    tok = _train_tokenizer(TOKENIZER_VOCAB, TOKENIZER_REPEAT)
    vocab_used = tok.get_vocab_size()
    context = int(cfg["max_position_embeddings"])
    files = _tokenizer_files(tok, context)
    files["config.json"] = _dump(cfg)
    files["generation_config.json"] = _dump(
        {"bos_token_id": 1, "eos_token_id": [2, SPECIAL_TOKENS.index("<|end|>")], "pad_token_id": 0,
         "do_sample": False})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    listing: list[dict[str, Any]] = []
    for name in sorted(files):
        _atomic_write(out_dir / name, files[name])
        listing.append({"name": name, "size": len(files[name]), "sha256": hashlib.sha256(files[name]).hexdigest()})
    items = _shapes(cfg, dtype)
    gen = torch.Generator().manual_seed(seed)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".model.safetensors.", suffix=".tmp")
    os.close(fd)
    try:
        sha, size = _write_safetensors(Path(tmp), items, dtype,
                                       lambda n, s: _chunks(n, s, cfg, gen, dtype, vocab_used))
        os.replace(tmp, out_dir / "model.safetensors")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    listing.append({"name": "model.safetensors", "size": size, "sha256": sha})
    listing.sort(key=lambda f: str(f["name"]))
    params = sum(_numel(shape) for _, shape in items)
    return {
        "architecture": LIKE[like][1], "size": "like", "like": like, "original": LIKE[like][0], "dtype": dtype,
        "seed": seed, "params": params, "context_length": context, "vocab_size": int(cfg["vocab_size"]),
        "files": listing, "size_bytes": sum(f["size"] for f in listing), "synthetic": True,
    }


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
