"""Latency of an agent call over the held SSH connection vs a fresh `ssh host llorch-pool status`.

Starts its own OpenSSH sshd (a network namespace, as in tests/ssh; needs root and openssh-server),
then measures in the same run, against the same pool:

  fresh:  `ssh -p PORT root@HOST llorch-pool --state-dir D status --json`  (new connection, new Python)
  held:   PoolClient.call("pool.status") on one long-lived asyncssh connection + agent session

and prints the medians and the ratio fresh / held (goal: >= 20x). Also ping (the protocol floor).

    .venv/bin/python bench/ssh.py [--fresh N] [--held N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ssh"))

from sshd_env import AGENT, SshdEnv, sshd_available  # noqa: E402

from llorch_tui.client import PoolClient  # noqa: E402
from llorch_tui.config import PoolConfig  # noqa: E402

GOAL = 20.0


def fresh_ssh(env: SshdEnv, argv: list[str]) -> float:
    p = env.pools["a"]
    cmd = ["ssh", "-q", "-p", str(p.port), "-i", str(env.client_key), "-o", f"UserKnownHostsFile={env.known_hosts}",
           "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-F", "/dev/null", f"root@{p.addr}", *argv]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"fresh ssh failed ({r.returncode}): {r.stderr.strip()}")
    return dt


async def held_calls(pool: PoolConfig, op: str, n: int) -> tuple[float, list[float]]:
    client = PoolClient(pool)
    try:
        t0 = time.perf_counter()
        await client.start()
        await client.call(op)  # warm: first call may import the op's modules on the pool
        setup = time.perf_counter() - t0
        times = []
        for _ in range(n):
            t = time.perf_counter()
            await client.call(op)
            times.append(time.perf_counter() - t)
        return setup, times
    finally:
        await client.close()


def ms(x: float) -> str:
    return f"{x * 1000:8.2f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fresh", type=int, default=5, help="fresh ssh runs per command (default 5)")
    ap.add_argument("--held", type=int, default=50, help="calls over the held connection (default 50)")
    args = ap.parse_args()
    why = sshd_available()
    if why:
        print(f"skipped: {why}")
        return 0
    with SshdEnv(pools=("a",)) as env:
        p = env.pools["a"]
        pool = PoolConfig(**env.pool_kwargs("a"))  # type: ignore[arg-type]
        agent = [AGENT, "--state-dir", str(p.state_dir), "--pool-id", "a"]
        fresh_status = [fresh_ssh(env, [*agent, "status", "--json"]) for _ in range(args.fresh)]
        fresh_true = [fresh_ssh(env, ["true"]) for _ in range(args.fresh)]
        setup, held_status = asyncio.run(held_calls(pool, "pool.status", args.held))
        _, held_ping = asyncio.run(held_calls(pool, "agent.ping", args.held))
    f_med, h_med, p_med = (statistics.median(x) for x in (fresh_status, held_status, held_ping))
    print(f"pool a: sshd in a network namespace at {p.addr} (OpenSSH), agent {AGENT}")
    print(f"  fresh `ssh host true`                         median {ms(statistics.median(fresh_true))}  (n={args.fresh})")
    print(f"  fresh `ssh host llorch-pool status --json`    median {ms(f_med)}  (n={args.fresh})")
    print(f"  held connection: connect + agent start        once   {ms(setup)}")
    print(f"  held connection: pool.status call             median {ms(h_med)}  p90 "
          f"{ms(statistics.quantiles(held_status, n=10)[-1])}  (n={args.held})")
    print(f"  held connection: agent.ping call              median {ms(p_med)}  (n={args.held})")
    ratio = f_med / h_med
    print(f"ratio fresh status / held status: {ratio:.1f}x  (goal >= {GOAL:.0f}x: {'met' if ratio >= GOAL else 'NOT met'})")
    print(f"ratio fresh status / held ping:   {f_med / p_med:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
