"""What one refresh of one pool returns, and the data sources that produce it.

`FleetSource` asks a real pool (pool.status + models.list through its typed PoolApi); `SyntheticSource`
invents a fleet of any size in-process (bench/tui.py) as wire documents, read by `parse_snapshot` with
the same op result types, so the dashboard's update path is the same for both.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Protocol, TypeVar

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.protocol import ops
from llorch_tui.protocol.catalog import Catalog
from llorch_tui.protocol.params import ListParams, StatusParams
from llorch_tui.protocol.status import PoolStatus
from llorch_tui.protocol.workers import WorkerRecord
from llorch_tui.tui.core.clock import now

if TYPE_CHECKING:
    from llorch_tui.fleet import Fleet

T = TypeVar("T")


@dataclass
class PoolSnapshot:
    pool: str
    at: float
    catalog: Catalog | None = None
    status: PoolStatus | None = None
    workers: list[WorkerRecord] = field(default_factory=list)


def parse_snapshot(pool: str, at: float, status: dict[str, Any], catalog: dict[str, Any]) -> PoolSnapshot:
    """Wire documents read as the ops' result types (a malformed one is a clear protocol error)."""
    where = f"pool {pool}: "
    st = ops.POOL_STATUS.parse(status, where)
    return PoolSnapshot(pool=pool, at=at, catalog=ops.MODELS_LIST.parse(catalog, where), status=st, workers=st.workers)


class DataSource(Protocol):
    async def fetch(self, pool: str, timeout: float) -> PoolSnapshot: ...


class FleetSource:
    """Real pools: one status call and one catalog call per refresh, concurrently, each bounded."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    async def _bounded(self, pool: str, op: str, call: Awaitable[T], timeout: float) -> T:
        try:
            return await asyncio.wait_for(call, timeout)
        except asyncio.TimeoutError:
            raise LlorchError(ErrorCode.TIMEOUT, f"pool {pool}: no answer to {op} within {timeout:.0f}s",
                              "the pool is slow or stuck; it is retried on the next refresh") from None

    async def fetch(self, pool: str, timeout: float) -> PoolSnapshot:
        api = self.fleet.api(pool)
        status_r, catalog_r = await asyncio.gather(
            self._bounded(pool, "pool.status", api.pool.status(StatusParams(workers_probe=True)), timeout),
            self._bounded(pool, "models.list", api.models.list(), timeout), return_exceptions=True)
        status: PoolStatus | None = None
        workers: list[WorkerRecord] = []
        if isinstance(status_r, LlorchError) and status_r.code == ErrorCode.UNKNOWN_OP:
            # An agent without pool.status still lists its workers.
            workers = await self._bounded(pool, "workers.list", api.workers.list(ListParams(probe=True)), timeout)
        elif isinstance(status_r, BaseException):
            raise status_r
        else:
            status, workers = status_r, status_r.workers
        catalog: Catalog | None = None
        if isinstance(catalog_r, LlorchError) and catalog_r.code == ErrorCode.UNKNOWN_OP:
            pass
        elif isinstance(catalog_r, BaseException):
            raise catalog_r
        else:
            catalog = catalog_r
        return PoolSnapshot(pool=pool, at=now(), catalog=catalog, status=status, workers=workers)


class SyntheticSource:
    """An invented fleet (pools x workers) whose figures move every call: for the CPU benchmark."""

    def __init__(self, pools: int, workers: int, models: int = 4, gpus: int = 2, finished: int = 0) -> None:
        self.pools = [f"pool{i:02d}" for i in range(pools)]
        self.n_workers, self.n_models, self.n_gpus = workers, models, gpus
        self.n_finished = finished  # the last `finished` workers of each pool are stopped ones
        self.tick: dict[str, int] = {p: 0 for p in self.pools}
        self.started = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()

    def documents(self, pool: str) -> tuple[dict[str, Any], dict[str, Any]]:
        t = self.tick[pool] = self.tick[pool] + 1
        gib = 1024 ** 3
        workers = [{
            "id": f"w{i:03d}", "model": f"model-{i % self.n_models}", "backend": "cuda", "gpu": i % self.n_gpus,
            "port": 20000 + i, "pid": 1000 + i, "started_at": self.started,
            "state": "stopped" if i >= self.n_workers - self.n_finished else "ready",
            "log_path": f"/tmp/{pool}/w{i}.log", "requests": t * (i + 1), "tokens_generated": t * 50 * (i + 1),
            "rss_bytes": (1 + i % 3) * gib, "device_allocated_bytes": (2 + i % 5) * gib,
            "in_flight": (t + i) % 4, "queue_depth": (t + i) % 2,
        } for i in range(self.n_workers)]
        gpus = [{"index": g, "name": "NVIDIA H100", "memory_total": 80 * gib,
                 "memory_used": int((40 + 30 * math.sin(t / 7 + g)) * gib), "utilization": (t * 7 + g * 13) % 100}
                for g in range(self.n_gpus)]
        status = {"pool_id": pool, "hostname": pool, "os": "Linux", "llorch_version": "0.1.0", "python": "3.12",
                  "backends": ["cpu", "cuda"], "gpus": gpus, "ram": {"total": 256 * gib, "available": (128 + t % 64) * gib},
                  "disk": {"path": "/", "total": 2000 * gib, "free": 900 * gib}, "workers": workers}
        catalog = {"pool_id": pool, "models": [{
            "id": f"model-{m}", "name": f"Model {m}", "path": f"/m/{m}", "size_gb": 1.0 + m, "architecture": "llama",
            "downloaded": True} for m in range(self.n_models)]}
        return status, catalog

    async def fetch(self, pool: str, timeout: float) -> PoolSnapshot:
        status, catalog = self.documents(pool)
        return parse_snapshot(pool, now(), status, catalog)
