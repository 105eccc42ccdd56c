"""Issue-14 parts of the dashboard on one real pool (one app start for both):

* fit: the catalog's fit column and detail line, and the spawn modal's warning, from the pool's own
  `models.fit`, judged against the pool's free RAM (pinned: the verdict and the snapshots do not depend on
  this machine's memory);
* install: the skew flag offers it, a confirmation says what goes where, the real
  installer runs over the pool's transport (here one answering the installer's probes as an up-to-date pool
  would: no network install in a TUI test), agent_command is recorded, and the pool reconnects through it."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

from textual.widgets import Button, Checkbox, Label, Select, Static

from llorch_tui import __version__
from llorch_tui.config_load import config_to_toml
from llorch_tui.fleet_ops.install import INSTALLED, PROBE
from llorch_tui.transport.base import RunResult, Transport
from llorch_tui.tui.screens.dashboard import DashboardScreen
from llorch_tui.tui.screens.modals import InstallModal, SpawnModal
from llorch_tui.tui.widgets.live_table import LiveTable
from llorch_tui.tui.widgets.log_pane import LogPane
from tui_helpers import loaded, make_config, pinned_app, wait_for

MiB, GiB = 1024**2, 1024**3


class UpToDatePool(Transport):
    """A pool with Python 3.12 whose venv already holds this llorch: answers the installer's two scripts."""

    def __init__(self, pool, home: Path) -> None:
        super().__init__(pool)
        self.home, self.calls = home, []

    async def connect(self) -> None:
        self.set_state("online")

    async def run(self, argv, env=None, timeout=30):
        self.calls.append((list(argv), dict(env or {})))
        if argv[1:] == ["-c", PROBE]:
            return RunResult(0, json.dumps({"python": f"/usr/bin/{argv[0]}", "version": [3, 12, 3], "platform": "linux",
                                            "machine": "x86_64", "nvidia": False, "venv": False,
                                            "home": str(self.home)}), "")
        if argv[1:] == ["-c", INSTALLED]:
            return RunResult(0, json.dumps({"llorch": __version__, "llorch-worker": __version__,
                                            "torch": "2.13.0"}), "")
        return RunResult(127, "", f"{argv[0]}: not found")

    async def start_agent(self, argv, env):
        raise NotImplementedError("the installer never starts an agent")

    async def forward_port(self, remote_port: int) -> int:
        raise NotImplementedError

    async def close(self) -> None:
        self.set_state("offline")


async def check_fit(pilot, app) -> None:
    await wait_for(pilot, lambda: ("local", "tiny-llama", "auto") in app.model.fits.records
                   and app.model.fits.settled(), 60, "the fit estimate")
    app.schedule_redraw()
    catalog = app.screen.query_one("#catalog", LiveTable)
    await wait_for(pilot, lambda: catalog.shown["local/tiny-llama"][5].plain.startswith("✗"), 10, "✗ in fit")
    report = app.model.fits.records[("local", "tiny-llama", "auto")].report
    assert report is not None and report.source == "local files"
    cpu = next(e for e in report.estimates if e.backend == "cpu")
    # The worker's runtime alone is more than the pinned 64 MiB: it cannot fit, and the row says what it needs.
    assert cpu.need_bytes > 64 * MiB and cpu.dtype == "float32"
    need = catalog.shown["local/tiny-llama"][5].plain.removeprefix("✗ ")
    note = str(catalog.border_subtitle)  # the highlighted model's fit, spelled out in the pane's border
    assert f"tiny-llama on cpu: needs {need}, 64.0 MiB RAM free: WILL NOT FIT" == note, note

    # The spawn modal warns before spawning, and says so on its button.
    await pilot.press("s")
    await wait_for(pilot, lambda: isinstance(app.screen, SpawnModal), 5, "the spawn modal")
    modal = app.screen
    await pilot.pause()
    assert "WILL NOT FIT" in str(modal.query_one("#fit", Static).content)
    assert str(modal.query_one("#ok", Button).label) == "Spawn anyway"
    # Another dtype: estimated on demand by the pool, half the weights of float32.
    modal.query_one("#dtype", Select).value = "bfloat16"
    await wait_for(pilot, lambda: "(bfloat16)" in str(modal.query_one("#fit", Static).content), 60, "bfloat16")
    bf16 = app.model.fits.records[("local", "tiny-llama", "bfloat16")].report.estimates[0]
    assert bf16.weights_bytes * 2 == cpu.weights_bytes
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the dashboard")

    # Memory frees up: the same estimate, judged against the new figure, now fits.
    app.source.available = 24 * GiB
    app.refresh_all(force=True)
    await wait_for(pilot, lambda: catalog.shown["local/tiny-llama"][5].plain == f"✓ {need}", 30, "✓ in fit")
    await pilot.press("s")
    await wait_for(pilot, lambda: isinstance(app.screen, SpawnModal), 5, "the spawn modal")
    await pilot.pause()
    assert "24.0 GiB RAM free: fits" in str(app.screen.query_one("#fit", Static).content)
    assert str(app.screen.query_one("#ok", Button).label) == "Spawn"
    await pilot.press("escape")


def log_lines(app) -> list[str]:
    return [line.text for line in app.screen.query_one(LogPane).lines]


async def test_fit_then_install_from_the_skew_flag(tui_pool: Path, tmp_path: Path) -> None:
    config = make_config(tui_pool)
    config_path = tmp_path / "config.toml"
    config_path.write_text(config_to_toml(config))
    home = tmp_path / "home"
    agent = home / ".local/share/llorch/venv/bin/llorch-pool"
    agent.parent.mkdir(parents=True)
    agent.symlink_to(Path(sys.prefix) / "bin" / "llorch-pool")  # the "installed" agent is this machine's, for real
    transports: list[UpToDatePool] = []

    app = pinned_app(config, available=64 * MiB, refresh_s=3600)
    app.source.version = "0.0.9"  # the pool says it runs an older llorch
    app.config_target = (config_path, True)
    app.install_transport = lambda cfg: transports.append(UpToDatePool(cfg, home)) or transports[-1]
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot, app)
        await check_fit(pilot, app)
        pools = app.screen.query_one("#pools", LiveTable)
        await wait_for(pilot, lambda: "skew" in pools.shown["local"][1].plain, 10, "the skew flag")
        assert f"I installs {__version__} there" in str(app.screen.query_one("#pool-detail").content)

        await pilot.press("I")  # All is selected and one pool skews: the action offers that one
        await wait_for(pilot, lambda: isinstance(app.screen, InstallModal), 5, "the install modal")
        modal = app.screen
        text = " ".join(str(w.content) for w in modal.query(Label))
        for part in ("local", "this machine", "llorch 0.0.9 there now", "~/.local/share/llorch/venv",
                     str(config_path), __version__):
            assert part in text, (part, text)
        assert modal.plan.upgrade is True  # skew: upgrade preselected
        modal.query_one("#upgrade", Checkbox).value = False  # the pool is current: a no-op is expected
        await pilot.click("#ok")
        await wait_for(pilot, lambda: any("already up to date" in t for t in log_lines(app)), 60, "the result")

        # The real installer asked the pool through its transport: the newest Python first, then the venv.
        calls = [argv for argv, _ in transports[0].calls]
        assert calls[0] == ["python3.13", "-c", PROBE]
        assert [str(home / ".local/share/llorch/venv/bin/python"), "-c", INSTALLED] in calls
        assert any("install on local: check:" in t for t in log_lines(app))
        # agent_command is recorded (the rest of the file kept), and the pool reconnects through it.
        written = tomllib.loads(config_path.read_text())
        assert next(p for p in written["pools"] if p["name"] == "local")["agent_command"] == str(agent)
        assert next(p for p in written["pools"] if p["name"] == "local")["state_dir"] == str(tui_pool)
        await wait_for(pilot, lambda: app.fleet.client("local").transport.pool.agent_command == str(agent)
                       and app.fleet.client("local").connected, 60, "the pool back through the new agent")

        # Read-only: the key is refused out loud, the call too.
        app.readonly = True
        app.refresh_bindings()
        await pilot.press("I")
        assert isinstance(app.screen, DashboardScreen)
        await wait_for(pilot, lambda: any("read-only: install is disabled" in t for t in log_lines(app)), 5,
                       "the refusal")
