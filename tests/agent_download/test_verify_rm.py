"""`models verify` re-hashes and load-checks; `models rm` deletes files, never outside the model's place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dl_helpers import MirrorProc, Pool, register


@pytest.fixture
def downloaded(dest: Pool, mirror: MirrorProc) -> Pool:
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    code, _, result = dest.json("models", "download", "tl", "--endpoint", mirror.url)
    assert code == 0, result
    return dest


def test_verify_ok_then_detects_a_damaged_file(downloaded: Pool) -> None:
    code, _, result = downloaded.json("models", "verify", "tl", "--no-load")
    assert code == 0 and result["ok"] is True and result["problems"] == []
    weights = downloaded.state / "models" / "tl" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    (downloaded.state / "models" / "tl" / "tokenizer.json").unlink()
    code, _, result = downloaded.json("models", "verify", "tl", "--no-load")
    assert code == 3 and result["ok"] is False  # a failed verification is a failed command
    problems = {p["file"]: p["problem"] for p in result["problems"]}
    assert "sha256 mismatch" in problems["model.safetensors"]
    assert "missing" in problems["tokenizer.json"]
    human = downloaded.run("models", "verify", "tl", "--no-load")
    assert "model.safetensors" in human.stdout and "--force" in human.stdout


@pytest.mark.slow
def test_verify_loads_the_checkpoint(downloaded: Pool) -> None:
    """The load check runs `python -m llorch_worker.check --load` (torch stays out of the agent)."""
    code, _, result = downloaded.json("models", "verify", "tl", timeout=300)
    assert code == 0 and result["ok"] is True and result["loaded"] is True, result


def test_verify_not_downloaded(dest: Pool) -> None:
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    code, _, doc = dest.json("models", "verify", "tl")
    assert code == 1 and doc["error"]["code"] == "not_downloaded"
    assert "models download tl" in doc["error"]["hint"]


def test_rm_keeps_entry_then_download_again_then_drop(downloaded: Pool, mirror: MirrorProc) -> None:
    model_dir = downloaded.state / "models" / "tl"
    code, _, entry = downloaded.json("models", "rm", "tl")
    assert code == 0 and entry["downloaded"] is False and not model_dir.exists()
    assert downloaded.entry("tl")["downloaded"] is False
    code, _, result = downloaded.json("models", "download", "tl", "--endpoint", mirror.url)
    assert code == 0 and result["noop"] is False and model_dir.is_dir()
    code, _, result = downloaded.json("models", "rm", "tl", "--drop-entry")
    assert code == 0 and result["removed"] == "tl" and result["freed_bytes"] > 0
    assert not model_dir.exists()
    assert "tl" not in {m["id"] for m in __import__("json").loads(downloaded.catalog.read_text())["models"]}


def test_rm_outside_models_dir_deletes_only_catalogued_files(dest: Pool, synth_models: dict[str, Path],
                                                             tmp_path: Path) -> None:
    own = tmp_path / "operator-checkpoint"
    shutil.copytree(synth_models["qwen2"], own)
    keep = own / "NOTES.md"  # not a checkpoint suffix: registration does not list it
    keep.write_text("the operator's own file")
    register(dest, "mine", "--path", str(own), "--architecture", "qwen2")
    code, _, entry = dest.json("models", "rm", "mine")
    assert code == 0 and entry["downloaded"] is False
    assert keep.read_text() == "the operator's own file"  # not ours: left alone
    assert not (own / "model.safetensors").exists()
    assert tmp_path.exists() and own.is_dir()


def test_rm_refuses_a_symlinked_model_dir(dest: Pool, synth_models: dict[str, Path], tmp_path: Path) -> None:
    real = tmp_path / "real"
    shutil.copytree(synth_models["llama"], real)
    link = tmp_path / "link"
    link.symlink_to(real)
    register(dest, "ln", "--path", str(real), "--architecture", "llama")
    # point the entry at the link, as a hand-edited catalog might
    from llorch_tui.paths import PoolPaths
    from llorch_tui.pool.catalog_store import CatalogStore

    with CatalogStore(PoolPaths(dest.state), dest.pool_id).edit() as catalog:
        catalog.get("ln").path = str(link)  # type: ignore[union-attr]
    code, _, doc = dest.json("models", "rm", "ln")
    assert code == 1 and doc["error"]["code"] == "bad_request" and "link" in doc["error"]["message"]
    assert (real / "model.safetensors").exists()
