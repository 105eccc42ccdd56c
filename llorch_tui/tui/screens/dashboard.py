"""The dashboard mode: pools, catalog, workers, downloads, GPU/RAM gauges and the event log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.widgets import DataTable, Footer, Header, Input, Static


from llorch_tui.tui.screens.base import ModeScreen
from llorch_tui.protocol.params import RegisterParams, SpawnParams, SynthParams, build_params
from llorch_tui.tui.guard import guard_handlers, guarded
from llorch_tui.tui.action_registry import bindings
from llorch_tui.tui.core.model import ALL, CONN_STYLE, DashboardModel
from llorch_tui import __version__
from llorch_tui.tui.messages import (AddModelRequested, CopyRequested, DownloadRequested, FollowRequested,
                                    RefreshRequested, SpawnRequested, StopRequested)
from llorch_tui.tui.widgets.gauges import GaugePanel
from llorch_tui.tui.widgets.live_table import LiveTable
from llorch_tui.tui.widgets.log_pane import LogPane

if TYPE_CHECKING:
    from llorch_tui.protocol.catalog import ModelEntry
    from llorch_tui.tui.app import LlorchApp

POOL_COLS = ("pool", "state", "backends", "workers")
CATALOG_COLS = ("pool", "model", "arch", "size", "have", "source", "verdicts")
# State first: it must stay visible at 80 columns; gpu and port are the least needed.
WORKER_COLS = ("state", "pool", "id", "model", "backend", "reqs", "tok/s", "queue", "memory", "uptime", "gpu", "port")
DOWNLOAD_COLS = ("pool", "model", "progress", "bytes", "speed", "eta", "state")


@guard_handlers
class DashboardScreen(ModeScreen):
    SCOPE = "dashboard"
    BINDINGS = bindings("dashboard")

    def __init__(self) -> None:
        super().__init__()
        self.selection = ALL
        self.needle = ""
        self.stale = True
        self.show_finished = False
        self._last_detail: Text | None = None

    @property
    def lapp(self) -> "LlorchApp":
        return cast("LlorchApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield LiveTable(POOL_COLS, "**Pools**: every configured pool and its connection state. "
                                "Select one to narrow the other panes to it, or `All`.", id="pools", title="Pools")
                yield Static("", id="pool-detail")
                yield GaugePanel(id="gauges")
            with Vertical(id="right"):
                yield LiveTable(CATALOG_COLS, "**Catalog**: the models each pool knows. `have` ✓ = downloaded "
                                "(a percentage while downloading); `verdicts` = last matrix result per backend. "
                                "`d` downloads the highlighted model, `s` spawns a worker for it, `a` registers "
                                "or synthesizes a model.", id="catalog", title="Catalog")
                yield LiveTable(WORKER_COLS, "**Workers**: inference workers on the pools, live ones first, with "
                                "the figures of their /health on every refresh: requests served, `tok/s` (measured "
                                "between refreshes), `queue` (requests queued or generating), memory (device, else "
                                "RSS). Finished workers are folded away: `f` shows them, `X` clears them from view. "
                                "`x` stops the highlighted worker (after a confirmation), `l` follows its log.",
                                id="workers", title="Workers")
                yield LiveTable(DOWNLOAD_COLS, "**Downloads** started from this dashboard: progress, bytes, "
                                "speed and time left.", id="downloads", title="Downloads")
        yield Input(placeholder="filter catalog and workers (Enter keeps it, Esc clears)", id="filter")
        yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        signals = self.lapp.signals
        signals.model_changed.subscribe(self, guarded(self._model_changed, self), immediate=True)
        log = self.query_one(LogPane)
        log.replay(self.lapp.events_seen)
        signals.event_logged.subscribe(self, guarded(log.add_line, self), immediate=True)
        self.query_one("#catalog").focus()
        self.render_model()

    def _model_changed(self, _: None) -> None:
        if self.is_current:
            self.render_model()
        else:
            self.stale = True  # drawn when the dashboard is shown again

    def on_screen_resume(self) -> None:
        if self.stale:
            self.render_model()

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width < 110, "-narrow")
        self.set_class(event.size.height < 32, "-short")

    # --- rendering --------------------------------------------------------------------
    def render_model(self) -> None:
        self.stale = False
        model: DashboardModel = self.lapp.model
        pool_rows = model.pool_rows()
        total = sum(int(str(r[3])) for r in pool_rows.values())
        pools = {ALL: ("All", Text(f"{len(model.online())}/{len(model.pools)} on", style="bold"), "", str(total)),
                 **pool_rows}
        downloads = model.download_rows(self.selection)
        with self.app.batch_update():
            self.query_one("#pools", LiveTable).sync(pools)
            catalog = self.query_one("#catalog", LiveTable)
            catalog.sync(model.catalog_rows(self.selection, self.needle))
            catalog.set_note(None if catalog.row_count else
                                   "no models yet: a adds one (synthesize a tiny one, or register a preset)")
            workers = self.query_one("#workers", LiveTable)
            workers.sync(model.worker_rows(self.selection, self.needle, self.show_finished))
            finished = model.finished_count(self.selection)
            notes = []
            if finished:
                notes.append(f"{finished} finished · f hides · X clears" if self.show_finished else
                             f"{finished} finished hidden · f shows")
            if not workers.row_count:
                notes.append("no live workers: s on a catalog model spawns one")
            workers.set_note(" · ".join(notes) or None)
            dl = self.query_one("#downloads", LiveTable)
            dl.sync(downloads)
            if dl.display != bool(downloads):
                dl.display = bool(downloads)
            self.query_one("#gauges", GaugePanel).show(model.gpu_lines(self.selection))
            detail = self._detail(model)
            if detail != self._last_detail:  # Static.update re-lays out the screen: only on a change
                self._last_detail = detail
                self.query_one("#pool-detail", Static).update(detail)

    def _detail(self, model: DashboardModel) -> Text:
        t = Text()
        for pv in model.selected(self.selection):
            if pv.conn == "online" and self.selection == ALL:
                continue
            t.append(f"{pv.name}: ", style="bold")
            t.append(pv.conn, style=CONN_STYLE.get(pv.conn, ""))
            st = pv.snapshot.status if pv.snapshot else None
            if pv.conn == "online" and st is not None:
                t.append(f" {st.hostname} · {st.os} · llorch {st.llorch_version}")
                if st.llorch_version != __version__:
                    t.append(f" — version skew: llorch {__version__} here", style="bold yellow")
                    t.append(f"\n  → llorch pool install --host {pv.name} --upgrade", style="dim")
            if pv.reason:
                t.append(f" — {pv.reason}", style="red")
            if pv.hint:
                t.append(f"\n  → {pv.hint}", style="dim")
            t.append("\n")
        return t

    # --- selection and filter ---------------------------------------------------------
    @on(DataTable.RowHighlighted, "#pools")
    def _pool_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value or ALL
        if key != self.selection:
            self.selection = key
            self.render_model()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self.render_model()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#catalog").focus()

    def key_escape(self) -> None:
        f = self.query_one("#filter", Input)
        if f.has_focus:
            f.value = ""
            f.remove_class("-shown")
            self.query_one("#catalog").focus()

    def selected_model_key(self) -> str | None:
        return self.query_one("#catalog", LiveTable).current_key()

    def selected_worker_key(self) -> str | None:
        return self.query_one("#workers", LiveTable).current_key()

    # --- actions (the app does the I/O) -----------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.lapp.action_enabled(self.SCOPE, action)

    def action_refresh(self) -> None:
        self.post_message(RefreshRequested())

    def action_filter(self) -> None:
        f = self.query_one("#filter", Input)
        f.add_class("-shown")
        f.focus()

    def action_download(self) -> None:
        key = self.selected_model_key()
        if key is None:
            self.lapp.warn("no model highlighted", "move to a row of the Catalog pane first")
            return
        pool, _, model = key.partition("/")
        self.post_message(DownloadRequested(pool, model))

    def highlighted_model(self) -> tuple[str, ModelEntry] | None:
        """(pool, catalog entry) of the Catalog pane's highlighted row; None (said so) without one."""
        key = self.selected_model_key()
        entry = self.lapp.model.model_entry(key) if key else None
        if key is None or entry is None:
            self.lapp.warn("no model highlighted", "move to a row of the Catalog pane first")
            return None
        return key.partition("/")[0], entry

    def action_spawn(self) -> None:
        if (picked := self.highlighted_model()) is None:
            return
        pool, entry = picked
        from llorch_tui.tui.screens.modals import SpawnModal

        snap = self.lapp.model.pools[pool].snapshot
        usable = snap.status.backends if snap and snap.status else ["cpu"]
        gpus = [(g.index, g.name) for g in snap.status.gpus] if snap and snap.status else []
        backends = [b for b in entry.backends if b in usable]
        if not backends:
            self.lapp.warn(f"{entry.id} cannot run on {pool}: it supports {', '.join(entry.backends) or 'no backend'}, "
                           f"the pool has {', '.join(usable) or 'no usable backend'}",
                           "pick another pool, or update the model's backends (llorch-pool models update)")
            return

        def done(result: dict[str, Any] | None) -> None:
            if result:
                self.post_message(SpawnRequested(pool, build_params(SpawnParams, {"model": entry.id, **result}, "spawn")))

        self.app.push_screen(SpawnModal(pool, entry.id, backends, gpus), guarded(done, self))

    def action_copy_model(self) -> None:
        if (picked := self.highlighted_model()) is None:
            return
        pool, entry = picked
        if not entry.downloaded:
            self.lapp.warn(f"{entry.id} is not downloaded on {pool}: nothing to copy", "download it first (d)")
            return
        targets = [p for p in self.lapp.model.online() if p != pool]
        if not targets:
            self.lapp.warn("no other pool is online to copy to", "add a pool to the configuration, or wait for it")
            return
        from llorch_tui.tui.screens.modals import CopyModal

        def done(target: str | None) -> None:
            if target:
                self.post_message(CopyRequested(pool, entry.id, target))

        self.app.push_screen(CopyModal(pool, entry.id, targets), guarded(done, self))

    def action_stop(self) -> None:
        key = self.selected_worker_key()
        rec = self.lapp.model.worker(key) if key else None
        if key is None or rec is None:
            self.lapp.warn("no worker highlighted", "move to a row of the Workers pane first")
            return
        pool = key.partition("/")[0]
        from llorch_tui.tui.screens.modals import ConfirmModal

        def done(ok: bool | None) -> None:
            if ok:
                self.post_message(StopRequested(pool, rec.id))

        question = f"Stop worker {rec.id} ({rec.model}, {rec.backend}) on {pool}?"
        self.app.push_screen(ConfirmModal(question), guarded(done, self))

    def action_logs(self) -> None:
        key = self.selected_worker_key()
        if key is None:
            self.lapp.warn("no worker highlighted", "move to a row of the Workers pane first")
            return
        pool, _, wid = key.partition("/")
        self.post_message(FollowRequested(pool, wid))

    def action_add_model(self) -> None:
        from llorch_tui.tui.screens.modals import ModelModal

        pools = [p for p in self.lapp.model.pools]
        default = self.selection if self.selection != ALL else pools[0]
        presets = [m.id for m in self.lapp.config.models]

        def done(result: dict[str, Any] | None) -> None:
            if result:
                pool, kind = result.pop("pool"), result.pop("kind")
                params = (build_params(SynthParams, result, "synthesize") if kind == "synth"
                          else build_params(RegisterParams, result, "register"))
                self.post_message(AddModelRequested(pool, params))

        self.app.push_screen(ModelModal(pools, default, presets), guarded(done, self))

    def action_matrix(self) -> None:
        self.app.switch_mode("matrix")

    def action_toggle_finished(self) -> None:
        self.show_finished = not self.show_finished
        self.render_model()

    def action_prune(self) -> None:
        n = self.lapp.model.prune_finished(self.selection)
        self.lapp.event("information", f"cleared {n} finished worker{'s' * (n != 1)} from view" if n else
                        "no finished workers to clear")
        self.render_model()

    def action_focus_pane(self, pane: str) -> None:
        self.query_one(f"#{pane}").focus()
