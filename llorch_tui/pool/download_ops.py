"""`models.download`: fetch a registered model from the Hub or a mirror, resumable, verified, then catalogued.

Where bytes live while downloading: `STATE/downloads/<id>/<file>.part`, then, once its hash matched,
`STATE/downloads/<id>/<file>` (named in `.manifest.json` with its sha256). Only when every file is
verified are they moved into the model directory and the catalog updated in one locked edit, so a
failed or cancelled download changes neither the model directory nor the catalog, and the next
attempt continues from the bytes on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path

from filelock import FileLock, Timeout

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fsutil import save_state_file
from llorch_tui.paths import PoolPaths
from llorch_tui.pool import hub_fetch
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.pool.download_progress import ProgressReporter
from llorch_tui.pool.hub_fetch import RemoteFile, RepoPlan, RetryPolicy
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.protocol.catalog import ModelEntry, ModelFile, validate_model_id
from llorch_tui.protocol.downloads import DownloadResult
from llorch_tui.protocol.params import DownloadParams
from llorch_tui.units import fmt_bytes

MANIFEST = ".manifest.json"
LOCK_WAIT_S = 5.0
DISK_MARGIN_BYTES = 64 * 1024 * 1024  # a model dir at 100% full breaks everything else on the pool


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or would: its nearest existing parent)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def model_target(paths: PoolPaths, entry: ModelEntry) -> Path:
    return Path(entry.path).expanduser() if entry.path else paths.model_dir(entry.id)


def already_downloaded(entry: ModelEntry, target: Path) -> bool:
    if not entry.downloaded or not entry.files:
        return False
    for f in entry.files:
        p = target / f.name
        if not p.is_file() or p.stat().st_size != f.size:
            return False
    return True


class Staging:
    """The per-model download area and its manifest of verified files (name -> sha256)."""

    def __init__(self, paths: PoolPaths, model_id: str) -> None:
        self.dir = paths.downloads_dir / model_id
        self.manifest_file = self.dir / MANIFEST
        self.lock = FileLock(str(paths.downloads_dir / f"{model_id}.lock"))

    def load(self, plan: RepoPlan) -> dict[str, str]:
        """Verified files of an earlier attempt at the same commit; anything else is stale and wiped."""
        try:
            doc = json.loads(self.manifest_file.read_text())
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict) or doc.get("repo") != plan.repo or doc.get("commit") != plan.commit:
            if self.dir.exists():
                shutil.rmtree(self.dir)
            self.dir.mkdir(parents=True)
            self.save(plan, {})
            return {}
        verified = doc.get("verified") or {}
        sizes = {f.name: f.size for f in plan.files}
        return {n: h for n, h in verified.items()
                if n in sizes and (self.dir / n).is_file() and (self.dir / n).stat().st_size == sizes[n]}

    def save(self, plan: RepoPlan, verified: dict[str, str]) -> None:
        save_state_file(self.manifest_file, json.dumps(
            {"repo": plan.repo, "commit": plan.commit, "endpoint": plan.endpoint, "verified": verified}, indent=1),
            "download manifest")

    def part(self, name: str) -> Path:
        return self.dir / f"{name}.part"

    def on_disk(self, rf: RemoteFile, verified: dict[str, str]) -> int:
        if rf.name in verified:
            return rf.size
        p = self.part(rf.name)
        return min(p.stat().st_size, rf.size) if p.exists() else 0


def check_disk(model_id: str, need: int, staging_dir: Path, target: Path, total: int) -> None:
    free_stage = free_bytes(staging_dir)
    checks = [(staging_dir, need, free_stage)]
    stage_dev = os.stat(_existing(staging_dir)).st_dev
    if os.stat(_existing(target)).st_dev != stage_dev:  # moved by copying: the target needs room for all of it
        checks.append((target, total, free_bytes(target)))
    for where, needed, free in checks:
        if needed + DISK_MARGIN_BYTES > free:
            raise LlorchError(
                ErrorCode.DISK_FULL,
                f"not enough disk space for {model_id}: it needs {fmt_bytes(needed)} more in {where}, only {fmt_bytes(free)} free",
                "free some space (`llorch-pool models rm ID` removes a model's files) or point --models-dir / "
                "LLORCH_MODELS_DIR at a larger disk", need_bytes=needed, free_bytes=free, path=str(where))


def _existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _move_into(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: other filesystem -> copy beside the target, then rename
            raise
        tmp = dst.with_name(f".{dst.name}.llorch-tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        src.unlink()


def run_download(ctx: OpContext, p: DownloadParams) -> DownloadResult:
    """The blocking body of models.download (runs in a thread)."""
    validate_model_id(p.id)
    paths = ctx.settings.paths
    store = CatalogStore(paths, ctx.settings.pool_id)
    entry = store.get(p.id)
    target = model_target(paths, entry)
    if not p.force and (p.revision is None or p.revision == entry.revision) and already_downloaded(entry, target):
        total = sum(f.size for f in entry.files)
        return DownloadResult(model=entry, noop=True, bytes_total=total, files=[f.name for f in entry.files])
    repo = entry.metadata.repo
    if not repo:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"model {p.id!r} has no repository to download from",
                          f"set one: `llorch-pool models update {p.id} --repo OWNER/NAME`", model=p.id)
    endpoint = hub_fetch.resolve_endpoint(p.endpoint, ctx.settings.hf_endpoint)
    reporter = ProgressReporter(ctx.emit, p.id, endpoint)
    reporter.send("resolving", force=True)
    plan = hub_fetch.plan_download(repo, endpoint, p.revision or entry.revision)
    if not p.force and plan.commit == entry.revision and already_downloaded(entry, target):
        # --revision main on a model already at main's commit: nothing to fetch
        return DownloadResult(model=entry, noop=True, bytes_total=sum(f.size for f in entry.files),
                              endpoint=endpoint, files=[f.name for f in entry.files])
    if plan.gated and not hub_fetch.have_token(endpoint):
        raise hub_fetch.gated_error(repo, endpoint)
    paths.downloads_dir.mkdir(parents=True, exist_ok=True)
    staging = Staging(paths, p.id)
    try:
        # A few seconds: a download cancelled a moment ago is still letting go of its lock.
        staging.lock.acquire(timeout=LOCK_WAIT_S)
    except Timeout:
        raise LlorchError(ErrorCode.ALREADY_EXISTS, f"a download of {p.id} is already running on this pool",
                          "wait for it to finish (its progress shows in the dashboard)", model=p.id) from None
    try:
        return _download_locked(ctx, p, store, entry, target, plan, staging, reporter)
    finally:
        staging.lock.release()


def _download_locked(ctx: OpContext, p: DownloadParams, store: CatalogStore, entry: ModelEntry, target: Path,
                     plan: RepoPlan, staging: Staging, reporter: ProgressReporter) -> DownloadResult:
    verified = staging.load(plan)
    on_disk = sum(staging.on_disk(rf, verified) for rf in plan.files)
    check_disk(p.id, plan.bytes_total - on_disk, staging.dir, target, plan.bytes_total)
    reporter.plan(len(plan.files), plan.bytes_total, on_disk)
    reporter.state.files_done = len(verified)
    reporter.send("downloading", file=plan.files[0].name, force=True)  # the total, before the first byte
    policy = RetryPolicy(p.stall_s, p.max_attempts, p.backoff_s)
    fetched_total, resumed_total = 0, sum(rf.size for rf in plan.files if rf.name in verified)
    for rf in plan.files:
        ctx.check_cancelled()
        if rf.name in verified:
            continue
        part = staging.part(rf.name)
        reporter.send("downloading", file=rf.name)

        def on_retry(attempt: int, delay: float, why: str, name: str = rf.name) -> None:
            reporter.send("retrying", file=name, attempt=attempt, message=f"{why}; retrying in {delay:.1f}s",
                          force=True)

        fetched, resumed, sha = hub_fetch.fetch_file(plan, rf, part, on_bytes=reporter.add_bytes, on_retry=on_retry,
                                                     cancelled=ctx.cancelled, policy=policy)
        fetched_total += fetched
        resumed_total += resumed
        os.replace(part, staging.dir / rf.name)
        verified[rf.name] = sha
        staging.save(plan, verified)
        reporter.file_done(rf.name)
    ctx.check_cancelled()
    model = _commit(store, entry, target, plan, staging, verified)
    reporter.send("done", force=True)
    return DownloadResult(model=model, bytes_fetched=fetched_total, bytes_total=plan.bytes_total,
                          bytes_resumed=resumed_total, endpoint=plan.endpoint,
                          files=[f.name for f in plan.files])


def _commit(store: CatalogStore, entry: ModelEntry, target: Path, plan: RepoPlan, staging: Staging,
            verified: dict[str, str]) -> ModelEntry:
    """Move verified files into the model directory, then record them in one locked catalog edit."""
    new_names = {rf.name for rf in plan.files}
    for rf in plan.files:
        _move_into(staging.dir / rf.name, target / rf.name)
    for old in entry.files:  # files of the previous revision that the new one no longer has
        stale = (target / old.name).resolve()
        if old.name not in new_names and stale.is_file() and stale.parent == target.resolve():
            stale.unlink()
    files = [ModelFile(name=rf.name, size=rf.size, sha256=verified[rf.name]) for rf in plan.files]
    with store.edit() as catalog:
        current = catalog.get(entry.id)
        if current is None:
            raise LlorchError(ErrorCode.NOT_FOUND, f"model {entry.id!r} was unregistered while it downloaded",
                              f"the files are in {target}; register it again to use them", model=entry.id)
        current.downloaded = True
        current.path = str(target)
        current.files = files
        current.size_gb = round(plan.bytes_total / 1e9, 3)
        current.revision = plan.commit
        current.source = "hub" if hub_fetch.is_hub(plan.endpoint) else "mirror"
        current.metadata.repo = plan.repo
        result = current.model_copy(deep=True)
    shutil.rmtree(staging.dir, ignore_errors=True)
    return result


@op(ops.MODELS_DOWNLOAD, summary="download a registered model's safetensors, json and tokenizer files (resumable, sha256-verified)")
async def download(ctx: OpContext, p: DownloadParams) -> DownloadResult:
    worker = asyncio.ensure_future(asyncio.to_thread(run_download, ctx, p))
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        ctx.cancelled.set()  # the thread stops within one chunk and keeps its .part
        with contextlib.suppress(BaseException):
            await worker  # return only once nothing writes any more (the lock is released)
        raise


# models.verify and models.rm live beside the download; importing registers them.
from llorch_tui.pool import model_files_ops as _model_files_ops  # noqa: E402,F401

__all__ = ["download", "run_download", "free_bytes"]
