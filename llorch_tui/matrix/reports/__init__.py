"""Writing a run's reports into a directory, keeping the previous run for the diff.

Layout of the report dir (every file written atomically, the dir locked against concurrent runs):
    matrix.md            model-support matrix + measurements, benchmarks, stability, changes
    matrix.json          MatrixReport (versioned schema, every measurement)
    matrix.junit.xml     one testcase per cell
    matrix-diff.md/.json cells that changed verdict since the baseline
    matrix-previous.json the baseline: the last whole run before this one (what the diff compared against)

The baseline moves only when a new run is written over a whole one: exporting the same run again keeps it,
and a partial run (stopped, or exported while running) never becomes it.
    runs/matrix-<UTC timestamp>.json   every run, for history
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from llorch_tui.fsutil import atomic_write_text, file_lock
from llorch_tui.matrix.reports.diff import MatrixDiff, diff_markdown, diff_reports
from llorch_tui.matrix.reports.junit import junit_xml
from llorch_tui.matrix.reports.markdown import markdown_report
from llorch_tui.protocol.matrix import MatrixReport

log = logging.getLogger("llorch.matrix.reports")

FILES = {"markdown": "matrix.md", "json": "matrix.json", "junit": "matrix.junit.xml", "diff": "matrix-diff.md",
         "diff_json": "matrix-diff.json", "previous": "matrix-previous.json"}


def load_report(path: Path) -> MatrixReport | None:
    """A previous report, or None when absent/unreadable (a broken old file must not block a new run)."""
    try:
        return MatrixReport.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValidationError, ValueError) as exc:
        log.warning("ignoring unreadable previous report %s: %s", path, exc)
        return None


def write_reports(report: MatrixReport, report_dir: Path) -> dict[str, str]:
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: report_dir / v for k, v in FILES.items()}
    with file_lock(report_dir / ".matrix.lock"):
        last = load_report(paths["json"])
        if last is not None and last.started_at != report.started_at and not last.partial:
            # The last whole run becomes the baseline (copied as it is).
            atomic_write_text(paths["previous"], paths["json"].read_text(encoding="utf-8"))
        previous = load_report(paths["previous"])
        if previous is not None and previous.started_at == report.started_at:
            previous = None  # never compare a run with itself
        diff: MatrixDiff = diff_reports(previous, report)
        body = report.model_dump_json(indent=2)
        atomic_write_text(paths["json"], body)
        runs = report_dir / "runs"
        runs.mkdir(exist_ok=True)
        atomic_write_text(runs / f"matrix-{report.started_at:%Y%m%dT%H%M%S%f}.json", body)
        atomic_write_text(paths["markdown"], markdown_report(report, diff))
        atomic_write_text(paths["junit"], junit_xml(report))
        atomic_write_text(paths["diff"], diff_markdown(diff, heading="#"))
        atomic_write_text(paths["diff_json"], diff.model_dump_json(indent=2))
    out = {k: str(p) for k, p in paths.items() if k != "previous" or p.exists()}
    return out
