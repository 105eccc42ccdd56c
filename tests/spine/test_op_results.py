"""Typed op results: the op table matches the agent's registry, the agent sends only what it declared,
the typed client (PoolApi) reads every answer as its model over a real agent session, and a document
that does not fit is one clear protocol_mismatch error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llorch_tui import pool_api
from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.ops import AgentSettings, InProcessExecutor, OpContext, execute, load_ops, op
from llorch_tui.pool_api import PoolApi
from llorch_tui.protocol import ops
from llorch_tui.protocol.catalog import Catalog, ModelEntry
from llorch_tui.protocol.downloads import RemoveResult
from llorch_tui.protocol.params import (SYNTH_ARCHITECTURES, IdParams, ListParams, LogsParams, NoParams, RegisterParams,
                                        RmParams, UpdateParams, VerdictParams, VerifyParams)
from llorch_tui.protocol.status import PoolStatus
from llorch_tui.protocol.workers import SweepResult


def test_every_registered_op_is_in_the_table_and_the_facade() -> None:
    registry = load_ops()
    assert set(registry) == set(ops.OPS_BY_NAME), "an op is registered without an OpRef in protocol/ops.py, or v.v."
    assert all(spec.ref is ops.OPS_BY_NAME[name] for name, spec in registry.items())
    # Each op of the table has its typed method on PoolApi, derived from the table entry (mypy checks its types).
    groups = (pool_api.AgentApi, pool_api.ModelsApi, pool_api.WorkersApi, pool_api.PoolOpsApi)
    methods = [m for g in groups for m in vars(g).values() if isinstance(m, pool_api.Op)]
    assert sorted(m.ref.name for m in methods) == sorted(ops.OPS_BY_NAME), "an op without a PoolApi method, or twice"
    # a method that may be called without parameters has a parameter model that needs none
    for m in methods:
        if isinstance(m, pool_api.OptionalParams):
            m.ref.params()


def test_an_op_without_an_opref_is_refused_at_registration() -> None:
    with pytest.raises(TypeError, match="OpRef"):
        op("models.nothing")  # type: ignore[arg-type]  # the old string form, deliberately


async def test_a_result_that_does_not_fit_its_declared_type_is_an_agent_error(tmp_path: Path) -> None:
    ref: ops.OpRef[NoParams, PoolStatus] = ops.OpRef("test.bad_result", NoParams, PoolStatus)
    op(ref)(_bad_status)
    try:
        with pytest.raises(LlorchError) as err:
            await execute(ref.name, {}, OpContext(settings=AgentSettings(state_dir=tmp_path)))
        assert err.value.code == ErrorCode.INTERNAL and "declared type" in err.value.message
    finally:
        load_ops().pop(ref.name)


async def _bad_status(ctx: OpContext, _: NoParams) -> dict[str, Any]:
    return {"pool_id": ctx.settings.pool_id}  # hostname, os, ram, ... missing


class _OldAgent:
    """An agent whose answers predate a field the control plane needs (what a version skew looks like)."""

    name = "skewed"

    async def call(self, op: str, params: dict[str, Any] | None = None, on_event: Any = None,
                   timeout: float | None = None) -> Any:
        return {"pool_id": "skewed", "models": [{"id": "m", "name": "m"}]}  # entries lack path and architecture


async def test_a_malformed_answer_is_one_clear_protocol_mismatch() -> None:
    with pytest.raises(LlorchError) as err:
        await PoolApi(_OldAgent()).models.list()
    e = err.value
    assert e.code == ErrorCode.PROTOCOL_MISMATCH
    assert e.message.startswith("pool skewed: models.list:") and "models.0.path" in e.message
    assert "same llorch version" in (e.hint or "")


async def test_typed_calls_over_a_real_agent_session(make_pool: Any) -> None:
    state = make_pool(models=("llama",))
    client = PoolClient(PoolConfig(name="local", state_dir=str(state)))
    try:
        api = client.api
        assert (await api.agent.ping()).pool_id == "local"
        catalog = await api.models.list()
        assert isinstance(catalog, Catalog) and [m.id for m in catalog.models] == ["tiny-llama"]
        entry = await api.models.register(RegisterParams(id="tinyllama"))  # a seed preset: only the id
        assert isinstance(entry, ModelEntry) and entry.metadata.repo and not entry.downloaded
        assert (await api.models.update(UpdateParams(id="tinyllama", name="Tiny"))).name == "Tiny"
        verdict = await api.models.record_verdict(VerdictParams(id="tiny-llama", backend="cpu", verdict="pass",
                                                                tokens_per_second=12.5))
        assert verdict.verdicts["cpu"].verdict == "pass" and verdict.verdicts["cpu"].tokens_per_second == 12.5
        checked = await api.models.verify(VerifyParams(id="tiny-llama", load=False))
        assert checked.ok and checked.files_checked >= 3
        status = await api.pool.status()
        assert isinstance(status, PoolStatus) and "cpu" in status.backends and status.ram.total > 0
        assert (await api.pool.health()).pool_id == "local"
        assert await api.workers.list(ListParams(probe=False)) == []
        assert isinstance(await api.workers.sweep(), SweepResult)
        with pytest.raises(LlorchError) as missing:
            await api.workers.logs(LogsParams(id="w-none"))
        assert missing.value.code == ErrorCode.NOT_FOUND
        assert (await api.models.unregister(IdParams(id="tinyllama"))).id == "tinyllama"
    finally:
        await client.close()


async def test_rm_answers_either_of_its_two_result_models(tmp_path: Path) -> None:
    api = PoolApi(InProcessExecutor(AgentSettings(state_dir=tmp_path / "state")))
    await api.models.register(RegisterParams(id="tinyllama"))
    kept = await api.models.rm(RmParams(id="tinyllama"))
    assert isinstance(kept, ModelEntry) and not kept.downloaded
    dropped = await api.models.rm(RmParams(id="tinyllama", keep_entry=False))
    assert isinstance(dropped, RemoveResult) and dropped.removed == "tinyllama"
    assert (await api.models.list()).models == []


def test_synth_architectures_agree_with_the_worker() -> None:
    from llorch_worker.synth import ARCHITECTURES  # the worker may not import llorch_tui: two lists, kept equal

    assert tuple(ARCHITECTURES) == SYNTH_ARCHITECTURES
