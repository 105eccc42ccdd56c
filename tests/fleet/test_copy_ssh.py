"""`llorch models copy` between two real sshd pools that have no route to each other: kill, resume, verify;
a byte damaged in transit is caught."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from fleet_helpers import LLORCH, agent

from llorch_tui.config_load import load_config
from llorch_tui.fleet_ops.copy import copy_model

pytestmark = pytest.mark.ssh


def test_the_pools_cannot_reach_each_other(isolated_pools) -> None:  # type: ignore[no-untyped-def]
    d = isolated_pools.pools["d"]
    probe = "import socket,sys\ntry:\n socket.create_connection((sys.argv[1], 22), timeout=3)\nexcept OSError as e:\n print(e)\n sys.exit(3)"
    r = subprocess.run(isolated_pools.exec_in("c", ["python3", "-c", probe, d.addr]), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 3, r.stdout + r.stderr  # unreachable from c: only the control plane sees both


def _copy_cli(config: Path, model: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([LLORCH, "--config", str(config), "models", "copy", model, "--from", "c", "--to", "d",
                             "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_copy_killed_halfway_resumes_and_verifies(isolated_pools, isolated_config: Path,  # type: ignore[no-untyped-def]
                                                  small_models: dict[str, Path]) -> None:
    c, d = isolated_pools.pools["c"], isolated_pools.pools["d"]
    agent(c.state_dir, "models", "register", "m", "--path", str(small_models["llama"]))
    proc = _copy_cli(isolated_config, "m", "--chunk-mib", "0.25")
    killed_at = None
    assert proc.stdout is not None
    for line in proc.stdout:
        doc = json.loads(line)
        data = doc.get("data") or {}
        if doc.get("event") == "progress" and data.get("bytes_done", 0) > data.get("bytes_total", 1) // 3:
            killed_at = data["bytes_done"]
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI dies with both SSH sessions: no goodbye to anyone
            break
    proc.wait(30)
    assert killed_at is not None, proc.stderr.read() if proc.stderr else ""
    part = d.state_dir / "downloads" / "m.incoming" / "model.safetensors.part"
    assert part.exists() and 0 < part.stat().st_size < (small_models["llama"] / "model.safetensors").stat().st_size
    assert not agent(d.state_dir, "models", "list")["models"]  # nothing is in d's catalog yet

    again = _copy_cli(isolated_config, "m")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, out[-2000:] + err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    target = result["targets"][0]
    total = result["bytes_total"]
    assert target["ok"] and target["bytes_resumed"] > 0 and target["bytes_sent"] + target["bytes_resumed"] == total
    assert agent(d.state_dir, "models", "verify", "m", "--no-load")["ok"]  # every file re-hashed on d
    entry = agent(d.state_dir, "models", "list")["models"][0]
    assert entry["origin"]["kind"] == "copy" and entry["origin"]["pool"] == "c"
    assert Path(entry["path"]) == d.state_dir.parent / "state" / "models" / "m" or entry["path"].endswith("/models/m")
    assert not (d.state_dir / "downloads" / "m.incoming").exists()

    noop = _copy_cli(isolated_config, "m")
    out, _ = noop.communicate(timeout=300)
    assert json.loads(out.strip().splitlines()[-1])["targets"][0]["noop"]


def test_a_byte_damaged_in_transit_is_caught(isolated_pools, isolated_config: Path,  # type: ignore[no-untyped-def]
                                             synth_models: dict[str, Path]) -> None:
    c, d = isolated_pools.pools["c"], isolated_pools.pools["d"]
    agent(c.state_dir, "models", "register", "t", "--path", str(synth_models["qwen2"]))
    config = load_config(str(isolated_config)).config
    flipped: list[tuple[str, int]] = []

    def tamper(pool: str, name: str, offset: int, data: bytes) -> bytes:
        if name == "model.safetensors" and not flipped:
            flipped.append((name, offset))
            return data[:10] + bytes([data[10] ^ 0x01]) + data[11:]
        return data

    bad = asyncio.run(copy_model(config, "t", "c", ["d"], tamper=tamper))
    assert flipped and not bad.ok
    assert bad.targets[0].error and bad.targets[0].error.code == "checksum_mismatch"
    assert "model.safetensors" in bad.targets[0].error.message
    assert not any(m["id"] == "t" for m in agent(d.state_dir, "models", "list")["models"])

    good = asyncio.run(copy_model(config, "t", "c", ["d"]))  # the damaged file was discarded: sent again
    assert good.ok and good.targets[0].bytes_resumed < good.bytes_total
    assert agent(d.state_dir, "models", "verify", "t", "--no-load")["ok"]
