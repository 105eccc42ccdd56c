"""Will it fit, as the dashboard shows it: the pools' `models.fit` estimates, judged against the free memory
of the pool's latest status (the figure the gauges show), so a verdict follows the pool as memory comes
and goes without asking the pool again. No UI here."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from llorch_tui.pool.fit import decide, free_memory
from llorch_tui.protocol.catalog import ModelEntry
from llorch_tui.protocol.fit import FitEstimate, FitReport
from llorch_tui.protocol.status import PoolStatus
from llorch_tui.tui.core.fmt import fmt_bytes

FitKey = tuple[str, str, str]  # pool, model, dtype ("auto": the worker's choice per backend)


@dataclass
class FitRecord:
    downloaded: bool  # the catalog entry's state it was estimated for (a download changes the source)
    report: FitReport | None = None
    error: str | None = None
    pending: bool = True


class FitBook:
    def __init__(self) -> None:
        self.records: dict[FitKey, FitRecord] = {}

    def wanted(self, pool: str, entries: list[ModelEntry]) -> list[str]:
        """The models of a pool whose default estimate is missing or out of date (downloaded since)."""
        out = []
        for m in entries:
            rec = self.records.get((pool, m.id, "auto"))
            if rec is None or (not rec.pending and rec.downloaded != m.downloaded):
                out.append(m.id)
        return out

    def start(self, key: FitKey, downloaded: bool) -> None:
        self.records[key] = FitRecord(downloaded)

    def done(self, key: FitKey, report: FitReport | None, error: str | None = None) -> None:
        rec = self.records.setdefault(key, FitRecord(False))
        rec.report, rec.error, rec.pending = report, error, False

    def settled(self) -> bool:
        return not any(r.pending for r in self.records.values())

    def judge(self, pool: str, model: str, backend: str, status: PoolStatus | None,
              dtype: str = "auto") -> FitEstimate | FitRecord | None:
        """The estimate for one backend judged against the status's free memory now; the record itself
        while it is pending or failed; None when there is none (never asked, or the backend not estimated)."""
        rec = self.records.get((pool, model, dtype))
        if rec is None or rec.report is None:
            return rec
        est = next((e for e in rec.report.estimates if e.backend == backend), None)
        if est is None:
            return None
        free, gpu = free_memory(status, backend) if status is not None and backend in status.backends else (None, None)
        return decide(est.model_copy(), free, est.measured_bytes, pool, gpu)


def fit_cell(judged: FitEstimate | FitRecord | None) -> Text:
    """The catalog's `fit` column: ✓ / ✗ / ? and the memory the worker needs."""
    if judged is None:
        return Text("—", style="dim")
    if isinstance(judged, FitRecord):
        return Text("…", style="dim") if judged.pending else Text("—", style="dim")
    mark, style = {True: ("✓", "green"), False: ("✗", "bold red"), None: ("?", "yellow")}[judged.fits]
    return Text(f"{mark} {fmt_bytes(judged.need_bytes)}", style=style)


def fit_line(judged: FitEstimate | FitRecord | None, model: str, backend: str, short: bool = False) -> Text:
    """One sentence: what it needs against what is free, or why there is no estimate. `short`: for a pane's
    border (no dtype, no basis)."""
    if judged is None:
        return Text(f"fit of {model} on {backend}: not estimated", style="dim")
    if isinstance(judged, FitRecord):
        if judged.pending:
            return Text(f"fit of {model} on {backend}: estimating…", style="dim")
        return Text(f"fit of {model}: no estimate ({judged.error})", style="dim")
    basis = "measured peak" if judged.measured_bytes else "estimate"
    t = Text(f"{model} on {backend}: needs {fmt_bytes(judged.need_bytes)}" if short else
             f"{model} on {backend} ({judged.dtype}): needs {fmt_bytes(judged.need_bytes)} ({basis})")
    if judged.free_bytes is None:
        t.append(", free memory unknown", style="yellow")
    else:
        where = f"GPU {judged.gpu}" if judged.gpu is not None else "RAM"
        t.append(f", {fmt_bytes(judged.free_bytes)} {where} free: ")
        t.append("fits" if judged.fits else "WILL NOT FIT", style="green" if judged.fits else "bold red")
    return t
