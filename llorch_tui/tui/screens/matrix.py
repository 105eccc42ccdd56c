"""The matrix mode: models x (pool/backend), coloured live from the engine's events; cell detail; export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Markdown, Static


from llorch_tui.tui.screens.base import ModeScreen
from llorch_tui.tui.guard import guard_handlers
from llorch_tui.tui.messages import MatrixRequested
from llorch_tui.tui.action_registry import bindings
from llorch_tui.tui.core.clock import frozen
from llorch_tui.tui.core.matrix_grid import DRIFT_STYLE, MatrixGrid, column_label

if TYPE_CHECKING:
    from llorch_tui.tui.app import LlorchApp

IDLE = "No run yet. g starts the matrix (every model x backend x pool of the [matrix] config)."
IDLE_READONLY = "No run yet. Read-only: matrix runs are disabled (start llorch-tui without --readonly to run one)."


class MatrixTable(DataTable[Text]):
    """The grid: pool over backend in a two-line header, the model column fixed while the rest scrolls
    sideways (a grid wider than the terminal keeps its row names and the cursor in view)."""

    HELP = ("**Matrix**: one row per model, one column per pool/backend (and dtype, with --dtypes): the header "
            "names the pool over the backend. Cells go pending (·) → running (▶ stage) → pass (✓, tokens/s) / "
            "fail (✗ reason) / drifted (≈, magenta: runs but answers unlike its reference) / skipped (–). Move "
            "onto a cell to see its detail below (full reason, hint, parity figures, environment); `i` opens it "
            "full-screen. A grid wider than the screen scrolls sideways with the cursor; the model column stays.")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="cell", header_height=2, fixed_columns=1)


@guard_handlers
class DetailModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,i", "close", "Close")]

    def __init__(self, text: str) -> None:
        super().__init__(classes="modal")
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog detail"):
            yield Markdown(self.text)

    def action_close(self) -> None:
        self.dismiss(None)


@guard_handlers
class MatrixScreen(ModeScreen):
    SCOPE = "matrix"
    BINDINGS = bindings("matrix")

    def __init__(self) -> None:
        super().__init__()
        self.grid = MatrixGrid()
        self.current: str | None = None

    @property
    def lapp(self) -> "LlorchApp":
        return cast("LlorchApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(Text(IDLE_READONLY if self.lapp.readonly else IDLE), id="matrix-status")
        yield MatrixTable(id="matrix")
        yield Markdown("", id="cell-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.lapp.signals.matrix.subscribe(self, self.on_matrix_event, immediate=True)  # guarded: on_*

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.lapp.action_enabled(self.SCOPE, action)

    # --- events from the engine (the app's worker calls this) ---------------------------
    def on_matrix_event(self, ev: Any) -> None:
        if ev.type == "idle":  # the run is over and the app let go of the engine: start/stop flip
            self.refresh_bindings()
            return
        changed = self.grid.apply(ev)
        table = self.query_one("#matrix", MatrixTable)
        if ev.type == "plan":
            table.clear(columns=True)  # once per run: the grid's shape is new
            table.add_column("model", key="model")
            for col in self.grid.columns:
                table.add_column(column_label(col), key=col)
            for model in self.grid.models:
                table.add_row(Text(model, style="bold"), *[self.grid.cell_text(f"{c}/{model}") for c in self.grid.columns],
                              key=model)
            if self.grid.columns and self.grid.models:
                # Start on the first cell, so its detail shows at once (not on the model name).
                table.move_cursor(row=0, column=1)
                self.current = f"{self.grid.columns[0]}/{self.grid.models[0]}"
        else:
            with self.app.batch_update():
                for cid in changed:
                    cell = self.grid.cells[cid]
                    if cell.key.column in self.grid.columns:  # not a hidden (absent backend) column
                        table.update_cell(cell.key.model, cell.key.column, self.grid.cell_text(cid),
                                          update_width=True)
        self._status()
        if self.current in changed or ev.type in ("plan", "run_finished"):
            self._show_detail()
        self.refresh_bindings()

    def _status(self) -> None:
        g = self.grid
        n = g.counts()
        t = Text()
        if g.running:
            t.append("RUNNING ", style="bold yellow")
        elif g.summary is not None:
            t.append("STOPPED " if g.stopped else "FINISHED ", style="bold")
        t.append(f"{n['pass']} passed", style="green")
        t.append(" · ")
        t.append(f"{n['fail']} failed", style="red")
        if drifted := g.drifted():
            t.append(f" ({drifted} drifted)", style=DRIFT_STYLE)
        t.append(f" · {n['skipped']} skipped · {n['running']} running · {n['pending']} pending")
        if g.summary is not None and frozen() is None:  # no clock figures in frozen (snapshot) mode
            t.append(f" · {g.summary.duration_s:.0f} s")
        if g.hidden_backends:
            t.append(f"\n{', '.join(g.hidden_backends)}: usable on no online pool, columns hidden "
                     "(their cells count as skipped)", style="dim")
        if g.hidden_columns:
            t.append(f"\n{', '.join(g.hidden_columns)}: the pool lacks the backend, hidden (counted as skipped)",
                     style="dim")
        if g.reports:
            t.append("\nreports: " + "  ".join(g.reports.values()), style="dim")
        self.query_one("#matrix-status", Static).update(t)

    @on(DataTable.CellHighlighted, "#matrix")
    def _highlighted(self, event: DataTable.CellHighlighted) -> None:
        col = event.cell_key.column_key.value
        model = event.cell_key.row_key.value
        self.current = f"{col}/{model}" if col and col != "model" else None
        self._show_detail()

    def _show_detail(self) -> None:
        text = self.grid.detail(self.current) if self.current else ""
        self.query_one("#cell-detail", Markdown).update(text)

    # --- actions ------------------------------------------------------------------------
    def action_start_run(self) -> None:
        self.post_message(MatrixRequested("start"))

    def action_stop_run(self) -> None:
        self.post_message(MatrixRequested("stop"))

    def action_export(self) -> None:
        self.post_message(MatrixRequested("export"))

    def action_back(self) -> None:
        self.app.switch_mode("dashboard")

    def action_detail(self) -> None:
        if self.current:
            self.app.push_screen(DetailModal(self.grid.detail(self.current)))
