"""Every failure names what, why and what next, and leaves the catalog byte-identical."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from dl_helpers import GATE_TOKEN
from dl_helpers import MirrorProc, Pool, call_op, register

from llorch_tui.errors import LlorchError
from llorch_tui.pool import download_ops


def _fails(dest: Pool, model_id: str, *args: str, env: dict[str, str] | None = None) -> dict:
    before = dest.catalog_bytes()
    code, _, doc = dest.json("models", "download", model_id, *args, env=env)
    assert code == 1, doc
    assert dest.catalog_bytes() == before, "a failed download changed the catalog"
    return doc["error"]


def test_checksum_mismatch_is_detected_and_nothing_kept(dest: Pool, mirror: MirrorProc, source_pool: Pool) -> None:
    register(dest, "dm", "--repo", "llorch-test/damaged", "--architecture", "phi3")
    err = _fails(dest, "dm", "--endpoint", mirror.url)
    expected = next(f["sha256"] for f in source_pool.entry("damaged")["files"] if f["name"] == "model.safetensors")
    assert err["code"] == "checksum_mismatch"
    assert "model.safetensors" in err["message"] and expected in err["message"]
    assert err["details"]["file"] == "model.safetensors" and err["details"]["expected"] == expected
    assert err["details"]["actual"] != expected and len(err["details"]["actual"]) == 64
    assert "run the download again" in err["hint"]
    assert not (dest.state / "downloads" / "dm" / "model.safetensors.part").exists()
    assert not (dest.state / "downloads" / "dm" / "model.safetensors").exists()
    assert not (dest.state / "models" / "dm" / "model.safetensors").exists()
    assert dest.entry("dm")["downloaded"] is False


def test_repository_not_found(dest: Pool, mirror: MirrorProc) -> None:
    register(dest, "nf", "--repo", "llorch-test/no-such-repo", "--architecture", "llama")
    err = _fails(dest, "nf", "--endpoint", mirror.url)
    assert err["code"] == "repo_not_found"
    assert "llorch-test/no-such-repo" in err["message"] and mirror.url in err["message"]
    assert "--repo" in err["hint"]


def test_gated_without_token_then_with_token(dest: Pool, mirror: MirrorProc) -> None:
    register(dest, "gt", "--repo", "llorch-test/gated", "--architecture", "mistral")
    err = _fails(dest, "gt", "--endpoint", mirror.url)
    assert err["code"] == "gated"
    assert "LLORCH_MIRROR_TOKEN" in err["hint"]  # a mirror's token, not the Hub's
    err = _fails(dest, "gt", "--endpoint", mirror.url, env={"LLORCH_MIRROR_TOKEN": "wrong_token"})
    assert err["code"] == "gated"
    # the Hub token is never sent to a mirror, even when it is the right string
    err = _fails(dest, "gt", "--endpoint", mirror.url, env={"HF_TOKEN": GATE_TOKEN})
    assert err["code"] == "gated"
    code, _, result = dest.json("models", "download", "gt", "--endpoint", mirror.url,
                                env={"LLORCH_MIRROR_TOKEN": GATE_TOKEN})
    assert code == 0 and dest.entry("gt")["downloaded"] is True


def test_network_down_names_the_endpoint(dest: Pool) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    err = _fails(dest, "tl", env={"HF_ENDPOINT": url})  # precedence: no --endpoint, no pool setting -> HF_ENDPOINT
    assert err["code"] == "network" and url in err["message"]
    assert "mirror" in err["hint"]


def test_not_in_catalog(dest: Pool, mirror: MirrorProc) -> None:
    err = _fails(dest, "ghost", "--endpoint", mirror.url)
    assert err["code"] == "not_found" and "ghost" in err["message"]
    assert "llorch-pool models register ghost" in err["hint"]


def test_not_enough_disk(dest: Pool, mirror: MirrorProc, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk space is checked against the total before the first byte (statvfs hook: free_bytes)."""
    register(dest, "big", "--repo", "llorch-test/big", "--architecture", "llama")
    before = dest.catalog_bytes()
    served = mirror.served()
    monkeypatch.setattr(download_ops, "free_bytes", lambda path: 10_000_000)
    with pytest.raises(LlorchError) as info:
        call_op(dest.state, dest.pool_id, "models.download", {"id": "big", "endpoint": mirror.url})
    err = info.value
    assert err.code == "disk_full"
    assert "9.5 MiB free" in err.message and err.details["need_bytes"] > 48 * 1024 * 1024
    assert "models rm" in (err.hint or "")
    assert dest.catalog_bytes() == before and mirror.served() == served
    assert not list((dest.state / "downloads").rglob("*.part"))


def test_endpoint_from_agent_setting_beats_hf_endpoint(dest: Pool, mirror: MirrorProc,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    register(dest, "tl", "--repo", "llorch-test/tiny-llama", "--architecture", "llama")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # would fail: the pool's setting must win
    events: list = []
    result = call_op(dest.state, dest.pool_id, "models.download", {"id": "tl"}, events, hf_endpoint=mirror.url)
    assert result["endpoint"] == mirror.url and result["noop"] is False
    assert Path(result["model"]["path"]).joinpath("model.safetensors").is_file()
