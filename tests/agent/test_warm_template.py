"""Warm worker starts: workers forked from the pool's template are separate processes, a changed
worker package is noticed, and wherever a fork is not possible the agent execs and says why."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent_helpers import agent_cli, alive, stop_everything, wait_gone

pytestmark = pytest.mark.slow

WORKER_PKG = Path(__file__).resolve().parents[2] / "worker" / "llorch_worker"


def http_json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def spawn(state: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    res = agent_cli(state, "worker", "spawn", "cpu", "--model", "tiny-llama", env=env)
    assert res.rc == 0, (res.error, res.stderr)
    return res.result


def template(state: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    res = agent_cli(state, "worker", "template", *args, env=env)
    assert res.rc == 0, (res.error, res.stderr)
    return res.result


@pytest.fixture
def warm_pool(pool: Path) -> Path:
    if os.environ.get("LLORCH_WORKER_TEMPLATE", "on").lower() in ("0", "off", "false", "no"):
        pytest.skip("warm starts are switched off in this run (LLORCH_WORKER_TEMPLATE)")
    return pool


def test_forked_workers_are_isolated(warm_pool: Path) -> None:
    a, b = spawn(warm_pool), spawn(warm_pool)
    assert a["start_mode"] == b["start_mode"] == "fork", (a, b)
    tpl = template(warm_pool)
    assert tpl["running"] and sorted(c["pid"] for c in tpl["children"]) == sorted([a["pid"], b["pid"]])
    # Own processes: distinct pids, each the leader of its own session, children of the template.
    assert a["pid"] != b["pid"] != tpl["pid"]
    for rec in (a, b):
        proc = psutil.Process(rec["pid"])
        assert proc.ppid() == tpl["pid"] and os.getsid(rec["pid"]) == rec["pid"] == rec["pgid"]
        assert proc.cmdline()[:3] == ["llorch-worker", "--worker-id", rec["id"]]  # ps and sweep see a worker
    # Own memory: a model loaded in one is not in the template; each reports its own RSS.
    listed = {r["id"]: r for r in agent_cli(warm_pool, "worker", "list").result}
    assert listed[a["id"]]["rss_bytes"] and listed[b["id"]]["rss_bytes"]
    assert psutil.Process(tpl["pid"]).memory_full_info().uss < psutil.Process(a["pid"]).memory_full_info().rss

    # A crash kills only that worker: its exit status is recorded; the template and the other live on.
    os.kill(a["pid"], signal.SIGKILL)
    assert wait_gone(a["pid"])
    dead = next(r for r in agent_cli(warm_pool, "worker", "list").result if r["id"] == a["id"])
    assert dead["state"] == "dead" and dead["exit_signal"] == "SIGKILL", dead
    assert alive(tpl["pid"]) and alive(b["pid"])
    out = http_json(f"http://127.0.0.1:{b['port']}/execute", {"prompt": "Hello", "max_tokens": 4, "ignore_eos": True})
    assert out["tokens_generated"] == 4
    # Its `process` stage runs from its fork, so it fits inside the spawn (a clock off by the boot
    # time's rounding put it at up to a second, more than the whole warm spawn).
    stages = http_json(f"http://127.0.0.1:{b['port']}/health")["startup"]
    spawn_s = (datetime.fromisoformat(b["ready_at"]) - datetime.fromisoformat(b["started_at"])).total_seconds()
    assert 0 < stages["process"] < spawn_s and stages["weights_to_ram"] > 0, (stages, spawn_s)

    # A clean stop: exit code 0 through the template; a third spawn still forks.
    (stopped,) = agent_cli(warm_pool, "worker", "stop", b["id"]).result
    assert stopped["state"] == "stopped" and stopped["exit_code"] == 0, stopped
    assert template(warm_pool)["children"] == []
    c = spawn(warm_pool)
    assert c["start_mode"] == "fork" and alive(tpl["pid"])
    stop_everything(warm_pool)
    assert wait_gone(tpl["pid"]) and not alive(c["pid"])


def test_a_changed_worker_package_is_noticed(warm_pool: Path, tmp_path: Path) -> None:
    # The worker package as a copy this test may edit: the agent, the template and its children import it.
    shutil.copytree(WORKER_PKG, tmp_path / "src" / "llorch_worker", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), *sys.path[1:]])}
    first = spawn(warm_pool, env)
    before = template(warm_pool, env=env)
    assert first["start_mode"] == "fork" and before["children"][0]["pid"] == first["pid"]

    edited = tmp_path / "src" / "llorch_worker" / "sampling.py"
    edited.write_text(edited.read_text() + "\n# edited\n")
    after = template(warm_pool, env=env)  # the check itself makes the stale template drain
    assert after["stale"] is True and after["pid"] == before["pid"]

    second = spawn(warm_pool, env)
    fresh = template(warm_pool, env=env)
    assert second["start_mode"] == "fork" and fresh["pid"] != before["pid"] and fresh["fingerprint"] != before["fingerprint"]
    assert [c["pid"] for c in fresh["children"]] == [second["pid"]]
    # The old template still parents the first worker (its exit status must not be lost), then leaves.
    assert alive(before["pid"]) and alive(first["pid"])
    agent_cli(warm_pool, "worker", "stop", first["id"], env=env)
    assert wait_gone(before["pid"])
    stop_everything(warm_pool)


def test_exec_fallbacks_say_why(pool: Path) -> None:
    off = spawn(pool, {"LLORCH_WORKER_TEMPLATE": "off"})
    assert off["start_mode"] == "exec" and "LLORCH_WORKER_TEMPLATE=off" in off["start_note"]
    assert "exec (warm starts are switched off" in Path(off["log_path"]).read_text().splitlines()[0]
    if os.environ.get("LLORCH_WORKER_TEMPLATE", "on").lower() not in ("0", "off", "false", "no"):
        warm = spawn(pool)
        assert warm["start_mode"] == "fork"
        # The template refuses a spawn whose import-relevant environment differs from its own: exec, saying so.
        odd = spawn(pool, {"HF_HUB_OFFLINE": "1"})
        assert odd["start_mode"] == "exec" and "environment" in odd["start_note"], odd
        log = Path(odd["log_path"]).read_text()
        assert "warm start unavailable" in log and "LLORCH_WORKER_READY" in log
    stop_everything(pool)
