"""`models.export` / `models.import`: one archive file carries a model to a machine with no network at all.

The archive is a plain tar (weights do not compress): first `llorch-model.json` (the catalog
entry and every file's size and sha256), then `files/NAME` for each file. Import trusts nothing
in it: the manifest must come first and be small, every other member must be a regular file named
in the manifest with exactly its size (no links, devices, directories, paths or extra members),
the total must fit on disk, and every file is hashed against the manifest before the model is
moved into place (through the same staging as a pool-to-pool copy: receive.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import tarfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ValidationError

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.download_progress import ProgressReporter
from llorch_tui.pool.hashing import CHUNK, FileHasher
from llorch_tui.pool.models_ops import store_of
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.protocol.params import ExportParams, ImportParams
from llorch_tui.pool.receive import Incoming, check_file_name, refuse_overwrite, same_files
from llorch_tui.pool.transfer_ops import manifest
from llorch_tui.protocol.catalog import ModelEntry, ModelOrigin, validate_model_id
from llorch_tui.protocol.transfer import ArchiveResult

ARCHIVE_FORMAT = "llorch-model-archive"
ARCHIVE_VERSION = 1
MANIFEST_NAME = "llorch-model.json"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_FILES = 1000


def _refuse(path: str, why: str) -> LlorchError:
    return LlorchError(ErrorCode.BAD_REQUEST, f"refusing archive {path}: {why}",
                       "only import archives made by `llorch-pool models export`; this one is damaged or hostile",
                       file=path)


class _HashingReader:
    """Feeds tarfile the bytes of a model file while hashing them: what is archived is what was checked."""

    def __init__(self, fh: IO[bytes], size: int, progress: ProgressReporter, cancelled: threading.Event) -> None:
        self.fh, self.hasher, self.progress, self.cancelled = fh, FileHasher(size), progress, cancelled

    def read(self, n: int = -1) -> bytes:
        if self.cancelled.is_set():
            raise LlorchError(ErrorCode.CANCELLED, "export cancelled; the partial archive was deleted")
        data = self.fh.read(n)
        self.hasher.update(data)
        self.progress.add_bytes(len(data))
        return data


def export_model(ctx: OpContext, p: ExportParams) -> ArchiveResult:
    entry = manifest(store_of(ctx), p.id, ctx.cancelled)
    out = Path(p.file).expanduser()
    if out.exists() and not p.force:
        raise LlorchError(ErrorCode.ALREADY_EXISTS, f"{out} exists", "pass --force to replace it, or choose another file")
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.part")
    doc = {"format": ARCHIVE_FORMAT, "version": ARCHIVE_VERSION, "entry": entry.model_dump(mode="json"),
           "files": [f.model_dump(mode="json") for f in entry.files]}
    raw = json.dumps(doc, indent=1).encode()
    progress = reporter(ctx, entry)
    base = Path(entry.path).expanduser()
    try:
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size, info.mtime, info.mode = len(raw), int(time.time()), 0o644
            tar.addfile(info, _BytesReader(raw))
            for f in entry.files:
                info = tarfile.TarInfo(f"files/{f.name}")
                info.size, info.mtime, info.mode = f.size, int(time.time()), 0o644
                progress.send("downloading", file=f.name, force=True)
                with (base / f.name).open("rb") as fh:
                    reader = _HashingReader(fh, f.size, progress, ctx.cancelled)
                    tar.addfile(info, reader)
                sha = reader.hasher.sha256.hexdigest()
                if sha != f.sha256:
                    raise LlorchError(ErrorCode.CHECKSUM_MISMATCH, f"{base / f.name} changed on disk: sha256 {sha}, "
                                      f"the catalog says {f.sha256}",
                                      f"`llorch-pool models verify {p.id}`; download it again before exporting")
                progress.file_done(f.name)
        with part.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(part, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    progress.send("done", force=True)
    return ArchiveResult(model=entry, file=str(out), bytes=out.stat().st_size)


def reporter(ctx: OpContext, entry: ModelEntry) -> ProgressReporter:
    """Download-shaped progress events, so every byte-moving command shares one progress bar."""
    rep = ProgressReporter(ctx.emit, entry.id)
    rep.plan(len(entry.files), sum(f.size for f in entry.files), 0)
    return rep


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        chunk, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return chunk


def _read_manifest(tar: tarfile.TarFile, path: str) -> tuple[ModelEntry, dict[str, Any]]:
    first = tar.next()
    if first is None or first.name != MANIFEST_NAME:
        raise _refuse(path, f"its first member must be {MANIFEST_NAME}")
    if not first.isreg() or first.size > MAX_MANIFEST_BYTES:
        raise _refuse(path, f"{MANIFEST_NAME} is not a regular file under {MAX_MANIFEST_BYTES} bytes")
    fh = tar.extractfile(first)
    assert fh is not None
    try:
        doc = json.loads(fh.read())
        if doc.get("format") != ARCHIVE_FORMAT:
            raise _refuse(path, f"it is not a {ARCHIVE_FORMAT}")
        if int(doc.get("version", 0)) > ARCHIVE_VERSION:
            raise LlorchError(ErrorCode.CATALOG_TOO_NEW, f"archive {path} has version {doc.get('version')}; this "
                              f"llorch reads up to {ARCHIVE_VERSION}", "upgrade llorch on this pool")
        entry = ModelEntry.model_validate(doc["entry"])
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise _refuse(path, f"{MANIFEST_NAME} is not a valid manifest ({type(exc).__name__})") from None
    if not entry.files or len(entry.files) > MAX_FILES:
        raise _refuse(path, f"it lists {len(entry.files)} files (1 to {MAX_FILES} expected)")
    names = [check_file_name(f.name) for f in entry.files]
    if len(set(names)) != len(names):
        raise _refuse(path, "a file is listed twice")
    if any(f.size < 0 or not f.sha256 for f in entry.files):
        raise _refuse(path, "a file has no sha256 or a negative size")
    return entry, doc


def import_model(ctx: OpContext, p: ImportParams) -> ArchiveResult:
    path = str(Path(p.file).expanduser())
    try:
        tar = tarfile.open(path, "r|*")  # a stream: members are read in order, never seeked or listed ahead
    except FileNotFoundError:
        raise LlorchError(ErrorCode.NOT_FOUND, f"no archive at {path}", "give the path on this pool") from None
    except (tarfile.TarError, OSError) as exc:
        raise _refuse(path, f"not a tar archive ({exc})") from None
    with tar:
        try:
            return _import_members(ctx, p, tar, path)
        except tarfile.TarError as exc:
            raise _refuse(path, f"the tar stream is damaged ({exc})") from None


def _import_members(ctx: OpContext, p: ImportParams, tar: tarfile.TarFile, path: str) -> ArchiveResult:
    entry, _ = _read_manifest(tar, path)
    if p.id:
        entry = entry.model_copy(update={"id": validate_model_id(p.id)})
    validate_model_id(entry.id)
    store = store_of(ctx)
    current = store.load().get(entry.id)
    if same_files(current, entry.files, ctx.settings.paths):
        assert current is not None
        return ArchiveResult(model=current, file=path, bytes=0, noop=True)
    refuse_overwrite(current, entry.id, ctx.settings.pool_id, p.force)
    inc = Incoming(ctx.settings.paths, entry.id)
    inc.acquire()
    try:
        inc.begin(entry, ModelOrigin(kind="archive", file=path))  # checks free disk against the manifest's sizes
        expected = {f.name: f for f in entry.files}
        seen: set[str] = set()
        progress = reporter(ctx, entry)
        while (member := tar.next()) is not None:  # not `for m in tar`: that yields the manifest again
            ctx.check_cancelled()
            name = member.name[len("files/"):] if member.name.startswith("files/") else None
            if name is None or name not in expected or name in seen:
                raise _refuse(path, f"unexpected member {member.name!r}")
            if not member.isreg():
                raise _refuse(path, f"{member.name} is a link or special file, not a regular file")
            if member.size != expected[name].size:
                raise _refuse(path, f"{member.name} is {member.size} bytes, the manifest says {expected[name].size}")
            seen.add(name)
            progress.send("downloading", file=name, force=True)
            if not (inc.dir / name).is_file():  # verified by an earlier, interrupted import of the same archive
                _receive(inc, name, tar.extractfile(member), member.size, progress, ctx.cancelled)
                inc.finish_file(name)
            progress.file_done(name)
        missing = sorted(set(expected) - seen)
        if missing:
            raise _refuse(path, f"it ends before {', '.join(missing)}")
        model = inc.commit(store)
    finally:
        inc.release()
    progress.send("done", force=True)
    return ArchiveResult(model=model, file=path, bytes=sum(f.size for f in entry.files))


def _receive(inc: Incoming, name: str, fh: IO[bytes] | None, size: int, progress: ProgressReporter,
             cancelled: threading.Event) -> None:
    assert fh is not None
    part = inc.part(name)
    part.unlink(missing_ok=True)  # an archive is read in one pass: no resume from an earlier attempt
    with part.open("wb") as out:
        left = size
        while left:
            if cancelled.is_set():
                raise LlorchError(ErrorCode.CANCELLED, "import cancelled", "run it again")
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                raise LlorchError(ErrorCode.BAD_REQUEST, f"archive ends inside {name}", "the archive is truncated")
            out.write(chunk)
            left -= len(chunk)
            progress.add_bytes(len(chunk))


@op(ops.MODELS_EXPORT, summary="write a downloaded model into one archive file")
async def models_export(ctx: OpContext, p: ExportParams) -> ArchiveResult:
    return await _threaded(ctx, export_model, p)


@op(ops.MODELS_IMPORT, summary="verify and install a model from an archive file")
async def models_import(ctx: OpContext, p: ImportParams) -> ArchiveResult:
    return await _threaded(ctx, import_model, p)


async def _threaded(ctx: OpContext, fn: Any, p: BaseModel) -> ArchiveResult:
    """Run in a thread; a cancel sets the flag and returns only once the thread stopped writing."""
    worker = asyncio.ensure_future(asyncio.to_thread(fn, ctx, p))
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        ctx.cancelled.set()
        try:
            await worker
        except BaseException:  # noqa: BLE001 - the cancel is what we report
            pass
        raise
