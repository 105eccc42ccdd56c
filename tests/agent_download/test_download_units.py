"""Small pure pieces: file selection, endpoint precedence, hashes, progress rate limiting, disk check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from llorch_tui.errors import LlorchError
from llorch_tui.pool import download_ops
from llorch_tui.pool.download_progress import ProgressReporter
from llorch_tui.pool.hashing import FileHasher, git_blob_sha1, hash_file, lfs_pointer
from llorch_tui.pool.hub_fetch import HUB_ENDPOINT, resolve_endpoint, select_files


def test_select_files_takes_weights_configs_and_tokenizers_only() -> None:
    names = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
             "model.safetensors.index.json", "consolidated.safetensors", "pytorch_model.bin", "README.md",
             ".gitattributes", "tokenizer.model", "tokenizer.json", "merges.txt", "vocab.json", "vocab.txt",
             "cl100k.tiktoken", "original/consolidated.00.pth", "onnx/model.safetensors", "model.gguf"]
    assert select_files(names) == sorted([
        "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "tokenizer.model", "tokenizer.json", "merges.txt", "vocab.json",
        "vocab.txt", "cl100k.tiktoken"])
    # consolidated weights are taken when they are the only weights
    assert select_files(["consolidated.safetensors", "params.json"]) == ["consolidated.safetensors", "params.json"]


def test_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert resolve_endpoint(None, None) == HUB_ENDPOINT
    monkeypatch.setenv("HF_ENDPOINT", "http://env:1/")
    assert resolve_endpoint(None, None) == "http://env:1"
    assert resolve_endpoint(None, "http://pool:2") == "http://pool:2"
    assert resolve_endpoint("http://param:3", "http://pool:2") == "http://param:3"


def test_git_blob_sha1_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    pointer = lfs_pointer("a" * 64, 123)
    assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1\noid sha256:aaaa")


def test_file_hasher_resumes_like_one_pass(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    f = tmp_path / "x"
    f.write_bytes(data)
    h = FileHasher(len(data))
    h.update(data[:1000])
    h.update(data[1000:])
    assert h.sha256.hexdigest() == hashlib.sha256(data).hexdigest() == hash_file(f)[0]
    assert h.git_sha1.hexdigest() == git_blob_sha1(data) == hash_file(f)[1]


def test_progress_is_rate_limited_but_stage_changes_are_not() -> None:
    now = [0.0]
    sent: list = []
    r = ProgressReporter(lambda e, p: sent.append(p), "m", clock=lambda: now[0])
    r.send("resolving", force=True)
    r.plan(files_total=1, bytes_total=1000, bytes_done=0)
    for _ in range(100):  # 100 chunks within 50 ms of the last event: none sent
        now[0] += 0.0005
        r.add_bytes(5)
    assert len(sent) == 1
    for _ in range(100):  # 100 more over 1 s: about one per 100 ms
        now[0] += 0.01
        r.add_bytes(4)
    assert 8 <= len(sent) - 1 <= 11
    now[0] += 1.0
    r.add_bytes(100)
    assert sent[-1].bytes_done == 1000 and sent[-1].speed_bps > 0 and sent[-1].eta_s == 0.0
    r.send("retrying", attempt=2, message="stall", force=True)
    assert sent[-1].stage == "retrying" and sent[-1].attempt == 2


def test_disk_check_reports_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download_ops, "free_bytes", lambda p: 2_000_000_000)
    download_ops.check_disk("m", 1_000_000_000, tmp_path, tmp_path, 1_000_000_000)  # fits
    with pytest.raises(LlorchError) as info:
        download_ops.check_disk("m", 3_000_000_000, tmp_path, tmp_path, 3_000_000_000)
    assert info.value.code == "disk_full"
    assert "2.8 GiB" in info.value.message and "1.9 GiB free" in info.value.message  # binary units, as everywhere
