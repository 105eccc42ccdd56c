"""spawn -> ready -> list -> logs -> status -> stop of ONE real worker (a start costs ~8 s: shared by this module).

The tests run in file order; the last one stops the worker.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from agent_helpers import agent_cli, alive, processes_under, stop_everything, wait_gone
from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig
from llorch_tui.pool.ports import port_free

pytestmark = pytest.mark.slow
# in the agent's environment; none of them is the worker's business
AGENT_SECRETS = {"HF_TOKEN": "hf_user_secret", "LLORCH_MIRROR_TOKEN": "mirror_secret",
                 "AWS_SECRET_ACCESS_KEY": "aws_secret", "SSH_AUTH_SOCK": "/tmp/agent.sock"}


def http_json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def spawned(make_pool) -> Iterator[tuple[Path, Any]]:
    """A worker spawned through the CLI while port 8000 is occupied (by us, or by someone else already)."""
    state = make_pool(("llama",), pool_id="test")
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT left by an earlier worker is not "taken"
    try:
        blocker.bind(("127.0.0.1", 8000))
        blocker.listen()
    except OSError:
        blocker.close()  # taken already: the collision happens anyway
    try:
        res = agent_cli(state, "worker", "spawn", "cpu", "--model", "tiny-llama", env=AGENT_SECRETS)
    finally:
        blocker.close()
    try:
        yield state, res
    finally:
        stop_everything(state)


def test_spawn_skips_the_taken_port_and_streams_its_stages(spawned) -> None:
    state, res = spawned
    assert res.rc == 0, (res.error, res.stderr)
    rec = res.result
    assert rec["state"] == "ready" and rec["model"] == "tiny-llama" and rec["backend"] == "cpu"
    assert rec["port"] > 8000 and rec["load_s"] > 0
    stages = [e["data"]["stage"] for e in res.events if e["event"] == "progress"]
    assert stages[0] == "port" and stages[-1] == "ready" and "spawned" in stages
    assert stages.index("spawned") < stages.index("ready")
    health = http_json(f"http://127.0.0.1:{rec['port']}/health")
    assert health["status"] == "ok" and health["worker_id"] == rec["id"]
    assert alive(rec["pid"]) and alive(rec["supervisor_pid"])
    stored = json.loads((state / "workers.json").read_text())["workers"]
    assert [(w["id"], w["state"], w["port"]) for w in stored] == [(rec["id"], "ready", rec["port"])]


def test_worker_gets_only_the_environment_it_needs(spawned) -> None:
    import psutil

    state, res = spawned
    for pid in (res.result["pid"], res.result["supervisor_pid"]):
        env = psutil.Process(pid).environ()
        leaked = {k for k, v in env.items() if k in AGENT_SECRETS or v in AGENT_SECRETS.values()}
        assert not leaked, f"process {pid} inherited {sorted(leaked)}"
        assert env["PATH"] and env["LLORCH_STATE_DIR"] == str(state) and env["LLORCH_WORKER_ID"] == res.result["id"]


def test_list_fills_live_figures_from_health(spawned) -> None:
    state, res = spawned
    rec = res.result
    out = http_json(f"http://127.0.0.1:{rec['port']}/execute",
                    {"job_id": "t1", "prompt": "hello", "max_tokens": 3, "seed": 1})
    assert out.get("tokens_generated", 0) >= 1, out
    listed = agent_cli(state, "worker", "list")
    assert listed.rc == 0
    (w,) = listed.result
    assert w["id"] == rec["id"] and w["state"] == "ready"
    assert w["requests"] >= 1 and w["tokens_generated"] >= 1 and w["rss_bytes"] > 10_000_000
    assert agent_cli(state, "worker", "list", "--no-probe").result[0]["requests"] is None


def test_logs_tail(spawned) -> None:
    state, res = spawned
    logs = agent_cli(state, "worker", "logs", res.result["id"], "--lines", "50")
    assert logs.rc == 0
    assert any(line.startswith("LLORCH_WORKER_READY ") for line in logs.result["lines"])
    assert len(agent_cli(state, "worker", "logs", res.result["id"], "--lines", "1").result["lines"]) == 1
    missing = agent_cli(state, "worker", "logs", "nope")
    assert missing.error["code"] == "not_found"


async def test_follow_is_cancelled_by_the_caller(spawned) -> None:
    state, res = spawned
    client = PoolClient(PoolConfig(name="test", state_dir=str(state)))
    got_line = asyncio.Event()
    try:
        await client.start()
        follow = asyncio.create_task(client.call("workers.logs", {"id": res.result["id"], "lines": 2, "follow": True},
                                                 lambda e, d: got_line.set()))
        await asyncio.wait_for(got_line.wait(), 60)
        follow.cancel()  # PoolClient sends $cancel: the agent must stop following, and keep serving
        with pytest.raises(asyncio.CancelledError):
            await follow
        assert (await client.call("agent.ping", timeout=30))["pool_id"] == "test"
    finally:
        await client.close()


def test_status_health_and_sweep_see_the_worker(spawned) -> None:
    state, res = spawned
    st = agent_cli(state, "status").result
    assert [(w["id"], w["state"]) for w in st["workers"]] == [(res.result["id"], "ready")]
    health = agent_cli(state, "health").result
    assert health == {"ok": True, "pool_id": "test", "problems": []}
    sweep = agent_cli(state, "worker", "sweep").result
    assert res.result["pid"] not in [s["pid"] for s in sweep["strays"] + sweep["other_state_dirs"]]


async def test_stop_ends_a_follow_and_frees_everything(spawned) -> None:
    state, res = spawned
    rec = res.result
    client = PoolClient(PoolConfig(name="test", state_dir=str(state)))
    lines: list[str] = []
    following = asyncio.Event()

    def on_event(event: str, data: dict[str, Any]) -> None:
        lines.append(data["text"])
        following.set()

    try:
        await client.start()
        follow = asyncio.create_task(client.call("workers.logs", {"id": rec["id"], "lines": 3, "follow": True},
                                                 on_event))
        await asyncio.wait_for(following.wait(), 60)  # the tail arrived: the follow is running
        stop = await asyncio.to_thread(agent_cli, state, "worker", "stop", rec["id"])
        done = await asyncio.wait_for(follow, 60)  # ends by itself once the worker is gone
    finally:
        await client.close()
    assert stop.rc == 0, stop.error
    (stopped,) = stop.result
    assert stopped["state"] == "stopped" and stopped["exit_code"] == 0 and stopped["exit_signal"] is None
    assert done["ended"] == "worker stopped" and done["followed"] >= 1
    assert len(lines) > 3  # the tail, then what the worker logged while shutting down
    assert wait_gone(rec["pid"], 1) and wait_gone(rec["supervisor_pid"], 10)
    assert port_free(rec["port"])
    assert json.loads((state / "logs" / f"{rec['id']}.exit").read_text())["returncode"] == 0
    assert agent_cli(state, "worker", "list").result[0]["state"] == "stopped"
    assert processes_under(state) == []
