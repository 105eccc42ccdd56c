"""Which cells changed verdict since the baseline: the last whole run in the same report directory.

Only cells that ran in both runs are compared. A cell of the baseline that did not run this time (not
selected, or skipped by a stop) is listed as "not run", never as gone or changed."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from llorch_tui.matrix.reports.sentinel import CellSentinel, sentinel, sentinel_markdown
from llorch_tui.protocol.matrix import CellResult, MatrixReport, ReasonCode


class CellChange(BaseModel):
    key: str
    before: str | None  # verdict, None = not in that run
    after: str | None
    before_reason: str | None = None
    after_reason: str | None = None


class MatrixDiff(BaseModel):
    previous_started_at: datetime | None = None
    current_started_at: datetime
    changed: list[CellChange] = Field(default_factory=list)   # verdict differs
    added: list[CellChange] = Field(default_factory=list)     # cell new in this run
    not_run: list[CellChange] = Field(default_factory=list)   # in the baseline, not run this time
    unchanged: int = 0
    # Per cell in both runs: correctness drift, performance beyond noise, environment changes (sentinel.py).
    sentinel: list[CellSentinel] = Field(default_factory=list)
    partial: bool = False  # this run is partial (stopped or still running): it does not become the baseline

    @property
    def has_previous(self) -> bool:
        return self.previous_started_at is not None


def _ran(cells: list[CellResult]) -> dict[str, CellResult]:
    return {c.key.id: c for c in cells if c.reason_code != ReasonCode.STOPPED}


def diff_reports(previous: MatrixReport | None, current: MatrixReport) -> MatrixDiff:
    d = MatrixDiff(previous_started_at=previous.started_at if previous else None, current_started_at=current.started_at,
                   partial=current.partial)
    if previous is None:
        return d
    before = _ran(previous.cells)
    after = _ran(current.cells)
    for key, cur in after.items():
        old = before.get(key)
        if old is None:
            d.added.append(CellChange(key=key, before=None, after=cur.verdict, after_reason=cur.reason))
        elif old.verdict != cur.verdict:
            d.changed.append(CellChange(key=key, before=old.verdict, after=cur.verdict,
                                        before_reason=old.reason, after_reason=cur.reason))
        else:
            d.unchanged += 1
    for key, old in before.items():
        if key not in after:
            d.not_run.append(CellChange(key=key, before=old.verdict, after=None, before_reason=old.reason))
    # The sentinel too looks only at cells that ran in both runs.
    d.sentinel = sentinel(previous.model_copy(update={"cells": list(before.values())}),
                          current.model_copy(update={"cells": list(after.values())}))
    return d


_ICON = {"pass": "✅ pass", "fail": "❌ fail", "skipped": "⏭ skipped", None: "not run"}


def diff_markdown(d: MatrixDiff, heading: str = "##") -> str:
    out = [f"{heading} Changes since the previous run", ""]
    if d.partial:
        out += ["_This run is partial (stopped before every cell ran): it is not the baseline of the next run._", ""]
    if not d.has_previous:
        out.append("_No previous run in this report directory._")
        return "\n".join(out) + "\n"
    out.append(f"_Previous run: {d.previous_started_at:%Y-%m-%d %H:%M:%S} UTC; "
               f"{len(d.changed)} changed, {len(d.added)} new, {d.unchanged} unchanged; "
               f"{len(d.not_run)} not run this time._")
    rows = [*d.changed, *d.added, *d.not_run]
    if rows:
        out += ["", "| Cell | Before | After | Why now |", "|---|---|---|---|"]
        for c in rows:
            why = (c.after_reason or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{c.key}` | {_ICON[c.before]} | {_ICON[c.after]} | {why} |")
    out += ["", *sentinel_markdown(d.sentinel, heading + "#")]
    return "\n".join(out).rstrip() + "\n"
