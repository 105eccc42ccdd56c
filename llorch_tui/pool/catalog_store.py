"""A pool's `catalog.json`: read, and read-modify-write under a cross-process lock with an atomic save.

A file we cannot understand (bad JSON, wrong schema, a newer version written by a newer llorch)
is an error naming the file and is never written over: the operator decides what to do with it.
"""

from __future__ import annotations

import json
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import Timeout
from pydantic import ValidationError

from llorch_tui.config import SEED_PRESETS
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fsutil import file_lock, save_state_file
from llorch_tui.paths import PoolPaths
from llorch_tui.protocol.catalog import CATALOG_VERSION, Catalog, ModelEntry

LOCK_TIMEOUT_S = 60.0


def register_hint(model_id: str) -> str:
    seeds = ", ".join(p.id for p in SEED_PRESETS)
    quoted = shlex.quote(model_id)  # the hint is a command to paste: the id must stay one harmless word
    return (f"register it first: `llorch-pool models register {quoted} --repo OWNER/NAME --architecture ARCH` "
            f"(seed presets need only the id: {seeds}), or `llorch-pool models synth {quoted} --architecture llama` "
            "for an offline test model; `llorch-pool models list` shows what is registered")


def _version_major(raw: Any) -> int | None:
    """The seed project wrote "1.0"; we write 1. Both mean major version 1."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        try:
            return int(raw.split(".")[0])
        except ValueError:
            return None
    return None


class CatalogStore:
    def __init__(self, paths: PoolPaths, pool_id: str) -> None:
        self.paths = paths
        self.pool_id = pool_id

    @property
    def file(self) -> Path:
        return self.paths.catalog

    def _corrupt(self, why: str) -> LlorchError:
        return LlorchError(
            ErrorCode.CATALOG_CORRUPT, f"catalog {self.file} is unreadable: {why}",
            f"it was left untouched; move it aside (mv {self.file} {self.file}.bad) to start an empty catalog, "
            "or fix it by hand", file=str(self.file))

    def load(self) -> Catalog:
        """The catalog as stored; a missing file is an empty catalog."""
        try:
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Catalog(pool_id=self.pool_id)
        except (OSError, UnicodeDecodeError) as exc:
            raise self._corrupt(str(exc)) from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._corrupt(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        if not isinstance(raw, dict):
            raise self._corrupt(f"expected a JSON object at the top, found {type(raw).__name__}")
        version = _version_major(raw.get("version", CATALOG_VERSION))
        if version is None:
            raise self._corrupt(f"'version' is {raw.get('version')!r}, expected an integer")
        if version > CATALOG_VERSION:
            raise LlorchError(
                ErrorCode.CATALOG_TOO_NEW,
                f"catalog {self.file} has version {version}; this llorch understands up to {CATALOG_VERSION}",
                "upgrade llorch on this pool (pip install -U llorch); the file was left untouched",
                file=str(self.file), version=version)
        raw = {**raw, "version": CATALOG_VERSION}
        raw.setdefault("pool_id", self.pool_id)
        try:
            catalog = Catalog.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
            raise self._corrupt(f"{where}: {first.get('msg')}") from None
        except LlorchError as exc:
            raise self._corrupt(exc.message) from None
        ids = [m.id for m in catalog.models]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise self._corrupt(f"model id(s) listed twice: {', '.join(dup)}")
        return catalog

    def save(self, catalog: Catalog) -> None:
        """Atomic write. Callers that read first must hold the lock: use edit()."""
        text = json.dumps(catalog.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        save_state_file(self.file, text, "catalog")

    @contextmanager
    def edit(self) -> Iterator[Catalog]:
        """Lock, read, yield the catalog to change in place, save only if the block raised nothing."""
        try:
            with file_lock(self.paths.catalog_lock, timeout=LOCK_TIMEOUT_S):
                catalog = self.load()
                yield catalog
                self.save(catalog)
        except Timeout:
            raise LlorchError(
                ErrorCode.TIMEOUT, f"catalog {self.file} stayed locked for {LOCK_TIMEOUT_S:.0f}s",
                f"another llorch-pool process holds {self.paths.catalog_lock}; wait for it or stop it") from None

    def get(self, model_id: str) -> ModelEntry:
        return self.require(self.load(), model_id)

    def require(self, catalog: Catalog, model_id: str) -> ModelEntry:
        """The entry, or NOT_FOUND saying how to register it."""
        entry = catalog.get(model_id)
        if entry is None:
            raise LlorchError(ErrorCode.NOT_FOUND, f"model {model_id!r} is not in the catalog of pool {self.pool_id}",
                              register_hint(model_id), model=model_id)
        return entry

    def remove(self, model_id: str) -> ModelEntry:
        with self.edit() as catalog:
            entry = catalog.get(model_id)
            if entry is None:
                raise LlorchError(ErrorCode.NOT_FOUND, f"model {model_id!r} is not in the catalog of pool {self.pool_id}",
                                  "`llorch-pool models list` shows what is registered", model=model_id)
            catalog.models = [m for m in catalog.models if m.id != model_id]
        return entry
