"""Synthetic checkpoints: real random-weight models of real architectures, written offline.

`python -m llorch_worker.synth --out DIR --architecture llama|qwen2|phi3|mistral
[--size tiny|small] [--seed 0] [--json]` writes config.json, model.safetensors,
generation_config.json and a locally trained byte-level BPE tokenizer (tokenizer.json,
tokenizer_config.json with a chat template, special_tokens_map.json).

Same (architecture, size, seed) => identical bytes: every file is written by our own
serializer with sorted keys, the weights come from a seeded generator, and the tokenizer is
trained on a fixed corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ARCHITECTURES = ("llama", "qwen2", "phi3", "mistral")
SIZES = ("tiny", "small")

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)  # ids 0..6 in this order

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Shapes per size. tiny: loads and generates in milliseconds; small: ~30M parameters.
_SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512,
                 context=2048, corpus_repeat=200),
    "small": dict(hidden=512, layers=8, heads=8, kv_heads=4, intermediate=1536, vocab=1024,
                  context=2048, corpus_repeat=600),
}


def _train_tokenizer(vocab_size: int, repeat: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from .synth_corpus import corpus

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(repeat), trainer=trainer)
    return tok


def _config(architecture: str, shape: dict[str, int], vocab_size: int) -> Any:
    import transformers

    ids = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=shape["context"],
        tie_word_embeddings=False,
        **ids,
    )
    if architecture == "llama":
        return transformers.LlamaConfig(**common)
    if architecture == "qwen2":
        return transformers.Qwen2Config(**common, use_sliding_window=False)
    if architecture == "phi3":
        return transformers.Phi3Config(
            **common, original_max_position_embeddings=shape["context"], sliding_window=None
        )
    if architecture == "mistral":
        return transformers.MistralConfig(**common, sliding_window=None)
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _tokenizer_files(tok: Any, context: int) -> dict[str, bytes]:
    added = {
        str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                 "single_word": False, "special": True}
        for i, t in enumerate(SPECIAL_TOKENS)
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "additional_special_tokens": list(ROLE_TOKENS),
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": context,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "padding_side": "left",
    }
    special_map = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
                   "additional_special_tokens": list(ROLE_TOKENS)}
    # tokenizers serializes its vocab in id order, so this is stable; re-dump with sorted keys.
    tok_json = json.loads(tok.to_str())
    return {
        "tokenizer.json": _dump(tok_json),
        "tokenizer_config.json": _dump(tokenizer_config),
        "special_tokens_map.json": _dump(special_map),
    }


def _weights(config: Any, seed: int) -> tuple[bytes, int]:
    import torch
    from safetensors.torch import save

    import transformers

    torch.manual_seed(seed)  # same seed => same bytes (architecture shapes keep models distinct)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v.detach().clone().contiguous() for k, v in sorted(model.state_dict().items())}
    # Zero the output rows of the special tokens: their logit is then 0 while the max over ~500
    # random logits is clearly positive, so greedy decoding never ends at once on end-of-sequence
    # or emits only invisible tokens (an empty answer would look like a broken worker).
    state["lm_head.weight"][: len(SPECIAL_TOKENS)] = 0.0
    params = sum(v.numel() for v in state.values())
    return save(state, metadata={"format": "pt"}), params


def synthesize(out_dir: Path, architecture: str, size: str = "tiny", seed: int = 0) -> dict[str, Any]:
    """Write a synthetic checkpoint into out_dir and return its description (see module doc)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    shape = _SHAPES[size]
    tok = _train_tokenizer(shape["vocab"], shape["corpus_repeat"])
    vocab_size = tok.get_vocab_size()
    config = _config(architecture, shape, vocab_size)
    files = _tokenizer_files(tok, shape["context"])
    weights, params = _weights(config, seed)
    cfg = config.to_dict()
    cfg["architectures"] = [type_name(architecture)]
    cfg["dtype"] = "float32"
    # The marker travels with the files (mirror, copy, archive), so a checkpoint downloaded or
    # copied from elsewhere is still known as random weights (its /health says so).
    cfg["llorch_synthetic"] = {"architecture": architecture, "size": size, "random_weights": True,
                               "note": "random weights: the text it generates is noise"}
    files["config.json"] = _dump(cfg)
    files["generation_config.json"] = _dump(
        {"bos_token_id": 1, "eos_token_id": [2, SPECIAL_TOKENS.index("<|end|>")], "pad_token_id": 0,
         "do_sample": False}
    )
    files["model.safetensors"] = weights

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = []
    for name in sorted(files):
        data = files[name]
        _atomic_write(out_dir / name, data)
        listing.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return {
        "architecture": architecture,
        "size": size,
        "seed": seed,
        "params": params,
        "context_length": shape["context"],
        "vocab_size": vocab_size,
        "files": listing,
        "size_bytes": sum(f["size"] for f in listing),
    }


def type_name(architecture: str) -> str:
    return {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "phi3": "Phi3ForCausalLM",
            "mistral": "MistralForCausalLM"}[architecture]


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    from .synth_like import DTYPES, LIKE, synthesize_like

    p = argparse.ArgumentParser(prog="python -m llorch_worker.synth",
                                description="Write a random-weight checkpoint of a real architecture.")
    p.add_argument("--out", required=True, type=Path, help="output directory (created)")
    p.add_argument("--architecture", choices=ARCHITECTURES, help="a tiny/small checkpoint of this architecture")
    p.add_argument("--like", choices=tuple(LIKE), help="the exact configuration of this original model instead")
    p.add_argument("--size", default="tiny", choices=SIZES)
    p.add_argument("--dtype", default="bfloat16", choices=DTYPES, help="weights dtype with --like (default bfloat16)")
    p.add_argument("--seed", default=0, type=int)
    p.add_argument("--json", action="store_true", help="print one JSON document describing the checkpoint")
    args = p.parse_args(argv)
    if (args.architecture is None) == (args.like is None):
        p.error("give exactly one of --architecture and --like")
    try:
        if args.like:
            info = synthesize_like(args.out, args.like, args.dtype, args.seed)
        else:
            info = synthesize(args.out, args.architecture, args.size, args.seed)
    except OSError as e:
        print(f"error: cannot write checkpoint to {args.out}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info))
    else:
        what = f"{args.like}-like ({args.dtype})" if args.like else f"{args.architecture}/{args.size}"
        print(f"wrote {what} ({info['params']:,} params, {info['size_bytes']:,} bytes) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
