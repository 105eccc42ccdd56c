"""`llorch pool install` onto a real sshd pool (network namespace, no internet) that has no llorch:
the index is unreachable (clear error, offline route), the wheelhouse route installs, then status
and a worker spawn go through the installed agent; a second install is a no-op; skew is flagged."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_helpers import LLORCH, agent

from llorch_tui import __version__
from llorch_tui.cli import doctor
from llorch_tui.config_load import load_config
from llorch_tui.fleet_ops.install import build_wheels

pytestmark = pytest.mark.ssh
COMMENT = "# the operator's own comment: kept by install\n"


def _install(d: Path) -> tuple[str, ...]:
    """`pool install` onto pool c, whose home is this machine's: the wheels go to the test's dir, not ~/.cache."""
    return ("pool", "install", "--host", "c", "--cache-dir", str(d / "pool-cache"))


def _llorch(config: Path, *args: str, timeout: float = 900) -> tuple[int, list[dict]]:
    r = subprocess.run([LLORCH, "--config", str(config), *args, "--json"], capture_output=True, text=True,
                       timeout=timeout)
    docs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith(("{", "["))]
    assert docs, r.stdout[-2000:] + r.stderr[-2000:]
    return r.returncode, docs


@pytest.fixture(scope="module")
def fresh_pool(isolated_pools, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A config whose pool `c` has no llorch (agent_command points nowhere); pip on it sees only PyPI."""
    from llorch_tui.config import Config, PoolConfig
    from llorch_tui.config_load import config_to_toml

    d = tmp_path_factory.mktemp("install")
    pool = PoolConfig(**isolated_pools.pool_kwargs("c", agent_command="/nonexistent/bin/llorch-pool",
                                                   env={"PIP_CONFIG_FILE": "/dev/null",
                                                        # the pool is this machine: keep its caches in the test's dir
                                                        "PIP_CACHE_DIR": str(d / "pip-cache")}))
    cfg = d / "config.toml"
    cfg.write_text(COMMENT + config_to_toml(Config(pools=[pool])))
    return cfg, d


def test_install_onto_a_pool_that_has_none(fresh_pool: tuple[Path, Path], isolated_pools,  # type: ignore[no-untyped-def]
                                           synth_models: dict[str, Path]) -> None:
    cfg, d = fresh_pool
    rc, docs = _llorch(cfg, "pool", "status", "--host", "c")
    assert rc == 1 and "error" in docs[-1], docs  # no agent there yet

    # No index reachable from the namespace: a clear error with the offline route.
    rc, docs = _llorch(cfg, *_install(d), "--venv", str(d / "venv-online"), "--python",
                       sys.executable, "--torch", "cpu")
    err = docs[-1]["error"]
    assert rc == 1 and err["code"] == "network" and "--wheelhouse" in err["hint"], err

    # The offline route: a wheelhouse of this machine's wheels, copied over SFTP; torch from the interpreter.
    wheelhouse = d / "wheelhouse"
    wheelhouse.mkdir()
    build_wheels(wheelhouse)
    venv = d / "venv"
    rc, docs = _llorch(cfg, *_install(d), "--venv", str(venv), "--python", sys.executable,
                       "--torch", "existing", "--wheelhouse", str(wheelhouse))
    result = docs[-1]
    assert rc == 0 and not result["noop"], docs
    assert any((d / "pool-cache" / "wheelhouse").glob("llorch-*.whl"))  # where --cache-dir said
    stages = [e["data"]["stage"] for e in docs if e.get("event") == "progress"]
    assert stages[:2] == ["probe", "venv"] and "build" not in stages and {"copy", "pip", "verify", "config"} <= set(stages)
    assert result["installed"]["llorch"] == __version__ and result["installed"]["llorch-worker"] == __version__
    text = cfg.read_text()
    assert text.startswith(COMMENT) and f'agent_command = "{venv}/bin/llorch-pool"' in text
    assert load_config(str(cfg)).config.pools[0].agent_command == f"{venv}/bin/llorch-pool"

    # The installed agent answers and spawns a worker (its own llorch-worker, beside it in the venv).
    rc, docs = _llorch(cfg, "pool", "status", "--host", "c")
    assert rc == 0 and docs[-1]["llorch_version"] == __version__
    agent(isolated_pools.pools["c"].state_dir, "models", "register", "tiny", "--path", str(synth_models["llama"]))
    rc, docs = _llorch(cfg, "pool", "worker", "spawn", "cpu", "--host", "c", "--model", "tiny")
    try:
        assert rc == 0 and docs[-1]["state"] == "ready", docs[-1]
        # The worker was started by the installed agent: its supervisor (or an ancestor) runs from the venv.
        import psutil

        procs = [psutil.Process(docs[-1]["pid"])]
        procs += procs[0].parents() + ([psutil.Process(docs[-1]["supervisor_pid"])]
                                       if docs[-1].get("supervisor_pid") else [])
        lines = [" ".join(p.cmdline()) for p in procs]
        assert any(str(venv) in line for line in lines), lines
    finally:
        _llorch(cfg, "pool", "worker", "stop", "--host", "c", "--all")

    # Idempotent: nothing to do the second time.
    rc, docs = _llorch(cfg, *_install(d), "--venv", str(venv), "--python", sys.executable,
                       "--torch", "existing", "--wheelhouse", str(wheelhouse), timeout=300)
    assert rc == 0 and docs[-1]["noop"] and [e["data"]["stage"] for e in docs[:-1]] == ["probe", "check"]


def test_a_changed_version_is_flagged_as_skew(fresh_pool: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = fresh_pool
    pool = load_config(str(cfg)).config.pools[0]
    if pool.agent_command.startswith("/nonexistent"):
        pytest.skip("needs the install of the test above")
    monkeypatch.setattr(doctor, "__version__", __version__ + ".post1")  # this machine moved on
    checks = asyncio.run(doctor.run_doctor(pool))
    agent_check = next(c for c in checks if c.name == "pool agent")
    assert agent_check.status == "warn" and "version skew" in agent_check.detail
    assert f"llorch pool install --host {pool.name} --upgrade" in (agent_check.fix or "")
