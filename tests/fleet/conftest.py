"""Fleet tests: fit estimates, pool-to-pool copies, archives, installs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ARCHS = ("llama", "qwen2", "phi3", "mistral")


@pytest.fixture(scope="session")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four `small` synthetic checkpoints (~26M parameters, 100 MB each), made once. Read-only."""
    root = tmp_path_factory.mktemp("small")
    out = {a: root / f"small-{a}" for a in ARCHS}
    procs = {a: subprocess.Popen([sys.executable, "-m", "llorch_worker.synth", "--out", str(d), "--architecture", a,
                                  "--size", "small", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a, d in out.items()}
    try:
        for a, p in procs.items():
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, f"synth {a}: {err}"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


@pytest.fixture(scope="session")
def isolated_pools():  # type: ignore[no-untyped-def]
    """Two real sshd pools, `c` and `d`, in network namespaces with NO link between them: only this
    machine reaches both (tests/ssh/sshd_env.py links a and b; these are not linked)."""
    from sshd_mirror import sshd_pools

    yield from sshd_pools(("c", "d"))


@pytest.fixture(scope="session")
def isolated_config(isolated_pools, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    from llorch_tui.config import Config, PoolConfig
    from llorch_tui.config_load import config_to_toml

    path = tmp_path_factory.mktemp("fleet-control") / "config.toml"
    # c's LAN address is one d has no route to: `auto` probes it from d, then takes the forwarded route.
    c = isolated_pools.pools["c"]
    pools = [PoolConfig(**isolated_pools.pool_kwargs("c", lan_address=c.addr)),
             PoolConfig(**isolated_pools.pool_kwargs("d"))]
    path.write_text(config_to_toml(Config(pools=pools)))
    return path
