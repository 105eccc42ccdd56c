"""The matrix grid's layout with three online pools and an offline one, fed the engine's own events (no run
needed: the screen draws from them alone). At 160x48 every column is on screen whole; at 80x24 the grid
scrolls sideways with the cursor while the model column stays."""

from __future__ import annotations

from llorch_tui.config import Config, PoolConfig
from llorch_tui.matrix.events import CellFinished, PlanReady
from llorch_tui.protocol.matrix import CellKey, CellResult, Measurements, PoolInfo
from llorch_tui.tui.app import LlorchApp
from llorch_tui.tui.core.snapshot import SyntheticSource
from llorch_tui.tui.screens.matrix import MatrixScreen, MatrixTable
from tui_helpers import wait_for

POOLS = [PoolInfo(name="gpu-box-north", online=True, backends=["cpu", "cuda"]),
         PoolInfo(name="offline-box", online=False),
         PoolInfo(name="gpu-box-south", online=True, backends=["cpu", "cuda"]),
         PoolInfo(name="laptop", online=True, backends=["cpu"])]
MODELS = ["tinyllama", "qwen-0.5b", "smollm2-135m-instruct", "phi-2"]
BACKENDS = ["cpu", "cuda", "metal"]  # metal: on no online pool, its columns are hidden
# A reason for every cell, the longest ones among them: the grid must stay narrow anyway.
REASONS = ["backend_unsupported", "second_prompt_failed", "not_downloaded", "checkpoint_corrupt", "will_not_fit"]


def events() -> list[object]:
    keys = [CellKey(pool=p.name, backend=b, model=m) for p in POOLS for b in BACKENDS for m in MODELS]
    out: list[object] = [PlanReady(cells=keys, pools=POOLS)]
    for i, k in enumerate(keys):
        if not next(p for p in POOLS if p.name == k.pool).online:
            result = CellResult(key=k, verdict="skipped", reason_code="pool_offline", reason="unreachable")
        elif i % 6 == 0:
            result = CellResult(key=k, verdict="pass", measurements=Measurements(tokens_per_second=1234.5))
        else:
            code = REASONS[i % len(REASONS)]
            result = CellResult(key=k, verdict="skipped" if code in ("not_downloaded", "will_not_fit") else "fail",
                                reason_code=code, reason=f"the {code} sentence", hint="what to do")
        out.append(CellFinished(result=result))
    return out


def line_texts(table: MatrixTable) -> list[str]:
    return ["".join(seg.text for seg in table.render_line(y)) for y in range(table.size.height)]


async def grid(pilot, app: LlorchApp) -> MatrixTable:
    await pilot.press("2")
    await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), 10, "the matrix")
    screen = app.screen
    for ev in events():
        app.signals.matrix.publish(ev)
    await wait_for(pilot, lambda: sum(c.status != "pending" for c in screen.grid.cells.values()) == 48, 10, "cells")
    await pilot.pause()
    return screen.query_one("#matrix", MatrixTable)


def app_for() -> LlorchApp:
    source = SyntheticSource(pools=0, workers=0)
    config = Config(pools=[PoolConfig(name=p.name) for p in POOLS])
    source.pools = [p.name for p in POOLS]
    source.tick = {p: 0 for p in source.pools}
    return LlorchApp(config, source=source, refresh_s=3600)


def drawn_whole(table: MatrixTable, grid, col: str, models: list[str]) -> bool:
    """The column's two header lines and its cells of `models` are on screen whole, each on its model's line."""
    lines = line_texts(table)
    label = next(c.label.plain for c in table.ordered_columns if c.key.value == col)
    pool, device = label.split("\n")
    if pool not in lines[0] or device not in lines[1]:
        return False
    return all(model in lines[2 + row] and grid.cell_text(f"{col}/{model}").plain in lines[2 + row]
               for row, model in enumerate(sorted(MODELS)) if model in models)


async def test_grid_fits_160_columns_with_three_pools() -> None:
    app = app_for()
    async with app.run_test(size=(160, 48)) as pilot:
        table = await grid(pilot, app)
        screen = app.screen
        cols = [c.key.value for c in table.ordered_columns]
        # metal is hidden (said once in the status), online pools first in their configured order.
        assert cols == ["model", "gpu-box-north/cpu", "gpu-box-north/cuda", "gpu-box-south/cpu",
                        "gpu-box-south/cuda", "laptop/cpu", "offline-box/cpu", "offline-box/cuda"]
        assert screen.grid.hidden_columns == ["laptop/cuda"]
        assert screen.grid.hidden_backends == ["metal"]
        # The cursor starts on a cell (not the model name) and its detail is shown at once.
        assert table.cursor_coordinate.column == 1 and screen.current == "gpu-box-north/cpu/phi-2"
        # Every header and every cell is drawn whole (a cut column never is: this times out), with no scrolling.
        await wait_for(pilot, lambda: all(drawn_whole(table, screen.grid, c, MODELS) for c in cols[1:]), 10,
                       f"every column drawn whole; screen: {line_texts(table)[:3]}")
        assert table.max_scroll_x == 0, (table.virtual_size.width, table.size.width)


async def test_grid_scrolls_at_80x24_keeping_the_model_column() -> None:
    app = app_for()
    async with app.run_test(size=(80, 24)) as pilot:
        table = await grid(pilot, app)
        screen = app.screen
        model = sorted(MODELS)[0]
        await wait_for(pilot, lambda: table.max_scroll_x > 0, 10, "the grid wider than 80 columns")
        for c in range(1, len(table.ordered_columns)):
            if c > 1:
                await pilot.press("right")
            col = table.ordered_columns[c].key.value
            # The highlighted column is whole on screen, and the model names stayed (times out otherwise).
            await wait_for(pilot, lambda c=c, col=col: table.cursor_coordinate.column == c
                           and line_texts(table)[2].lstrip().startswith(model)
                           and drawn_whole(table, screen.grid, col, [model]), 10,
                           f"column {col} whole beside the model column; screen: {line_texts(table)[:3]}")
        assert table.scroll_x > 0  # it did scroll sideways to get there
