"""PoolClient over the real stdio service on a local pool: hello, multiplexing, events, cancel, failures."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import psutil
import pytest

from llorch_tui.client import PoolClient
from llorch_tui.config import Config, PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fleet import Fleet


def _pool(tmp_path: Path, **kw: object) -> PoolConfig:
    return PoolConfig(name="local", state_dir=str(tmp_path / "state"), **kw)


async def test_hello_and_concurrent_calls_with_events(tmp_path: Path) -> None:
    client = PoolClient(_pool(tmp_path))
    try:
        hello = await client.start()
        assert hello.pool_id == "local" and "agent.ping" in hello.ops
        seen: dict[int, list[int]] = {i: [] for i in range(5)}
        results = await asyncio.gather(*(
            client.call("agent.ticks", {"count": 3 + i, "interval_s": 0.001}, lambda e, d, i=i: seen[i].append(d["n"]))
            for i in range(5)))
        assert [r["ticks"] for r in results] == [3, 4, 5, 6, 7]
        # Each call got exactly its own events, in order: ids are not mixed up between concurrent calls.
        assert all(seen[i] == list(range(3 + i)) for i in range(5))
    finally:
        await client.close()


async def test_errors_come_back_typed_and_session_survives(tmp_path: Path) -> None:
    client = PoolClient(_pool(tmp_path))
    try:
        with pytest.raises(LlorchError) as unknown:
            await client.call("no.such.op")
        assert unknown.value.code == ErrorCode.UNKNOWN_OP and unknown.value.hint
        with pytest.raises(LlorchError) as bad:
            await client.call("agent.ticks", {"count": "many"})
        assert bad.value.code == ErrorCode.BAD_REQUEST and "count" in bad.value.message
        assert (await client.call("agent.ping"))["pool_id"] == "local"
    finally:
        await client.close()


async def test_cancelling_a_call_cancels_the_op_on_the_agent(tmp_path: Path) -> None:
    client = PoolClient(_pool(tmp_path))
    try:
        ticks: list[int] = []
        got_one = asyncio.Event()

        def on_tick(_: str, d: dict) -> None:
            ticks.append(d["n"])
            got_one.set()

        task = asyncio.create_task(client.call("agent.ticks", {"count": 10_000, "interval_s": 0.005}, on_tick))
        await got_one.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The agent acknowledged the cancel and is still serving; the op did not run to completion.
        assert (await client.call("agent.ping"))["agent_version"]
        assert len(ticks) < 10_000
    finally:
        await client.close()


async def test_agent_death_fails_pending_calls_then_reconnects(tmp_path: Path) -> None:
    client = PoolClient(_pool(tmp_path))
    try:
        await client.start()
        started = asyncio.Event()
        task = asyncio.create_task(client.call("agent.ticks", {"count": 10_000, "interval_s": 0.01},
                                               lambda e, d: started.set()))
        await started.wait()
        agent_pid = client._channel.proc.pid  # type: ignore[union-attr]
        psutil.Process(agent_pid).kill()
        with pytest.raises(LlorchError) as lost:
            await task
        assert lost.value.code == ErrorCode.CONNECTION_LOST
        assert client.transport.state == "offline" and "session ended" in (client.transport.last_error or "")
        # The next call starts a fresh agent session by itself.
        assert (await client.call("agent.ping"))["pool_id"] == "local"
        assert client._channel.proc.pid != agent_pid  # type: ignore[union-attr]
        assert client.transport.state == "online"
    finally:
        await client.close()


async def test_missing_agent_and_protocol_mismatch_are_clear(tmp_path: Path) -> None:
    missing = PoolClient(_pool(tmp_path, agent_command="/nonexistent/bin/llorch-pool"))
    with pytest.raises(LlorchError) as exc:
        await missing.start()
    assert exc.value.code == ErrorCode.AGENT_MISSING and "agent_command" in (exc.value.hint or "")

    script = 'import json; print(json.dumps({"v": 99, "type": "hello", "agent_version": "9.0", "pool_id": "x"}))'
    future = PoolClient(_pool(tmp_path, agent_command=f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"))
    with pytest.raises(LlorchError) as mism:
        await future.start()
    assert mism.value.code == ErrorCode.PROTOCOL_MISMATCH and "v99" in mism.value.message

    noisy = PoolClient(_pool(tmp_path, agent_command=f"{shlex.quote(sys.executable)} -c {shlex.quote('print(1+1)')}"))
    with pytest.raises(LlorchError) as garbage:
        await noisy.start()
    assert garbage.value.code == ErrorCode.PROTOCOL_MISMATCH and "stdout" in (garbage.value.hint or "")


async def test_fleet_dead_pool_does_not_block_the_others(tmp_path: Path) -> None:
    config = Config(pools=[
        PoolConfig(name="good", state_dir=str(tmp_path / "good")),
        PoolConfig(name="broken", state_dir=str(tmp_path / "broken"), agent_command="/nonexistent/llorch-pool"),
    ])
    fleet = Fleet(config)
    changes: list[tuple[str, str]] = []
    fleet.on_change(lambda name, state, err: changes.append((name, state)))
    try:
        result = await fleet.start()
        assert result == {"good": True, "broken": False}
        assert fleet.online() == ["good"]
        broken = fleet.state("broken")
        assert broken.state == "offline" and "cannot start the pool agent" in (broken.error or "")
        assert ("good", "online") in changes and ("broken", "offline") in changes
        assert (await fleet.api("good").agent.ping()).pool_id == "good"
        with pytest.raises(LlorchError):
            await fleet.api("nowhere").agent.ping()
    finally:
        await fleet.close()


async def test_close_stops_an_agent_that_hangs_before_its_hello(tmp_path: Path) -> None:
    script = "import sys, time; print('started', file=sys.stderr, flush=True); time.sleep(600)"
    client = PoolClient(_pool(tmp_path, agent_command=f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"))
    start = asyncio.create_task(client.start())
    while client._starting is None:  # the agent process exists and we are waiting for its hello
        assert not start.done(), start.exception()
        await asyncio.sleep(0.01)
    pid = client._starting.proc.pid  # type: ignore[attr-defined]
    assert client.transport.state == "connecting"
    await client.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    start.cancel()
    with pytest.raises((asyncio.CancelledError, LlorchError)):
        await start


async def test_local_run_of_a_missing_program_answers_like_a_shell(tmp_path: Path) -> None:
    from llorch_tui.transport.local import LocalTransport
    from llorch_tui.transport.ssh_errors import looks_like_missing_command

    r = await LocalTransport(_pool(tmp_path)).run([str(tmp_path / "no-such-agent"), "--version"])
    assert r.rc == 127 and looks_like_missing_command(r.rc, r.stderr)  # what doctor checks on an SSH pool too


async def test_cancelling_a_local_run_kills_the_command(tmp_path: Path) -> None:
    from llorch_tui.transport.local import LocalTransport

    started = tmp_path / "started"
    script = f"import pathlib, time; pathlib.Path({str(started)!r}).write_text('x'); time.sleep(600)"
    before = {p.pid for p in psutil.Process().children()}
    run = asyncio.create_task(LocalTransport(_pool(tmp_path)).run([sys.executable, "-c", script], timeout=300))
    while not started.exists():  # the command runs (no event crosses the process boundary but this file)
        assert not run.done(), run.exception()
        await asyncio.sleep(0.02)
    spawned = [p for p in psutil.Process().children() if p.pid not in before]
    assert len(spawned) == 1
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not spawned[0].is_running() or spawned[0].status() == psutil.STATUS_ZOMBIE


async def test_local_run_finds_the_agent_without_the_venv_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`llorch pool doctor` on the local pool runs `llorch-pool ...` one-shot: like the session, it must not need PATH."""
    from llorch_tui.transport.local import LocalTransport

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    transport = LocalTransport(_pool(tmp_path))
    result = await transport.run(transport.agent_argv("--version"))
    assert result.rc == 0 and "llorch-pool" in result.stdout


_BROKEN_AGENT = """
import json, sys
def out(doc): print(json.dumps(doc), flush=True)
out({"v": 1, "type": "hello", "agent_version": "0", "pool_id": "x"})
first = json.loads(sys.stdin.readline())["id"]
out({"v": 1, "id": first, "type": "event", "event": "tick", "data": [1]})  # not an object: skipped
out([1, 2])  # not a message at all: skipped
out({"v": 1, "id": first, "type": "error", "error": {"message": "no code"}})  # fails this call only
second = json.loads(sys.stdin.readline())["id"]
out({"v": 1, "id": second, "type": "event", "event": "tick", "data": {"n": 0}})
out({"v": 1, "id": second, "type": "result", "result": {"ticks": 1}})
sys.stdin.readline()
"""


async def test_a_broken_message_fails_its_call_and_the_session_goes_on(tmp_path: Path) -> None:
    client = PoolClient(_pool(tmp_path, agent_command=f"{shlex.quote(sys.executable)} -c {shlex.quote(_BROKEN_AGENT)}"))
    try:
        events: list[tuple[str, dict]] = []
        with pytest.raises(LlorchError) as broken:
            await client.call("agent.ticks", {}, lambda e, d: events.append((e, d)))
        assert broken.value.code == ErrorCode.PROTOCOL_MISMATCH and "not a protocol message" in broken.value.message
        assert events == []
        assert await client.call("agent.ticks", {}, lambda e, d: events.append((e, d))) == {"ticks": 1}
        assert events == [("tick", {"n": 0})]
    finally:
        await client.close()
