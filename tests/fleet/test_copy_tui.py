"""Pilot test: `c` on a catalog row copies the model to another pool (modal to pick it), shown as a
download onto the target; the copy lands verified, with its origin."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tui"))

from tui_helpers import loaded, wait_for  # noqa: E402

from llorch_tui.config import Config, PoolConfig  # noqa: E402
from llorch_tui.tui.app import LlorchApp  # noqa: E402
from llorch_tui.tui.widgets.live_table import LiveTable  # noqa: E402


async def test_copy_from_the_catalog(make_pool, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = make_pool(("llama",), "src")
    dst = tmp_path / "dst"
    app = LlorchApp(Config(pools=[PoolConfig(name="src", state_dir=str(src)), PoolConfig(name="dst", state_dir=str(dst))]))
    said: list[str] = []
    event = app.event

    def record(level, message, hint=None, notify=True):  # type: ignore[no-untyped-def]
        said.append(f"{level}: {message} ({hint})")
        return event(level, message, hint, notify)

    app.event = record  # type: ignore[method-assign]
    async with app.run_test(size=(140, 40)) as pilot:
        await loaded(pilot, app, pools=2)
        catalog = app.screen.query_one("#catalog", LiveTable)
        await wait_for(pilot, lambda: "src/tiny-llama" in catalog.shown, 30, "the source's model")
        catalog.focus()
        catalog.move_cursor(row=list(catalog.shown).index("src/tiny-llama"))
        await pilot.press("c")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CopyModal", 10, "the copy modal")
        await pilot.press("enter")  # Copy (focused), to the only other pool: dst
        await wait_for(pilot, lambda: (dv := app.model.downloads.get("dst/tiny-llama")) is not None
                       and dv.state == "done", 120, f"the copy; events: {said}")
        await wait_for(pilot, lambda: "dst/tiny-llama" in catalog.shown, 30, "the copy in dst's catalog")
        entry = app.model.model_entry("dst/tiny-llama")
        assert entry is not None and entry.downloaded and entry.origin and entry.origin.pool == "src"
        assert app.model.downloads["dst/tiny-llama"].progress.bytes_done == \
            app.model.downloads["dst/tiny-llama"].progress.bytes_total > 0
    assert (dst / "models" / "tiny-llama" / "model.safetensors").is_file()
