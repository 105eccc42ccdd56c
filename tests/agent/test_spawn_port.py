"""The port race at spawn: the agent binds the port when it chooses it and the worker inherits the
listening socket, so nobody can take it in the seconds a worker needs to start."""

from __future__ import annotations

import errno
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import processes_under

pytestmark = pytest.mark.slow


async def test_a_squatter_between_choice_and_start_cannot_take_the_port(
        pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llorch_tui.pool import worker_spawn
    from llorch_tui.pool.ops import AgentSettings, InProcessExecutor

    # The plain exec (the fork path passes the socket too; test_warm_template's workers go that way).
    monkeypatch.setenv("LLORCH_WORKER_TEMPLATE", "off")
    squat: dict[str, Any] = {}
    real_launch = worker_spawn._launch

    def launch_after_a_squatter(ctx: Any, rec: Any, *args: Any) -> Any:
        # Deterministically in the old window: after the choice, before any worker process exists.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as eager as a squatter can be
        try:
            s.bind(("127.0.0.1", rec.port))
            s.listen()
            squat["took"] = s  # the race as it was: the worker then failed with port_in_use
        except OSError as exc:
            squat["errno"] = exc.errno
            s.close()
        return real_launch(ctx, rec, *args)

    monkeypatch.setattr(worker_spawn, "_launch", launch_after_a_squatter)
    settings = AgentSettings(state_dir=pool, pool_id="test")
    events: list[dict[str, Any]] = []
    rec = await InProcessExecutor(settings).call("workers.spawn", {"backend": "cpu", "model": "tiny-llama"},
                                                 on_event=lambda _ev, data: events.append(data))
    took = squat.pop("took", None)
    if took is not None:
        took.close()
    assert squat == {"errno": errno.EADDRINUSE}, squat
    assert rec["state"] == "ready" and rec["start_mode"] == "exec", rec
    port_stage = next(e for e in events if e.get("stage") == "port")
    assert port_stage["port"] == rec["port"] and port_stage["held"] is True
    with urllib.request.urlopen(f"http://127.0.0.1:{rec['port']}/health", timeout=60) as r:
        health = json.loads(r.read())
    assert health["status"] == "ok" and health["worker_id"] == rec["id"]

    # Once the worker is gone, so is the socket: the port is free again (no copy left anywhere).
    (stopped,) = await InProcessExecutor(settings).call("workers.stop", {"id": rec["id"], "grace_s": 5})
    assert stopped["state"] == "stopped"
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with s:
        s.bind(("127.0.0.1", rec["port"]))
    assert processes_under(pool) == []
