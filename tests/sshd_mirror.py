"""Start-up of the real servers several test areas share: OpenSSH sshd pools (`SshdEnv`, tests/ssh/sshd_env.py)
and `llorch-pool mirror serve` processes. One definition of each, so a readiness check or a clean-up on
every exit path is written once (tests/ssh, tests/fleet, tests/matrix, tests/tui, tests/agent_download)."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "ssh"))

from sshd_env import SshdEnv, sshd_available  # noqa: E402


def sshd_pools(pools: tuple[str, ...] = ("a", "b")) -> Iterator[SshdEnv]:
    """The body of an sshd fixture (`yield from sshd_pools(...)`): skips where real sshd cannot run here,
    else starts one namespace per pool, yields the env, and tears everything down (an interrupted
    session included: atexit)."""
    why = sshd_available()
    if why:
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("the sshd fixtures run sshd as root (network namespaces, host keys)")
    env = SshdEnv(pools=pools)
    atexit.register(env.close)
    env.start()
    try:
        yield env
    finally:
        env.close()


def stop_process(proc: subprocess.Popen[str], grace_s: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; its pipes are closed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def start_mirror(argv: list[str], env: dict[str, str] | None = None, **popen: Any) -> tuple[subprocess.Popen[str], str]:
    """Start a `... mirror serve --port 0 --print-url` command line; (the process, its URL). It prints the URL
    once it listens, so no sleep is needed; one that does not start is stopped and reported with its stderr."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("http://"):
        proc.kill()  # before reading its stderr to the end: a live one would block the read
        err = proc.stderr.read() if proc.stderr else ""
        stop_process(proc)
        raise RuntimeError(f"the mirror did not start: {line!r} {err}")
    return proc, line


@contextmanager
def mirror_process(argv: list[str], env: dict[str, str] | None = None, **popen: Any) -> Iterator[str]:
    """`start_mirror` for a `with` block or a fixture: yields the URL, stops the mirror on every exit path."""
    proc, url = start_mirror(argv, env, **popen)
    try:
        yield url
    finally:
        stop_process(proc)
