"""A worker that crashes while loading, and a stray worker the registry does not know."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent_helpers import agent_cli, agent_env, processes_under, wait_gone

pytestmark = pytest.mark.slow


def test_crash_while_loading_reports_reason_and_log_tail(pool: Path, synth_models: dict[str, Path],
                                                         tmp_path: Path) -> None:
    broken = tmp_path / "tiny-broken"
    shutil.copytree(synth_models["llama"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut in half
    reg = agent_cli(pool, "models", "register", "tiny-broken", "--path", str(broken), "--backends", "cpu")
    assert reg.rc == 0, reg.error

    res = agent_cli(pool, "worker", "spawn", "cpu", "--model", "tiny-broken")
    assert res.rc == 1 and res.error is not None, res.result
    err = res.error
    assert err["code"] == "worker_failed" and "checkpoint_corrupt" in err["message"]
    assert err["details"]["reason"] == "checkpoint_corrupt" and err["details"]["exit_code"] == 3
    assert any("LLORCH_WORKER_ERROR" in line for line in err["details"]["log_tail"])
    assert "models verify tiny-broken" in err["hint"]
    # Registered from a local path: the fix names no download (it has no repository to download from).
    assert "models download" not in err["hint"] and str(broken) in err["hint"]
    assert processes_under(pool) == []
    (rec,) = agent_cli(pool, "worker", "list").result
    assert rec["state"] == "failed" and rec["error_code"] == "checkpoint_corrupt" and rec["exit_code"] == 3


def test_refetch_hint_fits_the_model_source() -> None:
    from llorch_tui.pool.worker_failure import refetch_hint
    from llorch_tui.protocol.catalog import ModelEntry

    def entry(source: str) -> ModelEntry:
        return ModelEntry(id="broken", name="broken", path="/m/broken", architecture="qwen2", source=source)

    assert refetch_hint("broken", entry("synthetic")) == \
        "`llorch-pool models synth broken --architecture qwen2 --force`"
    assert "/m/broken" in refetch_hint("broken", entry("local"))
    assert refetch_hint("broken", entry("hub")) == "`llorch-pool models download broken --force`"


def test_sweep_finds_a_stray_and_stops_only_it(pool: Path, make_pool, synth_models: dict[str, Path]) -> None:
    # A worker started by hand with this pool's state dir, unknown to its registry.
    stray = subprocess.Popen(
        [str(Path(sys.executable).parent / "llorch-worker"), "--worker-id", "by-hand", "--model",
         str(synth_models["llama"]), "--backend", "cpu", "--port", "0"],
        env=agent_env({"LLORCH_STATE_DIR": str(pool), "LLORCH_WORKER_TOKEN": "s3cret-tok"}), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        found = agent_cli(pool, "worker", "sweep").result
        assert [s["pid"] for s in found["strays"]] == [stray.pid] or stray.pid in [s["pid"] for s in found["strays"]]
        assert found["stopped"] == []
        cmdline = next(s["cmdline"] for s in found["strays"] if s["pid"] == stray.pid)
        assert "s3cret-tok" not in cmdline  # a secret is never on a command line, so never reported
        other = agent_cli(make_pool(("llama",), pool_id="test"), "worker", "sweep").result
        assert stray.pid in [s["pid"] for s in other["other_state_dirs"]]  # not that pool's business
        assert stray.pid not in [s["pid"] for s in other["strays"]]

        swept = agent_cli(pool, "worker", "sweep", "--stop", "--pid", str(stray.pid), "--grace", "5").result
        assert [(s["pid"], s["stopped"]) for s in swept["stopped"]] == [(stray.pid, True)]
        assert stray.wait(10) is not None
        bad = agent_cli(pool, "worker", "sweep", "--stop", "--pid", "1")
        assert bad.error["code"] == "not_found"
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
    assert wait_gone(stray.pid, 1)


def test_readiness_timeout_kills_the_worker(pool: Path) -> None:
    # 1 s is far less than `import torch` takes (a cold start: a warm one could be ready in time).
    res = agent_cli(pool, "worker", "spawn", "cpu", "--model", "tiny-llama", "--timeout", "1",
                    env={"LLORCH_WORKER_TEMPLATE": "off"})
    assert res.rc == 1 and res.error["code"] == "worker_timeout", (res.error, res.result)
    assert "not ready after 1s" in res.error["message"] and "--timeout" in res.error["hint"]
    assert processes_under(pool) == []
    (rec,) = agent_cli(pool, "worker", "list").result
    assert rec["state"] == "failed" and "not ready after 1s" in rec["exit_reason"]
