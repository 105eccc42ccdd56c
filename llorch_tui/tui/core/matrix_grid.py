"""The matrix screen's state: models x (pool/backend) cells, fed by the engine's events (no UI)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from llorch_tui.matrix.classify import DRIFT_CODES
from llorch_tui.matrix.reports.bench_tables import bench_detail
from llorch_tui.matrix.reports.certificates import environment_figures, parity_figures
from llorch_tui.protocol.matrix import CellKey, CellResult, RunSummary
from llorch_tui.tui.core.fmt import fmt_bytes

STYLE = {"pending": "dim", "running": "bold yellow", "pass": "bold green", "fail": "bold red", "skipped": "dim"}
# A worker that runs but answers unlike its reference (parity_drift, wrong_answer): apart from broken cells.
DRIFT_STYLE = "bold magenta"
# A cell says its reason in a word or two, so a grid of many pools fits the screen; the full code, reason
# and hint are in the cell's detail (below the grid, and `i`).
SHORT_REASON = {
    "backend_absent": "absent", "backend_unsupported": "unsupported", "not_downloaded": "not local",
    "not_in_catalog": "unknown", "will_not_fit": "won't fit", "pool_offline": "offline", "stopped": "stopped",
    "download_failed": "download", "checkpoint_corrupt": "corrupt", "model_invalid": "invalid",
    "tokenizer_missing": "tokenizer", "backend_unavailable": "no backend", "port_in_use": "port busy",
    "oom": "oom", "load_error": "load", "timeout": "timeout", "crash": "crash", "empty_output": "empty",
    "wrong_output": "bad output", "nondeterministic": "nondeterm.", "second_prompt_failed": "2nd prompt",
    "unstable": "unstable", "connection_lost": "conn. lost", "cancelled": "cancelled", "internal": "internal",
    "dtype_unsupported": "dtype", "parity_drift": "drift", "wrong_answer": "wrong answer",
}


def short_reason(code: str) -> str:
    return SHORT_REASON.get(code, code)


def column_label(column: str) -> Text:
    """A column's two-line header, pool over device: as narrow as the longer of the two names."""
    pool, _, device = column.partition("/")
    return Text(f"{pool}\n{device}")  # names from pools: Text, never markup


@dataclass
class CellState:
    key: CellKey
    status: str = "pending"  # pending | running | pass | fail | skipped
    stage: str = ""
    fraction: float | None = None
    detail: str = ""
    result: CellResult | None = None


@dataclass
class MatrixGrid:
    models: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    cells: dict[str, CellState] = field(default_factory=dict)
    summary: RunSummary | None = None
    reports: dict[str, str] = field(default_factory=dict)
    running: bool = False
    stopped: bool = False
    # Backends usable on no online pool: their columns would be all "skip backend_absent", so they are
    # left out of the grid (and said so once, in the status line). Their cells still count.
    hidden_backends: list[str] = field(default_factory=list)
    hidden_columns: list[str] = field(default_factory=list)  # pool/backend of an online pool without it

    def apply(self, ev: Any) -> list[str]:
        """Apply one engine event; returns the ids of the cells whose look changed."""
        kind = getattr(ev, "type", "")
        if kind == "plan":
            pools = getattr(ev, "pools", [])
            online = [p for p in pools if p.online]
            usable = {b for p in online for b in p.backends}
            self.hidden_backends = sorted({k.backend for k in ev.cells} - usable) if online else []
            # An online pool's column of a backend it lacks would be all "absent" too: hidden, and named once.
            lacks = {p.name: set(p.backends) for p in online}
            self.hidden_columns = sorted({k.column for k in ev.cells if k.backend not in self.hidden_backends
                                          and k.pool in lacks and k.backend not in lacks[k.pool]})
            # Online pools' columns first (in the order the pools are configured), offline ones last.
            rank = {p.name: (not p.online, i) for i, p in enumerate(pools)}
            shown = {k.column: k.pool for k in ev.cells
                     if k.backend not in self.hidden_backends and k.column not in self.hidden_columns}
            self.columns = sorted(shown, key=lambda c: (rank.get(shown[c], (True, len(rank))), c))
            self.models = sorted({k.model for k in ev.cells})
            self.cells = {k.id: CellState(k) for k in ev.cells}
            self.summary, self.reports, self.running, self.stopped = None, {}, True, False
            return list(self.cells)
        if kind == "run_finished":
            self.summary, self.reports, self.running, self.stopped = ev.summary, dict(ev.reports), False, ev.stopped
            return []
        key: CellKey = ev.result.key if kind == "cell_finished" else ev.key
        cell = self.cells.setdefault(key.id, CellState(key))
        if kind == "cell_started":
            cell.status, cell.stage = "running", "queued"
        elif kind == "cell_progress":
            cell.status, cell.stage, cell.fraction, cell.detail = "running", ev.stage, ev.fraction, ev.detail
        elif kind == "cell_finished":
            cell.status, cell.result = ev.result.verdict, ev.result
        return [key.id]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STYLE}
        for c in self.cells.values():
            out[c.status] += 1
        return out

    def drifted(self) -> int:
        """Failed cells whose worker runs but answers unlike its reference (counted among the failed)."""
        return sum(1 for c in self.cells.values() if c.result is not None and c.result.reason_code in DRIFT_CODES)

    def cell_text(self, cell_id: str) -> Text:
        c = self.cells.get(cell_id)
        if c is None:
            return Text("")
        if c.status == "pending":
            return Text("·", style=STYLE["pending"])
        if c.status == "running":
            pct = f" {c.fraction:.0%}" if c.fraction is not None else ""
            return Text(f"▶ {c.stage}{pct}", style=STYLE["running"])
        r = c.result
        if c.status == "pass":
            tps = r.measurements.tokens_per_second if r else None
            return Text("✓" + (f" {tps:.0f} t/s" if tps else " pass"), style=STYLE["pass"])
        reason = (r.reason_code or "") if r else ""
        if reason in DRIFT_CODES:
            return Text(f"≈ {short_reason(reason)}", style=DRIFT_STYLE)
        mark = "✗" if c.status == "fail" else "–"
        return Text(f"{mark} {short_reason(reason)}".strip(), style=STYLE[c.status])

    def detail(self, cell_id: str) -> str:
        """Markdown of one cell: verdict, reason, hint, measurements, log tail."""
        c = self.cells.get(cell_id)
        if c is None:
            return "No cell here."
        lines = [f"### {c.key.model} on {c.key.pool}/{c.key.device}: {c.status}"]
        if c.status == "running":
            lines.append(f"stage **{c.stage}** {c.detail}")
        r = c.result
        if r is not None:
            if r.reason:
                lines.append(f"**reason** ({r.reason_code}): {r.reason}")
            if r.hint:
                lines.append(f"**next**: {r.hint}")
            m = r.measurements
            figures = [("load", m.load_s, "{:.1f} s"), ("spawn", m.spawn_s, "{:.1f} s"), ("ttft", m.ttft_ms, "{:.0f} ms"),
                       ("tokens/s", m.tokens_per_second, "{:.1f}"), ("tokens", m.tokens_generated, "{}"),
                       ("cell", m.cell_s, "{:.1f} s")]
            shown = [f"{n} {f.format(v)}" for n, v, f in figures if v is not None]
            if m.peak_rss_bytes:
                shown.append(f"peak RSS {fmt_bytes(m.peak_rss_bytes)}")
            if m.device_peak_bytes:
                shown.append(f"device peak {fmt_bytes(m.device_peak_bytes)}")
            if shown:
                lines.append("**measured**: " + " · ".join(shown))
            if m.sample_text:
                lines.append(f"**sample**: {m.sample_text!r}")
            lines += [f"**bench**: {line}" for line in bench_detail(r)]
            if r.parity is not None:
                lines.append("**parity**: " + " · ".join(f"{k} {v}" for k, v in parity_figures(r.parity)))
            if r.environment is not None:
                lines.append("**environment**: " + " · ".join(f"{k} {v}" for k, v in environment_figures(r.environment)))
            if r.log_tail:
                tail = "\n".join(r.log_tail[-15:])
                # A fence longer than any backtick run in the log: a worker's output cannot close it early.
                fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", tail)), default=0))
                lines.append(f"{fence}\n{tail}\n{fence}")
        return "\n\n".join(lines)
