"""Planning: which cells exist and which of them are skipped before anything is spawned.

Pure functions over what the pools reported (catalog + status), so the rules are unit-testable
without workers. Cells a pool cannot run are planned anyway, as skipped with a reason, so the
grid shows the hole and why it is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llorch_tui.config import PoolConfig
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.protocol import BACKENDS
from llorch_tui.protocol.catalog import Catalog, ModelEntry
from llorch_tui.protocol.fit import FitEstimate
from llorch_tui.protocol.matrix import CellKey, ReasonCode
from llorch_tui.units import fmt_bytes
from llorch_tui.protocol.status import PoolStatus

ALL_MODELS = "*"  # row of an offline pool whose catalog is unknown


@dataclass
class PoolFacts:
    """What the engine learnt of one pool before planning."""

    config: PoolConfig
    online: bool
    error: str | None = None
    catalog: Catalog | None = None
    status: PoolStatus | None = None
    # (model, backend, dtype) -> the pool's `models.fit` answer for the matrix's workload (one short sequence)
    fits: dict[tuple[str, str, str], FitEstimate] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def usable_backends(self) -> list[str]:
        return list(self.status.backends) if self.status else []

    def free_bytes(self, backend: str) -> int | None:
        """Memory a new worker could use: the best GPU's free VRAM, else available RAM (metal: unified)."""
        if self.status is None:
            return None
        if backend == "cuda":
            frees = [g.memory_total - (g.memory_used or 0) for g in self.status.gpus if g.memory_total]
            return max(frees) if frees else None
        return self.status.ram.available or None

    def gpu_indices(self, backend: str) -> list[int | None]:
        if backend == "cuda" and self.status is not None and self.status.gpus:
            return [g.index for g in self.status.gpus]
        return [None]


@dataclass
class PlannedCell:
    key: CellKey
    entry: ModelEntry | None = None
    skip_code: str | None = None
    skip_reason: str | None = None
    skip_hint: str | None = None
    needs_download: bool = False
    needs_register: bool = False  # in --models / config presets but not yet in the pool's catalog
    pool_status: PoolStatus | None = None  # the pool's `pool.status` at planning (the cell's environment)
    fit: FitEstimate | None = None  # the pool's estimate for this cell (reports put the measured peak beside it)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.skip_code is not None


def requested_backends(pool: PoolConfig, options: MatrixOptions) -> list[str]:
    wanted = options.backends or list(BACKENDS)
    if pool.backends is not None:  # the operator restricted this pool: other backends are not columns
        wanted = [b for b in wanted if b in pool.backends]
    return wanted


def plan_pool(view: PoolFacts, options: MatrixOptions, presets: set[str] | None = None) -> list[PlannedCell]:
    """The cells of one pool, in a stable order (model, then backend, then dtype)."""
    backends = requested_backends(view.config, options)
    dtypes = options.cell_dtypes
    presets = presets or set()
    if not view.online or view.catalog is None:
        models = options.models or [ALL_MODELS]
        return [PlannedCell(CellKey(pool=view.name, backend=b, model=m, dtype=d), skip_code=ReasonCode.POOL_OFFLINE,
                            skip_reason=f"pool {view.name} is offline: {view.error or 'not connected'}",
                            skip_hint=f"check the pool: llorch pool doctor --host {view.name}")
                for m in models for b in backends for d in dtypes]
    catalog = view.catalog
    model_ids = options.models or [m.id for m in catalog.models]
    usable = set(view.usable_backends)
    cells: list[PlannedCell] = []
    for mid in model_ids:
        entry = catalog.get(mid)
        for backend, dtype in ((b, d) for b in backends for d in dtypes):
            cell = PlannedCell(CellKey(pool=view.name, backend=backend, model=mid, dtype=dtype), entry=entry,
                               pool_status=view.status)
            cells.append(cell)
            if backend not in usable:
                cell.skip_code = ReasonCode.BACKEND_ABSENT
                cell.skip_reason = f"pool {view.name} has no usable {backend} backend"
                cell.skip_hint = "see `llorch-pool status` on that pool for why (probe_errors)"
                continue
            if entry is None:
                if options.download and mid in presets:
                    cell.needs_register = cell.needs_download = True
                    continue
                cell.skip_code = ReasonCode.NOT_IN_CATALOG
                cell.skip_reason = f"model {mid} is not in pool {view.name}'s catalog"
                cell.skip_hint = (f"register it (llorch-pool models register {mid}) or pass --download "
                                  "for a configured preset")
                continue
            if backend not in entry.backends:
                cell.skip_code = ReasonCode.BACKEND_UNSUPPORTED
                cell.skip_reason = f"model {mid} does not support {backend} (catalog backends: {', '.join(entry.backends)})"
                cell.skip_hint = f"llorch-pool models update {mid} --backends ... if it does"
                continue
            if not entry.downloaded:
                if options.download:
                    cell.needs_download = True
                else:
                    cell.skip_code = ReasonCode.NOT_DOWNLOADED
                    cell.skip_reason = f"model {mid} is not downloaded on pool {view.name} and downloads are off"
                    cell.skip_hint = "pass --download (or set [matrix] download = true)"
                    continue
            # A dtype cell's own measurement only: float32's peak says little about bfloat16's.
            peak = entry.peak_memory.get(cell.key.device)
            free = view.free_bytes(backend)
            if peak and free is not None and peak > free:
                cell.skip_code = ReasonCode.WILL_NOT_FIT
                cell.skip_reason = (f"model {mid} needed {fmt_bytes(peak)} on {backend} last time; "
                                    f"pool {view.name} has {fmt_bytes(free)} free")
                cell.skip_hint = "stop other workers on that pool or free memory, then rerun"
                continue
            est = cell.fit = view.fits.get((mid, backend, dtype))
            if est is not None and est.fits is False:
                cell.skip_code = ReasonCode.WILL_NOT_FIT
                cell.skip_reason = est.reason
                cell.skip_hint = (f"`llorch models place {mid}` shows where it fits; a smaller dtype "
                                  "(llorch-pool models fit --dtype) or freeing memory may make room")
    return cells
