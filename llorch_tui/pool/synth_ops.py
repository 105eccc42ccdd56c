"""models.synth: write a random-weight checkpoint of a real architecture and register it.

The torch work runs in `python -m llorch_worker.synth` (the agent never imports torch). It writes
into a staging directory beside the model directory; only a finished checkpoint is renamed into
place, so a failed or cancelled synth leaves neither a half-written model nor a catalog entry.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.models_ops import IdParams, check_backends, store_of
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import BACKENDS
from llorch_tui.protocol.catalog import ModelEntry, ModelFile, ModelMetadata
from llorch_tui.pool.child_env import child_env

SYNTH_ARCHITECTURES = ("llama", "qwen2", "phi3", "mistral")
STDERR_TAIL = 2000
# Read once at import (main thread): os.umask is process-wide, so never toggle it from an op's thread.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


LIKE_NAMES = ("tinyllama", "qwen-0.5b", "phi3", "mistral")
LIKE_ARCHITECTURE = {"tinyllama": "llama", "qwen-0.5b": "qwen2", "phi3": "phi3", "mistral": "mistral"}


class SynthParams(IdParams):
    architecture: Literal["llama", "qwen2", "phi3", "mistral"] | None = None
    size: Literal["tiny", "small"] = "tiny"
    seed: int = Field(default=0, ge=0)
    backends: list[str] | None = None
    force: bool = False  # replace an existing entry (and its directory)
    # The exact configuration of an original model (real size, random weights), in this dtype.
    like: Literal["tinyllama", "qwen-0.5b", "phi3", "mistral"] | None = None
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"

    @model_validator(mode="after")
    def _one_kind(self) -> "SynthParams":
        if self.like is None and self.architecture is None:
            raise ValueError("give an architecture (a tiny/small checkpoint) or like (a real-size one)")
        if self.like is not None:
            if self.architecture not in (None, LIKE_ARCHITECTURE[self.like]):
                raise ValueError(f"like={self.like} is a {LIKE_ARCHITECTURE[self.like]} model, "
                                 f"not {self.architecture}; leave the architecture out")
            self.architecture = LIKE_ARCHITECTURE[self.like]  # type: ignore[assignment]
        return self

    @property
    def what(self) -> str:
        return f"{self.like}-like ({self.dtype})" if self.like else f"{self.architecture}/{self.size}"


def _exists_error(model_id: str) -> LlorchError:
    return LlorchError(ErrorCode.ALREADY_EXISTS, f"model {model_id!r} is already in the catalog",
                       f"pass --force to replace it, or pick another id (`llorch-pool models unregister {model_id}` "
                       "removes the entry)")


async def _run_synth(ctx: OpContext, out: Path, p: SynthParams) -> dict[str, Any]:
    if importlib.util.find_spec("llorch_worker") is None:
        raise LlorchError(ErrorCode.AGENT_MISSING, "the worker package (llorch_worker) is not installed on this pool",
                          "install it next to the agent: pip install -e ./worker (or pip install llorch-worker)")
    kind = ["--like", p.like, "--dtype", p.dtype] if p.like else ["--architecture", str(p.architecture), "--size", p.size]
    argv = [sys.executable, "-m", "llorch_worker.synth", "--out", str(out), *kind, "--seed", str(p.seed), "--json"]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=child_env())
    ctx.emit("progress", {"stage": "synthesize", "model": p.id, "architecture": p.architecture, "size": p.size,
                          "like": p.like, "pid": proc.pid})
    try:
        stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled: the synth process must not outlive the op
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
        last = tail.splitlines()[-1] if tail else f"exit status {proc.returncode}"
        raise LlorchError(ErrorCode.INTERNAL, f"synthesizing {p.what} failed: {last}",
                          "check that torch, transformers and tokenizers are installed in the agent's Python "
                          f"({sys.executable})", stderr=tail)
    try:
        info = json.loads(stdout.decode().strip().splitlines()[-1])
        assert isinstance(info, dict) and isinstance(info.get("files"), list)
        return info
    except (ValueError, IndexError, AssertionError):
        raise LlorchError(ErrorCode.INTERNAL, "llorch_worker.synth printed no JSON description",
                          "the worker package may be older than the agent; reinstall both") from None


def _entry(p: SynthParams, path: Path, info: dict[str, Any]) -> ModelEntry:
    files = [ModelFile(name=f["name"], size=int(f["size"]), sha256=f.get("sha256")) for f in info["files"]]
    size_bytes = int(info.get("size_bytes") or sum(f.size for f in files))
    name = f"synthetic {p.architecture} ({p.size}, seed {p.seed})"
    if p.like:  # real size: say loudly that it is not the real model
        name = f"SYNTHETIC {p.like}-like: random weights, {p.dtype}, seed {p.seed} (shapes of {info.get('original')})"
    return ModelEntry(
        id=p.id, name=name, path=str(path),
        architecture=p.architecture, downloaded=True, backends=check_backends(p.backends) or list(BACKENDS),
        metadata=ModelMetadata(context_length=info.get("context_length"), vocab_size=info.get("vocab_size")),
        files=files, size_gb=size_bytes / 1e9, source="synthetic")


def _public_modes(d: Path) -> None:
    """mkdtemp/mkstemp create 0700/0600; a model directory gets the ordinary umask modes like any download."""
    os.chmod(d, 0o777 & ~_UMASK)
    for f in d.iterdir():
        if f.is_file():
            os.chmod(f, 0o666 & ~_UMASK)


def _install(ctx: OpContext, p: SynthParams, staging: Path, info: dict[str, Any]) -> ModelEntry:
    """Under the catalog lock: re-check (another process may have won), move the checkpoint in, register."""
    target = ctx.settings.paths.model_dir(p.id).absolute()
    _public_modes(staging)
    store = store_of(ctx)
    with store.edit() as catalog:
        if catalog.get(p.id) is not None and not p.force:
            raise _exists_error(p.id)
        if target.exists():
            if not p.force:
                raise LlorchError(ErrorCode.ALREADY_EXISTS, f"{target} already exists (not in the catalog)",
                                  "move it aside, or pass --force to replace it")
            old = target.with_name(f".{target.name}.old-{staging.name}")
            target.rename(old)  # rename first so the new checkpoint appears whole
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
        entry = _entry(p, target, info)
        ids = [m.id for m in catalog.models]
        if p.id in ids:
            catalog.models[ids.index(p.id)] = entry
        else:
            catalog.models.append(entry)
    return entry


@op("models.synth", SynthParams, streams=True,
    summary="write a random-weight checkpoint of a real architecture and register it")
async def models_synth(ctx: OpContext, p: SynthParams) -> ModelEntry:
    check_backends(p.backends)
    ctx.emit("progress", {"stage": "check", "model": p.id})
    catalog = await asyncio.to_thread(store_of(ctx).load)
    if catalog.get(p.id) is not None and not p.force:
        raise _exists_error(p.id)
    models_dir = ctx.settings.paths.models_dir
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{p.id}.synth-", dir=models_dir))
    try:
        info = await _run_synth(ctx, staging, p)
        ctx.check_cancelled()
        ctx.emit("progress", {"stage": "register", "model": p.id})
        entry = await asyncio.to_thread(_install, ctx, p, staging, info)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when installed
    ctx.emit("progress", {"stage": "done", "model": p.id})
    return entry
