"""What the mirror serves: every downloaded model of the pool's catalog as a Hub-style repository.

Repo id: the entry's `metadata.repo` (a model downloaded from `Qwen/Qwen2.5-0.5B-Instruct` is served
under that name, so another pool registers the same repo and only changes its endpoint), or
`llorch/<id>` for a model without one (synthetic or local checkpoints).

Files follow the Hub's default .gitattributes: weights and other binaries (and anything >= 10 MiB)
are "LFS" files, published with their sha256; small text files are "git" files, identified by their
git blob sha1, exactly as the Hub does. Names come from the catalog (or, failing that, the model
directory's top-level files) and are looked up in a dict: a request can never name a path on disk.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from llorch_tui.errors import LlorchError
from llorch_tui.paths import PoolPaths
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.pool.hashing import git_blob_sha1, hash_file, lfs_pointer
from llorch_tui.pool.hub_fetch import select_files
from llorch_tui.protocol.catalog import ModelEntry

log = logging.getLogger("llorch.pool.mirror")
LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".pt", ".pth", ".msgpack", ".h5", ".onnx", ".gguf", ".ckpt")
LFS_MIN_SIZE = 10 * 1024 * 1024
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def repo_id_for(entry: ModelEntry) -> str:
    return entry.metadata.repo or f"llorch/{entry.id}"


@dataclass
class MirrorFile:
    name: str
    path: Path
    size: int
    lfs: bool
    sha256: str | None = None  # LFS files: from the catalog, or measured once
    git_sha1: str | None = None  # git files: blob id of the content

    @property
    def pointer(self) -> bytes:
        assert self.sha256 is not None
        return lfs_pointer(self.sha256, self.size)

    @property
    def blob_id(self) -> str:
        return git_blob_sha1(self.pointer) if self.lfs else str(self.git_sha1)

    @property
    def etag(self) -> str:
        return str(self.sha256) if self.lfs else str(self.git_sha1)


@dataclass
class MirrorRepo:
    repo: str
    model_id: str
    directory: Path
    commit: str
    files: dict[str, MirrorFile]
    last_modified: float = 0.0

    def has_revision(self, rev: str) -> bool:
        return rev in ("main", self.commit)


@dataclass
class MirrorIndex:
    paths: PoolPaths
    pool_id: str
    # Serve only these model ids (a copy's one-model mirror); None: every downloaded model.
    only: frozenset[str] | None = None
    _repos: dict[str, MirrorRepo] = field(default_factory=dict)
    _stamp: tuple[int, int] | None = None
    # (path, size, mtime_ns) -> (sha256, git sha1): a restart of the index never re-hashes an unchanged file
    _hashes: dict[tuple[str, int, int], tuple[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def repos(self) -> dict[str, MirrorRepo]:
        """The current repos; rebuilt when catalog.json changed (a model downloaded or removed meanwhile)."""
        with self._lock:
            try:
                st = self.paths.catalog.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = (0, 0)
            if stamp != self._stamp:
                try:
                    self._repos = self._build()
                except LlorchError as exc:
                    # A catalog damaged while serving (edited by hand, disk trouble) must not turn
                    # every request into an error: keep serving what was last read, say so once.
                    if self._stamp is None:
                        raise
                    log.warning("%s; still serving the models of the last readable catalog", exc.message)
                self._stamp = stamp
            return self._repos

    def _hash(self, path: Path) -> tuple[str, str]:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = hash_file(path)
        return self._hashes[key]

    def _build(self) -> dict[str, MirrorRepo]:
        catalog = CatalogStore(self.paths, self.pool_id).load()
        repos: dict[str, MirrorRepo] = {}
        for entry in catalog.models:
            if not entry.downloaded or (self.only is not None and entry.id not in self.only):
                continue
            repo = self._repo(entry)
            if repo is not None and repo.files:
                repos[repo.repo] = repo
        return repos

    def _repo(self, entry: ModelEntry) -> MirrorRepo | None:
        directory = Path(entry.path).expanduser() if entry.path else self.paths.model_dir(entry.id)
        if not directory.is_dir():
            return None
        root = directory.resolve()
        recorded = {f.name: f for f in entry.files}
        names = list(recorded) or select_files(sorted(p.name for p in directory.iterdir() if p.is_file()))
        files: dict[str, MirrorFile] = {}
        newest = 0.0
        for name in names:
            path = directory / name
            real = path.resolve()
            if not real.is_file() or root not in real.parents:  # a link out of the model dir is not served
                continue
            st = real.stat()
            newest = max(newest, st.st_mtime)
            lfs = name.endswith(LFS_SUFFIXES) or st.st_size >= LFS_MIN_SIZE
            rec = recorded.get(name)
            mf = MirrorFile(name=name, path=real, size=st.st_size, lfs=lfs)
            if lfs:
                # The catalog's sha256 was measured when the file was verified; trusting it spares
                # re-reading gigabytes at every start. A file damaged since is then caught by the client.
                mf.sha256 = rec.sha256 if rec and rec.sha256 and rec.size == st.st_size else self._hash(real)[0]
            else:
                mf.sha256, mf.git_sha1 = self._hash(real)
            files[name] = mf
        commit = entry.revision if entry.revision and SHA_RE.match(entry.revision) else _synthetic_commit(entry, files)
        return MirrorRepo(repo_id_for(entry), entry.id, directory, commit, files, newest)


def _synthetic_commit(entry: ModelEntry, files: dict[str, MirrorFile]) -> str:
    """A stable 40-hex commit id for content that never had one (synthetic models): changes when a file does."""
    h = hashlib.sha1(f"llorch-mirror\n{entry.id}\n".encode())
    for name in sorted(files):
        f = files[name]
        h.update(f"{name} {f.size} {f.etag}\n".encode())
    return h.hexdigest()


