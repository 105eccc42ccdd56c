"""Runs that are about the run itself: Ctrl-C mid-cell, and the diff against the previous run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from matrix_helpers import MainRun, run_headless, worker_processes, write_config

from llorch_tui.matrix.events import CellFinished, CellProgress, RunFinished, parse_event
from llorch_tui.matrix.reports.diff import MatrixDiff

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_mid_cell_stops_the_worker(how: str, make_pool, tmp_path: Path) -> None:
    """Ctrl-C in a terminal (SIGINT to the whole foreground group, the local agent included) and a cancelled
    CI job (SIGTERM to the runner only) both stop the worker before the runner exits 130."""
    state = make_pool(models=("qwen2",), pool_id="local")
    config = write_config(tmp_path / "config.toml", state, tmp_path / "reports")
    events: list[object] = []

    def on_stdout(line: str, proc: subprocess.Popen[str]) -> str | None:
        ev = parse_event(line)  # --json: every stdout line is one event
        events.append(ev)
        if isinstance(ev, CellProgress) and ev.stage == "stability" and not any(
                isinstance(e, CellProgress) and e.stage == "stability" for e in events[:-1]):
            if how == "ctrl-c":
                os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
            else:
                proc.send_signal(signal.SIGTERM)
            return how
        return None

    run = run_headless(config, "--backends", "cpu", "--stability", "--stability-requests", "100000", "--json",
                       on_stdout=on_stdout)
    assert run.actions == [how], run.stderr_lines[-20:]
    assert any(l.endswith("stopping the workers this run started...") for l in run.stderr_lines)
    assert run.rc == 130, run.stderr_lines[-20:]
    assert run.stderr_lines[-1] == "Test Results: 0 passed, 0 failed, 0 skipped"
    assert not any(isinstance(e, (CellFinished, RunFinished)) for e in events)
    assert worker_processes(state) == []
    records = json.loads((state / "workers.json").read_text())["workers"]
    # (two records when the first spawn lost its port to another process and was retried)
    assert records and all(r["state"] in ("stopped", "dead", "failed") for r in records), records


def test_diff_shows_a_changed_cell(main_run: MainRun) -> None:
    # Mark a passing model as not downloaded: the next run skips its cell, which the diff must report.
    proc = subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(main_run.state),
                           "--pool-id", "local", "models", "update", "tiny-llama", "--downloaded", "false"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run = run_headless(main_run.config, "--models", "tiny-llama", "--backends", "cpu")
    assert run.rc == 0, run.stderr_lines
    assert run.stdout_lines[0].startswith("SKIP  local/cpu/tiny-llama  not_downloaded:")
    assert run.stdout_lines[-1] == "Test Results: 0 passed, 0 failed, 1 skipped"
    live = main_run.live_report_dir
    diff = MatrixDiff.model_validate_json((live / "matrix-diff.json").read_text())
    assert [(c.key, c.before, c.after) for c in diff.changed] == [("local/cpu/tiny-llama", "pass", "skipped")]
    assert len(diff.not_run) == 14  # the other cells of the main run did not run in this filtered run
    assert not diff.partial
    assert (live / "matrix-previous.json").read_text() == (main_run.report_dir / "matrix.json").read_text()
    md = (live / "matrix-diff.md").read_text()
    assert "| `local/cpu/tiny-llama` | ✅ pass | ⏭ skipped |" in md
    assert "## Changes since the previous run" in (live / "matrix.md").read_text()


async def test_engine_stop_interrupts_and_skips_the_rest(make_pool) -> None:
    """What the TUI's stop key does: MatrixEngine.stop() mid-cell -> that cell and the queued one end as
    skipped/stopped, the worker is stopped, and run() still ends with RunFinished(stopped=True)."""
    from llorch_tui.config import Config, PoolConfig
    from llorch_tui.fleet import Fleet
    from llorch_tui.matrix.engine import MatrixEngine
    from llorch_tui.matrix.options import MatrixOptions

    state = make_pool(models=("qwen2", "llama"), pool_id="local")
    fleet = Fleet(Config(pools=[PoolConfig(name="local", state_dir=str(state))]))
    engine = MatrixEngine(fleet, MatrixOptions(backends=["cpu"], report_dir=None, stability=True,
                                               stability_requests=100000))
    seen: list[object] = []
    try:
        async for ev in engine.run():
            seen.append(ev)
            if isinstance(ev, CellProgress) and ev.stage == "stability":
                engine.stop()
    finally:
        await fleet.close()
    finished = {e.result.key.model: e.result for e in seen if isinstance(e, CellFinished)}
    assert {m: (r.verdict, r.reason_code) for m, r in finished.items()} == {
        "tiny-qwen2": ("skipped", "stopped"), "tiny-llama": ("skipped", "stopped")}
    assert finished["tiny-qwen2"].worker_id is not None  # it had a worker...
    assert worker_processes(state) == []                  # ...which is gone
    last = seen[-1]
    assert isinstance(last, RunFinished) and last.stopped and last.summary.skipped == 2
