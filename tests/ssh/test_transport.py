"""SSHTransport against real OpenSSH sshd: quoting, agent session, host keys, reachability, jumps, channels."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
import urllib.request
from pathlib import Path

import psutil
import pytest
from sshd_env import SshdEnv

from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.transport.ssh import SSHTransport, remote_command
from llorch_tui.transport.ssh_channel import SSHAgentChannel


def fingerprint(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


async def test_values_crossing_ssh_are_quoted(pool_a: PoolConfig) -> None:
    nasty = "a b'c\"; touch /tmp/llorch-pwned-$(id -u) `id` $HOME \\ *"
    t = SSHTransport(pool_a)
    try:
        r = await t.run(["printf", "%s|%s\n", nasty], env={"LLORCH_X": nasty})
        assert r.rc == 0, r.stderr
        assert r.stdout == f"{nasty}|\n"
        # the value reaches the command, and no process on the pool shows it in its argv meanwhile
        every_argv = 'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f"; echo; done 2>/dev/null'
        r = await t.run(["sh", "-c", f'printf "%s\\n" "$LLORCH_X"; {every_argv}'], env={"LLORCH_X": nasty})
        value, argvs = r.stdout.split("\n", 1)
        assert value == nasty and "llorch" in argvs and nasty not in argvs
        assert not list(Path("/tmp").glob("llorch-pwned-*"))
    finally:
        await t.close()
    with pytest.raises(LlorchError) as e:
        remote_command(["true"], {"BAD;NAME": "x"})
    assert e.value.code == ErrorCode.CONFIG_INVALID


def _agents_holding(secret: str) -> list[psutil.Process]:
    """Processes of this machine (the pools' sshd share its process table) with `secret` in their
    environment; and no process may have it in its argv."""
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            assert secret not in " ".join(p.cmdline()), p.cmdline()
            if p.environ().get("LLORCH_TEST_SECRET") == secret:
                found.append(p)
    return found


async def test_agent_session_hello_ping_and_stream(pool_a: PoolConfig) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    client = PoolClient(pool_a.model_copy(update={"env": {**pool_a.env, "LLORCH_TEST_SECRET": secret}}))
    try:
        hello = await client.start()
        assert hello.pool_id == "a"
        assert client.transport.state == "online"
        # the pool's env reached the agent over its stdin, never through a command line: not in the
        # one sshd runs (the remote shell's argv), not in any process's argv on the pool
        channel = client._channel
        assert isinstance(channel, SSHAgentChannel) and "llorch-pool" in channel.command
        assert secret not in channel.command
        agents = _agents_holding(secret)
        assert any("serve" in p.cmdline() and "--stdio" in p.cmdline() for p in agents), agents
        pong = await client.call("agent.ping")
        assert pong["pool_id"] == "a"
        ticks: list[int] = []
        result = await client.call("agent.ticks", {"count": 5, "interval_s": 0}, lambda e, d: ticks.append(d["n"]))
        assert result == {"ticks": 5} and ticks == [0, 1, 2, 3, 4]
    finally:
        await client.close()
    assert client.transport.state == "offline"


async def test_unreachable_pool_does_not_block_others(sshd_env: SshdEnv, pool_b: PoolConfig) -> None:
    addr, port = sshd_env.unreachable_addr()
    dead = PoolConfig(**sshd_env.pool_kwargs("a", name="dead", host=addr, port=port, connect_timeout_s=2.0))
    clients = [PoolClient(dead), PoolClient(pool_b)]
    try:
        res = await asyncio.gather(*(c.call("agent.ping") for c in clients), return_exceptions=True)
        assert isinstance(res[0], LlorchError) and res[0].code == ErrorCode.UNREACHABLE, res[0]
        assert f"{addr}:{port}" in res[0].message and res[0].hint
        assert res[1]["pool_id"] == "b"
        assert clients[0].transport.state == "offline" and clients[1].transport.state == "online"
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_changed_host_key_is_refused_with_fingerprint(sshd_env: SshdEnv, tmp_path: Path) -> None:
    a, b = sshd_env.pools["a"], sshd_env.pools["b"]
    kh = tmp_path / "known_hosts"
    name = a.addr if a.port == 22 else f"[{a.addr}]:{a.port}"
    kh.write_text(f"{name} {' '.join(b.host_pub.split()[:2])}\n")  # someone else's key under a's name
    t = SSHTransport(PoolConfig(**sshd_env.pool_kwargs("a", known_hosts=str(kh))))
    with pytest.raises(LlorchError) as e:
        await t.connect()
    assert e.value.code == ErrorCode.HOST_KEY_CHANGED
    assert fingerprint(Path(str(a.host_key) + ".pub")) in e.value.message
    assert "ssh-keygen -R" in (e.value.hint or "") and str(kh) in (e.value.hint or "")
    assert t.state == "offline"


async def test_unknown_host_key_is_refused_with_the_command_to_accept_it(sshd_env: SshdEnv, tmp_path: Path) -> None:
    t = SSHTransport(PoolConfig(**sshd_env.pool_kwargs("a", known_hosts=str(tmp_path / "empty_known_hosts"))))
    with pytest.raises(LlorchError) as e:
        await t.connect()
    assert e.value.code == ErrorCode.HOST_KEY_UNKNOWN
    assert fingerprint(Path(str(sshd_env.pools["a"].host_key) + ".pub")) in e.value.message
    assert "llorch pool trust --host a" in (e.value.hint or "")


async def test_proxy_jump_through_pool_a(sshd_env: SshdEnv, pool_b_via_a: PoolConfig) -> None:
    b = sshd_env.pools["b"]
    if b.netns:  # the a<->b link is invisible from here: without the jump, b's inner address fails
        direct = PoolConfig(**sshd_env.pool_kwargs("b", host=b.inner_addr, connect_timeout_s=2.0))
        with pytest.raises(LlorchError) as e:
            await SSHTransport(direct).connect()
        assert e.value.code == ErrorCode.UNREACHABLE
    client = PoolClient(pool_b_via_a)
    try:
        assert (await client.start()).pool_id == "bjump"
        r = await client.transport.run(["sh", "-c", "echo $SSH_CONNECTION"])
        client_ip, _, server_ip, _ = r.stdout.split()
        assert server_ip == b.inner_addr
        if b.netns:  # the connection to b came from pool a, across the a<->b link
            assert client_ip.rsplit(".", 1)[0] == b.inner_addr.rsplit(".", 1)[0]
    finally:
        await client.close()
    # The same hop written the OpenSSH way: an alias with ProxyJump in an ssh_config.
    alias = SSHTransport(PoolConfig(name="b-jump", transport="ssh", host="b-jump", ssh_config=str(sshd_env.ssh_config)))
    try:
        r = await alias.run(["sh", "-c", "echo $SSH_CONNECTION"])
        assert r.stdout.split()[2] == b.inner_addr
    finally:
        await alias.close()


async def test_missing_agent_says_how_to_install(sshd_env: SshdEnv) -> None:
    client = PoolClient(PoolConfig(**sshd_env.pool_kwargs("a", agent_command="/opt/nowhere/bin/llorch-pool")))
    try:
        with pytest.raises(LlorchError) as e:
            await client.start()
        assert e.value.code == ErrorCode.AGENT_MISSING
        assert "/opt/nowhere/bin/llorch-pool" in e.value.message + (e.value.hint or "")
        assert "pip install llorch llorch-worker" in (e.value.hint or "")
    finally:
        await client.close()


async def test_protocol_version_mismatch(sshd_env: SshdEnv, tmp_path: Path) -> None:
    fake = tmp_path / "old-agent"
    fake.write_text('#!/bin/sh\necho \'{"v": 99, "type": "hello", "agent_version": "9.0", "pool_id": "a"}\'\nexec cat >/dev/null\n')
    fake.chmod(0o755)
    client = PoolClient(PoolConfig(**sshd_env.pool_kwargs("a", agent_command=str(fake))))
    try:
        with pytest.raises(LlorchError) as e:
            await client.start()
        assert e.value.code == ErrorCode.PROTOCOL_MISMATCH and "v99" in e.value.message
    finally:
        await client.close()


async def test_channels_stay_under_max_sessions(pool_a: PoolConfig) -> None:
    """sshd refuses the 11th session on a connection (MaxSessions 10); the semaphore queues instead."""
    argv = ["sh", "-c", "sleep 1; echo ok"]
    capped = PoolClient(pool_a)  # default cap: 10 channels, the agent session included
    try:
        await capped.start()
        results = await asyncio.gather(*(capped.transport.run(argv) for _ in range(14)))
        assert [r.stdout for r in results] == ["ok\n"] * 14
        assert (await capped.call("agent.ping"))["pool_id"] == "a"
    finally:
        await capped.close()
    uncapped = SSHTransport(pool_a, max_channels=100)  # proves the limit is real, so the test above means something
    try:
        res = await asyncio.gather(*(uncapped.run(argv) for _ in range(14)), return_exceptions=True)
        refused = [r for r in res if isinstance(r, LlorchError)]
        assert refused and "refused a new channel" in refused[0].message
    finally:
        await uncapped.close()


async def test_port_forward_reaches_pool_loopback_only(sshd_env: SshdEnv, pool_a: PoolConfig) -> None:
    t = SSHTransport(pool_a)
    try:
        await t.connect()
        # An HTTP server on the pool's loopback that stops when its session's stdin closes.
        server = await t.start_agent(["sh", "-c", "python3 -u -m http.server --bind 127.0.0.1 0 & p=$!; "
                                      "cat >/dev/null; kill $p"], {})
        line = (await server.readline()).decode()  # "Serving HTTP on 127.0.0.1 port N ..."
        port = int(line.split(" port ")[1].split()[0])
        local = await t.forward_port(port)
        assert await t.forward_port(port) == local  # cached
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10).status)
        assert body == 200
        await t.close_forward(port)
        assert port not in t.forwarded_ports()
        await server.close()
    finally:
        await t.close()


async def test_wrong_key_is_an_authentication_error(sshd_env: SshdEnv, tmp_path: Path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    t = SSHTransport(PoolConfig(**sshd_env.pool_kwargs("a", user="nobody", identity_file=str(key))))
    with pytest.raises(LlorchError) as e:
        await t.connect()
    assert e.value.code == ErrorCode.AUTH_FAILED
    assert str(key) in e.value.message and "authorized_keys" in (e.value.hint or "")
    with pytest.raises(LlorchError) as e2:  # a key file that does not exist: said before connecting
        await SSHTransport(PoolConfig(**sshd_env.pool_kwargs("a", identity_file=str(tmp_path / "nope")))).connect()
    assert e2.value.code == ErrorCode.CONFIG_INVALID


async def test_a_timed_out_command_is_stopped_on_the_pool(sshd_env: SshdEnv, pool_a: PoolConfig) -> None:
    import psutil

    t = SSHTransport(pool_a)
    try:
        with pytest.raises(LlorchError) as e:
            await t.run(["sleep", "77.25"], timeout=1.0)
        assert e.value.code == ErrorCode.TIMEOUT
        left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "77.25"]]
        gone, alive = psutil.wait_procs(left, timeout=10)
        assert not alive, "the remote command outlived its timeout"
        assert (await t.run(["echo", "ok"])).stdout == "ok\n"  # its session slot is free again
    finally:
        await t.close()
