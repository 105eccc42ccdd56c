"""`llorch-pool mirror serve`: serve this pool's downloaded models to other pools over the Hub's protocol."""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import json
import sys


from llorch_worker.httpguard import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS
from rich.console import Console

from llorch_tui.errors import ErrorCode, LlorchError
from llorch_tui.pool.cli.spec import CommandSpec


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; use the LAN address to serve other pools — the "
                        "mirror is read-only and open to anyone who can reach it unless it has a token)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port, printed at start)")
    p.add_argument("--print-url", action="store_true", help="print only the base URL on stdout once serving")
    p.add_argument("--gated", action="append", default=[], metavar="REPO",
                   help="answer like a gated Hub repo: downloads of REPO need the token, other repos are public "
                        "(repeatable; needs a token)")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the bearer token (default: $LLORCH_MIRROR_TOKEN, or the file named by "
                        "$LLORCH_MIRROR_TOKEN_FILE). With a token and no "
                        "--gated, every request needs it")
    p.add_argument("--token", help=argparse.SUPPRESS)  # refused: argv is visible to every user in ps
    p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S, metavar="S",
                   help="close a connection that has not sent a request's headers within S seconds")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                   help="open connections at most; beyond, a connection gets 503 and is closed")
    p.add_argument("--max-connections-per-client", type=int, metavar="N",
                   help="open connections one client address may hold (default: half of --max-connections); "
                        "beyond, a connection gets 429 and is closed")
    p.add_argument("--rate-limit", type=float, metavar="BYTES_PER_S",
                   help="cap each download's speed (keeps the LAN usable while pools copy models)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    from llorch_worker.httpguard import ConnectionLimits

    from llorch_tui.pool.hub_fetch import MIRROR_TOKEN_ENV, mirror_token, read_token_file
    from llorch_tui.pool.mirror import MirrorOptions, serve_mirror

    if args.token is not None:
        raise LlorchError(ErrorCode.BAD_REQUEST, "--token on the command line is visible to every user of this "
                          "machine (ps, /proc)", f"put the token in {MIRROR_TOKEN_ENV} or in a file passed with "
                          "--token-file")
    per_client = args.max_connections_per_client
    if args.max_connections < 1 or (per_client is not None and per_client < 1) or not args.idle_timeout > 0:
        raise LlorchError(ErrorCode.BAD_REQUEST, "--max-connections and --max-connections-per-client must be at "
                          "least 1 and --idle-timeout above 0")
    token = read_token_file(args.token_file) if args.token_file else mirror_token()
    options = MirrorOptions(gated=set(args.gated), token=token, rate_limit_bps=args.rate_limit,
                            limits=ConnectionLimits(args.idle_timeout, args.max_connections, per_client))
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
        raise LlorchError(ErrorCode.PORT_IN_USE if exc.errno == errno.EADDRINUSE else ErrorCode.NETWORK,
                          f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}",
                          "pick another --port (0 picks a free one) or another --host") from None
    return 0


COMMANDS: list[CommandSpec] = [
    CommandSpec(("mirror", "serve"), "serve this pool's downloaded models read-only over the Hugging Face Hub protocol",
                _args, run_local=run, remote=False),
]
