"""Writing a run's reports into a directory, keeping the previous run for the diff.

Layout of the report dir (every file written atomically, the dir locked against concurrent runs):
    matrix.md            model-support matrix + measurements, benchmarks, stability, changes
    matrix.json          MatrixReport (versioned schema, every measurement)
    matrix.junit.xml     one testcase per cell
    matrix-diff.md/.json cells that changed verdict since the previous run
    matrix-previous.json the run before this one (what the diff compared against)
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
        prev_text = paths["json"].read_text(encoding="utf-8") if paths["json"].exists() else None
        previous = load_report(paths["json"]) if prev_text is not None else None
        diff: MatrixDiff = diff_reports(previous, report)
        if prev_text is not None and previous is not None:
            atomic_write_text(paths["previous"], prev_text)
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
