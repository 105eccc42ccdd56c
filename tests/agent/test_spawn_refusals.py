"""Spawn refuses, before starting anything, what cannot work: each refusal names the cause and the next step."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from agent_helpers import agent_cli, processes_under


def _refused(state: Path, *args: str) -> dict:
    res = agent_cli(state, "worker", "spawn", *args)
    assert res.rc == 1 and res.error is not None, (res.result, res.stderr)
    assert res.error["hint"], res.error
    return res.error


def test_refusals_leave_no_process_and_no_record(pool: Path) -> None:
    err = _refused(pool, "cpu", "--model", "no-such-model")
    assert err["code"] == "not_found" and "no-such-model" in err["message"] and "register" in err["hint"]

    assert agent_cli(pool, "models", "update", "tiny-llama", "--downloaded", "false").rc == 0
    err = _refused(pool, "cpu", "--model", "tiny-llama")
    assert err["code"] == "not_downloaded" and "models download tiny-llama" in err["hint"]
    assert agent_cli(pool, "models", "update", "tiny-llama", "--downloaded", "true", "--backends", "cpu").rc == 0

    err = _refused(pool, "cuda", "--model", "tiny-llama")
    assert err["code"] == "backend_unsupported" and "cpu" in err["message"]

    err = _refused(pool, "cpu", "--model", "tiny-llama", "--gpu", "1")
    assert err["code"] == "bad_request" and "--gpu" in err["message"]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        err = _refused(pool, "cpu", "--model", "tiny-llama", "--port", str(port))
    assert err["code"] == "port_in_use" and str(port) in err["message"] and "--port" in err["hint"]

    assert processes_under(pool) == []
    workers = json.loads((pool / "workers.json").read_text())["workers"] if (pool / "workers.json").exists() else []
    assert workers == []


@pytest.mark.slow  # the real probe imports torch
def test_unusable_backend_is_refused_after_the_probe(pool: Path) -> None:
    """cuda is registered for the model but this machine's torch has no CUDA: the real probe says so."""
    err = _refused(pool, "cuda", "--model", "tiny-llama")
    assert err["code"] == "backend_unavailable" and "cuda" in err["message"]
    assert "usable here: cpu" in err["hint"]
    probe = json.loads((pool / "probe.json").read_text())  # cached for the next spawn / status
    assert probe["backends"]["cpu"] is True and probe["backends"]["cuda"] is False and probe["torch"]
    st = agent_cli(pool, "status").result
    assert st["backends"] == ["cpu"] and st["torch"] == probe["torch"]


async def test_supervisor_too_slow_to_report_its_pid_is_a_timeout_and_leaves_nothing(
        pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llorch_tui.errors import ErrorCode, LlorchError
    from llorch_tui.pool import worker_spawn
    from llorch_tui.pool.ops import AgentSettings, InProcessExecutor
    from llorch_tui.pool.worker_registry import Registry

    monkeypatch.setattr(worker_spawn, "PID_WAIT_S", 0.0)  # an overloaded pool, where the pid comes late
    settings = AgentSettings(state_dir=pool, pool_id="test")
    with pytest.raises(LlorchError) as e:
        await InProcessExecutor(settings).call("workers.spawn", {"backend": "cpu", "model": "tiny-llama"})
    assert e.value.code == ErrorCode.WORKER_TIMEOUT and e.value.hint
    assert processes_under(pool) == []
    assert [r.state for r in Registry(settings.paths).load()] == ["failed"]
