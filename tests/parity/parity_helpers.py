"""Helpers of the parity tests: one matrix run through the real engine and agent, its cell results."""

from __future__ import annotations

from pathlib import Path

from llorch_tui.config import Config, PoolConfig
from llorch_tui.fleet import Fleet
from llorch_tui.matrix.engine import MatrixEngine
from llorch_tui.matrix.events import CellFinished, CellProgress
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.protocol.matrix import CellResult


async def run_matrix(state: Path, report_dir: Path | None, env: dict[str, str] | None = None,
                     **options: object) -> tuple[dict[str, CellResult], list[str]]:
    """({cell id: result}, the progress details the event log shows), for the local pool at `state`."""
    pool = PoolConfig(name="local", state_dir=str(state), env=env or {})
    fleet = Fleet(Config(pools=[pool]))
    opts = MatrixOptions(backends=["cpu"], report_dir=str(report_dir) if report_dir else None, **options)  # type: ignore[arg-type]
    results: dict[str, CellResult] = {}
    details: list[str] = []
    try:
        async for ev in MatrixEngine(fleet, opts).run():
            if isinstance(ev, CellFinished):
                results[ev.result.key.id] = ev.result
            elif isinstance(ev, CellProgress):
                details.append(ev.detail)
    finally:
        await fleet.close()
    return results, details
