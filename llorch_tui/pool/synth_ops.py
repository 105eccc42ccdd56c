"""models.synth: write a random-weight checkpoint of a real architecture and register it.

The torch work runs in `python -m llorch_worker.synth` (the agent never imports torch). It writes
into a staging directory beside the model directory; only a finished checkpoint is renamed into
place, so a failed or cancelled synth leaves neither a half-written model nor a catalog entry.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path


from llorch_tui.protocol.events import PROGRESS, ModelStage
from llorch_tui.pool.checkpoint_install import exists_error, install_checkpoint
from llorch_tui.pool.models_ops import check_backends, store_of
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.pool.worker_module import run_worker_module
from llorch_tui.protocol import BACKENDS, ops
from llorch_tui.protocol.catalog import ModelEntry, ModelMetadata, WrittenCheckpoint
from llorch_tui.protocol.params import SynthParams


async def _run_synth(ctx: OpContext, out: Path, p: SynthParams) -> WrittenCheckpoint:
    kind = (["--like", p.like, "--dtype", p.dtype] if p.like
            else ["--architecture", str(p.architecture), "--size", p.size])
    return await run_worker_module(
        ctx, "synth", ["--out", str(out), *kind, "--seed", str(p.seed)], f"synthesizing {p.what}",
        "check that torch, transformers and tokenizers are installed in the agent's Python "
        f"({sys.executable})",
        started=ModelStage(stage="synthesize", model=p.id, architecture=p.architecture, size=p.size, like=p.like))


def _entry(p: SynthParams, path: Path, info: WrittenCheckpoint) -> ModelEntry:
    files = info.files
    size_bytes = info.size_bytes or sum(f.size for f in files)
    name = f"synthetic {p.architecture} ({p.size}, seed {p.seed})"
    if p.like:  # real size: say loudly that it is not the real model
        name = f"SYNTHETIC {p.like}-like: random weights, {p.dtype}, seed {p.seed} (shapes of {info.original})"
    return ModelEntry(
        id=p.id, name=name, path=str(path),
        architecture=p.architecture, downloaded=True, backends=check_backends(p.backends) or list(BACKENDS),
        metadata=ModelMetadata(context_length=info.context_length, vocab_size=info.vocab_size),
        files=files, size_gb=size_bytes / 1e9, source="synthetic")


@op(ops.MODELS_SYNTH, summary="write a random-weight checkpoint of a real architecture and register it")
async def models_synth(ctx: OpContext, p: SynthParams) -> ModelEntry:
    check_backends(p.backends)
    ctx.emit(PROGRESS, ModelStage(stage="check", model=p.id))
    catalog = await asyncio.to_thread(store_of(ctx).load)
    if catalog.get(p.id) is not None and not p.force:
        raise exists_error(p.id)
    models_dir = ctx.settings.paths.models_dir
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{p.id}.synth-", dir=models_dir))
    try:
        info = await _run_synth(ctx, staging, p)
        ctx.check_cancelled()
        ctx.emit(PROGRESS, ModelStage(stage="register", model=p.id))
        entry = await asyncio.to_thread(
            install_checkpoint, store_of(ctx), p.id, staging, ctx.settings.paths.model_dir(p.id).absolute(),
            p.force, lambda target: _entry(p, target, info))
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when installed
    ctx.emit(PROGRESS, ModelStage(stage="done", model=p.id))
    return entry
