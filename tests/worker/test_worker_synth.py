"""Synthetic checkpoints (determinism, the --json contract, tokenizer round trip) and the probe."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest


def files_of(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_same_seed_same_bytes_and_json_contract(tmp_path: Path, synth_models: dict) -> None:
    out = tmp_path / "again"
    proc = subprocess.run([sys.executable, "-m", "llorch_worker.synth", "--out", str(out), "--architecture", "llama",
                           "--size", "tiny", "--seed", "0", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)  # exactly one JSON document on stdout
    assert set(info) == {"architecture", "size", "seed", "params", "context_length", "vocab_size", "files",
                         "size_bytes"}
    assert (info["architecture"], info["size"], info["seed"]) == ("llama", "tiny", 0)
    assert info["context_length"] >= 2048 and 256 < info["vocab_size"] <= 1024 and info["params"] > 0
    names = {f["name"] for f in info["files"]}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json"} <= names
    for f in info["files"]:
        data = (out / f["name"]).read_bytes()
        assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"]
    assert info["size_bytes"] == sum(f["size"] for f in info["files"])
    # the session checkpoint was written by another process with the same seed: identical bytes
    assert files_of(out) == files_of(synth_models["llama"])
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert "{{" in tok_cfg["chat_template"]
    assert not list(out.glob(".*.tmp")), "no temp files left behind"


def test_other_seed_other_weights_same_tokenizer(tmp_path: Path, synth_models: dict) -> None:
    code = ("import sys, json; from pathlib import Path; from llorch_worker.synth import synthesize\n"
            "print(json.dumps(synthesize(Path(sys.argv[1]), 'llama', 'tiny', 1)))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s1")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["seed"] == 1
    a, b = files_of(synth_models["llama"]), files_of(tmp_path / "s1")
    assert a["model.safetensors"] != b["model.safetensors"]
    assert a["tokenizer.json"] == b["tokenizer.json"] and a["config.json"] == b["config.json"]


def test_synth_rejects_unknown_architecture(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "llorch_worker.synth", "--out", str(tmp_path / "x"),
                           "--architecture", "gpt9"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "gpt9" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("text", ["naïve café", "你好，世界", "こんにちは", "🦙🚀👨‍👩‍👧🇫🇷", "tabs\tand\nnewlines  ",
                                  "\u0000 control \u200b zero-width"])
def test_tokenizer_round_trips_any_text(synth_models: dict, text: str) -> None:
    from tokenizers import Tokenizer

    for arch in ("llama", "qwen2"):
        tok = Tokenizer.from_file(str(synth_models[arch] / "tokenizer.json"))
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text


def test_probe_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "llorch_worker.probe", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert set(info) == {"python", "torch", "transformers", "backends", "cuda_devices", "errors"}
    assert info["backends"]["cpu"] is True and info["torch"] and info["transformers"]
    assert isinstance(info["backends"]["cuda"], bool) and isinstance(info["backends"]["metal"], bool)
    assert bool(info["cuda_devices"]) == info["backends"]["cuda"]
    for d in info["cuda_devices"]:
        assert set(d) == {"index", "name", "total_bytes"}
