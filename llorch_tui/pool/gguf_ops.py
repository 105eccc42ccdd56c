"""GGUF models in the catalog: inspect the file, hash it, convert it once to safetensors, register.

The GGUF stays the source of truth (its path and sha256 are in `entry.gguf`); the converted float32
checkpoint in the models dir is what workers load, because dequantizing on every load would cost
every matrix cell and a safetensors file can be edited tensor by tensor. The conversion runs in
`python -m llorch_worker.gguf_convert` (torch never enters the agent) and is reused when the
models dir already holds one made from the same bytes by the same converter version.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from llorch_tui.protocol.events import PROGRESS, ModelStage
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.checkpoint_install import install_checkpoint, put_entry
from llorch_tui.pool.gguf_inspect import GgufMeta, read_meta
from llorch_tui.pool.hashing import hash_file
from llorch_tui.pool.models_ops import (
    RegisterParams,
    check_architecture,
    check_backends,
    registered_error,
    store_of,
)
from llorch_tui.pool.ops import OpContext
from llorch_tui.pool.worker_module import run_worker_module
from llorch_tui.protocol import BACKENDS
from llorch_tui.protocol.catalog import GgufSource, ModelEntry, ModelFile, ModelMetadata

MARKER = "llorch_gguf.json"  # written by llorch_worker.gguf_convert beside the converted weights
CONVERTER_VERSION = 1  # llorch_worker.gguf_convert.CONVERTER_VERSION; a mismatch means convert again


def read_marker(d: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((d / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def conversion_matches(d: Path, sha256: str) -> bool:
    """`d` holds a complete conversion of exactly these GGUF bytes by the current converter."""
    doc = read_marker(d)
    return doc is not None and doc.get("gguf_sha256") == sha256 and doc.get("converter") == CONVERTER_VERSION


def converted_files(d: Path) -> list[ModelFile]:
    """The converted checkpoint's files with their sha256 (when reusing a conversion we did not just write)."""
    return [ModelFile(name=f.name, size=f.stat().st_size, sha256=hash_file(f)[0])
            for f in sorted(d.iterdir()) if f.is_file()]


def gguf_entry(model_id: str, meta: GgufMeta, sha256: str, path: Path, files: list[ModelFile], *,
               name: str | None = None, backends: list[str] | None = None, architecture: str | None = None,
               converted: bool = True, origin: str | None = None) -> ModelEntry:
    """The catalog entry of a GGUF model; `path` is the converted checkpoint (or the GGUF itself)."""
    arch = check_architecture(architecture or meta.architecture)
    if not arch:
        raise LlorchError(ErrorCode.MODEL_INVALID, f"{meta.path} names no general.architecture",
                          "pass --architecture (e.g. llama)")
    size = sum(f.size for f in files) if converted else meta.size
    return ModelEntry(
        id=model_id, name=name or meta.name or model_id, path=str(path), format="gguf", size_gb=size / 1e9,
        architecture=arch, downloaded=True, backends=backends or list(BACKENDS),
        metadata=ModelMetadata(context_length=meta.context_length, vocab_size=meta.vocab_size,
                               chat_template=meta.chat_template),
        files=files, source="local", quantization=meta.quantization,
        gguf=GgufSource(path=str(meta.path), sha256=sha256, size=meta.size, quantization=meta.quantization,
                        file_type=meta.file_type, tensor_types=meta.tensor_types, name=meta.name,
                        converted=converted, converter=CONVERTER_VERSION if converted else None, origin=origin))


async def register_gguf(ctx: OpContext, p: RegisterParams, gguf: Path, origin: str | None = None) -> ModelEntry:
    """Inspect, hash, convert (unless p.convert is false) and register `gguf` as `p.id`."""
    backends = check_backends(p.backends)
    check_architecture(p.architecture)
    store = store_of(ctx)
    if (await asyncio.to_thread(store.load)).get(p.id) is not None:
        raise registered_error(p.id)
    ctx.emit(PROGRESS, ModelStage(stage="inspect", model=p.id, file=str(gguf)))
    meta = await asyncio.to_thread(read_meta, gguf)
    ctx.emit(PROGRESS, ModelStage(stage="hash", model=p.id, file=str(gguf), bytes_total=meta.size))
    sha256, _ = await asyncio.to_thread(hash_file, gguf, ctx.cancelled)
    ctx.check_cancelled()

    def entry_for(path: Path, files: list[ModelFile], converted: bool) -> ModelEntry:
        return gguf_entry(p.id, meta, sha256, path, files, name=p.name, backends=backends,
                          architecture=p.architecture, converted=converted, origin=origin)

    if not p.convert:
        entry = entry_for(gguf, [ModelFile(name=gguf.name, size=meta.size, sha256=sha256)], False)
        await asyncio.to_thread(_put_new, ctx, entry)
        return entry
    target = ctx.settings.paths.model_dir(p.id).absolute()
    if conversion_matches(target, sha256):  # converted before (e.g. registered, unregistered, registered again)
        ctx.emit(PROGRESS, ModelStage(stage="reuse", model=p.id, path=str(target)))
        files = await asyncio.to_thread(converted_files, target)
        entry = entry_for(target, files, True)
        await asyncio.to_thread(_put_new, ctx, entry)
        return entry
    models_dir = ctx.settings.paths.models_dir
    models_dir.mkdir(parents=True, exist_ok=True)
    staging_root = Path(tempfile.mkdtemp(prefix=f".{p.id}.gguf-", dir=models_dir))
    staging = staging_root / "out"  # the converter creates it; a half-written one dies with staging_root
    try:
        info = await run_worker_module(
            ctx, "gguf_convert", ["--gguf", str(gguf), "--out", str(staging), "--sha256", sha256],
            f"converting {gguf.name} to safetensors",
            f"check that torch, transformers and gguf are installed in the agent's Python ({sys.executable}); "
            "or register with --no-convert to let the worker load the GGUF itself",
            started=ModelStage(stage="convert", model=p.id, file=str(gguf)))
        ctx.check_cancelled()
        ctx.emit(PROGRESS, ModelStage(stage="register", model=p.id))
        files = info.files
        entry = await asyncio.to_thread(
            install_checkpoint, store, p.id, staging, target, False,
            lambda t: entry_for(t, files if not staging.exists() else converted_files(t), True),
            lambda t: read_marker(t) is not None,  # an older conversion left behind by unregister: ours to replace
            lambda t: conversion_matches(t, sha256))
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    ctx.emit(PROGRESS, ModelStage(stage="done", model=p.id))
    return entry


def _put_new(ctx: OpContext, entry: ModelEntry) -> None:
    with store_of(ctx).edit() as catalog:
        if catalog.get(entry.id) is not None:
            raise registered_error(entry.id)
        put_entry(catalog.models, entry)
