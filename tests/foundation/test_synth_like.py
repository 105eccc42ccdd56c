"""`models synth --like`: the exact shapes of a real model with random weights, built without the
model in RAM, marked synthetic in the catalog, in config.json and in the worker's /health."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from foundation_helpers import pool_cli
from llorch_tui.pool import template_client

pytestmark = pytest.mark.slow

# Published figures of Qwen/Qwen2.5-0.5B-Instruct (its config.json and model card): what --like must match.
QWEN_PARAMS = 494_032_768
QWEN_SHAPE = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
              "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
              "tie_word_embeddings": True}

# Run the agent CLI from a fresh parent: ru_maxrss of RUSAGE_CHILDREN is then the largest of *its*
# descendants (the agent and its synth subprocess), not of whatever else this test session started.
UNDER_RUSAGE = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def safetensors_params(path: Path) -> tuple[int, set[str]]:
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    total = 0
    for info in header.values():
        count = 1
        for d in info["shape"]:
            count *= d
        total += count
    return total, {info["dtype"] for info in header.values()}


@pytest.fixture(scope="module")
def qwen_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, int]:
    state = tmp_path_factory.mktemp("like-pool")
    argv = [sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state), "--pool-id", "testpool",
            "models", "synth", "qwen-like", "--like", "qwen-0.5b", "--json"]
    run = json.loads(subprocess.run([sys.executable, "-c", UNDER_RUSAGE, *argv], capture_output=True, text=True,
                                    timeout=900, check=True).stdout)
    assert run["rc"] == 0, run["err"][-3000:]
    return state, json.loads(run["out"].strip().splitlines()[-1]), run["maxrss_kib"] * 1024


def test_real_shapes_and_parameter_count(qwen_like: tuple[Path, dict, int]) -> None:
    _, entry, _ = qwen_like
    path = Path(entry["path"])
    cfg = json.loads((path / "config.json").read_text())
    assert {k: cfg[k] for k in QWEN_SHAPE} == QWEN_SHAPE and cfg["model_type"] == "qwen2"
    params, dtypes = safetensors_params(path / "model.safetensors")
    assert abs(params - QWEN_PARAMS) / QWEN_PARAMS <= 0.01, params
    assert dtypes == {"BF16"} and cfg["dtype"] == "bfloat16"


def test_built_without_the_model_in_ram(qwen_like: tuple[Path, dict, int]) -> None:
    _, entry, peak_rss = qwen_like
    weights = (Path(entry["path"]) / "model.safetensors").stat().st_size
    # torch + transformers + the tokenizer trainer take ~0.4 GB of their own; the model is ~1 GB.
    assert peak_rss < weights, f"peak RSS {peak_rss / 1e9:.2f} GB >= weights {weights / 1e9:.2f} GB"


def test_marked_synthetic_in_catalog_and_config(qwen_like: tuple[Path, dict, int]) -> None:
    state, entry, _ = qwen_like
    assert entry["source"] == "synthetic" and entry["name"].startswith("SYNTHETIC qwen-0.5b-like")
    assert entry["architecture"] == "qwen2" and entry["metadata"]["context_length"] == 32768
    listed = pool_cli(state, "models", "list", "--json").json()
    (row,) = [m for m in listed["models"] if m["id"] == "qwen-like"]
    assert row["source"] == "synthetic" and "SYNTHETIC" in row["name"]
    marker = json.loads((Path(entry["path"]) / "config.json").read_text())["llorch_synthetic"]
    assert marker["like"] == "qwen-0.5b" and marker["original"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert marker["random_weights"] is True


def test_worker_health_says_synthetic_and_it_generates_text(qwen_like: tuple[Path, dict, int]) -> None:
    state, _, _ = qwen_like
    spawn = subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state), "--pool-id",
                            "testpool", "worker", "spawn", "cpu", "--model", "qwen-like", "--dtype", "bfloat16",
                            "--timeout", "900", "--json"], capture_output=True, text=True, timeout=960)
    try:
        assert spawn.returncode == 0, spawn.stdout[-3000:] + spawn.stderr[-3000:]
        port = json.loads(spawn.stdout.strip().splitlines()[-1])["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60) as r:
            health = json.loads(r.read())
        assert health["synthetic"]["like"] == "qwen-0.5b" and health["vocab_size"] == 151936
        req = urllib.request.Request(f"http://127.0.0.1:{port}/execute", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"prompt": "Hello", "max_tokens": 4, "ignore_eos": True}).encode())
        with urllib.request.urlopen(req, timeout=600) as r:
            out = json.loads(r.read())
        assert out["tokens_generated"] == 4 and out["text"].strip()  # tokens the tokenizer can decode
    finally:
        pool_cli(state, "worker", "stop", "--all")
        template_client.stop(state)


def test_refusals_are_clear(tmp_path: Path) -> None:
    bad = pool_cli(tmp_path, "models", "synth", "x", "--like", "gpt5")
    assert bad.rc == 2 and "invalid choice" in bad.err
    both = pool_cli(tmp_path, "models", "synth", "x", "--like", "phi3", "--architecture", "llama")
    assert both.rc == 2 and "not allowed with" in both.err
