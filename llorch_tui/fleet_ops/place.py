"""`llorch models place ID`: where would a model run, best first, and why.

Every pool answers `models.fit` for itself (its free memory, its usable backends, its own
measurements); the ranking is made here: what fits first, then the faster backend (cuda, metal,
cpu), then the most headroom left after loading it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from llorch_tui.config import Config
from llorch_tui.errors import LlorchError
from llorch_tui.fleet import Fleet
from llorch_tui.protocol.fit import FitEstimate
from llorch_tui.protocol.params import FitParams

BACKEND_SPEED = {"cuda": 0, "metal": 1, "cpu": 2}  # lower is faster
FIT_TIMEOUT_S = 120.0


@dataclass
class Placement:
    pool: str
    estimate: FitEstimate | None
    error: str | None = None

    @property
    def headroom(self) -> int | None:
        e = self.estimate
        return None if e is None or e.free_bytes is None else e.free_bytes - e.need_bytes

    def sort_key(self) -> tuple[int, int, int, str]:
        e = self.estimate
        if e is None:
            return (3, 9, 0, self.pool)
        rank = {True: 0, None: 1, False: 2}[e.fits]
        return (rank, BACKEND_SPEED.get(e.backend, 9), -(self.headroom or 0), self.pool)

    def to_json(self) -> dict[str, Any]:
        return {"pool": self.pool, "error": self.error, "headroom_bytes": self.headroom,
                "estimate": self.estimate.model_dump(mode="json") if self.estimate else None}


def rank(placements: list[Placement]) -> list[Placement]:
    return sorted(placements, key=Placement.sort_key)


async def place(config: Config, params: FitParams, pools: list[str] | None = None) -> list[Placement]:
    """Ask every (chosen) pool at once; an offline pool is listed last with its error."""
    fleet = Fleet(config)
    try:
        names = pools or list(fleet.clients)
        for n in names:
            fleet.client(n)  # an unknown name is an error before anything connects
        up = await fleet.start(names)

        async def one(name: str) -> list[Placement]:
            if not up[name]:
                st = fleet.state(name)
                return [Placement(name, None, st.error or "offline")]
            try:
                report = await fleet.api(name).models.fit(params, timeout=FIT_TIMEOUT_S)
            except LlorchError as exc:
                return [Placement(name, None, exc.message)]
            except asyncio.TimeoutError:
                return [Placement(name, None, f"no answer within {FIT_TIMEOUT_S:.0f}s")]
            return [Placement(name, e) for e in report.estimates] or \
                [Placement(name, None, "no usable backend for this model")]

        out: list[Placement] = []
        for group in await asyncio.gather(*(one(n) for n in names)):
            out += group
        return rank(out)
    finally:
        await fleet.close()
