"""The mirror speaks the Hub's protocol: the real huggingface_hub client downloads from it."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from dl_helpers import GATE_TOKEN
from dl_helpers import MirrorProc, Pool, sha256_of
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (GatedRepoError, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                    RevisionNotFoundError)

from llorch_tui.pool.hashing import git_blob_sha1


def test_model_info_lists_files_with_sizes_and_hashes(mirror: MirrorProc, synth_models: dict[str, Path]) -> None:
    src = synth_models["llama"]
    info = HfApi(endpoint=mirror.url).model_info("llorch-test/tiny-llama", files_metadata=True)
    assert info.sha and len(info.sha) == 40
    by_name = {s.rfilename: s for s in info.siblings}
    assert set(by_name) == {p.name for p in src.iterdir()}
    weights = by_name["model.safetensors"]
    assert weights.lfs is not None and weights.lfs.sha256 == sha256_of(src / "model.safetensors")
    assert weights.lfs.size == (src / "model.safetensors").stat().st_size
    config = by_name["config.json"]
    assert config.lfs is None  # a small text file is a git file, identified by its blob id
    assert config.blob_id == git_blob_sha1((src / "config.json").read_bytes())
    # the same commit through /revision/{sha}
    assert HfApi(endpoint=mirror.url).model_info("llorch-test/tiny-llama", revision=info.sha).sha == info.sha


def test_repo_without_metadata_repo_is_served_as_llorch_id(mirror: MirrorProc) -> None:
    info = HfApi(endpoint=mirror.url).model_info("llorch/tiny-qwen2")
    assert "model.safetensors" in {s.rfilename for s in info.siblings}


def test_hf_hub_download_and_snapshot_download(mirror: MirrorProc, synth_models: dict[str, Path],
                                               tmp_path: Path) -> None:
    src = synth_models["llama"]
    got = hf_hub_download("llorch-test/tiny-llama", "model.safetensors", endpoint=mirror.url,
                          cache_dir=tmp_path / "cache")
    assert Path(got).read_bytes() == (src / "model.safetensors").read_bytes()
    local = snapshot_download("llorch-test/tiny-llama", endpoint=mirror.url, local_dir=tmp_path / "snap",
                              cache_dir=tmp_path / "cache")
    for f in src.iterdir():
        assert (Path(local) / f.name).read_bytes() == f.read_bytes(), f.name


def test_range_requests_and_head(mirror: MirrorProc, synth_models: dict[str, Path]) -> None:
    data = (synth_models["llama"] / "model.safetensors").read_bytes()
    url = f"{mirror.url}/llorch-test/tiny-llama/resolve/main/model.safetensors"
    head = httpx2.head(url)
    assert head.status_code == 200 and int(head.headers["X-Linked-Size"]) == len(data)
    assert head.headers["X-Linked-Etag"].strip('"') == sha256_of(synth_models["llama"] / "model.safetensors")
    part = httpx2.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    tail = httpx2.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    assert httpx2.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416


def test_errors_like_the_hub(mirror: MirrorProc, tmp_path: Path) -> None:
    api = HfApi(endpoint=mirror.url)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("llorch-test/does-not-exist")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("llorch-test/tiny-llama", revision="v9")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("llorch-test/tiny-llama", "nope.bin", endpoint=mirror.url, cache_dir=tmp_path)


def test_gated_repo_needs_the_token(mirror: MirrorProc, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError):
        hf_hub_download("llorch-test/gated", "config.json", endpoint=mirror.url, cache_dir=tmp_path, token=False)
    with pytest.raises(GatedRepoError):
        hf_hub_download("llorch-test/gated", "config.json", endpoint=mirror.url, cache_dir=tmp_path,
                        token="hf_wrong")
    ok = hf_hub_download("llorch-test/gated", "config.json", endpoint=mirror.url, cache_dir=tmp_path,
                         token=GATE_TOKEN)
    assert Path(ok).read_text().startswith("{")


@pytest.mark.parametrize("path", [
    "/llorch-test/tiny-llama/resolve/main/../../../catalog.json",
    "/llorch-test/tiny-llama/resolve/main/%2e%2e/%2e%2e/catalog.json",
    "/llorch-test/tiny-llama/resolve/main/..%2f..%2fcatalog.json",
    "/llorch-test/tiny-llama/resolve/main//etc/passwd",
    "/api/models/llorch-test/tiny-llama/tree/main/..%2f..",
])
def test_no_path_traversal(mirror: MirrorProc, source_pool: Pool, path: str) -> None:
    with httpx2.Client() as client:
        r = client.get(httpx2.URL(mirror.url + path), follow_redirects=True)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert b"models" not in r.content or b"pool_id" not in r.content  # never the catalog
    assert b"root:" not in r.content
