"""`llorch-pool mirror serve`: serve this pool's downloaded models to other pools over the Hub's protocol."""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import json
import sys

from rich.console import Console

from llorch_tui.pool.cli.spec import CommandSpec


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; use the LAN address to serve other pools — the "
                        "mirror is read-only but has no authentication unless --gated/--token)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port, printed at start)")
    p.add_argument("--print-url", action="store_true", help="print only the base URL on stdout once serving")
    p.add_argument("--gated", action="append", default=[], metavar="REPO",
                   help="answer like a gated Hub repo: downloads of REPO need an Authorization header (repeatable)")
    p.add_argument("--token", help="with --gated: the bearer token that opens gated repos (default: "
                   "$LLORCH_MIRROR_TOKEN; without one any token is accepted)")
    p.add_argument("--rate-limit", type=float, metavar="BYTES_PER_S",
                   help="cap each download's speed (keeps the LAN usable while pools copy models)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    from llorch_tui.pool.mirror import MirrorOptions, serve_mirror
    from llorch_tui.pool.mirror.index import env_token

    options = MirrorOptions(gated=set(args.gated), token=args.token or env_token(),
                            rate_limit_bps=args.rate_limit)
    err = Console(stderr=True)
    if not _is_loopback(args.host):
        err.print(f"[yellow]note:[/] serving on {args.host}: anyone who can reach it can download these models",
                  highlight=False)

    def ready(url: str, repos: list[str]) -> None:
        if args.print_url:
            print(url, flush=True)
        elif args.json:
            print(json.dumps({"url": url, "repos": repos}), flush=True)
        else:
            con = Console()
            con.print(f"serving {len(repos)} model(s) read-only at [bold]{url}[/] (Ctrl+C stops)", highlight=False)
            for r in repos:
                con.print(f"  {r}", highlight=False)
            con.print(f"on another pool: `llorch-pool models download ID --endpoint {url}` or HF_ENDPOINT={url}",
                      highlight=False)
        sys.stdout.flush()

    try:
        asyncio.run(serve_mirror(args.settings, args.host, args.port, options, ready))
    except OSError as exc:
        from llorch_tui.errors import ErrorCode, LlorchError

        raise LlorchError(ErrorCode.PORT_IN_USE if exc.errno == errno.EADDRINUSE else ErrorCode.NETWORK,
                          f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}",
                          "pick another --port (0 picks a free one) or another --host") from None
    return 0


COMMANDS: list[CommandSpec] = [
    CommandSpec(("mirror", "serve"), "serve this pool's downloaded models read-only over the Hugging Face Hub protocol",
                _args, run_local=run, remote=False),
]
