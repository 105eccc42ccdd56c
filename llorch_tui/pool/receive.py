"""Model files arriving from elsewhere (another pool, an archive): staged, verified, then moved into place.

The staging area is `downloads/ID.incoming/`: one `NAME.part` per file being received, and
`incoming.json` naming what is expected (every file's size and sha256, and where it comes from).
A second attempt with the same expectation continues from the bytes already there (a killed copy
resumes); a different one wipes the area first. Each file is hashed when complete and must match
the sender's catalog: a byte damaged on the way is caught, the part deleted, and the error says so.
Only when every file verified is the directory renamed into the models dir and the catalog updated
in one locked edit, so a model is either complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fsutil import save_state_file
from llorch_tui.paths import PoolPaths
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.pool.download_ops import DISK_MARGIN_BYTES, free_bytes
from llorch_tui.pool.hashing import hash_file
from llorch_tui.protocol.parity import WEIGHT_SUFFIXES, Fingerprint, weights_digest
from llorch_tui.protocol.catalog import MODEL_ID_RE, ModelEntry, ModelFile, ModelOrigin, validate_model_id
from llorch_tui.units import fmt_bytes

INCOMING = "incoming.json"
LOCK_WAIT_S = 15.0


def check_file_name(name: str) -> str:
    """A model file name as the catalog keeps them: one path component, our id alphabet plus what tokenizers use."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or "\0" in name \
            or len(name) > 255 or not MODEL_ID_RE.match(name.replace("+", "_")):
        raise LlorchError(ErrorCode.BAD_REQUEST, f"refusing file name {name!r}",
                          "model files are plain names in the model's directory (no paths, no leading dot)")
    return name


def expected_files(entry: ModelEntry) -> list[ModelFile]:
    """The sender's files, each with a sha256 (what the receiver verifies against)."""
    missing = [f.name for f in entry.files if not f.sha256]
    if not entry.files or missing:
        raise LlorchError(ErrorCode.MODEL_INVALID,
                          f"model {entry.id} has no sha256 for {', '.join(missing) or 'any file'} in its catalog",
                          f"run `llorch-pool models verify {entry.id}` on the pool that has it (records the hashes)")
    for f in entry.files:
        check_file_name(f.name)
    return entry.files


class Incoming:
    def __init__(self, paths: PoolPaths, model_id: str, *, any_thread: bool = False) -> None:
        """`any_thread`: the lock may be released by another thread than the one that took it (an async op
        that holds it across awaits); filelock's default ties a lock to its thread."""
        self.paths = paths
        self.id = validate_model_id(model_id)
        self.dir = paths.downloads_dir / f"{model_id}.incoming"
        self.doc_file = self.dir / INCOMING
        self.lock = FileLock(str(paths.downloads_dir / f"{model_id}.lock"), thread_local=not any_thread)

    def acquire(self) -> None:
        self.paths.downloads_dir.mkdir(parents=True, exist_ok=True)
        try:
            # Briefly: the agent of a copy that was just killed may still be finishing its last chunk.
            self.lock.acquire(timeout=LOCK_WAIT_S)
        except Timeout:
            raise LlorchError(ErrorCode.ALREADY_EXISTS, f"model {self.id} is being received or downloaded on this pool "
                              "by another process", "wait for it to finish (or stop it), then retry") from None

    def release(self) -> None:
        self.lock.release()

    def _doc(self) -> dict | None:
        try:
            doc = json.loads(self.doc_file.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def begin(self, entry: ModelEntry, origin: ModelOrigin) -> dict[str, int]:
        """Prepare to receive `entry`'s files; returns the bytes already here per file (resume points)."""
        files = expected_files(entry)
        want = {"id": entry.id, "files": [f.model_dump(mode="json") for f in files]}
        doc = self._doc()
        if doc is None or doc.get("expect") != want:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
        total = sum(f.size for f in files)
        have = {f.name: self.have(f) for f in files}
        need = total - sum(have.values())
        free = free_bytes(self.dir)
        if need + DISK_MARGIN_BYTES > free:
            raise LlorchError(ErrorCode.DISK_FULL, f"not enough disk space for {entry.id}: it needs {fmt_bytes(need)} "
                              f"more in {self.dir}, only {fmt_bytes(free)} free",
                              "free some space (`llorch-pool models rm ID`) or point --models-dir at a larger disk",
                              need_bytes=need, free_bytes=free)
        save_state_file(self.doc_file, json.dumps({"expect": want, "entry": entry.model_dump(mode="json"),
                                                   "origin": origin.model_dump(mode="json")}, indent=1),
                        "incoming manifest")
        return have

    def expected(self) -> dict[str, ModelFile]:
        doc = self._doc()
        if doc is None:
            raise LlorchError(ErrorCode.BAD_REQUEST, f"nothing is being received for {self.id}",
                              "start with models.receive_begin (llorch models copy does)")
        return {f["name"]: ModelFile.model_validate(f) for f in doc["expect"]["files"]}

    def part(self, name: str) -> Path:
        return self.dir / f"{check_file_name(name)}.part"

    def have(self, f: ModelFile) -> int:
        if (self.dir / f.name).is_file():
            return f.size  # verified already (renamed from .part after its hash matched)
        p = self.part(f.name)
        size = p.stat().st_size if p.exists() else 0
        if size > f.size:  # longer than the file can be: not ours to trust
            p.unlink()
            return 0
        return size

    def write(self, name: str, offset: int, data: bytes) -> int:
        """Append at `offset`, which must be where the part ends (an overlap or a gap is refused)."""
        f = self.expected().get(name)
        if f is None:
            raise LlorchError(ErrorCode.BAD_REQUEST, f"{name} is not a file of {self.id}")
        part = self.part(name)
        size = part.stat().st_size if part.exists() else 0
        if offset != size:
            raise LlorchError(ErrorCode.BAD_REQUEST, f"{name}: chunk at byte {offset}, but {size} bytes are here",
                              "restart the copy: it resumes from the bytes already received", have=size)
        if offset + len(data) > f.size:
            raise LlorchError(ErrorCode.BAD_REQUEST, f"{name}: {offset + len(data)} bytes is more than its {f.size}")
        with part.open("ab") as out:
            out.write(data)
        return offset + len(data)

    def finish_file(self, name: str) -> str:
        """Hash the complete part against the sender's sha256; rename it to its name, or delete it and fail."""
        f = self.expected().get(name)
        if f is None:
            raise LlorchError(ErrorCode.BAD_REQUEST, f"{name} is not a file of {self.id}")
        done = self.dir / name
        if done.is_file():
            return f.sha256 or ""
        part = self.part(name)
        size = part.stat().st_size if part.exists() else 0
        if size != f.size:
            raise LlorchError(ErrorCode.BAD_REQUEST, f"{name}: {size} of {f.size} bytes received",
                              "send the rest first (llorch models copy resumes)")
        with part.open("rb+") as fh:
            os.fsync(fh.fileno())
        sha, _ = hash_file(part)
        if sha != (f.sha256 or "").lower():
            part.unlink()
            raise LlorchError(ErrorCode.CHECKSUM_MISMATCH,
                              f"{self.id}/{name}: sha256 mismatch after transfer: expected {f.sha256}, got {sha}",
                              "the bytes were damaged on the way (or the source changed); the file was discarded: "
                              "run the copy again", file=name, expected=f.sha256, actual=sha)
        os.replace(part, done)
        return sha

    def commit(self, store: CatalogStore) -> ModelEntry:
        """Every file verified: move the directory into place and record the entry (with its origin)."""
        doc = self._doc()
        expected = self.expected()
        missing = [n for n in expected if not (self.dir / n).is_file()]
        if doc is None or missing:
            raise LlorchError(ErrorCode.BAD_REQUEST, f"{self.id}: not every file is verified yet ({', '.join(missing)})",
                              "finish the copy first")
        sender = ModelEntry.model_validate(doc["entry"])
        origin = ModelOrigin.model_validate(doc["origin"])
        target = self.paths.model_dir(self.id)
        for child in self.dir.iterdir():  # leftovers (a stale part) must not end up in the model
            if child.name not in expected and child.name != INCOMING:
                child.unlink()
        with store.edit() as catalog:
            current = catalog.get(self.id)
            if target.exists():
                shutil.rmtree(target)  # an earlier, incomplete or superseded copy of the same id (checked at begin)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.unlink(self.doc_file)
            os.replace(self.dir, target)
            entry = sender.model_copy(deep=True, update={
                "path": str(target), "downloaded": True, "files": list(expected.values()),
                "size_gb": round(sum(f.size for f in expected.values()) / 1e9, 3),
                # Verdicts and peaks were measured on the sender's hardware, not here.
                "verdicts": current.verdicts if current else {}, "peak_memory": current.peak_memory if current else {},
                "fingerprint": reference_after_copy(sender, current, list(expected.values())),
                "origin": origin.model_copy(update={"at": datetime.now(timezone.utc)})})
            ids = [m.id for m in catalog.models]
            if self.id in ids:
                catalog.models[ids.index(self.id)] = entry
            else:
                catalog.models.append(entry)
        return entry


def reference_after_copy(sender: ModelEntry, current: ModelEntry | None, files: list[ModelFile]) -> Fingerprint | None:
    """The reference fingerprint a copied model keeps. One model has one reference across the fleet: the
    receiver's own runs are compared against it, and a copy never re-baselines it.
    1. the receiver's reference, when it was recorded from exactly these weights (it stays: a copy of the
       same weights does not replace it with the sender's);
    2. else the sender's (recorded_on says where; should the sender's weights differ from it, the receiver's
       runs report the same change the sender's would);
    3. else the receiver's earlier one (of other weights: its runs report the change, and `models fingerprint
       ID --accept` re-baselines). A reference is never dropped silently."""
    mine = current.fingerprint if current else None
    weights = weights_digest((f.name, f.sha256 or "") for f in files if f.name.endswith(WEIGHT_SUFFIXES))
    if mine is not None and mine.weights_sha256 == weights:
        return mine
    return sender.fingerprint or mine


def same_files(entry: ModelEntry | None, files: list[ModelFile], paths: PoolPaths) -> bool:
    """This pool already holds exactly these files for the id (a copy or import would change nothing)."""
    if entry is None or not entry.downloaded:
        return False
    mine = {f.name: (f.size, f.sha256) for f in entry.files}
    if mine != {f.name: (f.size, f.sha256) for f in files}:
        return False
    base = Path(entry.path).expanduser()
    return all((base / f.name).is_file() and (base / f.name).stat().st_size == f.size for f in files)


def refuse_overwrite(entry: ModelEntry | None, model_id: str, pool_id: str, force: bool) -> None:
    if entry is not None and entry.downloaded and not force:
        raise LlorchError(ErrorCode.ALREADY_EXISTS,
                          f"pool {pool_id} already has different files for {model_id} at {entry.path}",
                          "pass --force to replace them (the old files are deleted), or use another id")
