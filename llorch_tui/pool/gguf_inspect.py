"""Find the GGUF a user means and read its metadata, in the agent (the `gguf` package is pure Python + numpy).

Users point at what their tools left on disk: a `.gguf` file (LM Studio, llama.cpp), a folder of
them (several quantizations of one model: we ask which), an Ollama blob (`blobs/sha256-...`, no
extension: recognised by its magic bytes) or an Ollama manifest (`manifests/.../NAME/TAG`, which
names the blob holding the weights).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.units import fmt_bytes

GGUF_MAGIC = b"GGUF"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
# GGUF file types are "MOSTLY_Q4_K_M", "ALL_F32", ...; the quantization users know is the tail.
_FILE_TYPE_PREFIXES = ("MOSTLY_", "ALL_")


@dataclass
class GgufMeta:
    path: Path
    size: int
    architecture: str | None
    name: str | None
    file_type: str | None
    quantization: str | None
    context_length: int | None
    vocab_size: int | None
    chat_template: bool
    tensor_types: dict[str, int] = field(default_factory=dict)


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _ollama_blob(manifest: Path) -> Path | None:
    """The weights blob an Ollama manifest names, or None when `manifest` is not one."""
    try:
        if manifest.stat().st_size > 1_000_000:
            return None
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        return None
    digest = next((str(layer.get("digest")) for layer in layers
                   if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER), None)
    if not digest:
        return None
    # manifests/<registry>/<namespace>/<model>/<tag> sits beside blobs/ under the models root
    for root in manifest.parents:
        blob = root / "blobs" / digest.replace(":", "-")
        if blob.is_file():
            return blob
    raise LlorchError(ErrorCode.MODEL_INVALID, f"{manifest} is an Ollama manifest but its weights blob {digest} "
                      "is not on disk", "pull the model again with `ollama pull`, or point --path at the blob")


def _candidates(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("*.gguf")
                  if p.is_file() and not p.name.lower().startswith("mmproj"))  # vision projectors, not models


def find_gguf(path: str) -> Path | None:
    """The GGUF file `path` designates, or None when it is an ordinary checkpoint (or nothing GGUF-like).

    Raises a LlorchError that says which files exist when the choice is ambiguous or unsupported."""
    p = Path(path).expanduser()
    if p.is_file():
        target = p if is_gguf(p) else _ollama_blob(p)
        if target is None:
            if p.suffix.lower() == ".gguf":
                raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{p} is named .gguf but does not start with the "
                                  "GGUF magic bytes (truncated, corrupt, or another format)",
                                  "download the file again", path=str(p))
            return None
        target = target.resolve()
        split = SPLIT_RE.search(target.name)
        if split and int(split.group(2)) > 1:
            raise LlorchError(ErrorCode.MODEL_INVALID, f"{target.name} is one part of a split GGUF "
                              f"({int(split.group(2))} parts); transformers reads single files only",
                              "merge the parts first: `llama-gguf-split --merge FIRST-PART.gguf MERGED.gguf`, "
                              "then register MERGED.gguf")
        return target
    if not p.is_dir() or (p / "config.json").exists():
        return None
    found = _candidates(p)
    if len(found) == 1:
        return find_gguf(str(found[0]))
    if len(found) > 1:
        listing = ", ".join(f"{f.name} ({fmt_bytes(f.stat().st_size)})" for f in found)
        raise LlorchError(ErrorCode.BAD_REQUEST, f"{p} holds {len(found)} GGUF files: {listing}",
                          f"say which one: --path {p / found[0].name}", files=[f.name for f in found])
    return None


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    try:
        return f.contents()
    except (ValueError, IndexError, TypeError):
        return None


def read_meta(path: Path) -> GgufMeta:
    """Architecture, quantization, context length, vocabulary and chat template from the GGUF header."""
    try:
        import gguf
    except ImportError:
        raise LlorchError(ErrorCode.AGENT_MISSING, "the gguf package is not installed next to the agent",
                          "pip install gguf (it is a dependency of llorch; reinstall llorch)") from None
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError, IndexError) as exc:
        raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{path}: the GGUF header or tensor data is unreadable "
                          f"({type(exc).__name__}: {exc}); the file is truncated or corrupt",
                          "download the file again", path=str(path)) from None
    size = path.stat().st_size
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{path} is {size} bytes but its tensors end at byte {end} "
                          "(truncated)", "download the file again", path=str(path))
    arch = _field(reader, "general.architecture")
    ft = _field(reader, "general.file_type")
    file_type = quant = None
    if ft is not None:
        try:
            file_type = gguf.LlamaFileType(int(ft)).name
        except ValueError:
            file_type = f"type {ft}"
        quant = file_type
        for prefix in _FILE_TYPE_PREFIXES:
            quant = quant.removeprefix(prefix)
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    if quant is None and types:  # no file_type key: name it by the commonest tensor type
        quant = max(types, key=lambda k: types[k])
    vocab = _field(reader, f"{arch}.vocab_size") if arch else None
    if vocab is None:
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        vocab = len(tokens.data) if tokens is not None else None
    ctx = _field(reader, f"{arch}.context_length") if arch else None
    return GgufMeta(path=path, size=size, architecture=str(arch) if arch else None,
                    name=_field(reader, "general.name"), file_type=file_type, quantization=quant,
                    context_length=int(ctx) if ctx is not None else None,
                    vocab_size=int(vocab) if vocab is not None else None,
                    chat_template=bool(_field(reader, "tokenizer.chat_template")), tensor_types=types)
