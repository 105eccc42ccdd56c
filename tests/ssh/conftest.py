"""Real OpenSSH sshd pools for the whole session (started once: see sshd_env.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sshd_env import SshdEnv  # noqa: E402
from sshd_mirror import mirror_process, sshd_pools  # noqa: E402

from llorch_tui.config import PoolConfig  # noqa: E402

pytestmark = pytest.mark.ssh


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/ssh/" in str(item.fspath):
            item.add_marker(pytest.mark.ssh)


@pytest.fixture(scope="session")
def sshd_env() -> Iterator[SshdEnv]:
    yield from sshd_pools(("a", "b"))


@pytest.fixture(scope="session")
def pool_a(sshd_env: SshdEnv) -> PoolConfig:
    return PoolConfig(**sshd_env.pool_kwargs("a"))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pool_b(sshd_env: SshdEnv) -> PoolConfig:
    return PoolConfig(**sshd_env.pool_kwargs("b"))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pool_b_via_a(sshd_env: SshdEnv) -> PoolConfig:
    """Pool b on the a<->b link, which only pool a can route to: reachable through a ProxyJump only."""
    b, a = sshd_env.pools["b"], sshd_env.pools["a"]
    return PoolConfig(**sshd_env.pool_kwargs(  # type: ignore[arg-type]
        "b", name="bjump", host=b.inner_addr, proxy_jump=f"root@{a.addr}:{a.port}"))


@pytest.fixture(scope="session")
def llorch_config(sshd_env: SshdEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A config.toml with pools a, b and `bjump` (b through a: proxy_jump names pool a), and a
    control-plane state dir, both set in the environment for the `llorch` CLI."""
    from llorch_tui.config import Config
    from llorch_tui.config_load import config_to_toml

    d = tmp_path_factory.mktemp("control")
    b = sshd_env.pools["b"]
    pools = [PoolConfig(**sshd_env.pool_kwargs("a")), PoolConfig(**sshd_env.pool_kwargs("b")),  # type: ignore[arg-type]
             PoolConfig(**sshd_env.pool_kwargs("b", name="bjump", host=b.inner_addr, proxy_jump="a"))]  # type: ignore[arg-type]
    path = d / "config.toml"
    path.write_text(config_to_toml(Config(pools=pools)))
    old = {k: os.environ.get(k) for k in ("LLORCH_CONFIG", "LLORCH_CONTROL_DIR")}
    os.environ["LLORCH_CONFIG"] = str(path)
    os.environ["LLORCH_CONTROL_DIR"] = str(d / "state")
    try:
        yield path
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


MIRROR_RATE_BPS = 250_000  # slow enough that a download can be interrupted mid-way, fast enough for CI


def _agent(state_dir: Path, *args: str) -> list[str]:
    from sshd_env import AGENT

    return [AGENT, "--state-dir", str(state_dir), *args]


@pytest.fixture(scope="session")
def mirror_url(sshd_env: SshdEnv, synth_models: dict[str, Path]) -> Iterator[str]:
    """Pool b serves the session's synthetic llama (registered in place as `tiny-src`, so repo
    `llorch/tiny-src`) with `llorch-pool mirror serve`, bound to its address on the a<->b link,
    rate-limited: pool a downloads from it like from the Hub."""
    import subprocess

    b = sshd_env.pools["b"]
    r = subprocess.run(_agent(b.state_dir, "models", "register", "tiny-src", "--path", str(synth_models["llama"]),
                              "--json"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    argv = sshd_env.exec_in("b", _agent(b.state_dir, "mirror", "serve", "--host", str(b.inner_addr), "--port", "0",
                                       "--print-url", "--rate-limit", str(MIRROR_RATE_BPS)))
    with mirror_process(argv, start_new_session=True) as url:
        yield url


@pytest.fixture(scope="session")
def worker_a(pool_a: PoolConfig, mirror_url: str) -> Iterator[dict]:
    """One cpu worker on pool a, of model `tiny-w` downloaded from b's mirror; shared, stopped at the end."""
    import asyncio

    from llorch_tui.client import PoolClient

    async def up() -> dict:
        c = PoolClient(pool_a)
        try:
            await c.call("models.register", {"id": "tiny-w", "repo": "llorch/tiny-src", "architecture": "llama"})
            await c.call("models.download", {"id": "tiny-w", "endpoint": mirror_url})
            return await c.call("workers.spawn", {"backend": "cpu", "model": "tiny-w"})
        finally:
            await c.close()

    async def down() -> None:
        c = PoolClient(pool_a)
        try:
            await c.call("workers.stop", {"all": True, "grace_s": 5})
        finally:
            await c.close()

    rec = asyncio.run(up())
    try:
        yield rec
    finally:
        asyncio.run(down())
