"""`models copy --route auto`: the relay when the direct route cannot be opened, saying why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llorch_tui.config import Config, PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.fleet_ops.copy import copy_model
from llorch_tui.transport.base import ReverseForward
from llorch_tui.transport.local import LocalTransport


def test_auto_falls_back_to_the_relay_and_says_why(make_pool, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(self: LocalTransport, local_port: int) -> ReverseForward:
        # What SSHTransport.reverse_forward raises when the target's sshd forbids remote forwards.
        raise LlorchError(ErrorCode.UNREACHABLE, f"pool {self.pool.name}'s sshd refused a port forward to this "
                          "machine: administratively prohibited", "copy with --route relay")

    monkeypatch.setattr(LocalTransport, "reverse_forward", refused)
    config = Config(pools=[PoolConfig(name="src", state_dir=str(make_pool(("llama",), "src"))),
                           PoolConfig(name="dst", state_dir=str(tmp_path / "dst"))])
    with pytest.raises(LlorchError, match="refused a port forward"):  # --route direct says so, copies nothing
        asyncio.run(copy_model(config, "tiny-llama", "src", ["dst"], route="direct"))
    result = asyncio.run(copy_model(config, "tiny-llama", "src", ["dst"]))
    assert result.ok and result.route == "relay" and result.via == "control plane"
    assert result.route_note and "refused a port forward" in result.route_note
    assert result.targets[0].model and result.targets[0].model.origin
    assert result.targets[0].model.origin.via == "control plane"  # the origin says how the bytes came


def test_lan_route_needs_a_real_address_and_serves_from_it(make_pool, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`--route lan` without an address, or with a wildcard one, is a clear error before anything is served;
    with one (here the local pools' shared loopback) the target fetches from the source's mirror there."""
    with pytest.raises(ValueError, match="not one interface's address"):
        PoolConfig(name="src", lan_address="0.0.0.0")
    config = Config(pools=[PoolConfig(name="src", state_dir=str(make_pool(("llama",), "src"))),
                           PoolConfig(name="dst", state_dir=str(tmp_path / "dst"))])
    with pytest.raises(LlorchError, match="has no LAN address") as e:
        asyncio.run(copy_model(config, "tiny-llama", "src", ["dst"], route="lan"))
    assert e.value.hint and "--lan-address" in e.value.hint
    with pytest.raises(LlorchError, match="not an IP address"):
        asyncio.run(copy_model(config, "tiny-llama", "src", ["dst"], route="lan", lan_address="pool-a.lan"))
    result = asyncio.run(copy_model(config, "tiny-llama", "src", ["dst"], route="lan", lan_address="127.0.0.1"))
    assert result.ok and result.route == "lan" and result.route_note is None, result.to_json()
    assert result.bytes_read == 0 and result.targets[0].bytes_sent == result.bytes_total  # nothing relayed
    assert result.targets[0].model and result.targets[0].model.origin
    assert result.targets[0].model.origin.via == "mirror (LAN)"
