"""Which cells changed verdict since the baseline: the last whole run in the same report directory.

Only cells that ran in both runs are compared. A cell of the baseline that did not run this time (not
selected, or skipped by a stop) is listed as "not run", never as gone or changed.

Cells are matched by id; a cell run without a dtype (`pool/cpu/m`, the worker's default) also matches
the cell of the dtype its worker actually used (`pool/cpu:float32/m`, from the cell's recorded
environment), so a run with `--dtypes` and one without compare the same computation."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from llorch_tui.matrix.reports.sentinel import CellSentinel, cell_sentinel, sentinel_markdown
from llorch_tui.protocol.matrix import DEFAULT_DTYPE, CellResult, MatrixReport, ReasonCode


class CellChange(BaseModel):
    key: str
    before: str | None  # verdict, None = not in that run
    before_key: str | None = None  # the baseline's id of the cell when it differs (with and without a dtype)
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


def _resolved_id(cell: CellResult) -> str:
    """The cell's id with the default dtype replaced by the one its worker used (when recorded)."""
    used = cell.environment.dtype if cell.environment else None
    if cell.key.dtype != DEFAULT_DTYPE or not used or used == DEFAULT_DTYPE:
        return cell.key.id
    return cell.key.model_copy(update={"dtype": used}).id


def pair_cells(before: dict[str, CellResult], after: dict[str, CellResult]) -> dict[str, str]:
    """current id -> baseline id of the same cell: equal ids first; then, among the cells left on
    both sides, equal ids once a default-dtype cell's dtype is resolved to the one it ran in (a
    resolved id that two cells of one run share matches nothing: it would be a guess)."""
    pairs = {k: k for k in after if k in before}

    def resolved(cells: dict[str, CellResult], taken: set[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        clash: set[str] = set()
        for k, c in cells.items():
            if k in taken:
                continue
            r = _resolved_id(c)
            if r in out:
                clash.add(r)
            out[r] = k
        return {r: k for r, k in out.items() if r not in clash}

    old = resolved(before, set(pairs.values()))
    for r, k in resolved(after, set(pairs)).items():
        if r in old:
            pairs[k] = old[r]
    return pairs


def diff_reports(previous: MatrixReport | None, current: MatrixReport) -> MatrixDiff:
    d = MatrixDiff(previous_started_at=previous.started_at if previous else None, current_started_at=current.started_at,
                   partial=current.partial)
    if previous is None:
        return d
    before = _ran(previous.cells)
    after = _ran(current.cells)
    pairs = pair_cells(before, after)
    for key, cur in after.items():
        old = before.get(pairs[key]) if key in pairs else None
        was = pairs.get(key) if pairs.get(key) != key else None
        if old is None:
            d.added.append(CellChange(key=key, before=None, after=cur.verdict, after_reason=cur.reason))
        elif old.verdict != cur.verdict:
            d.changed.append(CellChange(key=key, before_key=was, before=old.verdict, after=cur.verdict,
                                        before_reason=old.reason, after_reason=cur.reason))
        else:
            d.unchanged += 1
    matched = set(pairs.values())
    for key, old in before.items():
        if key not in matched:
            d.not_run.append(CellChange(key=key, before=old.verdict, after=None, before_reason=old.reason))
    # The sentinel too looks only at cells that ran in both runs (paired as above).
    d.sentinel = [cell_sentinel(before[pairs[k]], cur) for k, cur in after.items() if k in pairs]
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
            was = f" (was `{c.before_key}`)" if c.before_key else ""
            out.append(f"| `{c.key}`{was} | {_ICON[c.before]} | {_ICON[c.after]} | {why} |")
    out += ["", *sentinel_markdown(d.sentinel, heading + "#")]
    return "\n".join(out).rstrip() + "\n"
