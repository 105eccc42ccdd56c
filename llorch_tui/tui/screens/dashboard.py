"""The dashboard mode: pools, catalog, workers, downloads, GPU/RAM gauges and the event log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from rich.markup import escape
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
from llorch_tui.protocol.fit import FitEstimate
from llorch_tui.tui.core.fit_view import FitRecord, fit_line
from llorch_tui.tui.core.model import ALL, CONN_STYLE, DashboardModel
from llorch_tui import __version__
from llorch_tui.tui.messages import (AddModelRequested, CopyRequested, DownloadRequested, FollowRequested,
                                    InstallRequested, RefreshRequested, SpawnRequested, StopRequested)
from llorch_tui.tui.widgets.gauges import GaugePanel
from llorch_tui.tui.widgets.live_table import LiveTable
from llorch_tui.tui.widgets.log_pane import LogPane

if TYPE_CHECKING:
    from llorch_tui.protocol.catalog import ModelEntry
    from llorch_tui.tui.app import LlorchApp

POOL_COLS = ("pool", "state", "backends", "workers")
CATALOG_COLS = ("pool", "model", "arch", "size", "have", "fit", "source", "verdicts")
# State first: it must stay visible at 80 columns; gpu and port are the least needed.
WORKER_COLS = ("state", "pool", "id", "model", "backend", "reqs", "tok/s", "queue", "memory", "uptime", "gpu", "port")
DOWNLOAD_COLS = ("pool", "model", "progress", "bytes", "speed", "eta", "state")


class PoolFit:
    """The spawn modal's view of one model's fit on one pool (its modals.FitSource)."""

    def __init__(self, app: "LlorchApp", pool: str, model: str) -> None:
        self.app, self.pool, self.model = app, pool, model

    def judge(self, backend: str, dtype: str) -> FitEstimate | FitRecord | None:
        snap = self.app.model.pools[self.pool].snapshot
        return self.app.model.fits.judge(self.pool, self.model, backend, snap.status if snap else None, dtype)

    async def estimate(self, dtype: str) -> None:
        await self.app.estimate_fit(self.pool, self.model, dtype)


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
                yield LiveTable(POOL_COLS, "**Pools**: every configured pool and its connection state (`⚠ skew`: its "
                                "llorch is another version; `I` installs this one there). Select one to narrow the "
                                "other panes to it, or `All`.", id="pools", title="Pools")
                yield Static("", id="pool-detail")
                yield GaugePanel(id="gauges")
            with Vertical(id="right"):
                yield LiveTable(CATALOG_COLS, "**Catalog**: the models each pool knows: `have` ✓ downloaded (or a "
                                "percentage), `fit` ✓/✗ = fits the pool's free memory (the border says how much), "
                                "`verdicts` = last matrix result per backend. `d` downloads, `s` spawns a worker, "
                                "`a` registers or synthesizes a model.", id="catalog", title="Catalog")
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
            self._model_highlighted()
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
            self._show_detail(model)

    def _detail(self, model: DashboardModel) -> Text:
        t = Text()
        skewed = model.skewed()
        for pv in model.selected(self.selection):
            if pv.conn == "online" and self.selection == ALL and pv.name not in skewed:
                continue  # all is well there: the detail names only pools that need a look
            t.append(f"{pv.name}: ", style="bold")
            t.append(pv.conn, style=CONN_STYLE.get(pv.conn, ""))
            st = pv.snapshot.status if pv.snapshot else None
            if pv.conn == "online" and st is not None:
                t.append(f" {st.hostname} · {st.os} · llorch {st.llorch_version}")
                if st.llorch_version != __version__:
                    t.append(f" — version skew: llorch {__version__} here", style="bold yellow")
                    t.append(f"\n  → I installs {__version__} there (llorch pool install --host {pv.name} --upgrade)",
                             style="dim")
            if pv.reason:
                t.append(f" — {pv.reason}", style="red")
            if pv.hint:
                t.append(f"\n  → {pv.hint}", style="dim")
            t.append("\n")
        return t

    def fit_note(self, model: DashboardModel) -> str | None:
        """The highlighted catalog model's fit on its default backend, for the Catalog pane's border: what it
        needs against what is free. None without a highlighted model."""
        key = self.selected_model_key()
        entry = model.model_entry(key) if key else None
        if key is None or entry is None:
            return None
        pool = key.partition("/")[0]
        backends = model.spawn_backends(pool, entry)
        if not backends:
            return escape(f"{entry.id}: no backend of {pool} runs it")
        snap = model.pools[pool].snapshot
        line = fit_line(model.fits.judge(pool, entry.id, backends[0], snap.status if snap else None),
                        entry.id, backends[0], short=True)
        return escape(line.plain)  # ids from pools: never markup

    @on(DataTable.RowHighlighted, "#catalog")
    def _model_highlighted(self) -> None:
        catalog = self.query_one("#catalog", LiveTable)
        catalog.set_note(self.fit_note(self.lapp.model) if catalog.row_count else
                         "no models yet: a adds one (synthesize a tiny one, or register a preset)")

    def _show_detail(self, model: DashboardModel) -> None:
        detail = self._detail(model)
        if detail != self._last_detail:  # Static.update re-lays out the screen: only on a change
            self._last_detail = detail
            self.query_one("#pool-detail", Static).update(detail)

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
        usable = self.lapp.model.pool_backends(pool)
        gpus = [(g.index, g.name) for g in snap.status.gpus] if snap and snap.status else []
        backends = self.lapp.model.spawn_backends(pool, entry)
        if not backends:
            self.lapp.warn(f"{entry.id} cannot run on {pool}: it supports {', '.join(entry.backends) or 'no backend'}, "
                           f"the pool has {', '.join(usable) or 'no usable backend'}",
                           "pick another pool, or update the model's backends (llorch-pool models update)")
            return

        def done(result: dict[str, Any] | None) -> None:
            if result:
                self.post_message(SpawnRequested(pool, build_params(SpawnParams, {"model": entry.id, **result}, "spawn")))

        self.app.push_screen(SpawnModal(pool, entry.id, backends, gpus, PoolFit(self.lapp, pool, entry.id)),
                             guarded(done, self))

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

    def action_install_pool(self) -> None:
        model = self.lapp.model
        pool = self.selection
        if pool == ALL:
            skewed = model.skewed()
            if len(skewed) != 1:
                self.lapp.warn("which pool? highlight one in the Pools pane (P) first",
                               f"pools with version skew: {', '.join(skewed)}" if skewed else None)
                return
            pool = skewed[0]
        from llorch_tui.fleet_ops.install import DEFAULT_VENV
        from llorch_tui.tui.screens.modals import InstallModal, InstallPlan

        cfg = next(p for p in self.lapp.config.pools if p.name == pool)
        where = ("this machine" if cfg.transport == "local" else
                 f"{cfg.user + '@' if cfg.user else ''}{cfg.host}{f':{cfg.port}' if cfg.port else ''}")
        snap = model.pools[pool].snapshot
        installed = snap.status.llorch_version if snap and snap.status and model.pools[pool].conn == "online" else None
        target = self.lapp.config_target
        plan = InstallPlan(pool=pool, where=where, version=__version__, venv=DEFAULT_VENV,
                           config=str(target[0]) if target else None, installed=installed,
                           upgrade=installed is not None and installed != __version__)

        def done(result: dict[str, Any] | None) -> None:
            if result:
                from llorch_tui.fleet_ops.install import InstallOptions

                self.post_message(InstallRequested(pool, InstallOptions(**result)))

        self.app.push_screen(InstallModal(plan), guarded(done, self))

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
