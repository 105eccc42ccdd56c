"""Checkpoint checks without torch: config, tokenizer files, safetensors headers vs file length.

`python -m llorch_worker.check --model PATH [--load] --json` (PATH: a checkpoint directory or a
.gguf file) prints
`{"ok": bool, "problems": [{"file", "problem"}]}` and exits 0 when ok, 3 when not. The worker
runs the same cheap checks before loading, so a truncated download is reported by file name
instead of as a deep stack trace from inside the loader.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

from .errors import EXIT_MODEL, WorkerError
from .gguf_file import gguf_location, gguf_problem

_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2,
    "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}
_MAX_HEADER = 100 * 1024 * 1024
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def safetensors_problem(path: Path) -> str | None:
    """Return why this safetensors file is unusable, or None when its header and length agree."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"file is {size} bytes, too short for a safetensors header (truncated?)"
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or n > size - 8:
                return f"header length {n} exceeds the file size {size} (truncated or not safetensors)"
            raw = f.read(n)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"header is not valid JSON ({e}); the file is corrupt"
    if not isinstance(header, dict):
        return "header is not a JSON object; the file is corrupt"
    end_max = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            numel = 1
            for d in shape:
                numel *= int(d)
        except (KeyError, TypeError, ValueError):
            return f"tensor {name!r} has a malformed header entry"
        width = _DTYPE_BYTES.get(dtype)
        if width is None:
            return f"tensor {name!r} has unknown dtype {dtype!r}"
        if end < begin or end - begin != numel * width:
            return f"tensor {name!r} offsets {begin}..{end} do not match shape {shape} of {dtype}"
        end_max = max(end_max, end)
    expected = 8 + n + end_max
    if size != expected:
        what = "truncated" if size < expected else "has trailing bytes"
        return f"file is {size} bytes but its header describes {expected} bytes ({what})"
    return None


def check_files(model: Path) -> list[dict[str, str]]:
    """Cheap structural checks; returns a list of {"file", "problem"} (empty when fine)."""
    problems: list[dict[str, str]] = []
    if not model.exists():
        return [{"file": str(model), "problem": "path does not exist"}]
    gguf = gguf_location(model)
    if gguf is not None:  # a GGUF carries its config and tokenizer inside
        why = gguf_problem(gguf[0] / gguf[1])
        return [{"file": str(gguf[0] / gguf[1]), "problem": why}] if why else []
    if not model.is_dir():
        return [{"file": str(model), "problem": "not a directory or a GGUF file (a checkpoint is a directory "
                 "holding config.json and *.safetensors, or one .gguf file)"}]
    cfg = model / "config.json"
    try:
        config = json.loads(cfg.read_text())
        if not isinstance(config, dict) or "model_type" not in config:
            problems.append({"file": str(cfg), "problem": "config has no model_type"})
    except FileNotFoundError:
        problems.append({"file": str(cfg), "problem": "missing config.json"})
    except (OSError, ValueError) as e:
        problems.append({"file": str(cfg), "problem": f"config.json does not parse: {e}"})
    if not any((model / f).exists() for f in TOKENIZER_FILES):
        problems.append({"file": str(model / "tokenizer.json"),
                         "problem": "no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)"})
    shards = sorted(model.glob("*.safetensors"))
    index = model / "model.safetensors.index.json"
    if index.exists():
        try:
            wanted = set(json.loads(index.read_text())["weight_map"].values())
            for name in sorted(wanted):
                if not (model / name).exists():
                    problems.append({"file": str(model / name), "problem": "shard listed in the index is missing"})
        except (OSError, ValueError, KeyError, AttributeError) as e:
            problems.append({"file": str(index), "problem": f"index does not parse: {e}"})
    if not shards:
        problems.append({"file": str(model), "problem": "no *.safetensors weights"})
    for shard in shards:
        why = safetensors_problem(shard)
        if why:
            problems.append({"file": str(shard), "problem": why})
    return problems


def raise_for(problems: list[dict[str, str]]) -> None:
    """Turn the first problem into the classified WorkerError the CLI exits with."""
    if not problems:
        return
    p = problems[0]
    if "tokenizer" in p["problem"]:
        code = "tokenizer_missing"
    elif p["file"].endswith((".safetensors", ".gguf")):
        code = "checkpoint_corrupt"
    else:
        code = "model_invalid"
    raise WorkerError(code, f"{p['file']}: {p['problem']}", file=p["file"])


def load_and_generate(model: Path) -> list[dict[str, str]]:
    """Really load on cpu and generate one token; problems are returned, not raised."""
    try:
        from .engine import Engine

        engine = Engine.load(model, backend="cpu", gpu=0, dtype="float32")
        engine.generate_one_token()
    except WorkerError as e:
        return [{"file": e.file or str(model), "problem": e.message}]
    except Exception as e:  # the loader can fail in many ways; report them all by name
        return [{"file": str(model), "problem": f"load failed: {type(e).__name__}: {e}"}]
    return []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llorch_worker.check", description="Check a checkpoint.")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--load", action="store_true", help="also load on cpu and generate one token")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    problems = check_files(args.model)
    if not problems and args.load:
        problems = load_and_generate(args.model)
    ok = not problems
    if args.json:
        print(json.dumps({"ok": ok, "problems": problems}))
    else:
        for pr in problems:
            print(f"{pr['file']}: {pr['problem']}")
        print("ok" if ok else "checkpoint has problems")
    return 0 if ok else EXIT_MODEL


if __name__ == "__main__":
    sys.exit(main())
