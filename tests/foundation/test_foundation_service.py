"""The catalog ops through `llorch-pool serve --stdio` and PoolClient on a local pool (the control plane's path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig
from llorch_tui.errors import LlorchError


async def test_pool_client_models_ops(make_pool) -> None:
    state: Path = make_pool(("llama", "qwen2"))
    client = PoolClient(PoolConfig(name="local", state_dir=str(state)))
    try:
        hello = await client.start()
        assert {"models.list", "models.register", "models.synth", "models.record_verdict"} <= set(hello.ops)
        catalog = await client.call("models.list")
        assert catalog["pool_id"] == "local"
        assert [m["id"] for m in catalog["models"]] == ["tiny-llama", "tiny-qwen2"]
        llama = catalog["models"][0]
        assert llama["source"] == "synthetic" and llama["downloaded"] and Path(llama["path"]).is_dir()

        entry = await client.call("models.register", {"id": "mistral"})
        assert entry["metadata"]["repo"] == "mistralai/Mistral-7B-Instruct-v0.2"
        verdict = await client.call("models.record_verdict", {"id": "tiny-llama", "backend": "cpu", "verdict": "pass",
                                                              "tokens_per_second": 12.5})
        assert verdict["verdicts"]["cpu"]["tokens_per_second"] == 12.5
        with pytest.raises(LlorchError) as exc:
            await client.call("models.update", {"id": "nope", "downloaded": True})
        assert exc.value.code == "not_found" and "register" in (exc.value.hint or "")
        after = await client.call("models.list")
        assert [m["id"] for m in after["models"]] == ["tiny-llama", "tiny-qwen2", "mistral"]
    finally:
        await client.close()
