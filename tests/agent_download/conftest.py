"""A "source pool" holding the shared synthetic checkpoints, served by a real mirror process (the Hub here).

Repos on the mirror:
  llorch-test/tiny-llama   tiny llama (metadata.repo set at registration)
  llorch/tiny-qwen2        tiny qwen2 (no repo: served under llorch/<id>)
  llorch-test/big          tiny llama + a 48 MiB weights file (resume tests)
  llorch-test/gated        tiny mistral, served as a gated repo (token: GATE_TOKEN)
  llorch-test/damaged      tiny phi3 whose weights rotted after the catalog recorded their sha256
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import psutil
import pytest
from dl_helpers import BIG_PAD_BYTES, GATE_TOKEN, MirrorProc, Pool, call_op, clean_env, sha256_of

# Slow enough that a test can kill a download midway on its progress events; tiny models still take ~0.1 s.
MIRROR_RATE_BPS = 12_000_000


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        os.chmod(f, 0o644)
    return dst


def _pad_file(path: Path, size: int) -> None:
    """A valid safetensors file holding one U8 tensor of random bytes."""
    import json
    import struct

    header = json.dumps({"pad": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.write(os.urandom(size))


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-home")


@pytest.fixture(scope="session")
def source_pool(tmp_path_factory: pytest.TempPathFactory, synth_models: dict[str, Path], hf_home: Path,
                make_pool) -> Pool:  # type: ignore[no-untyped-def]
    # tiny-llama, tiny-qwen2, tiny-mistral: synthetic entries with recorded sha256 (the shared fixture)
    state = make_pool(("llama", "qwen2", "mistral"), pool_id="source")
    pool = Pool(state, "source", clean_env(hf_home))
    files = tmp_path_factory.mktemp("source-files")
    call_op(state, "source", "models.update", {"id": "tiny-llama", "repo": "llorch-test/tiny-llama"})
    call_op(state, "source", "models.update", {"id": "tiny-mistral", "repo": "llorch-test/gated"})
    big = _copy(synth_models["llama"], files / "big")
    _pad_file(big / "pad.safetensors", BIG_PAD_BYTES)
    damaged = _copy(synth_models["phi3"], files / "damaged")
    for model_id, path, repo, arch in (("big", big, "llorch-test/big", "llama"),
                                       ("damaged", damaged, "llorch-test/damaged", "phi3")):
        # in-process: saves a process start each
        call_op(state, "source", "models.register", {"id": model_id, "path": str(path), "architecture": arch,
                                                     "repo": repo})
    _record_hashes_then_rot(pool, damaged)
    return pool


def _record_hashes_then_rot(pool: Pool, damaged: Path) -> None:
    """The source catalog records the true sha256 (as a download would); then the weights are damaged in place."""
    from llorch_tui.paths import PoolPaths
    from llorch_tui.pool.catalog_store import CatalogStore

    store = CatalogStore(PoolPaths(pool.state), pool.pool_id)
    with store.edit() as catalog:
        entry = catalog.get("damaged")
        assert entry is not None
        for f in entry.files:
            f.sha256 = sha256_of(damaged / f.name)
    weights = damaged / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:] = bytes(255 - b for b in data[-100:])  # same size, different bytes
    weights.write_bytes(bytes(data))


@pytest.fixture(scope="session")
def mirror(source_pool: Pool) -> Iterator[MirrorProc]:
    m = MirrorProc(source_pool, "--gated", "llorch-test/gated", "--rate-limit", str(MIRROR_RATE_BPS),
                   env={"LLORCH_MIRROR_TOKEN": GATE_TOKEN})
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def dest(tmp_path: Path, hf_home: Path) -> Pool:
    """An empty pool that downloads from the mirror."""
    return Pool(tmp_path / "dest-state", "dest", clean_env(hf_home))


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    yield
    mine = ("mirror", "download")  # only what this area starts: other areas' session workers may still run
    leftovers = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if "llorch_tui.pool.cli.main" in cmd and any(word in cmd for word in mine):
            leftovers.append(p)
    for p in leftovers:
        p.kill()
    assert not leftovers, f"processes left behind: {[p.cmdline() for p in leftovers]}"
