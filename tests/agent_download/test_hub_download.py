"""`models download` from the mirror through the real client: CLI JSON Lines, human output, stdio service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dl_helpers import MirrorProc, Pool, register, sha256_of
from huggingface_hub import HfApi

from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig


def _check_progress(events: list[dict[str, Any]], total: int) -> None:
    progress = [e["data"] for e in events if e["event"] == "progress"]
    stages = [p["stage"] for p in progress]
    assert stages[0] == "resolving" and stages[-1] == "done"
    downloading = [p for p in progress if p["stage"] == "downloading"]
    assert downloading, stages
    # the total is known before the first byte arrives, and never changes
    assert downloading[0]["bytes_done"] == 0 and downloading[0]["bytes_total"] == total
    assert {p["bytes_total"] for p in progress[1:]} == {total}
    done = [p["bytes_done"] for p in progress[1:]]
    assert done == sorted(done) and done[-1] == total
    assert progress[-1]["files_done"] == progress[-1]["files_total"]


def test_download_with_progress_then_noop(dest: Pool, mirror: MirrorProc, synth_models: dict[str, Path]) -> None:
    src = synth_models["llama"]
    total = sum(f.stat().st_size for f in src.iterdir())
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    served_before = mirror.served()
    code, events, result = dest.json("models", "download", "tl", "--endpoint", mirror.url)
    assert code == 0, result
    _check_progress(events, total)
    assert result["noop"] is False and result["bytes_fetched"] == total == result["bytes_total"]
    assert mirror.served() - served_before == total
    entry = dest.entry("tl")
    commit = HfApi(endpoint=mirror.url).model_info("llorch-test/tiny-llama").sha
    assert entry["downloaded"] is True and entry["revision"] == commit and entry["source"] == "mirror"
    assert entry["size_gb"] == round(total / 1e9, 3)
    model_dir = Path(entry["path"])
    assert model_dir == dest.state / "models" / "tl"
    for f in entry["files"]:
        assert f["sha256"] == sha256_of(src / f["name"]) == sha256_of(model_dir / f["name"])
    assert {f["name"] for f in entry["files"]} == {p.name for p in src.iterdir()}
    assert not (dest.state / "downloads" / "tl").exists()  # staging cleaned up

    # second time: nothing fetched, catalog untouched
    catalog = dest.catalog_bytes()
    served_before = mirror.served()
    code, events, result = dest.json("models", "download", "tl", "--endpoint", mirror.url)
    assert code == 0 and result["noop"] is True and result["bytes_fetched"] == 0
    assert mirror.served() == served_before and dest.catalog_bytes() == catalog

    proc = dest.run("models", "download", "tl", "--endpoint", mirror.url)
    assert proc.returncode == 0 and "already downloaded" in proc.stdout


def test_human_output_and_force(dest: Pool, mirror: MirrorProc) -> None:
    register(dest, "qw", "--repo", "llorch/tiny-qwen2", "--architecture", "qwen2")
    proc = dest.run("models", "download", "qw", "--endpoint", mirror.url)
    assert proc.returncode == 0, proc.stderr
    assert "downloaded" in proc.stdout and "sha256 verified" in proc.stdout
    served_before = mirror.served()
    code, _, result = dest.json("models", "download", "qw", "--endpoint", mirror.url, "--force")
    assert code == 0 and result["noop"] is False and result["bytes_fetched"] == result["bytes_total"] > 0
    assert mirror.served() - served_before == result["bytes_total"]


async def test_download_through_the_stdio_service(dest: Pool, mirror: MirrorProc) -> None:
    """The control plane's path: PoolClient -> `llorch-pool serve --stdio`, endpoint from the pool's config."""
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    pool = PoolConfig(name="dest", transport="local", state_dir=str(dest.state), hf_endpoint=mirror.url,
                      env={k: v for k, v in dest.env.items() if k.startswith("HF_")})
    client = PoolClient(pool)
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        await client.start()
        result = await client.call("models.download", {"id": "tl"}, on_event=lambda e, d: events.append((e, d)),
                                   timeout=120)
        assert result["noop"] is False and result["endpoint"] == mirror.url
        _check_progress([{"event": e, "data": d} for e, d in events], result["bytes_total"])
        again = await client.call("models.download", {"id": "tl"}, timeout=60)
        assert again["noop"] is True
        verified = await client.call("models.verify", {"id": "tl", "load": False}, timeout=60)
        assert verified["ok"] is True and verified["files_checked"] == len(result["model"]["files"])
    finally:
        await client.close()


def test_a_pool_that_downloaded_serves_it_on(dest: Pool, mirror: MirrorProc, tmp_path: Path, hf_home: Path) -> None:
    """Download once, copy to every pool: B downloads from A, C from B; same repo name, same commit, same bytes.
    B's mirror follows its catalog: after `models rm` the repo is gone from it."""
    from dl_helpers import clean_env
    from huggingface_hub.errors import RepositoryNotFoundError

    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    code, _, first = dest.json("models", "download", "tl", "--endpoint", mirror.url)
    assert code == 0, first
    b_mirror = MirrorProc(dest)
    try:
        assert HfApi(endpoint=b_mirror.url).model_info("llorch-test/tiny-llama").sha == first["model"]["revision"]
        third = Pool(tmp_path / "third-state", "third", clean_env(hf_home))
        register(third, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
        code, _, second = third.json("models", "download", "tl", "--endpoint", b_mirror.url)
        assert code == 0, second
        assert second["model"]["revision"] == first["model"]["revision"]
        assert second["model"]["files"] == first["model"]["files"]
        assert b_mirror.served() == second["bytes_fetched"] == second["bytes_total"]
        code, _, _ = dest.json("models", "rm", "tl")
        assert code == 0
        with pytest.raises(RepositoryNotFoundError):  # a removed model is no longer served
            HfApi(endpoint=b_mirror.url).model_info("llorch-test/tiny-llama")
    finally:
        b_mirror.stop()


def test_revision_main_on_a_model_at_mains_commit_is_a_noop(dest: Pool, mirror: MirrorProc) -> None:
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    code, _, first = dest.json("models", "download", "tl", "--endpoint", mirror.url)
    assert code == 0, first
    served = mirror.served()
    code, _, again = dest.json("models", "download", "tl", "--endpoint", mirror.url, "--revision", "main")
    assert code == 0 and again["noop"] is True and mirror.served() == served
    code, _, doc = dest.json("models", "download", "tl", "--endpoint", mirror.url, "--revision", "v-nope")
    assert code == 1 and doc["error"]["code"] == "not_found" and "--revision" in doc["error"]["hint"]
