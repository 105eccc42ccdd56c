"""Catalog ops: models.list / register / unregister / update / record_verdict.

Every change is one locked read-modify-write of catalog.json (CatalogStore.edit) run in a thread,
so twenty agents registering at once leave twenty entries and the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timezone
from pathlib import Path


from llorch_tui.config import SEED_PRESETS
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.pool.gguf_inspect import find_gguf
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.protocol import BACKENDS
from llorch_tui.protocol.catalog import (DTYPES, Catalog, ModelEntry, ModelFile, ModelMetadata, VerdictRecord,
                                         device_key)
from llorch_tui.protocol.params import IdParams, NoParams, RegisterParams, UpdateParams, VerdictParams

# Repo ids and architectures later travel in command lines and URLs: a conservative alphabet.
REPO_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
ARCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CHECKPOINT_SUFFIXES = (".safetensors", ".json", ".model", ".txt", ".bin", ".gguf", ".py", ".tiktoken")


def store_of(ctx: OpContext) -> CatalogStore:
    return CatalogStore(ctx.settings.paths, ctx.settings.pool_id)


def check_backends(backends: list[str] | None) -> list[str] | None:
    if backends is None:
        return None
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"unknown backend(s): {', '.join(bad) or '(none given)'}",
                          f"choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(backends))  # de-duplicated, order kept


def check_repo(repo: str | None) -> str | None:
    if repo is not None and not REPO_RE.match(repo):
        raise LlorchError(ErrorCode.BAD_REQUEST, f"invalid repo id {repo!r}",
                          "use the Hub's OWNER/NAME form, e.g. TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    return repo


def check_architecture(arch: str | None) -> str | None:
    if arch is not None and not ARCH_RE.match(arch):
        raise LlorchError(ErrorCode.BAD_REQUEST, f"invalid architecture {arch!r}",
                          "use the model_type of the checkpoint's config.json, e.g. llama, qwen2, phi3, mistral")
    return arch


def registered_error(model_id: str) -> LlorchError:
    return LlorchError(ErrorCode.ALREADY_EXISTS, f"model {model_id!r} is already registered",
                       f"change it with `llorch-pool models update {model_id} ...`, "
                       f"or `llorch-pool models unregister {model_id}` first")


def local_checkpoint(path: str) -> tuple[Path, dict, list[ModelFile]]:
    """An existing checkpoint directory: its config.json and file sizes (no hashing: it may be GBs)."""
    d = Path(path).expanduser().resolve()
    if not d.is_dir():
        raise LlorchError(ErrorCode.MODEL_INVALID, f"{d} is not a directory",
                          "pass the checkpoint directory (the one holding config.json and *.safetensors)")
    cfg_file = d / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlorchError(ErrorCode.MODEL_INVALID, f"{d} has no config.json, so it is not a transformers checkpoint",
                          "point --path at the directory holding config.json and the weights") from None
    except (OSError, ValueError) as exc:
        raise LlorchError(ErrorCode.MODEL_INVALID, f"{cfg_file} is unreadable: {exc}",
                          "re-download or re-create the checkpoint") from None
    if not isinstance(cfg, dict):
        raise LlorchError(ErrorCode.MODEL_INVALID, f"{cfg_file} is not a JSON object", "re-create the checkpoint")
    files = [ModelFile(name=f.name, size=f.stat().st_size) for f in sorted(d.iterdir())
             if f.is_file() and f.suffix in CHECKPOINT_SUFFIXES]
    return d, cfg, files


def build_entry(p: RegisterParams, ctx: OpContext) -> ModelEntry:
    preset = next((s for s in SEED_PRESETS if s.id == p.id), None)
    repo = check_repo(p.repo or (preset.repo if preset else None))
    arch = check_architecture(p.architecture or (preset.architecture if preset else None))
    backends = check_backends(p.backends) or (list(preset.backends) if preset else list(BACKENDS))
    meta = ModelMetadata(repo=repo,
                         context_length=p.context_length or (preset.context_length if preset else None),
                         vocab_size=p.vocab_size or (preset.vocab_size if preset else None))
    if p.path:
        d, cfg, files = local_checkpoint(p.path)
        arch = arch or check_architecture(str(cfg.get("model_type") or "")) or None
        meta.context_length = meta.context_length or cfg.get("max_position_embeddings")
        meta.vocab_size = meta.vocab_size or cfg.get("vocab_size")
        if not arch:
            raise LlorchError(ErrorCode.MODEL_INVALID, f"{d}/config.json has no model_type",
                              "pass --architecture (e.g. llama)")
        return ModelEntry(id=p.id, name=p.name or p.id, path=str(d), architecture=arch, downloaded=True,
                          backends=backends, metadata=meta, revision=p.revision, files=files,
                          size_gb=sum(f.size for f in files) / 1e9, source=p.source or "local")
    if not repo or not arch:
        missing = " and ".join(n for n, v in (("--repo", repo), ("--architecture", arch)) if not v)
        seeds = ", ".join(s.id for s in SEED_PRESETS)
        raise LlorchError(ErrorCode.BAD_REQUEST, f"model {p.id!r} is not a seed preset, so it needs {missing}",
                          f"e.g. `llorch-pool models register {p.id} --repo OWNER/NAME --architecture llama`, "
                          f"or --path DIR for a checkpoint already on disk; seed presets need only the id: {seeds}")
    return ModelEntry(id=p.id, name=p.name or (preset.name if preset else p.id),
                      path=str(ctx.settings.paths.model_dir(p.id).absolute()), architecture=arch, downloaded=False,
                      backends=backends, metadata=meta, revision=p.revision or (preset.revision if preset else None),
                      size_gb=(preset.size_gb or 0.0) if preset else 0.0, source=p.source or "hub")


@op(ops.MODELS_LIST, summary="the pool's model catalog")
async def models_list(ctx: OpContext, _: NoParams) -> Catalog:
    return await asyncio.to_thread(store_of(ctx).load)


@op(ops.MODELS_REGISTER,
    summary="add a model to the catalog (seed presets need only the id; --path takes a checkpoint or a GGUF)")
async def models_register(ctx: OpContext, p: RegisterParams) -> ModelEntry:
    if p.path:
        gguf = await asyncio.to_thread(find_gguf, p.path)
        if gguf is not None:
            from llorch_tui.pool.gguf_ops import register_gguf  # imports this module

            return await register_gguf(ctx, p, gguf)

    def run() -> ModelEntry:
        entry = build_entry(p, ctx)
        with store_of(ctx).edit() as catalog:
            if catalog.get(p.id) is not None:
                raise registered_error(p.id)
            catalog.models.append(entry)
        return entry

    return await asyncio.to_thread(run)


@op(ops.MODELS_UNREGISTER, summary="remove a model from the catalog (its files stay; see models rm)")
async def models_unregister(ctx: OpContext, p: IdParams) -> ModelEntry:
    return await asyncio.to_thread(store_of(ctx).remove, p.id)


@op(ops.MODELS_UPDATE, summary="change fields of a catalog entry")
async def models_update(ctx: OpContext, p: UpdateParams) -> ModelEntry:
    changes = p.model_dump(exclude={"id"}, exclude_none=True)
    if not changes:
        raise LlorchError(ErrorCode.BAD_REQUEST, "nothing to update",
                          "give at least one of --downloaded, --name, --repo, --backends, --architecture, --revision")
    check_backends(p.backends)
    check_repo(p.repo)
    check_architecture(p.architecture)

    def run() -> ModelEntry:
        store = store_of(ctx)
        with store.edit() as catalog:
            entry = store.require(catalog, p.id)
            for key, value in changes.items():
                if key == "repo":
                    entry.metadata.repo = value
                else:
                    setattr(entry, key, value)
        return entry

    return await asyncio.to_thread(run)


@op(ops.MODELS_RECORD_VERDICT, summary="remember the last test verdict of a model on a backend")
async def models_record_verdict(ctx: OpContext, p: VerdictParams) -> ModelEntry:
    check_backends([p.backend])
    if p.dtype is not None and p.dtype not in DTYPES:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"unknown dtype {p.dtype!r}", f"use one of {', '.join(DTYPES)}")
    key = device_key(p.backend, p.dtype)

    def run() -> ModelEntry:
        store = store_of(ctx)
        with store.edit() as catalog:
            entry = store.require(catalog, p.id)
            entry.verdicts[key] = VerdictRecord(
                verdict=p.verdict, date=datetime.now(timezone.utc), reason=p.reason,
                tokens_per_second=p.tokens_per_second, peak_memory_bytes=p.peak_memory_bytes)
            if p.peak_memory_bytes is not None:
                entry.peak_memory[key] = p.peak_memory_bytes
        return entry

    return await asyncio.to_thread(run)
