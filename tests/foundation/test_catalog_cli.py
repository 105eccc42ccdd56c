"""The catalog through the real `llorch-pool models ...` CLI, in a temporary state directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundation_helpers import pool_cli, snapshot
from llorch_tui.errors import LlorchError
from llorch_tui.pool.ops import AgentSettings, InProcessExecutor

SEED_CATALOG = {"version": 1, "pool_id": "testpool", "models": [
    {"id": "tinyllama", "name": "TinyLlama", "path": "/m/tinyllama", "architecture": "llama"}]}


def agent(state: Path) -> InProcessExecutor:
    """The same op code the CLI runs, without a process start (for the many error cases)."""
    return InProcessExecutor(AgentSettings(state_dir=state, pool_id="testpool"))


def test_round_trip_json(state: Path) -> None:
    r = pool_cli(state, "models", "register", "tinyllama", "--json")
    assert r.rc == 0, r.err
    entry = r.json()
    # A seed preset needs only its id: the rest comes from the preset.
    assert entry["metadata"] == {"repo": "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "context_length": 2048,
                                 "vocab_size": 32000, "chat_template": None}  # None: not inspected yet
    assert entry["architecture"] == "llama" and entry["downloaded"] is False and entry["source"] == "hub"
    assert entry["path"] == str((state / "models" / "tinyllama").absolute())

    r = pool_cli(state, "models", "register", "my-model", "--name", "Mine", "--repo", "me/my-model",
                 "--architecture", "qwen2", "--backends", "cpu,cuda", "--json")
    assert r.rc == 0, r.err
    assert r.json()["backends"] == ["cpu", "cuda"]

    catalog = pool_cli(state, "models", "list", "--json").json()
    assert catalog["pool_id"] == "testpool" and catalog["version"] == 1
    assert [m["id"] for m in catalog["models"]] == ["tinyllama", "my-model"]

    r = pool_cli(state, "models", "update", "my-model", "--downloaded", "true", "--name", "Mine v2", "--json")
    assert r.rc == 0, r.err
    assert r.json()["downloaded"] is True and r.json()["name"] == "Mine v2"
    on_disk = json.loads((state / "catalog.json").read_text())
    assert on_disk["models"][1]["downloaded"] is True

    r = pool_cli(state, "models", "unregister", "my-model", "--json")
    assert r.rc == 0 and r.json()["id"] == "my-model"
    assert [m["id"] for m in pool_cli(state, "models", "list", "--json").json()["models"]] == ["tinyllama"]


def test_round_trip_human(state: Path) -> None:
    r = pool_cli(state, "models", "register", "qwen-0.5b")
    assert r.rc == 0, r.err
    assert "registered qwen-0.5b" in r.out
    r = pool_cli(state, "models", "list")
    assert r.rc == 0 and "qwen-0.5b" in r.out and "Qwen2.5-0.5B-Instruct" in r.out and "953.7 MiB" in r.out  # 1.0e9 bytes, in the binary units every figure uses
    r = pool_cli(state, "models", "update", "qwen-0.5b", "--downloaded", "yes")
    assert r.rc == 0 and "downloaded" in r.out
    r = pool_cli(state, "models", "catalog")
    assert r.rc == 0, r.err
    assert "Model Catalog for testpool" in r.out and "✅" in r.out and "Qwen/Qwen2.5-0.5B-Instruct" in r.out
    r = pool_cli(state, "models", "unregister", "qwen-0.5b")
    assert r.rc == 0 and "unregistered qwen-0.5b" in r.out
    r = pool_cli(state, "models", "list")
    assert r.rc == 0 and "No models" in r.out


def test_register_local_checkpoint(state: Path, synth_models: dict[str, Path]) -> None:
    r = pool_cli(state, "models", "register", "local-phi", "--path", str(synth_models["phi3"]), "--json")
    assert r.rc == 0, r.err
    e = r.json()
    assert e["source"] == "local" and e["downloaded"] is True and e["architecture"] == "phi3"
    assert e["metadata"]["vocab_size"] == json.loads((synth_models["phi3"] / "config.json").read_text())["vocab_size"]
    assert {f["name"] for f in e["files"]} >= {"config.json", "model.safetensors"}


async def test_register_path_without_config(state: Path, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-checkpoint"
    empty.mkdir()
    with pytest.raises(LlorchError) as exc:
        await agent(state).call("models.register", {"id": "x", "path": str(empty)})
    assert exc.value.code == "model_invalid" and "config.json" in exc.value.message
    assert not (state / "catalog.json").exists()


@pytest.mark.parametrize("op, params, code, words", [
    ("models.register", {"id": "bad;id"}, "invalid_id", "invalid model id"),
    ("models.register", {"id": "../etc"}, "invalid_id", "invalid model id"),
    ("models.register", {"id": "unknown-model"}, "bad_request", "--repo and --architecture"),
    ("models.register", {"id": "tinyllama"}, "already_exists", "already registered"),
    ("models.register", {"id": "m2", "repo": "a/b", "architecture": "llama", "backends": ["tpu"]}, "bad_request", "tpu"),
    ("models.register", {"id": "m2", "repo": "a b;rm", "architecture": "llama"}, "bad_request", "invalid repo id"),
    ("models.register", {"id": "m2", "repo": "a/b", "architecture": "$(x)"}, "bad_request", "invalid architecture"),
    ("models.update", {"id": "nope", "downloaded": True}, "not_found", "not in the catalog"),
    ("models.update", {"id": "tinyllama"}, "bad_request", "nothing to update"),
    ("models.unregister", {"id": "nope"}, "not_found", "not in the catalog"),
    ("models.record_verdict", {"id": "tinyllama", "backend": "tpu", "verdict": "pass"}, "bad_request", "tpu"),
    ("models.record_verdict", {"id": "tinyllama", "backend": "cpu", "verdict": "maybe"}, "bad_request", "verdict"),
    ("models.record_verdict", {"id": "tinyllama", "backend": "cpu", "verdict": "pass", "dtype": "fp8"}, "bad_request",
     "fp8"),
])
async def test_bad_input_changes_nothing(state: Path, op: str, params: dict, code: str, words: str) -> None:
    state.mkdir(parents=True)
    (state / "catalog.json").write_text(json.dumps(SEED_CATALOG))
    before = snapshot(state)
    with pytest.raises(LlorchError) as exc:
        await agent(state).call(op, params)
    assert exc.value.code == code and words in exc.value.message and exc.value.hint
    assert snapshot(state) == before


def test_bad_id_through_cli_changes_nothing(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "catalog.json").write_text(json.dumps(SEED_CATALOG))
    before = snapshot(state)
    r = pool_cli(state, "models", "register", "x;rm -rf ~", "--json")
    assert r.rc == 1
    err = r.json()["error"]
    assert "invalid model id" in err["message"] and "letters, digits" in err["hint"]
    human = pool_cli(state, "models", "unregister", "a/b")
    assert human.rc == 1 and "error:" in human.err and "invalid model id" in human.err and "hint:" in human.err
    assert snapshot(state) == before


BAD_CATALOGS = [
    ('{"version": 1, "pool_id": "x", "models": [', "catalog_corrupt", "not valid JSON"),
    ('[1, 2]', "catalog_corrupt", "JSON object"),
    ('{"version": 1, "pool_id": "x", "models": [{"id": "a"}]}', "catalog_corrupt", "models.0"),
    ('{"version": 1, "pool_id": "x", "models": "none"}', "catalog_corrupt", "models"),
    ('{"version": "one", "pool_id": "x", "models": []}', "catalog_corrupt", "version"),
    ('{"version": 7, "pool_id": "x", "models": []}', "catalog_too_new", "version 7"),
]


@pytest.mark.parametrize("content, code, words", BAD_CATALOGS)
async def test_bad_catalog_is_never_overwritten(state: Path, content: str, code: str, words: str) -> None:
    state.mkdir(parents=True)
    (state / "catalog.json").write_text(content)
    before = snapshot(state)
    calls = [("models.list", {}), ("models.register", {"id": "phi3"}), ("models.update", {"id": "a", "name": "b"}),
             ("models.unregister", {"id": "a"}), ("models.record_verdict", {"id": "a", "backend": "cpu", "verdict": "pass"})]
    for op, params in calls:
        with pytest.raises(LlorchError) as exc:
            await agent(state).call(op, params)
        assert exc.value.code == code and words in exc.value.message, op
        assert str(state / "catalog.json") in exc.value.message and "untouched" in (exc.value.hint or "")
    assert snapshot(state) == before


@pytest.mark.parametrize("content, code, words", [BAD_CATALOGS[0], BAD_CATALOGS[-1]])
def test_bad_catalog_through_cli(state: Path, content: str, code: str, words: str) -> None:
    state.mkdir(parents=True)
    (state / "catalog.json").write_text(content)
    before = snapshot(state)
    r = pool_cli(state, "models", "register", "phi3", "--json")
    assert r.rc == 1
    err = r.json()["error"]
    assert err["code"] == code and words in err["message"] and str(state / "catalog.json") in err["message"]
    assert snapshot(state) == before


async def test_record_verdict(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "catalog.json").write_text(json.dumps(SEED_CATALOG))
    e = await agent(state).call("models.record_verdict", {"id": "tinyllama", "backend": "cpu", "verdict": "fail",
                                                          "reason": "oom", "peak_memory_bytes": 123})
    assert e["verdicts"]["cpu"]["verdict"] == "fail" and e["verdicts"]["cpu"]["reason"] == "oom"
    assert e["peak_memory"] == {"cpu": 123}
    stored = json.loads((state / "catalog.json").read_text())["models"][0]
    assert stored["verdicts"]["cpu"]["verdict"] == "fail"
    # A later verdict replaces the earlier one for that backend only.
    await agent(state).call("models.record_verdict", {"id": "tinyllama", "backend": "cuda", "verdict": "pass"})
    e = await agent(state).call("models.record_verdict", {"id": "tinyllama", "backend": "cpu", "verdict": "pass"})
    assert {b: v["verdict"] for b, v in e["verdicts"].items()} == {"cpu": "pass", "cuda": "pass"}


def test_seed_catalog_format_is_read(state: Path) -> None:
    """The seed project's catalog.json (version "1.0", relative paths) loads as version 1."""
    state.mkdir(parents=True)
    (state / "catalog.json").write_text(json.dumps({
        "version": "1.0", "pool_id": "mac.home.arpa",
        "models": [{"id": "tinyllama", "name": "TinyLlama 1.1B Chat", "path": ".test-models/tinyllama",
                    "format": "safetensors", "size_gb": 2.2, "architecture": "llama", "downloaded": True,
                    "backends": ["cpu", "metal"], "metadata": {"repo": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
                                                               "context_length": 2048, "vocab_size": 32000}}]}))
    r = pool_cli(state, "models", "list", "--json")
    assert r.rc == 0, r.out
    assert r.json()["pool_id"] == "mac.home.arpa" and r.json()["models"][0]["backends"] == ["cpu", "metal"]


def test_register_uses_config_presets(state: Path, tmp_path: Path) -> None:
    """An operator's [[models]] preset needs only its id too; a file preset with a seed id wins over the seed."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[models]]\nid = "smollm"\nname = "SmolLM2"\nrepo = "HuggingFaceTB/SmolLM2-135M-Instruct"\n'
                   'architecture = "llama"\ncontext_length = 8192\nbackends = ["cpu"]\n'
                   '[[models]]\nid = "phi3"\nname = "My Phi"\nrepo = "me/phi-3"\narchitecture = "phi3"\n')
    env = {"LLORCH_CONFIG": str(cfg)}
    e = pool_cli(state, "models", "register", "smollm", "--json", env=env).json()
    assert (e["name"], e["metadata"]["repo"], e["architecture"], e["backends"], e["metadata"]["context_length"]) == \
        ("SmolLM2", "HuggingFaceTB/SmolLM2-135M-Instruct", "llama", ["cpu"], 8192)
    e = pool_cli(state, "models", "register", "phi3", "--json", env=env).json()
    assert e["metadata"]["repo"] == "me/phi-3" and e["name"] == "My Phi"
