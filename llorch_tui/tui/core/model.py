"""The dashboard's state: per-pool connection and last snapshot, downloads, rates and histories.

Everything the panes show is derived here as plain rows keyed by a stable id, so the widgets only
diff rows against what they show (update_cell for what changed) and never rebuild a table.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

from rich.text import Text

from llorch_tui import __version__
from llorch_tui.protocol.catalog import ModelEntry
from llorch_tui.protocol.downloads import DownloadProgress
from llorch_tui.tui.core.fit_view import FitBook, fit_cell
from llorch_tui.tui.core.clock import now
from llorch_tui.tui.core.fmt import fmt_bytes, fmt_duration, fmt_rate, text_bar, threshold_style
from llorch_tui.units import fmt_size_gb
from llorch_tui.protocol.workers import WorkerRecord
from llorch_tui.tui.core.snapshot import PoolSnapshot

HISTORY = 32
ALL = "*"  # the "all pools" selection
Row = tuple[str | Text, ...]
CONN_STYLE = {"online": "green", "connecting": "yellow", "reconnecting": "yellow", "offline": "red"}
STATE_STYLE = {"ready": "green", "starting": "yellow", "stopping": "yellow", "stopped": "dim",
               "dead": "red", "failed": "red"}
LIVE_STATES = ("ready", "starting", "stopping")
VERDICT_MARK = {"pass": ("✓", "green"), "fail": ("✗", "red"), "skipped": ("–", "dim")}


@dataclass
class PoolView:
    name: str
    conn: str = "connecting"
    reason: str | None = None
    hint: str | None = None
    ever_online: bool = False
    snapshot: PoolSnapshot | None = None
    failures: int = 0
    retry_at: float = 0.0
    reported: str | None = None  # the last failure written to the event log (each is logged once)


@dataclass
class DownloadView:
    pool: str
    model: str
    progress: DownloadProgress
    state: str = "running"  # running | done | failed | cancelled
    error: str | None = None


@dataclass
class GpuLine:
    label: str
    used: int | None
    total: int | None
    util: int | None
    history: list[float] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        return self.used / self.total if self.used is not None and self.total else None


def matches(row: Row, needle: str) -> bool:
    if not needle:
        return True
    n = needle.lower()
    return any(n in (c.plain if isinstance(c, Text) else c).lower() for c in row)


class DashboardModel:
    def __init__(self, pools: Iterable[str]) -> None:
        self.pools: dict[str, PoolView] = {p: PoolView(p) for p in pools}
        self.downloads: dict[str, DownloadView] = {}
        self.gpu_history: dict[tuple[str, int], deque[float]] = {}
        self.ram_history: dict[str, deque[float]] = {}
        self._tokens: dict[tuple[str, str], tuple[int, float, float | None]] = {}
        self.pruned: set[str] = set()  # "pool/worker id" of finished workers the user cleared away
        self.fits = FitBook()

    # --- inputs -------------------------------------------------------------------------
    def set_conn(self, pool: str, conn: str, reason: str | None = None, hint: str | None = None) -> None:
        pv = self.pools[pool]
        if conn == "connecting" and pv.ever_online:
            conn = "reconnecting"
        if conn == "online":
            reason, hint = None, None
        pv.conn, pv.reason, pv.hint = conn, reason, hint

    def apply(self, snap: PoolSnapshot) -> None:
        pv = self.pools[snap.pool]
        pv.snapshot, pv.failures, pv.ever_online, pv.reported = snap, 0, True, None
        if pv.conn != "online":
            self.set_conn(snap.pool, "online")
        if snap.status is not None:
            for g in snap.status.gpus:
                if g.memory_used is not None and g.memory_total:
                    h = self.gpu_history.setdefault((snap.pool, g.index), deque(maxlen=HISTORY))
                    h.append(g.memory_used / g.memory_total)
            ram = snap.status.ram
            if ram.total:
                self.ram_history.setdefault(snap.pool, deque(maxlen=HISTORY)).append(1 - ram.available / ram.total)
        for w in snap.workers:
            key = (snap.pool, w.id)
            tokens = w.tokens_generated or 0
            prev = self._tokens.get(key)
            rate = prev[2] if prev else None
            if prev and snap.at > prev[1]:
                rate = max(tokens - prev[0], 0) / (snap.at - prev[1])
            self._tokens[key] = (tokens, snap.at, rate)

    def fail(self, pool: str, reason: str, hint: str | None = None) -> None:
        pv = self.pools[pool]
        pv.failures += 1
        self.set_conn(pool, "offline", reason, hint)
        # Back off: 2, 4, 8 ... up to 30 s between reconnect attempts.
        pv.retry_at = now() + min(2 ** pv.failures, 30)

    def download_event(self, pool: str, progress: DownloadProgress) -> None:
        key = f"{pool}/{progress.model}"
        dv = self.downloads.get(key)
        if dv is None:
            self.downloads[key] = DownloadView(pool, progress.model, progress)
        else:
            dv.progress, dv.state = progress, "running"

    def download_end(self, pool: str, model: str, state: str, error: str | None = None) -> None:
        dv = self.downloads.get(f"{pool}/{model}")
        if dv is not None:
            dv.state, dv.error = state, error

    def online(self) -> list[str]:
        return [p.name for p in self.pools.values() if p.conn == "online"]

    def skewed(self) -> list[str]:
        """Pools whose agent runs another llorch version than this machine."""
        return [p.name for p in self.pools.values() if p.snapshot is not None and p.snapshot.status is not None
                and p.snapshot.status.llorch_version != __version__]

    # --- derived rows -------------------------------------------------------------------
    def selected(self, selection: str) -> list[PoolView]:
        return list(self.pools.values()) if selection == ALL else [self.pools[selection]] if selection in self.pools else []

    def pool_rows(self) -> dict[str, Row]:
        rows: dict[str, Row] = {}
        skewed = self.skewed()
        for pv in self.pools.values():
            st = pv.snapshot.status if pv.snapshot else None
            backends = ",".join(st.backends) if st else "—"
            nw = sum(1 for w in pv.snapshot.workers if w.state in ("ready", "starting")) if pv.snapshot else 0
            conn = Text(pv.conn, style=CONN_STYLE.get(pv.conn, ""))
            if pv.name in skewed:
                conn.append(" ⚠ skew", style="bold yellow")  # the detail line says which versions and the fix (I)
            rows[pv.name] = (pv.name, conn, backends, str(nw))
        return rows

    def catalog_rows(self, selection: str, needle: str = "") -> dict[str, Row]:
        rows: dict[str, Row] = {}
        for pv in self.selected(selection):
            if not pv.snapshot or not pv.snapshot.catalog:
                continue
            for m in pv.snapshot.catalog.models:
                dv = self.downloads.get(f"{pv.name}/{m.id}")
                if dv is not None and dv.state == "running" and dv.progress.bytes_total:
                    have = Text(f"{dv.progress.bytes_done / dv.progress.bytes_total:4.0%}", style="yellow")
                else:
                    have = Text("✓", style="green") if m.downloaded else Text("—", style="dim")
                verdicts = Text()
                for backend, rec in sorted(m.verdicts.items()):
                    mark, style = VERDICT_MARK.get(rec.verdict, ("?", ""))
                    verdicts.append(f"{backend}{mark} ", style=style)
                usable = self.spawn_backends(pv.name, m)
                fit = fit_cell(self.fits.judge(pv.name, m.id, usable[0], pv.snapshot.status) if usable else None)
                row: Row = (pv.name, m.id, m.architecture, fmt_size_gb(m.size_gb), have, fit, m.source, verdicts)
                if matches(row, needle):
                    rows[f"{pv.name}/{m.id}"] = row
        return rows

    def _workers(self, selection: str) -> tuple[list[tuple[str, WorkerRecord]], list[tuple[str, WorkerRecord]]]:
        """(live, finished) workers of the selection; finished ones the user pruned are left out."""
        live: list[tuple[str, WorkerRecord]] = []
        finished: list[tuple[str, WorkerRecord]] = []
        for pv in self.selected(selection):
            for w in pv.snapshot.workers if pv.snapshot else []:
                if w.state in LIVE_STATES:
                    live.append((pv.name, w))
                elif f"{pv.name}/{w.id}" not in self.pruned:
                    finished.append((pv.name, w))
        return live, finished

    def finished_count(self, selection: str) -> int:
        return len(self._workers(selection)[1])

    def prune_finished(self, selection: str) -> int:
        """Hide the finished workers shown now for good (the pools keep their records); returns how many."""
        _, finished = self._workers(selection)
        self.pruned.update(f"{pool}/{w.id}" for pool, w in finished)
        return len(finished)

    def worker_rows(self, selection: str, needle: str = "", show_finished: bool = False) -> dict[str, Row]:
        """Live workers first (then finished ones, only when asked for), each with its probed figures."""
        rows: dict[str, Row] = {}
        t = now()
        live, finished = self._workers(selection)
        for pool, w in live + (finished if show_finished else []):
            rate = self._tokens.get((pool, w.id), (0, 0.0, None))[2]
            alive = w.state in LIVE_STATES
            uptime = fmt_duration(t - w.started_at.timestamp()) if alive else "—"
            mem = w.device_allocated_bytes if w.device_allocated_bytes else w.rss_bytes
            row: Row = (Text(w.state, style=STATE_STYLE.get(w.state, "")), pool, w.id, w.model, w.backend,
                        "—" if w.requests is None else str(w.requests),
                        "—" if rate is None or not alive else f"{rate:.1f}",
                        "—" if w.in_flight is None or not alive else str(w.in_flight),
                        fmt_bytes(mem) if alive else "—", uptime,
                        "—" if w.gpu is None else str(w.gpu), str(w.port))
            if matches(row, needle):
                rows[f"{pool}/{w.id}"] = row
        return rows

    def download_rows(self, selection: str) -> dict[str, Row]:
        rows: dict[str, Row] = {}
        for key, dv in self.downloads.items():
            if selection != ALL and dv.pool != selection:
                continue
            p = dv.progress
            frac = p.bytes_done / p.bytes_total if p.bytes_total else None
            style = {"done": "green", "failed": "red", "cancelled": "dim"}.get(dv.state, "yellow")
            state = dv.state if dv.state != "running" else p.stage
            rows[key] = (dv.pool, dv.model, Text(text_bar(frac, 16), style=style),
                         f"{fmt_bytes(p.bytes_done)} / {fmt_bytes(p.bytes_total)}", fmt_rate(p.speed_bps),
                         fmt_duration(p.eta_s) if dv.state == "running" else "—",
                         Text(state if not dv.error else f"{state}: {dv.error}", style=style))
        return rows

    def gpu_lines(self, selection: str) -> list[GpuLine]:
        lines: list[GpuLine] = []
        for pv in self.selected(selection):
            st = pv.snapshot.status if pv.snapshot else None
            if st is None:
                continue
            prefix = f"{pv.name} " if selection == ALL else ""
            for g in st.gpus:
                lines.append(GpuLine(f"{prefix}GPU{g.index} {g.name}", g.memory_used, g.memory_total, g.utilization,
                                     list(self.gpu_history.get((pv.name, g.index), ()))))
            used = st.ram.total - st.ram.available
            lines.append(GpuLine(f"{prefix}RAM", used, st.ram.total, None, list(self.ram_history.get(pv.name, ()))))
        return lines

    def worker(self, key: str):  # -> WorkerRecord | None
        pool, _, wid = key.partition("/")
        pv = self.pools.get(pool)
        if pv is None or pv.snapshot is None:
            return None
        return next((w for w in pv.snapshot.workers if w.id == wid), None)

    def pool_backends(self, pool: str) -> list[str]:
        """The pool's usable backends (cpu until its status says more)."""
        pv = self.pools.get(pool)
        st = pv.snapshot.status if pv is not None and pv.snapshot is not None else None
        return st.backends if st is not None else ["cpu"]

    def spawn_backends(self, pool: str, entry: ModelEntry) -> list[str]:
        """The backends a worker of `entry` can have on `pool`, the default (spawn modal, fit column) first."""
        usable = self.pool_backends(pool)
        return [b for b in entry.backends if b in usable]

    def model_entry(self, key: str):  # -> ModelEntry | None
        pool, _, mid = key.partition("/")
        pv = self.pools.get(pool)
        if pv is None or pv.snapshot is None or pv.snapshot.catalog is None:
            return None
        return pv.snapshot.catalog.get(mid)


def gauge_text(line: GpuLine, bar_width: int = 14, mask: bool = False) -> Text:
    """Two lines per gauge: the label, then the threshold-coloured bar, used/total GiB, utilisation and
    the history sparkline (fits the 44-column pools pane)."""
    from llorch_tui.tui.core.fmt import sparkline

    frac = None if mask else line.fraction
    style = threshold_style(frac)
    t = Text(line.label[:42] + "\n", style="bold")
    t.append(text_bar(frac, bar_width), style=style)
    if mask:
        t.append(" (masked)", style="dim")
        return t
    if line.used is not None and line.total:
        t.append(f" {fmt_bytes(line.used).removesuffix(' GiB')}/{fmt_bytes(line.total)}")
    if line.util is not None:
        t.append(f" {line.util}%")
    t.append(" " + sparkline(line.history, 10, top=1.0), style=style)
    return t
