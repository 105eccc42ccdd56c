"""The parts of the SSH layer and the `llorch` CLI that need no sshd (run everywhere)."""

from __future__ import annotations

import shlex
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from llorch_worker.api import ExecuteRequest

from llorch_tui.cli.jobs_store import JobRecord, JobStore
from llorch_tui.cli.pools import resolve
from llorch_tui.transport.jumps import with_jump_pools
from llorch_tui.config import Config, PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.transport.ssh_channel import env_handshake, one_shot_command, remote_command
from llorch_tui.transport.ssh_config import parse_hops, plan_connection
from llorch_tui.protocol.workers import WorkerRecord
from llorch_tui.worker_client import WorkerClient


def test_parse_hops() -> None:
    assert parse_hops("bastion") == [(None, "bastion", None)]
    assert parse_hops("me@jump:2222,root@10.0.0.5") == [("me", "jump", 2222), ("root", "10.0.0.5", None)]
    assert parse_hops("[fd00::1]:22") == [(None, "fd00::1", 22)]


def test_remote_command_quotes_every_word_and_keeps_home_expandable() -> None:
    cmd = remote_command(["~/venv/bin/llorch-pool", "--state-dir", "/data/my models", "x;y"], {"HF_HOME": "/a b"})
    assert "HF_HOME" not in cmd and "/a b" not in cmd  # the environment travels on stdin
    assert '"$HOME"/venv/bin/llorch-pool' in cmd
    env = {"V": "x y $(id) 'q'", "W": ""}
    script = 'printf "%s|" "$V" "${W-unset}" "$@"; cat'
    out = subprocess.run(["sh", "-c", remote_command(["sh", "-c", script, "sh", "a b", "$(id)", "'"], env)],
                         input=env_handshake(env) + b"the command's own input", capture_output=True).stdout
    assert out == b"x y $(id) 'q'||a b|$(id)|'|the command's own input"
    assert "x y" not in one_shot_command(["true"], env)
    for bad in ({"V": "two\nlines"}, {"BAD;NAME": "x"}, {"": "x"}):
        with pytest.raises(LlorchError) as e:
            remote_command(["true"], bad)
        assert e.value.code == ErrorCode.CONFIG_INVALID


def test_known_hosts_none_in_ssh_config_does_not_disable_checks(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host lax\n  HostName 10.9.9.9\n  UserKnownHostsFile none\n")
    plan = plan_connection(PoolConfig(name="lax", transport="ssh", host="lax", ssh_config=str(cfg)))
    assert plan.target.real_host == "10.9.9.9"
    assert plan.target.kwargs["known_hosts"] is not None  # an empty trust set or ~/.ssh/known_hosts, never "off"
    assert plan.target.known_hosts_files == [str(Path("~/.ssh/known_hosts").expanduser())]


def test_missing_ssh_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(LlorchError) as e:
        plan_connection(PoolConfig(name="p", transport="ssh", host="h", ssh_config=str(tmp_path / "none")))
    assert e.value.code == ErrorCode.CONFIG_INVALID


def test_proxy_jump_may_name_a_pool() -> None:
    cfg = with_jump_pools(Config(pools=[
        PoolConfig(name="gate", transport="ssh", host="gate.lan", user="ops", port=2200),
        PoolConfig(name="inner", transport="ssh", host="10.0.0.7", proxy_jump="gate"),
        PoolConfig(name="other", transport="ssh", host="o", proxy_jump="me@bastion")]))
    assert cfg.pool("inner").proxy_jump == "ops@gate.lan:2200"  # type: ignore[union-attr]
    assert cfg.pool("other").proxy_jump == "me@bastion"  # type: ignore[union-attr]


def test_host_resolution() -> None:
    cfg = Config(pools=[PoolConfig(name="a", transport="ssh", host="10.0.0.1")])
    assert resolve(cfg, "a").host == "10.0.0.1"
    adhoc = resolve(cfg, "me@box.lan:2222")
    assert (adhoc.transport, adhoc.user, adhoc.host, adhoc.port) == ("ssh", "me", "box.lan", 2222)
    assert resolve(cfg, "local").transport == "local"
    assert resolve(cfg, "a..b.lan").name == "a.b.lan" and resolve(cfg, "x" * 300).host == "x" * 300
    for bad in ("me@", "box:99999", "box:0"):  # a LlorchError with a hint, never a pydantic traceback
        with pytest.raises(LlorchError) as e:
            resolve(cfg, bad)
        assert e.value.code == ErrorCode.NOT_FOUND and "configured pools: a" in (e.value.hint or "")


def test_job_store(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    for jid in ("abc123", "abd456"):
        store.add(JobRecord(id=jid, pool="a", model="m", worker_id="w", worker_port=8000, prompt="p" * 2000))
    assert [j.id for j in store.list()] == ["abc123", "abd456"]
    assert len(store.get("abc").prompt) == 500
    with pytest.raises(LlorchError):
        store.get("ab")  # ambiguous prefix
    assert store.update("abd456", state="done", tokens=3).tokens == 3
    (tmp_path / "jobs.json").write_text("{not json")
    with pytest.raises(LlorchError) as e:
        store.list()
    assert e.value.code == ErrorCode.CATALOG_CORRUPT and "mv " in (e.value.hint or "")


def test_job_store_io_failures_are_llorch_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from filelock import FileLock

    from llorch_tui.cli import jobs_store

    store = JobStore(tmp_path)
    store.path.mkdir()  # unreadable and unwritable: a directory stands where jobs.json should be
    with pytest.raises(LlorchError) as e:
        store.list()
    assert e.value.code == ErrorCode.CATALOG_CORRUPT
    with pytest.raises(LlorchError) as e:
        store._write(jobs_store.JobsFile())
    assert e.value.code == ErrorCode.INTERNAL and str(store.path) in e.value.message
    store.path.rmdir()
    monkeypatch.setattr(jobs_store, "LOCK_TIMEOUT_S", 0.05)
    with FileLock(str(store.lock)):  # another process's `llorch jobs submit` holding the lock
        with pytest.raises(LlorchError) as e:
            store.list()
    assert e.value.code == ErrorCode.TIMEOUT and str(store.lock) in (e.value.hint or "")


async def test_submit_closes_the_pool_session_when_the_job_cannot_be_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llorch_tui.cli import jobs
    from llorch_tui.client import PoolClient

    client = PoolClient(PoolConfig(name="local", state_dir=str(tmp_path / "pool")))
    try:
        await client.start()
        agent = client._channel.proc  # type: ignore[union-attr]  # the real `llorch-pool serve --stdio`

        async def found(*_a: object, **_k: object) -> tuple[PoolClient, WorkerRecord]:
            return client, WorkerRecord(id="w1", model="m", backend="cpu", port=1, pid=1, started_at=datetime.now(),
                                        log_path="/dev/null")

        monkeypatch.setattr(jobs, "find_worker", found)
        store = JobStore(tmp_path / "ctl")
        store.path.mkdir(parents=True)  # the jobs file cannot be read: submit fails before any HTTP
        with pytest.raises(LlorchError):
            await jobs.submit(Config(pools=[]), store, model="m", prompt="p", max_tokens=1, seed=None,
                              stream=False, pool_name=None, spawn=None, out=lambda _: None, err=lambda _: None,
                              as_json=False)
        assert not client.connected and agent.returncode is not None
    finally:
        await client.close()


async def test_a_malformed_worker_event_is_a_protocol_error() -> None:
    import aiohttp
    from aiohttp import web

    from llorch_tui.cli import jobs

    async def execute(_: web.Request) -> web.Response:  # a worker of another version, or a proxy in between
        return web.Response(text='data: {"type": "token", "text": "a"}\n\ndata: {not json\n\n',
                            content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/execute", execute)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    pieces: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            events = WorkerClient(http, f"http://127.0.0.1:{port}").execute_stream(ExecuteRequest(prompt="p"))
            with pytest.raises(LlorchError) as e:
                await jobs._read_stream(events, pieces.append, False)
        assert e.value.code == ErrorCode.PROTOCOL_MISMATCH and pieces == ["a"]
    finally:
        await runner.cleanup()


FAKE_AGENT = '''
import json, sys
from llorch_tui import __version__
from llorch_tui.protocol import Hello
if "--version" in sys.argv:
    print("llorch-pool", __version__)
    sys.exit(0)
print(json.dumps(Hello(agent_version=__version__, pool_id="slow").model_dump(mode="json")), flush=True)
for line in sys.stdin:  # answers ping; pool.status never comes back (a probe hanging on the pool)
    req = json.loads(line)
    if req["op"] == "agent.ping":
        ping = {"pool_id": "slow", "agent_version": __version__, "time": 0.0}
        print(json.dumps({"v": req["v"], "type": "result", "id": req["id"], "result": ping}), flush=True)
'''


async def test_doctor_reports_a_pool_status_timeout_as_a_failed_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from llorch_tui.cli import doctor

    script = tmp_path / "slow_agent.py"
    script.write_text(FAKE_AGENT)
    monkeypatch.setattr(doctor, "STATUS_TIMEOUT_S", 0.5)

    async def no_probe(*_a: object) -> None:  # the torch probe is not what this test is about
        return None

    monkeypatch.setattr(doctor, "_check_worker_probe", no_probe)
    pool = PoolConfig(name="slow", agent_command=f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}")
    checks = {c.name: c for c in await doctor.run_doctor(pool)}
    assert checks["agent session"].status == "ok"
    assert checks["pool status"].status == "fail" and "no answer within" in checks["pool status"].detail
