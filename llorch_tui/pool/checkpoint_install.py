"""Move a finished checkpoint directory into the models dir and register it, under the catalog lock.

Used by every op that builds a checkpoint in a staging directory (synth, GGUF conversion): the
directory appears whole or not at all, and a catalog entry exists only for a complete directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.protocol.catalog import ModelEntry

# Read once at import (main thread): os.umask is process-wide, so never toggle it from an op's thread.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def exists_error(model_id: str) -> LlorchError:
    return LlorchError(ErrorCode.ALREADY_EXISTS, f"model {model_id!r} is already in the catalog",
                       f"pass --force to replace it, or pick another id (`llorch-pool models unregister {model_id}` "
                       "removes the entry)")


def public_modes(d: Path) -> None:
    """mkdtemp/mkstemp create 0700/0600; a model directory gets the ordinary umask modes like any download."""
    os.chmod(d, 0o777 & ~_UMASK)
    for f in d.iterdir():
        if f.is_file():
            os.chmod(f, 0o666 & ~_UMASK)


def install_checkpoint(store: CatalogStore, model_id: str, staging: Path, target: Path, force: bool,
                       make_entry: Callable[[Path], ModelEntry],
                       replaceable: Callable[[Path], bool] = lambda _: False,
                       equivalent: Callable[[Path], bool] = lambda _: False) -> ModelEntry:
    """Re-check under the lock (another process may have won), rename `staging` to `target`, register.

    An existing `target` not in the catalog is replaced only with `force`, or when `replaceable(target)`
    says it is a leftover this op may overwrite; when `equivalent(target)` says it already holds the
    same checkpoint (another pool sharing the models dir made it meanwhile) it is kept as it is, so a
    worker reading it never sees it vanish, and `staging` is left for the caller to delete."""
    public_modes(staging)
    with store.edit() as catalog:
        if catalog.get(model_id) is not None and not force:
            raise exists_error(model_id)
        if target.exists() and equivalent(target):
            pass
        elif target.exists():
            if not (force or replaceable(target)):
                raise LlorchError(ErrorCode.ALREADY_EXISTS, f"{target} already exists (not in the catalog)",
                                  "move it aside, or pass --force to replace it")
            old = target.with_name(f".{target.name}.old-{staging.name}")
            target.rename(old)  # rename first so the new checkpoint appears whole
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
        entry = make_entry(target)
        put_entry(catalog.models, entry)
    return entry


def put_entry(models: list[ModelEntry], entry: ModelEntry) -> None:
    """Replace the entry with the same id, or append."""
    ids = [m.id for m in models]
    if entry.id in ids:
        models[ids.index(entry.id)] = entry
    else:
        models.append(entry)
