"""`llorch models copy --route lan|auto` between pools a and b, which share a link of their own (the a<->b veth):
b fetches from a's mirror on a's address on that link, so the bytes never cross the control plane's links."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sshd_env import AGENT, SshdEnv

from llorch_tui.config import Config, PoolConfig
from llorch_tui.fleet import Fleet
from llorch_tui.fleet_ops.copy import CopyResult, copy_model
from llorch_tui.protocol.params import IdParams


def _agent(state: Path, *args: str) -> dict:
    r = subprocess.run([AGENT, "--state-dir", str(state), *args, "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{args}: {r.stdout[-2000:]} {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def _flip(path: Path, at: int) -> None:
    """Change one byte in place, keeping size and mtime: the catalog's sha256 stays what it was."""
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_lan_copy_bypasses_the_control_plane_and_verifies(sshd_env: SshdEnv, synth_models: dict[str, Path],  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    a, b = sshd_env.pools["a"], sshd_env.pools["b"]
    if not a.netns or not a.inner_addr:
        pytest.skip("the LAN route test needs the a<->b link of the network-namespace pools")
    src = tmp_path / "lan-m"  # a copy of its own: one byte of it is damaged below
    shutil.copytree(synth_models["llama"], src)
    _agent(a.state_dir, "models", "register", "lan-m", "--path", str(src))
    weights = src / "model.safetensors"
    size = sum(p.stat().st_size for p in src.iterdir())
    config = Config(pools=[PoolConfig(**sshd_env.pool_kwargs("a", lan_address=a.inner_addr)),  # type: ignore[arg-type]
                           PoolConfig(**sshd_env.pool_kwargs("b"))])  # type: ignore[arg-type]
    before = {"a": sshd_env.listening("a"), "b": sshd_env.listening("b")}

    async def go() -> tuple[CopyResult, CopyResult, int]:
        fleet = Fleet(config)
        try:
            await fleet.start()
            await fleet.api("a").models.manifest(IdParams(id="lan-m"))  # a's catalog records every file's sha256
            _flip(weights, 100)
            try:
                bad = await copy_model(config, "lan-m", "a", ["b"], fleet=fleet, route="lan")
            finally:
                _flip(weights, 100)
            links = sshd_env.host_link_bytes("a") + sshd_env.host_link_bytes("b")
            good = await copy_model(config, "lan-m", "a", ["b"], fleet=fleet)  # auto
            return bad, good, sshd_env.host_link_bytes("a") + sshd_env.host_link_bytes("b") - links
        finally:
            await fleet.close()

    bad, good, control_bytes = asyncio.run(go())
    # The byte changed on a's disk after its catalog recorded the sha256 is caught on b: nothing is committed.
    assert bad.route == "lan" and not bad.ok
    assert bad.targets[0].error and bad.targets[0].error.code == "checksum_mismatch", bad.to_json()
    assert "model.safetensors" in bad.targets[0].error.message and bad.targets[0].model is None

    assert good.ok and good.route == "lan" and good.route_note is None, good.to_json()
    assert good.bytes_read == 0 and good.targets[0].bytes_sent > 0
    # Only the agents' messages crossed this machine's links to a and b, not the files.
    assert control_bytes < size // 10, (control_bytes, size)
    assert _agent(b.state_dir, "models", "verify", "lan-m", "--no-load")["ok"]
    entry = next(m for m in _agent(b.state_dir, "models", "list")["models"] if m["id"] == "lan-m")
    assert entry["origin"]["via"] == "mirror (LAN)" and entry["origin"]["pool"] == "a"
    # The mirror on a's LAN address is gone (and nothing was opened on b).
    assert sshd_env.listening("a") == before["a"] and sshd_env.listening("b") == before["b"]
    _agent(b.state_dir, "models", "rm", "lan-m")
    _agent(a.state_dir, "models", "rm", "lan-m")
