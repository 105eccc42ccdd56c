"""`llorch jobs` against a real worker on pool a, reached only through the SSH tunnel."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llorch_tui.cli import jobs, pools
from llorch_tui.cli.jobs_store import JobStore
from llorch_tui.cli.main import main
from llorch_tui.cli.remote import RemoteExecutor
from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig

LLORCH = str(Path(sys.executable).parent / "llorch")


def test_streamed_job_through_the_tunnel(llorch_config: Path, worker_a: dict) -> None:
    r = subprocess.run([LLORCH, "jobs", "submit", "--model", "tiny-w", "--prompt", "Hello there", "--max-tokens", "12",
                        "--seed", "7", "--stream", "--pool", "a"], capture_output=True, text=True, timeout=120,
                       env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "the generated text is printed"
    assert f"worker {worker_a['id']}" in r.stderr and " done: " in r.stderr
    listed = subprocess.run([LLORCH, "jobs", "list", "--json"], capture_output=True, text=True, timeout=60)
    job = json.loads(listed.stdout)[-1]
    assert job["state"] == "done" and job["pool"] == "a" and job["worker_id"] == worker_a["id"]
    assert 1 <= job["tokens"] <= 12 and job["text"].strip() == r.stdout.strip()


async def test_cancel_a_running_job(llorch_config: Path, worker_a: dict) -> None:
    config = pools.load(None)
    store = JobStore()
    first_token = asyncio.Event()
    pieces: list[str] = []

    def out(text: str) -> None:
        pieces.append(text)
        first_token.set()

    submit = asyncio.create_task(jobs.submit(
        config, store, model="tiny-w", prompt="Tell a long story", max_tokens=1800, seed=1, stream=True,
        pool_name="a", spawn=None, out=out, err=lambda _: None, as_json=False, ignore_eos=True))
    await asyncio.wait_for(first_token.wait(), 60)
    running = [j for j in store.list() if j.state == "running"]
    assert len(running) == 1
    cancelled = await jobs.cancel(config, store, running[0].id[:6])  # a unique prefix is enough
    assert cancelled.state == "cancelled"
    job = await asyncio.wait_for(submit, 60)
    assert job.finish_reason == "cancelled" and job.state == "cancelled"
    assert job.tokens is not None and job.tokens < 1800


def test_no_worker_of_that_model(llorch_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["jobs", "submit", "--model", "tiny-none", "--prompt", "x", "--json"])
    err = json.loads(capsys.readouterr().out.splitlines()[-1])["error"]
    assert rc == 1 and err["code"] == "not_found" and "--spawn" in err["hint"]


def test_worker_commands_over_host(llorch_config: Path, worker_a: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pool", "worker", "list", "--host", "a", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [(w["id"], w["state"]) for w in listed] == [(worker_a["id"], "ready")]
    assert main(["pool", "worker", "logs", worker_a["id"], "-n", "5", "--host", "a", "--json"]) == 0
    lines = json.loads(capsys.readouterr().out.splitlines()[-1])["lines"]
    assert 0 < len(lines) <= 5


async def test_stopping_the_worker_closes_its_forward(pool_a: PoolConfig, worker_a: dict) -> None:
    """Last in this module: it stops the shared worker."""
    client = PoolClient(pool_a)
    try:
        await client.worker_url(worker_a["port"])
        assert worker_a["port"] in client.transport.forwarded_ports()
        stopped = await RemoteExecutor(client).call("workers.stop", {"id": worker_a["id"], "grace_s": 3})
        assert [w["id"] for w in stopped] == [worker_a["id"]]
        assert worker_a["port"] not in client.transport.forwarded_ports()
        assert await jobs.find_worker(pools.load(None), "tiny-w", "a", lambda _: None) is None
    finally:
        await client.close()
