"""Engine events and errors that need a real agent but no worker (every cell skipped): cheap."""

from __future__ import annotations

from pathlib import Path

import pytest
from matrix_helpers import run_headless, write_config

from llorch_tui.config import Config, PoolConfig
from llorch_tui.errors import LlorchError
from llorch_tui.fleet import Fleet
from llorch_tui.matrix.engine import MatrixEngine
from llorch_tui.matrix.events import CellFinished, PlanReady, RunFinished, parse_event
from llorch_tui.matrix.options import MatrixOptions


async def test_event_order_and_live_report(make_pool, tmp_path: Path) -> None:
    state = make_pool(models=("llama", "phi3"), pool_id="local")
    fleet = Fleet(Config(pools=[PoolConfig(name="local", state_dir=str(state))]))
    engine = MatrixEngine(fleet, MatrixOptions(backends=["cuda", "metal"], report_dir=str(tmp_path / "r")))
    events = []
    try:
        async for ev in engine.run():
            assert parse_event(ev.model_dump_json()) == ev  # the --json line round-trips
            events.append(ev)
            if isinstance(ev, CellFinished):
                assert engine.report is not None and ev.key in [c.key for c in engine.report.cells]
    finally:
        await fleet.close()
    assert isinstance(events[0], PlanReady) and isinstance(events[-1], RunFinished)
    assert [c.id for c in events[0].cells] == ["local/cuda/tiny-llama", "local/metal/tiny-llama",
                                               "local/cuda/tiny-phi3", "local/metal/tiny-phi3"]
    assert events[0].pools[0].online and events[0].pools[0].backends == ["cpu"]
    assert all(isinstance(e, CellFinished) and e.result.reason_code == "backend_absent" for e in events[1:-1])
    assert events[-1].summary.skipped == 4 and not events[-1].stopped
    assert Path(events[-1].reports["junit"]).exists()


async def test_unknown_pool_is_an_error_before_anything_runs(make_pool) -> None:
    fleet = Fleet(Config(pools=[PoolConfig(name="local", state_dir=str(make_pool(models=("llama",))))]))
    try:
        with pytest.raises(LlorchError) as err:
            async for _ in MatrixEngine(fleet, MatrixOptions(pools=["nope"], report_dir=None)).run():
                pass
    finally:
        await fleet.close()
    assert err.value.code == "not_found" and "local" in (err.value.hint or "")


def test_headless_config_errors_exit_2(make_pool, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", make_pool(models=("llama",)), tmp_path / "r")
    run = run_headless(config, "--pools", "nope")
    assert run.rc == 2 and any("no pool named nope" in l for l in run.stderr_lines), run.stderr_lines
    bad = tmp_path / "bad.toml"
    bad.write_text("[matrix]\nmax_tokenz = 3\n")
    run = run_headless(bad)
    assert run.rc == 2 and any("max_tokenz" in l for l in run.stderr_lines), run.stderr_lines


async def test_offline_pool_cells_are_skipped_and_others_run(make_pool) -> None:
    ghost = PoolConfig(name="ghost", agent_command="/nonexistent/llorch-pool")
    local = PoolConfig(name="local", state_dir=str(make_pool(models=("llama",))))
    fleet = Fleet(Config(pools=[local, ghost]))
    try:
        results = [ev.result async for ev in MatrixEngine(fleet, MatrixOptions(backends=["metal"], report_dir=None)).run()
                   if isinstance(ev, CellFinished)]
    finally:
        await fleet.close()
    by = {r.key.id: r for r in results}
    assert set(by) == {"local/metal/tiny-llama", "ghost/metal/*"}
    assert by["ghost/metal/*"].reason_code == "pool_offline" and "ghost" in (by["ghost/metal/*"].reason or "")
    assert by["local/metal/tiny-llama"].reason_code == "backend_absent"


async def test_unwritable_report_dir_keeps_the_results(make_pool, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the report directory should be")
    fleet = Fleet(Config(pools=[PoolConfig(name="local", state_dir=str(make_pool(models=("llama",))))]))
    engine = MatrixEngine(fleet, MatrixOptions(backends=["metal"], report_dir=str(blocker / "r")))
    try:
        events = [ev async for ev in engine.run()]
    finally:
        await fleet.close()
    last = events[-1]
    assert isinstance(last, RunFinished) and last.summary.skipped == 1 and last.reports == {}
    assert last.report_error and str(blocker) in last.report_error
    assert engine.report is not None and [c.key.id for c in engine.report.cells] == ["local/metal/tiny-llama"]


async def test_a_bug_in_a_cell_costs_that_cell_not_the_run(make_pool, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from llorch_tui.matrix.cell import CellRun

    async def broken(self: CellRun) -> None:
        raise RuntimeError("bug in the cell's cleanup")

    monkeypatch.setattr(CellRun, "run", broken)
    fleet = Fleet(Config(pools=[PoolConfig(name="local", state_dir=str(make_pool(models=("llama",))))]))
    engine = MatrixEngine(fleet, MatrixOptions(backends=["cpu", "metal"], report_dir=str(tmp_path / "r")))
    try:
        events = [ev async for ev in engine.run()]
    finally:
        await fleet.close()
    results = {ev.result.key.id: ev.result for ev in events if isinstance(ev, CellFinished)}
    cpu = results["local/cpu/tiny-llama"]
    assert cpu.verdict == "fail" and cpu.reason_code == "internal" and "bug in the cell" in (cpu.reason or "")
    assert results["local/metal/tiny-llama"].reason_code == "backend_absent"
    last = events[-1]
    assert isinstance(last, RunFinished) and last.summary.failed == 1 and Path(last.reports["json"]).exists()
