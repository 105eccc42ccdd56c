"""GGUF files on the worker side: recognise one, check its structure, and point transformers at it.

transformers loads a GGUF with `from_pretrained(DIR, gguf_file=NAME)` and dequantizes every tensor;
these helpers are shared by the loader (`engine.py`), the checker (`check.py`) and the converter
(`gguf_convert.py`).
"""

from __future__ import annotations

from pathlib import Path

GGUF_MAGIC = b"GGUF"


def is_gguf(path: Path) -> bool:
    """A GGUF by its first four bytes, whatever its name (Ollama keeps them as extension-less blobs)."""
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def gguf_location(path: Path) -> tuple[Path, str] | None:
    """(directory, file name) for transformers when `path` is a GGUF file, or a directory whose
    only weights are one GGUF; None for an ordinary checkpoint directory."""
    if path.is_file():
        return (path.parent, path.name) if is_gguf(path) or path.suffix == ".gguf" else None
    if path.is_dir() and not any(path.glob("*.safetensors")):
        found = sorted(p for p in path.glob("*.gguf") if p.is_file())
        if len(found) == 1:
            return path, found[0].name
    return None


def gguf_problem(path: Path) -> str | None:
    """Why this GGUF file is unusable (bad magic, unreadable header, truncated tensor data), or None."""
    if not is_gguf(path):
        return "not a GGUF file (its first bytes are not 'GGUF')"
    try:
        import gguf
    except ImportError:
        return "the gguf package is not installed in the worker's Python (pip install gguf)"
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError, IndexError) as e:
        # the reader maps tensor data by the header's offsets: a short file fails to reshape
        return f"GGUF header or tensor data unreadable (truncated or corrupt?): {type(e).__name__}: {e}"
    size = path.stat().st_size
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        return f"file is {size} bytes but its tensors end at byte {end} (truncated)"
    split = reader.fields.get("split.count")
    if split is not None and int(split.contents()) > 1:
        return (f"this is one part of a split GGUF ({int(split.contents())} parts); merge them first with "
                "`llama-gguf-split --merge FIRST-PART.gguf OUT.gguf`")
    return None
