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
