"""Ops `models.reference | fingerprint | set_fingerprint`: a model's reference fingerprint on this pool.

A fingerprint is recorded once, on cpu float32, by a worker this op starts and stops; it is never
replaced silently: an existing one is kept unless the caller passes `accept` (the explicit
"the new weights are the reference now").
"""

from __future__ import annotations

import asyncio

import aiohttp

from llorch_tui.protocol.events import PROGRESS, FingerprintStage
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.parity.suite import prompt_suite
from llorch_tui.pool.models_ops import store_of
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.protocol.params import FingerprintParams, IdParams, SetFingerprintParams, SpawnParams
from llorch_tui.pool.weights_hash import weights_sha256
from llorch_tui.pool.worker_ops import stop_record
from llorch_tui.pool.worker_spawn import model_dir, spawn_worker
from llorch_tui.protocol.catalog import ModelEntry
from llorch_tui.protocol.parity import Fingerprint, FingerprintReport, ModelReference
from llorch_tui.protocol.workers import WorkerRecord

REFERENCE_BACKEND, REFERENCE_DTYPE = "cpu", "float32"
SPAWN_ATTEMPTS = 3
# One recording per model at a time in this agent (two matrix cells of one model may both ask).
_RECORDING: dict[str, asyncio.Lock] = {}


def _current(ctx: OpContext, model_id: str) -> tuple[ModelEntry, str]:
    entry = store_of(ctx).get(model_id)
    if not entry.downloaded:
        raise LlorchError(ErrorCode.NOT_DOWNLOADED, f"model {model_id!r} is not downloaded on this pool",
                          f"download it first: llorch-pool models download {model_id}", model=model_id)
    return entry, weights_sha256(model_dir(ctx, entry))


def _reference(entry: ModelEntry, sha: str) -> ModelReference:
    fp = entry.fingerprint
    return ModelReference(model=entry.id, source=entry.source, weights_sha256=sha, fingerprint=fp,
                          weights_changed=fp is not None and fp.weights_sha256 != sha)


def _store(ctx: OpContext, model_id: str, fp: Fingerprint, accept: bool) -> ModelEntry:
    """Set the fingerprint; an existing one stays unless `accept` (whoever recorded first wins)."""
    store = store_of(ctx)
    with store.edit() as catalog:
        entry = store.require(catalog, model_id)
        if entry.fingerprint is None or accept:
            entry.fingerprint = fp
    return entry


async def _spawn_reference(ctx: OpContext, p: FingerprintParams) -> WorkerRecord:
    params = SpawnParams(backend=REFERENCE_BACKEND, model=p.id, dtype=REFERENCE_DTYPE, timeout_s=p.timeout_s)
    for attempt in range(SPAWN_ATTEMPTS):
        try:
            return await spawn_worker(ctx, params)
        except LlorchError as exc:
            # another process took the port between the pick and the worker's bind: the next pick differs
            if exc.code != ErrorCode.PORT_IN_USE or attempt == SPAWN_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@op(ops.MODELS_REFERENCE, summary="a model's reference fingerprint and the hash of its weights now")
async def models_reference(ctx: OpContext, p: IdParams) -> ModelReference:
    entry, sha = await asyncio.to_thread(_current, ctx, p.id)
    return _reference(entry, sha)


@op(ops.MODELS_FINGERPRINT, summary="record the model's reference fingerprint on cpu float32 (kept unless --accept)")
async def models_fingerprint(ctx: OpContext, p: FingerprintParams) -> FingerprintReport:
    async with _RECORDING.setdefault(p.id, asyncio.Lock()):
        entry, sha = await asyncio.to_thread(_current, ctx, p.id)
        if entry.fingerprint is not None and not p.accept:
            return FingerprintReport(model=p.id, recorded=False, weights_sha256=sha,
                                     weights_changed=entry.fingerprint.weights_sha256 != sha,
                                     fingerprint=entry.fingerprint)
        ctx.emit(PROGRESS, FingerprintStage(stage="spawning", backend=REFERENCE_BACKEND, dtype=REFERENCE_DTYPE))
        rec = await _spawn_reference(ctx, p)
        try:
            ctx.emit(PROGRESS, FingerprintStage(stage="recording", worker_id=rec.id, prompt_set=prompt_suite().version))
            # Imported here: an agent on a pool without llorch-worker (`--torch none`) still starts.
            from llorch_tui.parity.calls import PARITY_TIMEOUT_S
            from llorch_tui.parity.record import record_fingerprint
            from llorch_tui.worker_client import WorkerClient

            async with aiohttp.ClientSession() as session:
                worker = WorkerClient(session, f"http://127.0.0.1:{rec.port}", timeout=PARITY_TIMEOUT_S)
                try:
                    fp = await record_fingerprint(worker, weights_sha256=sha, pool_id=ctx.settings.pool_id)
                except (LlorchError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    raise LlorchError(ErrorCode.WORKER_FAILED,
                                      f"recording the fingerprint of {p.id!r} failed: {exc}",
                                      f"see the worker's log: llorch-pool worker logs {rec.id}") from exc
        finally:
            await asyncio.shield(asyncio.to_thread(stop_record, ctx.settings.paths, rec.id, 10.0))
        entry = await asyncio.to_thread(_store, ctx, p.id, fp, p.accept)
        assert entry.fingerprint is not None
        ctx.emit(PROGRESS, FingerprintStage(stage="done"))
        return FingerprintReport(model=p.id, recorded=entry.fingerprint is fp, weights_sha256=sha,
                                 weights_changed=entry.fingerprint.weights_sha256 != sha, fingerprint=entry.fingerprint)


@op(ops.MODELS_SET_FINGERPRINT, summary="import a reference fingerprint (from another pool or a file); kept unless --accept")
async def models_set_fingerprint(ctx: OpContext, p: SetFingerprintParams) -> ModelEntry:
    prompt_suite(p.fingerprint.prompt_set_version)  # a suite this llorch does not ship cannot be compared

    def run() -> ModelEntry:
        entry, sha = _current(ctx, p.id)
        old = entry.fingerprint
        if old is not None and old != p.fingerprint and not p.accept:
            raise LlorchError(ErrorCode.ALREADY_EXISTS,
                              f"model {p.id!r} already has a reference fingerprint (recorded "
                              f"{old.recorded_at:%Y-%m-%d %H:%M} UTC on {old.recorded_on or '?'})",
                              "pass --accept to replace it", model=p.id)
        if p.fingerprint.weights_sha256 != sha and not p.accept:
            raise LlorchError(ErrorCode.BAD_REQUEST,
                              f"that fingerprint was recorded from other weights than {p.id!r} has on this pool "
                              f"(sha256 {p.fingerprint.weights_sha256[:12]}… vs {sha[:12]}…)",
                              "compare the model files of both pools; pass --accept to import it anyway", model=p.id)
        return _store(ctx, p.id, p.fingerprint, accept=True)

    return await asyncio.to_thread(run)
