"""`llorch pool doctor --host H`: what works on a pool, what does not, and what to do about it.

Each check is independent and says ok / warn / fail with a fix, so one broken piece (say, torch
on the pool) does not hide the state of the others. Runs over the same transport as everything
else: the SSH connection, a one-shot `llorch-pool --version`, the agent session, the
`pool.status` op and the worker's own probe (`python -m llorch_worker.probe --json`).
"""

from __future__ import annotations

import asyncio
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from llorch_tui import __version__
from llorch_tui.client import PoolClient
from llorch_tui.config import PoolConfig
from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.protocol.status import PoolStatus, ProbeInfo
from llorch_tui.transport.ssh_errors import INSTALL_HINT, looks_like_missing_command
from llorch_tui.units import fmt_bytes

LOW_DISK_BYTES = 20 * 1024**3  # a 7B model in fp16 alone is ~15 GB
PROBE_TIMEOUT_S = 180.0  # importing torch on a cold pool is slow
STATUS_TIMEOUT_S = 120.0


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str | None = None


async def run_doctor(pool: PoolConfig) -> list[Check]:
    checks = [Check("control plane", "ok", f"llorch {__version__}, Python {platform.python_version()} ({sys.executable})")]
    client = PoolClient(pool)
    t = client.transport
    try:
        try:
            await t.connect()
        except LlorchError as e:
            checks.append(Check("connection", "fail", e.message, e.hint))
            return checks
        where = f"{pool.user + '@' if pool.user else ''}{pool.host}:{pool.port or 22}" if pool.transport == "ssh" else "local"
        jump = f" via {pool.proxy_jump}" if pool.proxy_jump else ""
        checks.append(Check("connection", "ok", f"{pool.transport} {where}{jump}, host key verified" if pool.transport == "ssh"
                            else "local subprocess"))
        agent_ok = await _check_agent_version(client, checks)
        if not agent_ok:
            return checks
        status = await _check_session(client, checks)
        await _check_worker_probe(client, checks)
        _check_disk(status, checks)
    finally:
        await client.close()
    return checks


async def _check_agent_version(client: PoolClient, checks: list[Check]) -> bool:
    argv = client.transport.agent_argv("--version")
    try:
        r = await client.transport.run(argv, client.transport.agent_env(), timeout=60)
    except LlorchError as e:
        checks.append(Check("pool agent", "fail", e.message, e.hint))
        return False
    if r.rc != 0:
        if looks_like_missing_command(r.rc, r.stderr):
            checks.append(Check("pool agent", "fail", f"`{client.pool.agent_command}` not found on the pool: {r.stderr.strip()[-200:]}",
                                f"`llorch pool install --host {client.pool.name}` (or on the pool: `{INSTALL_HINT}`), "
                                "or set agent_command to its absolute path"))
        else:
            checks.append(Check("pool agent", "fail", f"`{shlex.join(argv)}` exited {r.rc}: {r.stderr.strip()[-300:]}",
                                "run that command on the pool to see the full error"))
        return False
    remote = r.stdout.strip().split()[-1] if r.stdout.strip() else "?"
    if remote != __version__:
        checks.append(Check("pool agent", "warn", f"version skew: llorch {remote} on the pool, {__version__} here",
                            f"`llorch pool install --host {client.pool.name} --upgrade` installs this machine's "
                            f"llorch {__version__} there"))
    else:
        checks.append(Check("pool agent", "ok", f"llorch-pool {remote} ({client.pool.agent_command})"))
    return True


async def _check_session(client: PoolClient, checks: list[Check]) -> PoolStatus | None:
    try:
        hello = await client.start()
        t0 = time.perf_counter()
        await client.api.agent.ping()
        rtt_ms = (time.perf_counter() - t0) * 1000
    except LlorchError as e:
        checks.append(Check("agent session", "fail", e.message, e.hint))
        return None
    checks.append(Check("agent session", "ok", f"protocol v{hello.v}, pool id {hello.pool_id}, round trip {rtt_ms:.1f} ms"))
    try:
        status = await client.api.pool.status(timeout=STATUS_TIMEOUT_S)
    except LlorchError as e:
        checks.append(Check("pool status", "fail" if e.code != ErrorCode.UNKNOWN_OP else "warn", e.message, e.hint))
        return None
    except asyncio.TimeoutError:  # PoolClient.call raises the bare timeout (the matrix tells it apart)
        checks.append(Check("pool status", "fail", f"no answer within {STATUS_TIMEOUT_S:.0f}s",
                            "the pool is overloaded or its backend probe hangs: run `llorch-pool status` on the pool"))
        return None
    backends = ", ".join(status.backends) or "none"
    gpu_txt = "; ".join(f"{g.name} {fmt_bytes(g.memory_used)}/{fmt_bytes(g.memory_total)}" for g in status.gpus) or "no GPU"
    checks.append(Check("pool", "ok", f"{status.hostname} ({status.os}), Python {status.python}, "
                        f"backends: {backends}; {gpu_txt}"))
    for err in status.probe_errors:
        checks.append(Check("pool probe", "warn", str(err), "see `llorch pool doctor` output above and the pool's logs"))
    return status


async def _check_worker_probe(client: PoolClient, checks: list[Check]) -> None:
    """The worker's Python is the agent's (same environment): read it from the agent's shebang."""
    t = client.transport
    agent = shlex.split(client.pool.agent_command)[0]
    if agent.rsplit("/", 1)[-1].startswith("python"):  # agent_command = "python -m llorch_tui.pool.cli.main"
        python = agent
    else:
        r = await t.run(["sh", "-c", 'head -n1 "$(command -v "$1")"', "sh", agent], timeout=30)
        line = r.stdout.strip()
        python = line[2:].strip().split()[0] if line.startswith("#!") and r.rc == 0 else "python3"
        if python.endswith("/env"):
            python = line.split()[-1]
    try:
        p = await t.run([python, "-m", "llorch_worker.probe", "--json"], t.agent_env(), timeout=PROBE_TIMEOUT_S)
    except LlorchError as e:
        checks.append(Check("worker (torch)", "fail", e.message, e.hint))
        return
    if p.rc != 0:
        missing = "No module named" in p.stderr
        checks.append(Check("worker (torch)", "fail",
                            f"`{python} -m llorch_worker.probe` exited {p.rc}: {p.stderr.strip().splitlines()[-1:] or ''}",
                            f"install the worker next to the agent: `{python} -m pip install llorch-worker`" if missing
                            else "run the probe on the pool to see the full error"))
        return
    try:
        probe = ProbeInfo.model_validate_json(p.stdout)
    except ValidationError:
        checks.append(Check("worker (torch)", "fail", f"the probe printed no probe document: {p.stdout[:200]!r}",
                            "install the same llorch-worker version on the pool as llorch here"))
        return
    usable = [b for b, ok in probe.backends.items() if ok]
    if not probe.torch:
        checks.append(Check("worker (torch)", "fail", "; ".join(probe.errors or ["torch is not importable"]),
                            f"`{python} -m pip install torch` on the pool"))
        return
    detail = (f"Python {probe.python}, torch {probe.torch}, transformers {probe.transformers}, "
              f"backends: {', '.join(usable) or 'none'}")
    errs = probe.errors
    checks.append(Check("worker (torch)", "warn" if errs else "ok", detail + (f"; {'; '.join(errs)}" if errs else ""),
                        "fix the import errors above (pip install transformers)" if errs else None))


def _check_disk(status: PoolStatus | None, checks: list[Check]) -> None:
    if status is None:
        checks.append(Check("disk", "skip", "unknown (no pool status)"))
        return
    disk = status.disk
    detail = f"{fmt_bytes(disk.free)} free of {fmt_bytes(disk.total)} at {disk.path}"
    if disk.free < LOW_DISK_BYTES:
        checks.append(Check("disk", "warn", detail, "free space or set models_dir to a larger disk before downloading big models"))
    else:
        checks.append(Check("disk", "ok", detail))


def render(pool: PoolConfig, checks: list[Check], as_json: bool) -> int:
    failed = any(c.status == "fail" for c in checks)
    if as_json:
        print(json.dumps({"pool": pool.name, "ok": not failed, "checks": [asdict(c) for c in checks]}), flush=True)
        return 1 if failed else 0
    console = Console()
    table = Table(title=f"llorch pool doctor — {pool.name}")
    for col in ("check", "", "detail"):
        table.add_column(col)
    mark = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}
    for c in checks:
        table.add_row(c.name, mark.get(c.status, c.status), c.detail)
    console.print(table)
    fixes = [c for c in checks if c.fix and c.status in ("fail", "warn")]
    if fixes:
        console.print("[bold]What to fix:[/]")
        for c in fixes:
            console.print(f"  • [bold]{c.name}[/]: {c.fix}", highlight=False)
    else:
        console.print("[green]Nothing to fix.[/]")
    return 1 if failed else 0
