"""Interrupted downloads continue from the bytes on disk: a killed process, a stalled server, a cancel."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from dl_helpers import BIG_PAD_BYTES
from dl_helpers import MirrorProc, Pool, register, sha256_of
from stall_proxy import StallProxy

from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig
from llorch_tui.errors import LlorchError


def test_killed_download_resumes_with_a_small_fraction_fetched(dest: Pool, mirror: MirrorProc,
                                                               source_pool: Pool) -> None:
    register(dest, "big", "--repo", "llorch-test/big", "--architecture", "llama")
    before = dest.catalog_bytes()
    served_start = mirror.served()
    proc = subprocess.Popen(dest.argv("models", "download", "big", "--endpoint", mirror.url, "--json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dest.env)
    killed_at = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            data = json.loads(line).get("data", {})
            if data.get("file") == "pad.safetensors" and data.get("bytes_total") and \
                    data["bytes_done"] >= 0.8 * data["bytes_total"]:
                killed_at = data["bytes_done"]
                proc.send_signal(signal.SIGKILL)  # no chance to clean up: like a power cut or `kill -9`
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert killed_at is not None, "the download finished before it could be killed"
    part = dest.state / "downloads" / "big" / "pad.safetensors.part"
    on_disk = part.stat().st_size
    assert on_disk >= 0.3 * BIG_PAD_BYTES
    assert dest.catalog_bytes() == before  # killed midway: catalog as it was
    assert not (dest.state / "models" / "big" / "pad.safetensors").exists()

    served_before = mirror.served()
    code, events, result = dest.json("models", "download", "big", "--endpoint", mirror.url)
    assert code == 0, result
    total = result["bytes_total"]
    fetched = result["bytes_fetched"]
    served_now = mirror.served() - served_before
    assert fetched == served_now  # what the result says crossed the network is what the mirror sent
    assert fetched + result["bytes_resumed"] == total
    assert result["bytes_resumed"] >= on_disk
    assert fetched <= 0.25 * total, f"fetched {fetched} of {total} again"
    first = next(e["data"] for e in events if e["data"]["stage"] == "downloading")
    assert first["bytes_done"] >= on_disk  # progress starts from what was on disk
    src = Path(source_pool.entry("big")["path"])
    entry = dest.entry("big")
    assert entry["downloaded"] is True
    for f in entry["files"]:
        assert f["sha256"] == sha256_of(src / f["name"])
    assert not part.exists()
    assert mirror.served() - served_start < total + 0.9 * total  # both runs together: far less than twice


def test_stall_is_retried_with_backoff_and_resumes(dest: Pool, mirror: MirrorProc, source_pool: Pool) -> None:
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    with StallProxy(mirror.url, stall_file="model.safetensors", stall_after=100_000) as proxy:
        code, events, result = dest.json("models", "download", "tl", "--endpoint", proxy.url,
                                         "--stall-timeout", "1", "--retries", "3")
    assert code == 0, result
    retries = [e["data"] for e in events if e["data"]["stage"] == "retrying"]
    assert len(retries) == 1 and retries[0]["file"] == "model.safetensors"
    assert "no data for 1s" in retries[0]["message"] and retries[0]["attempt"] == 2
    assert proxy.ranges_seen == ["bytes=100000-"]  # the retry asked only for the rest
    assert result["bytes_fetched"] == result["bytes_total"]  # nothing fetched twice
    src = Path(source_pool.entry("tiny-llama")["path"])
    assert sha256_of(dest.state / "models" / "tl" / "model.safetensors") == sha256_of(src / "model.safetensors")


def test_stall_gives_up_after_bounded_attempts(dest: Pool, mirror: MirrorProc) -> None:
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    before = dest.catalog_bytes()
    with StallProxy(mirror.url, stall_file="model.safetensors", stall_after=0, stall_every_time=True) as proxy:
        code, events, doc = dest.json("models", "download", "tl", "--endpoint", proxy.url,
                                      "--stall-timeout", "0.5", "--retries", "2")
    assert code == 1 and doc["error"]["code"] == "network"
    assert "gave up after 2 attempts" in doc["error"]["message"] and "model.safetensors" in doc["error"]["message"]
    assert len([e for e in events if e["data"]["stage"] == "retrying"]) == 1
    assert dest.catalog_bytes() == before


async def test_cancel_stops_promptly_and_keeps_the_part(dest: Pool, mirror: MirrorProc) -> None:
    register(dest, "big", "--repo", "llorch-test/big", "--architecture", "llama")
    client = PoolClient(PoolConfig(name="dest", transport="local", state_dir=str(dest.state),
                                   hf_endpoint=mirror.url))
    reached = asyncio.Event()

    def on_event(event: str, data: dict[str, Any]) -> None:
        if data.get("file") == "pad.safetensors" and data["bytes_done"] > 0.2 * data["bytes_total"]:
            reached.set()

    try:
        await client.start()
        task = asyncio.create_task(client.call("models.download", {"id": "big"}, on_event=on_event))
        await asyncio.wait_for(reached.wait(), 60)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, LlorchError):
            pass
        part = dest.state / "downloads" / "big" / "pad.safetensors.part"
        # the op has finished on the agent once a new call is answered after the cancel went out
        await client.call("agent.ping", {}, timeout=30)
        size = part.stat().st_size
        assert 0 < size < BIG_PAD_BYTES
        assert dest.entry("big")["downloaded"] is False
        result = await client.call("models.download", {"id": "big"}, timeout=120)
        assert result["bytes_resumed"] >= size and result["model"]["downloaded"] is True
    finally:
        await client.close()
