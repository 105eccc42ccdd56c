"""The UI-free core and the small pieces: keymap file, live table diffing, rates, the palette."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from llorch_tui.errors import LlorchError
from llorch_tui.tui.core.fmt import fmt_bytes, sparkline, threshold_style
from llorch_tui.tui.core.model import DashboardModel
from llorch_tui.tui.core.snapshot import SyntheticSource
from llorch_tui.tui.keymap import load_keymap
from llorch_tui.tui.widgets.live_table import LiveTable


def test_keymap_file(tmp_path: Path) -> None:
    f = tmp_path / "keymap.toml"
    assert load_keymap(f) == ({}, [])
    f.write_text('[keymap]\ndownload = "D"\n"mode.matrix" = "f2,2"\n')
    assert load_keymap(f) == ({"download": "D", "mode.matrix": "f2,2"}, [])
    # A typo costs only its own line, and says what was meant.
    f.write_text('[keymap]\nspwan = "S"\ndownload = "D"\nhelp = ""\n')
    keys, problems = load_keymap(f)
    assert keys == {"download": "D"}
    assert len(problems) == 2 and "'spwan'" in problems[0] and "did you mean 'spawn'" in problems[0]
    assert "help must be a key string" in problems[1]
    f.write_text("[keymap\n")
    with pytest.raises(LlorchError):
        load_keymap(f)


def test_formatting() -> None:
    assert fmt_bytes(1536) == "1.5 KiB" and fmt_bytes(None) == "—"
    assert [threshold_style(x) for x in (0.1, 0.7, 0.9)] == ["green", "yellow", "red"]
    assert sparkline([0, 0.5, 1.0], top=1.0) == "▁▄█"


async def test_model_rates_and_rows() -> None:
    src = SyntheticSource(pools=2, workers=3)
    model = DashboardModel(src.pools)
    for _ in range(2):
        for p in src.pools:
            snap = await src.fetch(p, 1)
            snap.at = 1000.0 + _  # exactly a second apart
            model.apply(snap)
    rows = model.worker_rows("*")
    assert len(rows) == 6 and all(p.conn == "online" for p in model.pools.values())
    assert rows["pool00/w000"][6] == "50.0"  # tokens/s from the delta between two refreshes
    assert list(model.worker_rows("pool01")) == ["pool01/w000", "pool01/w001", "pool01/w002"]
    assert list(model.worker_rows("*", "pool01/w002")) == [] and len(model.worker_rows("*", "w002")) == 2
    model.fail("pool00", "unreachable", "check the network")
    assert model.pools["pool00"].conn == "offline"
    model.set_conn("pool00", "connecting")
    assert model.pools["pool00"].conn == "reconnecting"  # it was online before
    assert len(model.gpu_lines("pool01")) == 3  # two GPUs and RAM


async def test_finished_workers_collapse_and_prune() -> None:
    src = SyntheticSource(pools=1, workers=3)
    model = DashboardModel(src.pools)
    snap = await src.fetch("pool00", 1)
    snap.workers[0].state = "stopped"
    snap.workers[1].state = "failed"
    model.apply(snap)
    # Live ones only by default; finished ones come after the live ones when shown.
    assert list(model.worker_rows("*")) == ["pool00/w002"] and model.finished_count("*") == 2
    assert list(model.worker_rows("*", show_finished=True)) == ["pool00/w002", "pool00/w000", "pool00/w001"]
    assert model.worker_rows("*", show_finished=True)["pool00/w001"][0].plain == "failed"
    assert model.prune_finished("*") == 2
    assert model.finished_count("*") == 0 and list(model.worker_rows("*", show_finished=True)) == ["pool00/w002"]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LiveTable(("a", "b"), id="t")


async def test_live_table_updates_in_place() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        t = app.query_one(LiveTable)
        assert t.sync({"x": ("1", "[b]not markup[/b]"), "y": ("2", "y")}) == 2
        row_x = t.rows["x"]
        assert t.sync({"x": ("1", "changed"), "y": ("2", "y")}) == 1  # one cell, nothing else
        assert t.rows["x"] is row_x and t.get_cell("x", "b").plain == "changed"
        assert t.sync({"x": ("1", "changed")}) == 1 and t.row_count == 1
        assert t.sync({"x": ("1", "changed")}) == 0
        t.sync({"x": ("1", "[b]x[/b]")})
        await pilot.pause()
        assert t.get_cell("x", "b").plain == "[b]x[/b]"  # pool-supplied text is never parsed as markup


async def test_live_table_defers_rows_out_of_view() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        t = app.query_one(LiveTable)
        t.sync({f"r{i:02d}": (str(i), "old") for i in range(50)})
        await pilot.pause()
        t.sync({f"r{i:02d}": (str(i), "new") for i in range(50)})
        assert t.get_cell("r00", "b").plain == "new"  # in view: updated at once
        assert t.get_cell("r49", "b").plain == "old" and "r49" in t.pending  # out of view: waits
        t.scroll_end(animate=False)
        await pilot.pause()
        assert t.get_cell("r49", "b").plain == "new" and "r49" not in t.pending  # drawn once in view
        t.sync({f"r{i:02d}": (str(i), "old") for i in range(50)})
        assert t.pending.get("r00") == ("0", "old")  # now r00 is the one out of view


def test_matrix_detail_keeps_a_log_tail_fenced() -> None:
    from llorch_tui.matrix.events import CellFinished
    from llorch_tui.protocol.matrix import CellKey, CellResult
    from llorch_tui.tui.core.matrix_grid import MatrixGrid

    key = CellKey(pool="local", backend="cpu", model="tiny-llama")
    tail = ["loading", "```", "# not a heading: worker output", "done"]
    grid = MatrixGrid()
    grid.apply(CellFinished(result=CellResult(key=key, verdict="fail", reason="crash", log_tail=tail)))
    detail = grid.detail(key.id)
    # The log's own ``` must not close the block: the fence is longer, and the whole tail sits inside it.
    assert "````\nloading\n```\n# not a heading: worker output\ndone\n````" in detail


def test_matrix_grid_hides_absent_backends_and_puts_online_pools_first() -> None:
    from llorch_tui.matrix.events import PlanReady
    from llorch_tui.protocol.matrix import CellKey, PoolInfo
    from llorch_tui.tui.core.matrix_grid import MatrixGrid

    keys = [CellKey(pool=p, backend=b, model="m") for p in ("away", "here") for b in ("cpu", "cuda", "metal")]
    pools = [PoolInfo(name="away", online=False), PoolInfo(name="here", online=True, backends=["cpu", "cuda"])]
    grid = MatrixGrid()
    grid.apply(PlanReady(cells=keys, pools=pools))
    assert grid.hidden_backends == ["metal"]  # usable on no online pool
    assert grid.columns == ["here/cpu", "here/cuda", "away/cpu", "away/cuda"]  # the online pool first
    assert len(grid.cells) == 6  # hidden cells still count


def test_control_characters_are_shown_not_obeyed() -> None:
    from llorch_tui.textsafe import escape_controls

    assert escape_controls("ok\x07bell\x0fshift\x1b[2Jclear\ttab\nline") == \
        "ok\\x07bell\\x0fshift\\x1b[2Jclear\ttab\nline"
