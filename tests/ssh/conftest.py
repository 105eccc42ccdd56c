"""Real OpenSSH sshd pools for the whole session (started once: see sshd_env.py)."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sshd_env import SshdEnv, sshd_available  # noqa: E402

from llorch_tui.config import PoolConfig  # noqa: E402

pytestmark = pytest.mark.ssh


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/ssh/" in str(item.fspath):
            item.add_marker(pytest.mark.ssh)


@pytest.fixture(scope="session")
def sshd_env() -> Iterator[SshdEnv]:
    why = sshd_available()
    if why:
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("the sshd fixtures run sshd as root (network namespaces, host keys)")
    env = SshdEnv()
    atexit.register(env.close)  # also on an interrupted session
    env.start()
    try:
        yield env
    finally:
        env.close()


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
