"""Op `models.fit`: will a model fit on this pool, per backend — before it is downloaded."""

from __future__ import annotations

import asyncio
from pathlib import Path


from llorch_tui.config import SEED_PRESETS
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.catalog_store import register_hint
from llorch_tui.pool.fit import (decide, default_dtype, estimate, free_memory, local_shapes, local_stored_bytes,
                                 remote_shapes)
from llorch_tui.pool.hub_fetch import resolve_endpoint
from llorch_tui.pool.models_ops import check_backends, check_repo, store_of
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.protocol.catalog import ModelEntry, device_key
from llorch_tui.protocol.params import FitParams
from llorch_tui.pool.status_ops import pool_status
from llorch_tui.protocol.fit import FitReport


def measured_peak(entry: ModelEntry, backend: str, asked: str | None, loaded: str) -> int | None:
    """The matrix's measured peak for exactly this backend and dtype (a float32 peak says little about
    bfloat16's): keyed `backend:dtype`, or the bare backend for the worker's default dtype (device_key)."""
    keys = [device_key(backend, asked)]
    if loaded == default_dtype(backend):
        keys += [backend, device_key(backend, loaded)]
    return next((entry.peak_memory[k] for k in keys if entry.peak_memory.get(k)), None)


@op(ops.MODELS_FIT, summary="memory a model needs per backend, and whether it fits here")
async def models_fit(ctx: OpContext, p: FitParams) -> FitReport:
    check_backends(p.backends)
    catalog = await asyncio.to_thread(store_of(ctx).load)
    entry = catalog.get(p.id)
    if entry is not None and entry.downloaded:
        cfg, params = await asyncio.to_thread(local_shapes, Path(entry.path))
        stored = await asyncio.to_thread(local_stored_bytes, Path(entry.path))
        source = "local files"
    else:
        preset = next((s for s in SEED_PRESETS if s.id == p.id), None)
        repo = check_repo(p.repo or (entry.metadata.repo if entry else None) or (preset.repo if preset else None))
        if repo is None:
            raise LlorchError(ErrorCode.NOT_FOUND, f"model {p.id!r} is neither downloaded on pool "
                              f"{ctx.settings.pool_id} nor has a repo to read its metadata from",
                              "pass --repo OWNER/NAME, or " + register_hint(p.id), model=p.id)
        endpoint = resolve_endpoint(p.endpoint, ctx.settings.hf_endpoint)
        revision = p.revision or (entry.revision if entry else None)
        cfg, params, stored = await asyncio.to_thread(remote_shapes, repo, endpoint, revision)
        source = f"{endpoint} ({repo}; metadata and headers only)"
    status = await pool_status(ctx.settings)
    wanted = p.backends or [b for b in status.backends if entry is None or b in entry.backends]
    report = FitReport(pool_id=ctx.settings.pool_id, model=p.id, source=source)
    for backend in wanted:
        est = estimate(p.id, cfg, params, backend, dtype=p.dtype, context=p.context, batch=p.batch,
                       stored_bytes=stored)
        free, gpu = free_memory(status, backend) if backend in status.backends else (None, None)
        measured = measured_peak(entry, backend, p.dtype, est.dtype) if entry is not None else None
        report.estimates.append(decide(est, free, measured, ctx.settings.pool_id, gpu))
    return report
