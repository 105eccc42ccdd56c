"""Typed progress events: each op declares the events it streams (protocol/events.py), the agent refuses to
send one that does not fit, the typed client hands consumers models over a real agent session while the
wire stays as it was, and older or newer event shapes still parse.

The agent-side check makes every test that runs a streaming op (spawn, synth, GGUF register, download,
fingerprint, copy) a check of its events too: an event that does not fit fails the op as an agent bug."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.ops import AgentSettings, OpContext, execute, load_ops, op
from llorch_tui.protocol import WireModel, ops
from llorch_tui.protocol.downloads import DownloadProgress
from llorch_tui.protocol.events import (PROGRESS, Event, FingerprintStage, LogLine, ModelStage, OtherEvent, SpawnStage,
                                        Tick, parse_event)
from llorch_tui.protocol.params import ExportParams, ImportParams, NoParams, TickParams


def test_streaming_ops_declare_their_event_models() -> None:
    for ref in ops.ALL_OPS:
        assert all(isinstance(name, str) and issubclass(model, WireModel) for name, model in ref.events.items()), ref
    streaming = {r.name for r in ops.ALL_OPS if r.streams}
    assert {"workers.spawn", "workers.logs", "models.download", "models.synth", "models.register",
            "models.fingerprint", "models.serve_copy", "models.receive_fetch", "agent.ticks"} <= streaming
    assert ops.WORKERS_SPAWN.events == {PROGRESS: SpawnStage} and ops.WORKERS_LOGS.events == {"line": LogLine}
    assert not ops.MODELS_LIST.streams


async def test_typed_events_over_a_real_agent_session(make_pool: Any, tmp_path: Path) -> None:
    state = make_pool(models=("llama",))
    client = PoolClient(PoolConfig(name="local", state_dir=str(state)))
    try:
        raw: list[tuple[str, dict[str, Any]]] = []
        await client.call("agent.ticks", {"count": 2, "interval_s": 0}, lambda e, d: raw.append((e, d)))
        assert raw == [("tick", {"n": 0}), ("tick", {"n": 1})]  # the wire document, exactly as before

        api = client.api
        ticks: list[Event] = []
        assert (await api.agent.ticks(TickParams(count=3, interval_s=0), on_event=ticks.append)).ticks == 3
        assert ticks == [Tick(n=0), Tick(n=1), Tick(n=2)]

        archive = tmp_path / "tiny.tar"
        exported: list[Event] = []
        result = await api.models.export(ExportParams(id="tiny-llama", file=str(archive)), on_event=exported.append)
        assert exported and all(isinstance(e, DownloadProgress) and e.model == "tiny-llama" for e in exported)
        last = exported[-1]
        assert isinstance(last, DownloadProgress) and last.stage == "done"
        assert last.bytes_done == last.bytes_total == sum(f.size for f in result.model.files) > 0

        imported: list[Event] = []
        back = await api.models.import_(ImportParams(file=str(archive), id="tiny-copy"), on_event=imported.append)
        assert back.model.id == "tiny-copy"
        assert imported and all(isinstance(e, DownloadProgress) for e in imported)
    finally:
        await client.close()


def test_older_and_newer_event_shapes_parse(caplog: pytest.LogCaptureFixture) -> None:
    spawn = ops.WORKERS_SPAWN.events
    old = parse_event(spawn, PROGRESS, {"stage": "spawned", "id": "w-1", "pid": 42})  # an older agent's names
    assert isinstance(old, SpawnStage) and old.worker_id is None and old.id == "w-1" and old.pid == 42
    new = parse_event(spawn, PROGRESS, {"stage": "pinned", "worker_id": "w-2", "numa_node": 1})  # a newer agent's
    assert isinstance(new, SpawnStage) and new.stage == "pinned" and (new.model_extra or {}).get("numa_node") == 1
    other = parse_event(spawn, "gpu_temperature", {"celsius": 71})
    assert other == OtherEvent(event="gpu_temperature", data={"celsius": 71})
    # An event that does not fit is dropped with a warning: progress is advice, the op goes on.
    with caplog.at_level(logging.WARNING, logger="llorch_tui.protocol.events"):
        assert parse_event(ops.MODELS_DOWNLOAD.events, PROGRESS, {"bytes_done": 5}) is None
    assert "does not fit DownloadProgress" in caplog.text
    # Stage events go on the wire sparse, as the hand-written dicts did: only what the emitter set.
    stage = ModelStage(stage="convert", model="m", file="x.gguf").model_copy(update={"pid": 7})
    assert stage.model_dump(mode="json", exclude_unset=True) == {"stage": "convert", "model": "m", "file": "x.gguf",
                                                                 "pid": 7}


async def test_the_agent_refuses_an_event_its_op_does_not_declare(tmp_path: Path) -> None:
    ref: ops.OpRef[NoParams, ops.TicksResult] = ops.OpRef("test.events", NoParams, ops.TicksResult,
                                                          events={PROGRESS: FingerprintStage})
    sent: list[tuple[str, dict[str, Any]]] = []
    emits: list[tuple[str, Any]] = []

    async def handler(ctx: OpContext, _: NoParams) -> ops.TicksResult:
        for name, event in emits:
            ctx.emit(name, event)
        return ops.TicksResult(ticks=len(emits))

    op(ref)(handler)
    try:
        ctx = OpContext(settings=AgentSettings(state_dir=tmp_path), sink=lambda e, d: sent.append((e, d)))
        # a spawn stage inside a fingerprint (the reference worker's) fits the fingerprint's model
        emits[:] = [(PROGRESS, SpawnStage(stage="port", port=9, held=True))]
        await execute(ref.name, {}, ctx)
        assert sent == [(PROGRESS, {"stage": "port", "port": 9, "held": True})]
        for bad, why in (([("line", LogLine(text="x"))], "undeclared event 'line'"),
                         ([(PROGRESS, Tick(n=1))], "does not fit FingerprintStage")):
            emits[:] = bad
            with pytest.raises(LlorchError) as err:
                await execute(ref.name, {}, OpContext(settings=AgentSettings(state_dir=tmp_path)))
            assert err.value.code == ErrorCode.INTERNAL and why in err.value.message
    finally:
        load_ops().pop(ref.name)
