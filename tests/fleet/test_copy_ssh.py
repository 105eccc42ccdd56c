"""`llorch models copy` between two real sshd pools that have no route to each other, on both routes: kill,
resume, verify; a byte damaged in transit is caught; the direct route closes its mirror and forwards."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fleet_helpers import LLORCH, agent

from llorch_tui.config_load import load_config
from llorch_tui.fleet import Fleet
from llorch_tui.fleet_ops.copy import CopyResult, copy_model
from llorch_tui.protocol.params import IdParams, SetFingerprintParams
from llorch_tui.protocol.parity import Fingerprint

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


def _kill_past(proc: subprocess.Popen[str], fraction: float) -> tuple[int, int]:
    """Read the CLI's progress until more than `fraction` is done, then SIGKILL it (with both SSH sessions: no
    goodbye to anyone). Returns (bytes done at the first event, bytes done when killed)."""
    first = None
    assert proc.stdout is not None
    for line in proc.stdout:
        doc = json.loads(line)
        data = doc.get("data") or {}
        if doc.get("event") == "progress" and "bytes_done" in data:
            first = data["bytes_done"] if first is None else first
            if data["bytes_done"] > data["bytes_total"] * fraction:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                return first, data["bytes_done"]
    raise AssertionError(f"the copy ended before {fraction:.0%}: {proc.stderr.read() if proc.stderr else ''}")


def test_copy_killed_on_each_route_resumes_and_verifies(isolated_pools, isolated_config: Path,  # type: ignore[no-untyped-def]
                                                        small_models: dict[str, Path]) -> None:
    """Relayed, killed at a third; continued on the direct route (the same staging), killed at two thirds;
    finished by `auto`, which finds c's LAN address out of d's reach and takes the direct route: the files
    verify, the origin says how they came."""
    c, d = isolated_pools.pools["c"], isolated_pools.pools["d"]
    size = (small_models["llama"] / "model.safetensors").stat().st_size
    agent(c.state_dir, "models", "register", "m", "--path", str(small_models["llama"]))
    _kill_past(_copy_cli(isolated_config, "m", "--route", "relay", "--chunk-mib", "0.25"), 1 / 3)
    part = d.state_dir / "downloads" / "m.incoming" / "model.safetensors.part"
    assert part.exists() and 0 < part.stat().st_size < size
    assert not agent(d.state_dir, "models", "list")["models"]  # nothing is in d's catalog yet

    kept = part.stat().st_size

    # The direct route continues from the relayed bytes; rate-limited so that it can be caught half way.
    first, direct = _kill_past(_copy_cli(isolated_config, "m", "--route", "direct", "--rate-limit", "8"), 2 / 3)
    assert first >= kept and direct > first  # nothing the relay wrote was fetched again
    assert kept < part.stat().st_size < size

    listening = isolated_pools.listening("c")
    again = _copy_cli(isolated_config, "m")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, out[-2000:] + err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    target = result["targets"][0]
    total = result["bytes_total"]
    # c's LAN address is out of d's reach: auto said so and took the forwarded route; c's LAN mirror is gone.
    assert result["route"] == "direct" and f"cannot reach c's mirror on http://{c.addr}:" in result["route_note"]
    assert isolated_pools.listening("c") == listening
    assert target["ok"] and target["bytes_resumed"] > 0 and target["bytes_sent"] + target["bytes_resumed"] == total
    assert agent(d.state_dir, "models", "verify", "m", "--no-load")["ok"]  # every file re-hashed on d
    entry = agent(d.state_dir, "models", "list")["models"][0]
    assert entry["origin"]["kind"] == "copy" and entry["origin"]["pool"] == "c"
    assert entry["origin"]["via"] == "mirror (forwarded port)"
    assert entry["path"].endswith("/models/m")
    assert not (d.state_dir / "downloads" / "m.incoming").exists()

    noop = _copy_cli(isolated_config, "m")
    out, _ = noop.communicate(timeout=300)
    done = json.loads(out.strip().splitlines()[-1])
    assert done["targets"][0]["noop"] and done["route"] == "none"  # nothing to send: no mirror was started


def test_direct_route_closes_what_it_opened_and_keeps_the_reference(  # type: ignore[no-untyped-def]
        isolated_pools, isolated_config: Path, synth_models: dict[str, Path]) -> None:
    """Over a fleet left open (the dashboard's case): after the copy, neither the mirror on c nor the forward on
    d listens any more. The copy carries c's reference fingerprint (recorded on c) to d."""
    c, d = isolated_pools.pools["c"], isolated_pools.pools["d"]
    agent(c.state_dir, "models", "register", "fp", "--path", str(synth_models["phi3"]))
    config = load_config(str(isolated_config)).config
    before = {"c": isolated_pools.listening("c"), "d": isolated_pools.listening("d")}

    async def go() -> tuple[CopyResult, Fingerprint]:
        fleet = Fleet(config)
        try:
            await fleet.start()
            src = fleet.api("c").models
            weights = (await src.reference(IdParams(id="fp"))).weights_sha256
            ref = Fingerprint(prompt_set_version="prompts-v1", weights_sha256=weights, recorded_at=datetime.now(timezone.utc),
                              recorded_on="c")
            await src.set_fingerprint(SetFingerprintParams(id="fp", fingerprint=ref))
            result = await copy_model(config, "fp", "c", ["d"], fleet=fleet, route="direct")
            assert fleet.state("c").state == "online" and fleet.state("d").state == "online"
            return result, ref
        finally:
            await fleet.close()

    result, ref = asyncio.run(go())
    assert result.ok and result.route == "direct", result.to_json()
    assert isolated_pools.listening("c") == before["c"] and isolated_pools.listening("d") == before["d"]
    copied = next(m for m in agent(d.state_dir, "models", "list")["models"] if m["id"] == "fp")
    assert Fingerprint.model_validate(copied["fingerprint"]) == ref  # c's reference, saying it was recorded on c


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
