"""Pilot tests: the dashboard on a real local pool (agent subprocess) and a dead one."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import Input

from llorch_tui.protocol.params import RegisterParams, SpawnParams
from llorch_tui.tui.app import LlorchApp
from llorch_tui.tui.screens.dashboard import DashboardScreen
from llorch_tui.tui.screens.modals import ModelModal, SpawnModal
from llorch_tui.tui.widgets.live_table import LiveTable
from llorch_tui.tui.widgets.log_pane import LogPane

from tui_helpers import loaded, make_config, wait_for


async def test_pools_catalog_and_dead_pool(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool, dead_pool=True))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await wait_for(pilot, lambda: app.model.pools["dead"].conn == "offline", 30, "the dead pool offline")
        await pilot.pause(0.1)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        pools = screen.query_one("#pools", LiveTable).shown
        assert pools["local"][1].plain == "online" and pools["dead"][1].plain == "offline"
        assert "nonexistent" in (app.model.pools["dead"].reason or "")
        catalog = screen.query_one("#catalog", LiveTable).shown
        assert list(catalog) == ["local/tiny-llama"]
        assert catalog["local/tiny-llama"][4].plain == "✓"
        log_text = "\n".join(line.text for line in screen.query_one(LogPane).lines)
        assert "pool dead offline" in log_text  # the reason reached the log pane, once
        assert log_text.count("pool dead offline") == 1
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_tables_update_in_place(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool), refresh_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        table = app.screen.query_one("#catalog", LiveTable)
        row_key = next(iter(table.rows))
        first = app.refreshes
        await wait_for(pilot, lambda: app.refreshes >= first + 3, 30, "three more refreshes")
        assert next(iter(table.rows)) is row_key  # same row object: not cleared and rebuilt
        assert table.row_count == 1


async def test_synthesize_model_lands_in_catalog(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelModal), 5, "the add-model modal")
        app.screen.query_one("#model-id", Input).value = "tui-synth"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "local/tui-synth" in app.model.catalog_rows("*"), 120, "the synthesized model")
    doc = json.loads((tui_pool / "catalog.json").read_text())
    entry = next(m for m in doc["models"] if m["id"] == "tui-synth")
    assert entry["source"] == "synthetic" and entry["downloaded"] is True
    assert (Path(entry["path"]) / "config.json").is_file()


async def test_register_preset_and_filter(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelModal), 5, "the add-model modal")
        await pilot.click("#register")
        app.screen.query_one("#model-id", Input).value = "qwen-0.5b"
        await pilot.click("#ok")
        table = app.screen.query_one("#catalog", LiveTable)
        await wait_for(pilot, lambda: "local/qwen-0.5b" in table.shown, 30, "the registered preset in the table")
        assert table.shown["local/qwen-0.5b"][4].plain == "—"  # registered, not downloaded
        await pilot.press("slash")
        await pilot.press(*"qwen")
        await wait_for(pilot, lambda: list(table.shown) == ["local/qwen-0.5b"], 5, "the filter")
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(table.shown) == 2, 5, "the cleared filter")


async def test_errors_are_notifications_not_crashes(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        # Download a registered model from a Hub this machine cannot reach: a clear error, the app lives on.
        await app.fleet.api("local").models.register(RegisterParams(id="tinyllama"))
        app.start_download("local", "tinyllama")
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications), 120, "the error")
        assert app.is_running
        pane = app.screen.query_one(LogPane)
        assert any("tinyllama" in line.text and "download" in line.text for line in pane.lines)
        await pilot.press("x")  # no worker highlighted: a warning, nothing else
        assert isinstance(app.screen, DashboardScreen)


async def test_readonly_hides_and_refuses(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool), readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        keys = {b.binding.id for b in app.active_bindings.values() if b.enabled}
        assert "refresh" in keys and not {"spawn", "stop", "download", "model.add"} & keys
        await pilot.press("s", "a", "d")
        assert isinstance(app.screen, DashboardScreen)
        # Refused out loud, naming the action: never silently ignored.
        lines = [line.text for line in app.screen.query_one(LogPane).lines]
        for what in ("spawn", "add model", "download"):
            assert any(f"read-only: {what} is disabled" in t for t in lines), (what, lines)
        app.spawn_inference_worker("local", SpawnParams(model="tiny-llama", backend="cpu"))  # refused even when called
        await pilot.pause(0.2)
        assert not app.model.pools["local"].snapshot.workers


async def test_focus_is_visible_and_panes_have_keys(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        screen = app.screen
        panes = {name: screen.query_one(f"#{name}", LiveTable) for name in ("pools", "catalog", "workers")}
        assert {p.border_title for p in panes.values()} == {"Pools", "Catalog", "Workers"}

        def border(name: str) -> object:
            return panes[name].styles.border_top[1]

        for key, name in (("W", "workers"), ("P", "pools"), ("C", "catalog")):
            await pilot.press(key)
            await wait_for(pilot, lambda name=name: panes[name].has_focus, 5, f"focus on {name}")
            await pilot.pause()
            others = [border(n) for n in panes if n != name]
            assert all(border(name) != o for o in others), (name, border(name), others)  # it stands out


async def test_small_terminal_collapses_panes(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool))
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app)
        screen = app.screen
        assert screen.has_class("-narrow") and screen.has_class("-short")
        assert not screen.query_one(LogPane).display or screen.query_one(LogPane).size.height == 0
        assert screen.query_one("#catalog", LiveTable).size.height >= 2
        # Help and quit keep their place in the footer however narrow it gets.
        from textual.widgets._footer import FooterKey

        shown = {k.key: k for k in screen.query(FooterKey)}
        for key in ("question_mark", "q"):
            assert screen.region.contains_region(shown[key].region), key
        # The worker state column is on screen.
        workers = screen.query_one("#workers", LiveTable)
        assert workers.ordered_columns[0].label.plain == "state"
        # The add-model modal scrolls: its every field and its buttons are reachable with Tab.
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelModal), 5, "the add-model modal")
        modal = app.screen
        assert modal.query_one("#model-id", Input).has_focus
        seen = set()
        for _ in range(12):
            focused = app.focused
            if focused is not None and focused.id:
                await pilot.pause()
                assert modal.region.contains_region(focused.region), f"{focused.id} is off screen"
                seen.add(focused.id)
            if focused is not None and focused.id == "cancel":
                break
            await pilot.press("tab")
        assert {"model-id", "repo", "ok", "cancel"} <= seen, seen
        await pilot.press("enter")  # Cancel, reached and pressed
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the modal closed")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen", 5, "help")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "back to the dashboard")


async def test_spawn_modal_offers_usable_backends(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SpawnModal), 5, "the spawn modal")
        assert app.screen.backends == ["cpu"]  # this machine: cpu only (pool.status)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the dashboard")


async def test_command_palette_runs_actions(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CommandPalette", 5, "the palette")
        await pilot.press(*"matrix")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "MatrixScreen", 10, "the matrix mode")


async def palette_titles(pilot, app: LlorchApp) -> list[str]:
    """The titles the command palette offers right now (its provider, as the palette asks it)."""
    from llorch_tui.tui.palette import LlorchCommands

    provider = LlorchCommands(app.screen)
    return [hit.text for hit in [h async for h in provider.discover()]]


async def test_palette_is_per_screen_and_hides_refused_actions(tui_pool: Path) -> None:
    app = LlorchApp(make_config(tui_pool), readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        titles = await palette_titles(pilot, app)
        # Read-only: no mutating action; the dashboard's own actions come first.
        assert "Spawn a worker" not in titles and "Start the matrix run" not in titles
        assert titles[0] == "Refresh all pools" and "Export the matrix reports" in titles
        await pilot.press("2")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "MatrixScreen", 10, "the matrix mode")
        titles = await palette_titles(pilot, app)
        assert titles[0] == "Export the matrix reports"
    app = LlorchApp(make_config(tui_pool))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        titles = await palette_titles(pilot, app)
        assert "Spawn a worker" in titles and "Start the matrix run" in titles
        assert "Stop the matrix run" not in titles  # no run going: the matrix screen would refuse it


def test_docs_key_table_is_the_registry() -> None:
    from llorch_tui.tui.action_registry import docs_section, docs_table

    doc = (Path(__file__).parents[2] / "docs" / "tui.md").read_text()
    assert docs_section(doc) == docs_table(), \
        "docs/tui.md's key table is stale: run python -m llorch_tui.tui.action_registry --write docs/tui.md"


async def test_hung_pool_never_freezes_the_screen(tui_pool: Path) -> None:
    """An agent that never says hello: its pool stays `connecting`, the rest of the dashboard works,
    and quitting leaves no process of it behind."""
    import shlex
    import sys
    import uuid

    import psutil

    from llorch_tui.config import PoolConfig

    marker = f"hung-agent-{uuid.uuid4().hex[:8]}"
    hung = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(600)  # {marker}'"
    config = make_config(tui_pool)
    config.pools.append(PoolConfig(name="hung", agent_command=hung))
    app = LlorchApp(config)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot, app)
        assert app.model.pools["hung"].conn == "connecting" and app.model.pools["local"].conn == "online"
        await pilot.press("question_mark")  # the UI answers while the pool hangs
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen", 5, "help")
        await pilot.press("escape")
        n = app.refreshes
        await wait_for(pilot, lambda: app.refreshes >= n + 2, 10, "the local pool to keep refreshing")
    left = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info.get("cmdline") or [])]
    assert left == []
