"""A download over SSH from another pool's mirror, with progress streamed back; a connection killed mid-download."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from sshd_env import SshdEnv

from llorch_tui.cli.main import main
from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError


def test_download_streams_progress_from_the_mirror(llorch_config: Path, mirror_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pool", "models", "register", "tiny-dl", "--repo", "llorch/tiny-src", "--architecture", "llama",
                 "--host", "a", "--json"]) == 0
    capsys.readouterr()
    rc = main(["pool", "models", "download", "tiny-dl", "--endpoint", mirror_url, "--host", "a", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    docs = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    progress = [d["data"] for d in docs if d.get("event") == "progress"]
    result = docs[-1]
    assert result["noop"] is False and result["model"]["downloaded"] is True
    done = [p["bytes_done"] for p in progress if "bytes_done" in p]
    assert len(done) >= 2 and done == sorted(done)  # several updates arrived while it ran, never going back
    assert max(done) == result["bytes_total"] > 0
    rc = main(["pool", "models", "download", "tiny-dl", "--endpoint", mirror_url, "--host", "a", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out.splitlines()[-1])["noop"] is True


async def test_connection_killed_mid_download_reconnects_with_catalog_intact(
        sshd_env: SshdEnv, pool_a: PoolConfig, mirror_url: str) -> None:
    client = PoolClient(pool_a)
    states: list[str] = []
    client.transport.on_state_change(lambda st, err: states.append(st))
    try:
        await client.call("models.register", {"id": "tiny-kill", "repo": "llorch/tiny-src", "architecture": "llama"})
        before = {m["id"]: m["downloaded"] for m in (await client.call("models.list"))["models"]}
        started = asyncio.Event()

        def on_event(event: str, data: dict) -> None:
            if data.get("bytes_done"):
                started.set()

        download = asyncio.create_task(client.call("models.download", {"id": "tiny-kill", "endpoint": mirror_url},
                                                   on_event))
        await asyncio.wait_for(started.wait(), 60)
        sessions = sshd_env.pools["a"].session_pids()
        assert sessions
        for pid in sessions:  # the sshd process serving our connection dies: the TCP connection drops
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(LlorchError) as e:
            await asyncio.wait_for(download, 30)
        assert e.value.code == ErrorCode.CONNECTION_LOST
        # The next call reconnects by itself; the catalog is as it was (tiny-kill not marked downloaded).
        after = {m["id"]: m["downloaded"] for m in (await client.call("models.list"))["models"]}
        assert after == before and after["tiny-kill"] is False
        # The dashboard saw it: offline as soon as the connection dropped, then reconnecting, then online.
        tail = states[states.index("offline", states.index("online")):]
        assert tail[0] == "offline" and "reconnecting" in tail and tail[-1] == "online", states
        # And the interrupted download can simply be run again.
        res = await client.call("models.download", {"id": "tiny-kill", "endpoint": mirror_url})
        assert res["model"]["downloaded"] is True
    finally:
        await client.close()


async def test_pulled_cable_is_noticed_by_keepalive_then_reconnects(sshd_env: SshdEnv) -> None:
    if not sshd_env.pools["a"].netns:
        pytest.skip("needs network namespaces (a link to pull)")
    client = PoolClient(PoolConfig(**sshd_env.pool_kwargs("a", keepalive_interval_s=1.0)))
    offline = asyncio.Event()
    errors: list[str | None] = []

    def on_state(state: str, err: str | None) -> None:
        if state == "offline":
            errors.append(err)
            offline.set()

    try:
        await client.start()
        client.transport.on_state_change(on_state)
        ticking = asyncio.Event()
        call = asyncio.create_task(client.call("agent.ticks", {"count": 10000, "interval_s": 0.05},
                                               lambda e, d: ticking.set()))
        await asyncio.wait_for(ticking.wait(), 30)
        sshd_env.set_link("a", up=False)  # no RST, no FIN: only keepalives can tell
        try:
            await asyncio.wait_for(offline.wait(), 60)
            assert errors and "keepalive" in (errors[0] or "")
            with pytest.raises(LlorchError) as e:
                await asyncio.wait_for(call, 30)
            assert e.value.code == ErrorCode.CONNECTION_LOST
        finally:
            sshd_env.set_link("a", up=True)
        assert (await client.call("agent.ping"))["pool_id"] == "a"  # reconnected (with backoff)
        assert client.transport.state == "online"
    finally:
        await client.close()
