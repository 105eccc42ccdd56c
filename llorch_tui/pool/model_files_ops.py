"""`models.verify` (hashes + a load check) and `models.rm` (delete a model's files, never outside its place)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from pathlib import Path


from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.pool.hashing import hash_file
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.protocol.catalog import ModelEntry, validate_model_id
from llorch_tui.protocol.downloads import RemoveResult, VerifyProblem, VerifyResult
from llorch_tui.pool.child_env import child_env
from llorch_tui.protocol.params import RmParams, VerifyParams

LOAD_TIMEOUT_BASE_S = 300.0
LOAD_TIMEOUT_PER_GB_S = 60.0


def _target(ctx: OpContext, entry: ModelEntry) -> Path:
    """The directory holding the catalogued files (a GGUF served as-is is a file: its folder)."""
    path = Path(entry.path).expanduser() if entry.path else ctx.settings.paths.model_dir(entry.id)
    return path.parent if path.is_file() else path


def check_gguf_source(entry: ModelEntry, ctx: OpContext) -> list[VerifyProblem]:
    """A converted GGUF's source file, when still on disk, must be the bytes it was converted from."""
    src = entry.gguf
    if src is None or not src.converted:
        return []  # unconverted: the GGUF is in entry.files and checked there
    path = Path(src.path)
    if not path.is_file():
        return []  # deleted after import: the converted checkpoint still serves
    sha, _ = hash_file(path, ctx.cancelled)
    ctx.check_cancelled()
    if sha != src.sha256:
        return [VerifyProblem(file=str(path), problem=f"the source GGUF changed since it was converted (sha256 {sha}, "
                              f"the catalog says {src.sha256}); the converted weights are the old ones: unregister "
                              "and register it again to convert the new file")]
    return []


def check_hashes(entry: ModelEntry, target: Path, ctx: OpContext) -> list[VerifyProblem]:
    problems: list[VerifyProblem] = []
    if not entry.files:
        problems.append(VerifyProblem(file="(catalog)", problem="the catalog lists no files for this model; "
                                      "download it again with --force to record them"))
    for f in entry.files:
        ctx.check_cancelled()
        path = target / f.name
        if not path.is_file():
            problems.append(VerifyProblem(file=f.name, problem=f"missing: {path} does not exist"))
            continue
        size = path.stat().st_size
        if size != f.size:
            problems.append(VerifyProblem(file=f.name, problem=f"size {size} bytes, the catalog says {f.size}"))
            continue
        if f.sha256 is None:
            problems.append(VerifyProblem(file=f.name, problem="no sha256 recorded; cannot check its content"))
            continue
        sha, _ = hash_file(path, ctx.cancelled)
        ctx.check_cancelled()
        if sha != f.sha256:
            problems.append(VerifyProblem(file=f.name, problem=f"sha256 mismatch: expected {f.sha256}, got {sha}"))
    return problems


async def load_check(target: Path, load: bool, size_gb: float) -> tuple[list[VerifyProblem], bool]:
    """Run the worker's checkpoint check in a subprocess (torch never enters the agent)."""
    argv = [sys.executable, "-m", "llorch_worker.check", "--model", str(target), "--json"]
    if load:
        argv.insert(-1, "--load")
    # Never the agent's stdin: under `serve --stdio` that is the protocol channel.
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=child_env())
    try:
        out, err = await asyncio.wait_for(proc.communicate(), LOAD_TIMEOUT_BASE_S + LOAD_TIMEOUT_PER_GB_S * size_gb)
    except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return [VerifyProblem(file="(load)", problem="the load check did not finish in time")], False
    try:
        # Imported here: the agent starts on a pool without llorch-worker (the check's exit then says so).
        from llorch_worker.api import CheckReport

        report = CheckReport.model_validate_json(out.decode().strip().splitlines()[-1])
    except (ImportError, ValueError, IndexError):  # not JSON, or not the check's document (a ValidationError)
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        return [VerifyProblem(file="(load)", problem=f"the check exited {proc.returncode}: {' | '.join(tail)}")], False
    problems = [VerifyProblem(file=p.file, problem=p.problem) for p in report.problems]
    return problems, load and proc.returncode == 0 and not problems


@op(ops.MODELS_VERIFY, summary="re-hash a downloaded model's files and check that it loads")
async def verify(ctx: OpContext, p: VerifyParams) -> VerifyResult:
    validate_model_id(p.id)
    entry = CatalogStore(ctx.settings.paths, ctx.settings.pool_id).get(p.id)
    if not entry.downloaded:
        raise LlorchError(ErrorCode.NOT_DOWNLOADED, f"model {p.id!r} is not downloaded on this pool",
                          f"download it first: `llorch-pool models download {p.id}`", model=p.id)
    target = _target(ctx, entry)
    problems = await asyncio.to_thread(check_hashes, entry, target, ctx)
    problems += await asyncio.to_thread(check_gguf_source, entry, ctx)
    loaded = False
    model = Path(entry.path).expanduser() if entry.path else target  # a directory, or a GGUF served as-is
    if model.exists():
        more, loaded = await load_check(model, p.load, entry.size_gb)
        problems += more
    return VerifyResult(model=p.id, ok=not problems, problems=problems, files_checked=len(entry.files), loaded=loaded)


def _inside(path: Path, root: Path) -> bool:
    path, root = path.resolve(), root.resolve()
    return path != root and root in path.parents


def remove_files(ctx: OpContext, entry: ModelEntry) -> int:
    """Delete the model's files. A directory inside the models dir goes whole; elsewhere only catalogued files."""
    paths = ctx.settings.paths
    target = _target(ctx, entry)
    freed = 0
    shutil.rmtree(paths.downloads_dir / entry.id, ignore_errors=True)
    if not target.exists():
        return 0
    if target.is_symlink():
        raise LlorchError(ErrorCode.BAD_REQUEST, f"{target} is a symbolic link; llorch does not delete through links",
                          "remove it by hand", path=str(target))
    if _inside(target, paths.models_dir):
        freed = sum(f.stat().st_size for f in target.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(target)
        return freed
    # A model registered at its own path (outside the models dir): only what the catalog says is ours.
    for f in entry.files:
        path = target / f.name
        if path.is_file() and not path.is_symlink() and _inside(path, target):
            freed += path.stat().st_size
            path.unlink()
    with contextlib.suppress(OSError):
        target.rmdir()  # only if now empty
    return freed


@op(ops.MODELS_RM, summary="delete a model's files; keep its catalog entry (downloaded=false) or drop it")
async def rm(ctx: OpContext, p: RmParams) -> ModelEntry | RemoveResult:
    validate_model_id(p.id)
    store = CatalogStore(ctx.settings.paths, ctx.settings.pool_id)
    entry = store.get(p.id)
    freed = await asyncio.to_thread(remove_files, ctx, entry)
    if not p.keep_entry:
        store.remove(p.id)
        return RemoveResult(removed=p.id, freed_bytes=freed, path=entry.path)
    with store.edit() as catalog:
        current = catalog.get(p.id)
        if current is None:
            return RemoveResult(removed=p.id, freed_bytes=freed, path=entry.path)
        current.downloaded = False
        result = current.model_copy(deep=True)
    return result
