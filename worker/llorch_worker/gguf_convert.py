"""Convert a GGUF file once into a float32 safetensors checkpoint (the pool agent runs this at register time).

`python -m llorch_worker.gguf_convert --gguf FILE --out DIR [--sha256 HEX] --json` loads the GGUF with
transformers (dequantized), builds a fresh model from its config, copies the state dict in (a
GGUF-loaded model refuses `save_pretrained` as "quantized"), and writes config.json,
generation_config.json, model.safetensors and the tokenizer with its chat template into DIR
(created; must not exist yet), plus `llorch_gguf.json` naming the GGUF it came from. float32 keeps
the dequantized values exactly, so the converted checkpoint gives the same tokens as the GGUF.

Why convert at all: dequantizing costs every load (tens of seconds under load for a 135M model,
against about a second for safetensors), a matrix spawns one worker per cell, and a safetensors
file can be inspected and edited tensor by tensor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .errors import EXIT_OK, WorkerError
from .gguf_file import gguf_problem

# Bump when the output of a conversion changes, so cached conversions are redone.
CONVERTER_VERSION = 1
MARKER = "llorch_gguf.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def convert(gguf: Path, out: Path, sha256: str | None = None) -> dict[str, Any]:
    """Write the checkpoint into `out` (must not exist); return its description."""
    why = gguf_problem(gguf)
    if why:
        raise WorkerError("checkpoint_corrupt", f"{gguf}: {why}", file=str(gguf))
    if out.exists():
        raise WorkerError("usage", f"{out} already exists; the converter writes into a new directory")
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    t0 = time.monotonic()
    kw = {"gguf_file": gguf.name}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
        loaded = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kw)
    except (ValueError, KeyError, OSError, RuntimeError, NotImplementedError) as e:
        raise WorkerError("model_invalid", f"{gguf}: transformers cannot load this GGUF: {type(e).__name__}: {e}",
                          file=str(gguf)) from e
    load_s = time.monotonic() - t0
    fresh = transformers.AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.generation_config = loaded.generation_config
    out.mkdir(parents=True)
    fresh.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    marker = {"gguf_name": gguf.name, "gguf_sha256": sha256, "converter": CONVERTER_VERSION,
              "transformers": transformers.__version__, "dtype": "float32"}
    (out / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    files = [{"name": f.name, "size": f.stat().st_size, "sha256": _sha256(f)}
             for f in sorted(out.iterdir()) if f.is_file()]
    cfg = fresh.config
    return {"out": str(out), "architecture": cfg.model_type, "context_length": getattr(cfg, "max_position_embeddings",
            None), "vocab_size": getattr(cfg, "vocab_size", None), "params": sum(p.numel() for p in fresh.parameters()),
            "chat_template": bool(getattr(tokenizer, "chat_template", None)), "load_s": round(load_s, 3),
            "total_s": round(time.monotonic() - t0, 3), "files": files,
            "size_bytes": sum(f["size"] for f in files), **{k: marker[k] for k in ("converter", "transformers")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llorch_worker.gguf_convert",
                                description="Convert a GGUF file into a float32 safetensors checkpoint.")
    p.add_argument("--gguf", required=True, type=Path, help="the .gguf file (any name; Ollama blobs work)")
    p.add_argument("--out", required=True, type=Path, help="output directory (created; must not exist)")
    p.add_argument("--sha256", help="the GGUF's sha256, recorded in llorch_gguf.json (the agent has it already)")
    p.add_argument("--json", action="store_true", help="print one JSON document describing the checkpoint")
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        info = convert(args.gguf.expanduser().resolve(), args.out.expanduser().absolute(), args.sha256)
    except WorkerError as e:
        e.emit()
        return e.exit_code
    except OSError as e:
        err = WorkerError("internal", f"cannot write the checkpoint to {args.out}: {e}")
        err.emit()
        return err.exit_code
    if args.json:
        print(json.dumps(info))
    else:
        print(f"converted {args.gguf} ({info['params']:,} params) to {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
