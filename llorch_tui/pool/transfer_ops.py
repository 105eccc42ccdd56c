"""Moving a model between pools: the sender's side (manifest, chunks) and the receiver's (begin, chunk, file, commit).

`llorch models copy` drives these from the control plane, which streams every chunk from the
sender's agent to each receiver's agent over their own connections: the pools never need to see
each other. The receiver stages and verifies (receive.py); the sender only ever reads files its
catalog lists for that model, inside that model's directory.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path


from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.pool.hashing import hash_file
from llorch_tui.pool.models_ops import store_of
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.protocol.params import BeginParams, ChunkParams, FileParams, IdParams, WriteParams
from llorch_tui.pool.receive import Incoming, check_file_name, refuse_overwrite, same_files
from llorch_tui.protocol.catalog import ModelEntry, validate_model_id
from llorch_tui.protocol.transfer import ChunkData, ChunkWritten, FileVerified, ReceiveBegun



def manifest(store: CatalogStore, model_id: str, cancelled: threading.Event | None = None) -> ModelEntry:
    """The downloaded entry with a sha256 for every file: hashes the catalog lacks are measured and recorded."""
    entry = store.get(validate_model_id(model_id))
    if not entry.downloaded or not entry.files:
        raise LlorchError(ErrorCode.NOT_DOWNLOADED, f"model {model_id} is not downloaded on pool {store.pool_id}",
                          f"download it there first (llorch-pool models download {model_id})", model=model_id)
    base = Path(entry.path).expanduser()
    measured: dict[str, str] = {}
    for f in entry.files:
        path = base / check_file_name(f.name)
        if not path.is_file() or path.stat().st_size != f.size:
            raise LlorchError(ErrorCode.CHECKPOINT_CORRUPT, f"{path} is missing or not {f.size} bytes",
                              f"`llorch-pool models verify {model_id}` lists what is wrong; download it again")
        if not f.sha256:
            measured[f.name] = hash_file(path, cancelled)[0]
    if measured:
        with store.edit() as catalog:
            current = store.require(catalog, model_id)
            for f in current.files:
                f.sha256 = f.sha256 or measured.get(f.name)
            entry = current.model_copy(deep=True)
    return entry


def read_chunk(store: CatalogStore, p: ChunkParams) -> ChunkData:
    entry = store.get(p.id)
    if not entry.downloaded:
        raise LlorchError(ErrorCode.NOT_DOWNLOADED, f"model {p.id} is not downloaded on pool {store.pool_id}")
    f = next((f for f in entry.files if f.name == p.file), None)
    if f is None:  # only files the catalog lists for this model, never an arbitrary path
        raise LlorchError(ErrorCode.NOT_FOUND, f"model {p.id} has no file {p.file!r}")
    with (Path(entry.path).expanduser() / check_file_name(f.name)).open("rb") as fh:
        fh.seek(p.offset)
        data = fh.read(p.length)
    return ChunkData(data=base64.b64encode(data).decode("ascii"), offset=p.offset, size=f.size)


@op(ops.MODELS_MANIFEST, summary="a downloaded model's entry with every file's sha256 (measured if missing)")
async def models_manifest(ctx: OpContext, p: IdParams) -> ModelEntry:
    return await asyncio.to_thread(manifest, store_of(ctx), p.id, ctx.cancelled)


@op(ops.MODELS_READ_CHUNK, summary="bytes of one file of a downloaded model (base64), for copies")
async def models_read_chunk(ctx: OpContext, p: ChunkParams) -> ChunkData:
    return await asyncio.to_thread(read_chunk, store_of(ctx), p)


def begin(ctx: OpContext, p: BeginParams) -> ReceiveBegun:
    store = store_of(ctx)
    current = store.load().get(validate_model_id(p.entry.id))
    if same_files(current, p.entry.files, ctx.settings.paths):
        return ReceiveBegun(noop=True, have={f.name: f.size for f in p.entry.files})
    refuse_overwrite(current, p.entry.id, ctx.settings.pool_id, p.force)
    inc = Incoming(ctx.settings.paths, p.entry.id)
    inc.acquire()
    try:
        return ReceiveBegun(noop=False, have=inc.begin(p.entry, p.origin))
    finally:
        inc.release()


def write(ctx: OpContext, p: WriteParams) -> ChunkWritten:
    try:
        data = base64.b64decode(p.data, validate=True)
    except ValueError:
        raise LlorchError(ErrorCode.BAD_REQUEST, "chunk data is not base64") from None
    inc = Incoming(ctx.settings.paths, p.id)
    inc.acquire()
    try:
        return ChunkWritten(have=inc.write(p.file, p.offset, data))
    finally:
        inc.release()


def finish_file(ctx: OpContext, p: FileParams) -> FileVerified:
    inc = Incoming(ctx.settings.paths, p.id)
    inc.acquire()
    try:
        return FileVerified(file=p.file, sha256=inc.finish_file(p.file))
    finally:
        inc.release()


def commit(ctx: OpContext, p: IdParams) -> ModelEntry:
    inc = Incoming(ctx.settings.paths, p.id)
    inc.acquire()
    try:
        return inc.commit(store_of(ctx))
    finally:
        inc.release()


@op(ops.MODELS_RECEIVE_BEGIN, summary="prepare to receive a model's files; bytes already here per file")
async def receive_begin(ctx: OpContext, p: BeginParams) -> ReceiveBegun:
    return await asyncio.to_thread(begin, ctx, p)


@op(ops.MODELS_RECEIVE_CHUNK, summary="append bytes (base64) to a file being received")
async def receive_chunk(ctx: OpContext, p: WriteParams) -> ChunkWritten:
    return await asyncio.to_thread(write, ctx, p)


@op(ops.MODELS_RECEIVE_FILE, summary="verify a received file against the sender's sha256")
async def receive_file(ctx: OpContext, p: FileParams) -> FileVerified:
    return await asyncio.to_thread(finish_file, ctx, p)


@op(ops.MODELS_RECEIVE_COMMIT, summary="move a fully received model into place and record it")
async def receive_commit(ctx: OpContext, p: IdParams) -> ModelEntry:
    return await asyncio.to_thread(commit, ctx, p)
