"""`llorch-pool models synth` writes real checkpoints that transformers loads and generates from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from foundation_helpers import CLI_TIMEOUT_S, pool_cli, snapshot

ARCHS = ("llama", "qwen2", "phi3", "mistral")
pytestmark = pytest.mark.slow  # each synth pays `import torch` in a subprocess

# Load each checkpoint with the stock transformers API and generate: the same path a worker takes.
LOAD_AND_GENERATE = """
import json, sys
import torch, transformers
out = {}
for path in sys.argv[1:]:
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    out[path] = {"type": model.config.model_type, "new_tokens": int(gen.shape[1] - ids["input_ids"].shape[1]),
                 "text": tok.decode(gen[0], skip_special_tokens=True)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """All four through the real CLI, started together (each is mostly `import torch`)."""
    state = tmp_path_factory.mktemp("synth-pool")
    procs = {a: subprocess.Popen([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state),
                                  "models", "synth", f"tiny-{a}", "--architecture", a, "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in ARCHS}
    entries: dict[str, dict] = {}
    try:
        for a, p in procs.items():
            out, err = p.communicate(timeout=CLI_TIMEOUT_S * 3)
            assert p.returncode == 0, err
            lines = [json.loads(line) for line in out.strip().splitlines()]
            stages = [d["data"]["stage"] for d in lines[:-1] if d.get("event") == "progress"]
            assert stages == ["check", "synthesize", "register", "done"], stages
            entries[a] = lines[-1]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return state, entries


def test_synth_registers_entries(synthesized: tuple[Path, dict[str, dict]]) -> None:
    state, entries = synthesized
    catalog = pool_cli(state, "models", "list", "--json").json()
    assert sorted(m["id"] for m in catalog["models"]) == sorted(f"tiny-{a}" for a in ARCHS)
    for a, e in entries.items():
        assert e["source"] == "synthetic" and e["downloaded"] is True and e["architecture"] == a
        assert e["backends"] == ["cpu", "cuda", "metal"]
        assert e["metadata"]["context_length"] == 2048 and e["metadata"]["vocab_size"] > 0
        d = Path(e["path"])
        assert d == (state / "models" / f"tiny-{a}").absolute()
        names = {f["name"] for f in e["files"]}
        assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json"} <= names
        for f in e["files"]:
            assert (d / f["name"]).stat().st_size == f["size"]
        assert e["size_gb"] == pytest.approx(sum(f["size"] for f in e["files"]) / 1e9)
    # No staging directory left beside the models.
    assert sorted(p.name for p in (state / "models").iterdir()) == sorted(f"tiny-{a}" for a in ARCHS)


def test_same_seed_same_bytes(synthesized: tuple[Path, dict[str, dict]], synth_models: dict[str, Path]) -> None:
    """The session's checkpoints were made by `python -m llorch_worker.synth` directly with seed 0: identical."""
    state, entries = synthesized
    for a in ARCHS:
        assert snapshot(Path(entries[a]["path"])) == snapshot(synth_models[a]), a


def test_transformers_loads_and_generates(synthesized: tuple[Path, dict[str, dict]]) -> None:
    state, entries = synthesized
    paths = [entries[a]["path"] for a in ARCHS]
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_GENERATE, *paths], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S * 3)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for a in ARCHS:
        r = result[entries[a]["path"]]
        assert r["type"] == a and r["new_tokens"] == 8 and r["text"].startswith("The capital of France is")


def test_synth_refuses_existing_entry(synthesized: tuple[Path, dict[str, dict]]) -> None:
    state, _ = synthesized
    before = snapshot(state)
    r = pool_cli(state, "models", "synth", "tiny-llama", "--architecture", "qwen2", "--json")
    assert r.rc == 1
    err = r.json()["error"]
    assert err["code"] == "already_exists" and "--force" in err["hint"]
    assert snapshot(state) == before


def test_synth_force_replaces(synthesized: tuple[Path, dict[str, dict]], tmp_path: Path) -> None:
    """--force swaps in a new checkpoint (seed 1: other weights) and keeps the entry's place in the catalog."""
    state, entries = synthesized
    order = [m["id"] for m in pool_cli(state, "models", "list", "--json").json()["models"]]
    old = snapshot(Path(entries["mistral"]["path"]))
    r = pool_cli(state, "models", "synth", "tiny-mistral", "--architecture", "mistral", "--seed", "1", "--force",
                 "--json")
    assert r.rc == 0, r.err
    new = snapshot(Path(r.json()["path"]))
    assert new["model.safetensors"] != old["model.safetensors"] and new["tokenizer.json"] == old["tokenizer.json"]
    assert {f["name"]: f["sha256"] for f in r.json()["files"]} == new
    assert [m["id"] for m in pool_cli(state, "models", "list", "--json").json()["models"]] == order
    entries["mistral"] = r.json()


async def test_cancelled_synth_leaves_nothing(tmp_path: Path) -> None:
    """Cancel while the torch subprocess runs: it is killed and reaped, no staging dir, no entry."""
    import asyncio

    import psutil

    from llorch_tui.pool.ops import AgentSettings, InProcessExecutor

    state = tmp_path / "state"
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_event(event: str, data: dict) -> None:
        if data.get("stage") == "synthesize" and not started.done():
            started.set_result(data["pid"])

    agent = InProcessExecutor(AgentSettings(state_dir=state, pool_id="t"))
    task = asyncio.create_task(agent.call("models.synth", {"id": "doomed", "architecture": "llama"}, on_event))
    pid = await asyncio.wait_for(started, 60)
    assert psutil.pid_exists(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not psutil.pid_exists(pid)  # killed and reaped before the op returned
    assert list((state / "models").iterdir()) == []
    assert not (state / "catalog.json").exists()
