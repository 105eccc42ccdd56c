"""A DataTable that is synced from keyed rows: changed cells are updated in place, never rebuilt."""

from __future__ import annotations

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets.data_table import ColumnKey
from textual.widgets import DataTable

from llorch_tui.tui.core.model import Row


def _width(cell: str | Text) -> int:
    return cell.cell_len if isinstance(cell, Text) else len(cell)


def _cell(value: str | Text) -> Text:
    # Plain strings become Text here: names from a pool are never parsed as markup (and it is cheaper).
    return value if isinstance(value, Text) else Text(value, no_wrap=True)


class LiveTable(DataTable[str | Text]):
    """Rows are keyed by stable ids; `sync` adds, updates (cell by cell) and removes, nothing else."""

    HELP = "Arrow keys move the cursor; Enter shows details."

    def __init__(self, columns: tuple[str, ...], help_text: str = "", *, id: str | None = None,
                 title: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.column_names = columns
        self.shown: dict[str, Row] = {}
        self.pending: dict[str, Row] = {}  # changed rows out of view, drawn when they scroll in
        # A titled border on every pane; the focused one's is highlighted (llorch.tcss).
        self.border_title = title
        if help_text:
            # Textual's help panel reads HELP from the focused widget: each table has its own text.
            self.HELP = help_text  # type: ignore[misc]

    def set_note(self, hint: str | None) -> None:
        """A note in the pane's bottom border (what an empty pane tells the user to do, what is folded away):
        it costs no row."""
        if self.border_subtitle != hint:
            self.border_subtitle = hint

    def on_mount(self) -> None:
        for name in self.column_names:
            self.add_column(name, key=name)

    def sync(self, rows: dict[str, Row]) -> int:
        """Make the table show `rows`; returns how many cells/rows changed. Call inside app.batch_update().

        A changed row out of view is not updated now: it waits in `pending` and is drawn when it scrolls into
        view (with 512 worker rows whose figures all move every second, updating only the ~20 visible ones
        is what keeps the refresh cheap). `shown` is what the table shows."""
        changed = 0
        for key in [k for k in self.shown if k not in rows]:
            self.remove_row(key)
            del self.shown[key]
            self.pending.pop(key, None)
            changed += 1
        visible = self._visible_rows()
        for key, row in rows.items():
            old = self.shown.get(key)
            if old is None:
                self.add_row(*(_cell(c) for c in row), key=key)
                self.shown[key] = row
                changed += 1
            elif old == row:
                self.pending.pop(key, None)
            elif self.get_row_index(key) in visible:
                self.pending.pop(key, None)
                changed += self._update_row(key, old, row)
            else:
                self.pending[key] = row
        return changed

    def _update_row(self, key: str, old: Row, row: Row) -> int:
        changed = 0
        for col, a, b in zip(self.column_names, old, row):
            if a != b:
                # Only a cell wider than its column asks for a re-measure; anything else would
                # make DataTable re-measure the whole column (every row) on each update.
                grow = _width(b) > self.columns[ColumnKey(col)].content_width
                self.update_cell(key, col, _cell(b), update_width=grow)
                changed += 1
        self.shown[key] = row
        return changed

    def _visible_rows(self) -> range:
        top = int(self.scroll_y)
        return range(top, top + max(self.size.height, 1) + 1)

    def _flush_pending(self) -> None:
        """Draw the deferred rows that are in view now."""
        if not self.pending:
            return
        visible = self._visible_rows()
        due = [k for k in self.pending if self.get_row_index(k) in visible]
        if due:
            with self.app.batch_update():
                for key in due:
                    self._update_row(key, self.shown[key], self.pending.pop(key))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self._flush_pending()

    def on_resize(self) -> None:
        self._flush_pending()

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        except Exception:  # cursor outside the table while rows change
            return None
