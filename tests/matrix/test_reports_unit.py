"""Report writers and the diff on hand-made reports (the real run's reports are checked in test_headless_run)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from llorch_tui.errors import LlorchError
from llorch_tui.matrix.classify import classify_spawn_error
from llorch_tui.matrix.modes import percentile
from llorch_tui.matrix.reports import write_reports
from llorch_tui.protocol.matrix import CellKey, CellResult, Measurements, MatrixReport, RunSummary


def _report(verdicts: dict[str, str], when: int = 0, *, partial: bool = False) -> MatrixReport:
    cells = []
    for key, v in verdicts.items():
        cells.append(CellResult(key=CellKey.parse(key), verdict=v,  # type: ignore[arg-type]
                                reason_code=None if v == "pass" else "oom", reason=None if v == "pass" else "out of <memory> | \x01",
                                measurements=Measurements(tokens_per_second=12.5 if v == "pass" else None)))
    s = RunSummary(passed=sum(v == "pass" for v in verdicts.values()), failed=sum(v == "fail" for v in verdicts.values()),
                   skipped=sum(v == "skipped" for v in verdicts.values()))
    started = datetime(2026, 1, 1, 0, when, tzinfo=timezone.utc)
    return MatrixReport(started_at=started, finished_at=started, cells=cells, summary=s, partial=partial)


def test_write_reports_keeps_previous_and_diffs(tmp_path: Path) -> None:
    first = _report({"p/cpu/a": "pass", "p/cpu/b": "pass"}, 0)
    paths = write_reports(first, tmp_path)
    assert "previous" not in paths
    assert "No previous run" in Path(paths["diff"]).read_text()
    second = _report({"p/cpu/a": "fail", "p/cpu/c": "pass"}, 1)
    paths = write_reports(second, tmp_path)
    assert MatrixReport.model_validate_json(Path(paths["previous"]).read_text()).started_at == first.started_at
    diff = json.loads(Path(paths["diff_json"]).read_text())
    assert [(c["key"], c["before"], c["after"]) for c in diff["changed"]] == [("p/cpu/a", "pass", "fail")]
    assert [c["key"] for c in diff["added"]] == ["p/cpu/c"] and [c["key"] for c in diff["not_run"]] == ["p/cpu/b"]
    assert "| `p/cpu/b` | ✅ pass | not run |" in Path(paths["diff"]).read_text()
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2


def _baseline(tmp_path: Path) -> datetime:
    return MatrixReport.model_validate_json((tmp_path / "matrix-previous.json").read_text()).started_at


def test_export_again_leaves_the_baseline(tmp_path: Path) -> None:
    """Exporting the same run (the TUI's `e`) twice must not make that run its own baseline."""
    first, second = _report({"p/cpu/a": "pass"}, 0), _report({"p/cpu/a": "fail"}, 1)
    write_reports(first, tmp_path)
    write_reports(second, tmp_path)
    for _ in range(2):
        paths = write_reports(second, tmp_path)
        assert _baseline(tmp_path) == first.started_at
        diff = json.loads(Path(paths["diff_json"]).read_text())
        assert diff["previous_started_at"] != diff["current_started_at"]
        assert [(c["before"], c["after"]) for c in diff["changed"]] == [("pass", "fail")]


def test_partial_runs_never_become_the_baseline(tmp_path: Path) -> None:
    whole = _report({"p/cpu/a": "pass", "p/cpu/b": "pass"}, 0)
    write_reports(whole, tmp_path)
    # A stopped run: its unstarted cells are skipped "stopped". Written and marked, compared only where it ran.
    stopped = _report({"p/cpu/a": "fail", "p/cpu/b": "skipped"}, 1, partial=True)
    stopped.cells[1].reason_code = "stopped"
    paths = write_reports(stopped, tmp_path)
    diff = json.loads(Path(paths["diff_json"]).read_text())
    assert diff["partial"] and [c["key"] for c in diff["changed"]] == ["p/cpu/a"]
    assert [c["key"] for c in diff["not_run"]] == ["p/cpu/b"]  # stopped before it ran: not "skipped now"
    assert "partial" in Path(paths["markdown"]).read_text().lower()
    # A run exported while still going is partial too.
    running = _report({"p/cpu/a": "pass"}, 2, partial=True)
    write_reports(running, tmp_path)
    # The next whole run is compared with the last whole one, not with either partial run.
    nxt = _report({"p/cpu/a": "pass", "p/cpu/b": "fail"}, 3)
    paths = write_reports(nxt, tmp_path)
    assert _baseline(tmp_path) == whole.started_at
    diff = json.loads(Path(paths["diff_json"]).read_text())
    assert [(c["key"], c["before"], c["after"]) for c in diff["changed"]] == [("p/cpu/b", "pass", "fail")]
    # ...and it, being whole, is the baseline of the one after.
    write_reports(_report({"p/cpu/a": "pass"}, 4), tmp_path)
    assert _baseline(tmp_path) == nxt.started_at


def test_markdown_escapes_and_shares_footnotes(tmp_path: Path) -> None:
    r = _report({"p/cpu/a": "pass", "p/cuda/a": "skipped", "p/cuda/b": "skipped", "p/cpu/b": "fail"})
    md = Path(write_reports(r, tmp_path)["markdown"]).read_text()
    rows = {l.split("|")[1].strip(): l for l in md.splitlines() if l.startswith("| a ") or l.startswith("| b ")}
    assert "✅ 12.5 tok/s" in rows["a"] and "⏭ [1]" in rows["a"] and "⏭ [1]" in rows["b"]  # one note, shared
    assert "❌ [2]" in rows["b"]
    assert "out of <memory> \\| " in md  # a pipe in a reason must not break the table


def test_junit_is_valid_xml_with_control_characters(tmp_path: Path) -> None:
    r = _report({"p/cpu/a": "pass", "p/cpu/b": "fail", "p/cuda/a": "skipped"})
    root = ET.parse(write_reports(r, tmp_path)["junit"]).getroot()
    assert root.get("tests") == "3" and root.get("failures") == "1" and root.get("skipped") == "1"
    fail = root.find(".//testcase[@name='b']/failure")
    assert fail is not None and fail.get("type") == "oom" and "\x01" not in (fail.get("message") or "")


def test_unreadable_previous_report_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "matrix.json").write_text("{not json")
    paths = write_reports(_report({"p/cpu/a": "pass"}), tmp_path)
    assert "No previous run" in Path(paths["diff"]).read_text()


def test_spawn_errors_are_classified() -> None:
    def err(code: str, **details: object) -> LlorchError:
        return LlorchError(code, "worker x failed", None, **details)

    assert classify_spawn_error(err("worker_failed", reason="checkpoint_corrupt", exit_code=3)) == ("checkpoint_corrupt", 3)
    assert classify_spawn_error(err("worker_failed", reason="oom", exit_code=3))[0] == "oom"
    assert classify_spawn_error(err("worker_failed", reason=None, exit_code=None, signal=9))[0] == "crash"
    assert classify_spawn_error(err("worker_timeout"))[0] == "timeout"
    assert classify_spawn_error(err("port_in_use", reason="port_in_use", exit_code=5)) == ("port_in_use", 5)
    assert classify_spawn_error(err("worker_failed", reason=None, exit_code=1))[0] == "load_error"


def test_percentile_nearest_rank() -> None:
    values = [float(i) for i in range(1, 1001)]
    assert percentile(values, 50) == 500.0 and percentile(values, 99) == 990.0 and percentile([3.0], 99) == 3.0
