"""`llorch-pool serve --stdio`: malformed input, concurrency, streaming, cancel, EOF — against real workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import RawAgent, agent_cli, alive, processes_under, wait_gone
from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig
from llorch_tui.errors import LlorchError
from llorch_tui.paths import PoolPaths
from llorch_tui.pool.worker_ops import list_workers


def _is(rid: str, kind: str | None = None) -> Any:
    return lambda m: m.get("id") == rid and (kind is None or m.get("type") == kind)


async def test_malformed_lines_get_an_error_doc_and_serving_goes_on(tmp_path: Path) -> None:
    agent = await RawAgent.start(tmp_path / "state")
    try:
        assert agent.hello["type"] == "hello" and "workers.spawn" in agent.hello["ops"]
        assert "pool.status" in agent.hello["ops"]
        await agent.send_raw(b"this is not json\n")
        bad = await agent.read()
        assert bad["type"] == "error" and bad["error"]["code"] == "bad_request" and bad["error"]["hint"]
        await agent.send_raw(b'{"v":1,"id":"no-op-field"}\n')
        assert (await agent.read())["error"]["code"] == "bad_request"
        await agent.send_raw(b'{"v":99,"id":"future","op":"agent.ping"}\n')
        assert (await agent.read())["error"]["code"] == "protocol_mismatch"
        await agent.send("u", "workers.fly")
        assert (await agent.read())["error"]["code"] == "unknown_op"
        await agent.send("p", "workers.spawn", {"backend": "cpu"})  # no model: params rejected, not a crash
        assert (await agent.read())["error"]["code"] == "bad_request"
        await agent.send("ok", "agent.ping")
        assert (await agent.read())["result"]["pool_id"] == "test"
    finally:
        assert await agent.close() == 0


async def test_cancel_in_the_same_burst_as_its_request(tmp_path: Path) -> None:
    """A $cancel read before the op's task ever ran: still exactly one reply, and the id is free again."""
    agent = await RawAgent.start(tmp_path / "state")
    try:
        burst = [{"v": 1, "id": "a", "op": "agent.ticks", "params": {"count": 1000, "interval_s": 0.05}},
                 {"v": 1, "id": "c", "op": "$cancel", "params": {"target": "a"}}]
        await agent.send_raw("".join(json.dumps(m) + "\n" for m in burst).encode())
        replies: dict[str, dict[str, Any]] = {}
        while len(replies) < 2:
            m = await agent.read_until(lambda m: m["type"] != "event")
            replies[m["id"]] = m
        assert replies["a"]["error"]["code"] == "cancelled" and replies["c"]["result"] == {"cancelled": True}
        await agent.send("a", "agent.ping")  # the id is not stuck as "already running"
        assert (await agent.read_until(_is("a")))["type"] == "result"
    finally:
        assert await agent.close() == 0


async def test_eof_cancels_running_ops_and_exits(tmp_path: Path) -> None:
    agent = await RawAgent.start(tmp_path / "state")
    await agent.send("long", "agent.ticks", {"count": 10_000, "interval_s": 0.05})
    assert (await agent.read())["event"] == "tick"
    assert await agent.close() == 0  # stdin EOF: the running op is cancelled, the agent leaves


@pytest.mark.slow
async def test_status_answers_while_a_spawn_waits_and_cancel_cleans_up(pool: Path) -> None:
    agent = await RawAgent.start(pool)
    try:
        await agent.send("s1", "workers.spawn", {"backend": "cpu", "model": "tiny-llama"})
        seen: list[dict[str, Any]] = []
        spawned = await agent.read_until(lambda m: m.get("id") == "s1" and m.get("data", {}).get("stage") == "spawned",
                                         seen=seen)
        pid = spawned["data"]["pid"]
        await agent.send("st", "pool.status")
        status = await agent.read_until(_is("st", "result"), seen=seen)
        assert not [m for m in seen if m.get("id") == "s1" and m["type"] != "event"]  # the spawn still waits
        (w,) = status["result"]["workers"]
        assert w["state"] == "starting" and w["pid"] == pid and alive(pid)

        await agent.send("c1", "$cancel", {"target": "s1"})
        replies: dict[str, dict[str, Any]] = {}
        while len(replies) < 2:
            m = await agent.read_until(lambda m: m.get("id") in ("s1", "c1") and m["type"] != "event")
            replies[m["id"]] = m
        assert replies["c1"]["result"] == {"cancelled": True}
        assert replies["s1"]["error"]["code"] == "cancelled"
        # The error doc comes after the cleanup: the half-started worker is already gone.
        assert wait_gone(pid, 1) and processes_under(pool) == []
        (rec,) = agent_cli(pool, "worker", "list").result
        # Stopped on purpose by its caller: shown as stopped, not failed.
        assert rec["state"] == "stopped" and rec["exit_reason"] == "spawn cancelled by the caller"

        # EOF (the control plane went away) while a second spawn waits: the agent exits cleanly and
        # takes the half-started worker with it.
        await agent.send("s2", "workers.spawn", {"backend": "cpu", "model": "tiny-llama"})
        second = await agent.read_until(lambda m: m.get("id") == "s2" and m.get("data", {}).get("stage") == "spawned")
        assert await agent.close() == 0
        assert wait_gone(second["data"]["pid"], 1) and processes_under(pool) == []
        states = {r["id"]: r["state"] for r in agent_cli(pool, "worker", "list").result}
        assert states == {rec["id"]: "stopped", second["data"]["worker_id"]: "stopped"}  # both ended on purpose
    finally:
        await agent.close()


@pytest.mark.slow
async def test_agent_killed_mid_spawn_worker_lives_on_then_dies_visibly(pool: Path) -> None:
    """PoolClient spawn; the agent is SIGKILLed while the worker loads (an SSH link cut hard). The detached
    worker becomes ready anyway, `list` reconciles it to ready; then the worker is SIGKILLed -> dead."""
    client = PoolClient(PoolConfig(name="test", state_dir=str(pool)))
    spawned: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def on_event(event: str, data: dict[str, Any]) -> None:
        if data.get("stage") == "spawned" and not spawned.done():
            spawned.set_result(data)

    try:
        await client.start()
        call = asyncio.create_task(client.call("workers.spawn", {"backend": "cpu", "model": "tiny-llama"}, on_event))
        info = await asyncio.wait_for(spawned, 120)
        os.kill(client._channel.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        with pytest.raises(LlorchError) as ei:
            await call
        assert ei.value.code == "connection_lost"
    finally:
        await client.close()
    pid = info["pid"]
    assert alive(pid)
    deadline = time.monotonic() + 120
    rec: Any = None
    while time.monotonic() < deadline:  # no agent is waiting for this worker: only polling can tell
        (rec,) = await list_workers(PoolPaths(pool), probe=True)
        if rec.state != "starting":
            break
        await asyncio.sleep(0.5)
    assert rec.state == "ready" and rec.pid == pid
    with urllib.request.urlopen(f"http://127.0.0.1:{rec.port}/health", timeout=10) as r:
        assert json.loads(r.read())["status"] == "ok"

    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid, 10)
    (dead,) = agent_cli(pool, "worker", "list").result
    assert dead["state"] == "dead" and dead["exit_signal"] == "SIGKILL"
    assert dead["exit_reason"].startswith("killed by SIGKILL")
    health = agent_cli(pool, "health").result
    assert health["ok"] is False and any(rec.id in p and "died" in p for p in health["problems"])
    (acked,) = agent_cli(pool, "worker", "stop", rec.id).result
    assert acked["state"] == "stopped" and acked["exit_signal"] == "SIGKILL"
    assert agent_cli(pool, "health").result["ok"] is True
    assert processes_under(pool) == []
