"""`llorch pool install --host H`: the command line of fleet_ops/install.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.cli.runner import EXIT_ERROR, EXIT_OK, print_error, run_sync


def add_install_command(psub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = psub.add_parser("install", help="install this machine's llorch + llorch-worker (and torch) on a pool over SSH",
                        description="Finds Python >= 3.11 on the pool, creates or reuses a venv, installs this exact "
                                    "llorch and llorch-worker (wheels built here, copied over SFTP) and torch, then "
                                    "records agent_command for the pool in the configuration. Idempotent.")
    p.add_argument("--host", metavar="POOL", required=True,
                   help="a configured pool, or [user@]host[:port] (it is added to the configuration)")
    p.add_argument("--python", metavar="PATH", help="the pool's interpreter (default: newest python3.x >= 3.11 on PATH)")
    p.add_argument("--venv", metavar="DIR", help="the venv on the pool (default: ~/.local/share/llorch/venv)")
    p.add_argument("--torch", default="auto", metavar="KIND",
                   help="auto (cuda with an NVIDIA driver, the MPS build on macOS, else cpu), cpu, cuda, metal, "
                        "existing (use the torch --python already has), none (agent only), or a pip requirement "
                        "such as torch==2.5.1")
    p.add_argument("--wheelhouse", metavar="DIR", help="offline: a directory of wheels on THIS machine, copied to the "
                   "pool and installed from with --no-index (add torch and dependencies for the pool's platform)")
    p.add_argument("--index-url", metavar="URL", help="the package index the pool should use")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where the wheels are copied to on the pool (default: ~/.cache/llorch/install)")
    p.add_argument("--upgrade", action="store_true", help="reinstall even when the versions already match")
    p.add_argument("--no-config", action="store_true", help="do not record agent_command in the configuration")
    p.add_argument("--json", action="store_true", help="progress events and the result as JSON Lines")
    p.set_defaults(handler=_install)


def _install(args: argparse.Namespace) -> int:
    from llorch_tui.cli import pools
    from llorch_tui.config_load import load_config
    from llorch_tui.fleet_ops.install import DEFAULT_VENV, REMOTE_CACHE, InstallOptions, config_target, install_pool

    try:
        loaded = load_config(args.config)
        pool = pools.resolve(pools.load(args.config), args.host)
        wheelhouse = Path(args.wheelhouse).expanduser() if args.wheelhouse else None
        if wheelhouse is not None and not wheelhouse.is_dir():
            raise LlorchError(ErrorCode.NOT_FOUND, f"--wheelhouse {wheelhouse} is not a directory on this machine",
                              "give a directory of .whl files (pip download -d DIR ...)")
    except LlorchError as e:
        print_error(e, args.json)
        return EXIT_ERROR
    opts = InstallOptions(python=args.python, venv=args.venv or DEFAULT_VENV, torch=args.torch, wheelhouse=wheelhouse,
                          index_url=args.index_url, upgrade=args.upgrade, cache_dir=args.cache_dir or REMOTE_CACHE)
    console = Console()

    def on_event(event: str, data: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps({"event": event, "data": data}), flush=True)
        else:
            console.print(f"[bold]{data['stage']:>6}[/] {data['message']}", highlight=False)

    async def go() -> int:
        target = None if args.no_config else config_target(args.config, loaded.source)
        result = await install_pool(pool, opts, on_event, target)
        if args.json:
            print(json.dumps(result.to_json()), flush=True)
        else:
            verb = "already up to date" if result.noop else "installed"
            console.print(f"[green]✓[/] pool {pool.name}: llorch {result.version} {verb} in {result.venv} "
                          f"(torch {result.torch or 'none'})", highlight=False)
        return EXIT_OK

    return run_sync(go, args.json)
