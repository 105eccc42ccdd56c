"""`llorch models copy ID --from A --to B [--to C ...]`: the command line of fleet_ops/copy.py."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from llorch_tui.errors import LlorchError
from llorch_tui.pool.cli.download_cmd import DownloadBar
from llorch_tui.protocol.downloads import DownloadProgress
from llorch_tui.protocol.events import PROGRESS
from llorch_tui.pool.cli.runner import EXIT_ERROR, EXIT_OK, print_error, run_sync
from llorch_tui.units import fmt_bytes


def add_copy_command(msub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    c = msub.add_parser("copy", help="copy a downloaded model from one pool to others",
                        description="Each target fetches the files from a token-protected mirror on the source's "
                                    "LAN address when it can reach it (lan route: the bytes never cross this "
                                    "machine), or on the source's loopback through ports this machine forwards over "
                                    "their SSH connections (direct route), or the chunks are relayed through the "
                                    "pools' agent sessions (relay route). Every file is sha256-verified against the "
                                    "source's catalog; run it again after an interruption to resume.")
    c.add_argument("id", help="a model downloaded on the source pool")
    c.add_argument("--from", dest="source", required=True, metavar="POOL", help="the pool that has it")
    c.add_argument("--to", dest="targets", required=True, action="append", metavar="POOL",
                   help="a pool to copy it to (repeat for several: the source's disk is read once)")
    c.add_argument("--force", action="store_true", help="replace different files a target has under that id")
    c.add_argument("--route", choices=("auto", "lan", "direct", "relay"), default="auto",
                   help="lan: targets download from the source's mirror on its LAN address (plain HTTP on your LAN, "
                        "token and sha256 protected); direct: from the source's mirror through forwarded ports; "
                        "relay: chunks through the agent sessions; auto (default): lan when the source has a LAN "
                        "address every target reaches, else direct, else relay, saying why")
    c.add_argument("--lan-address", metavar="IP", default=None,
                   help="the source's address on the LAN the targets share (default: its lan_address in the config)")
    c.add_argument("--rate-limit", type=float, default=None, metavar="MIB_PER_S",
                   help="cap each file's stream on the lan and direct routes (MiB/s)")
    c.add_argument("--chunk-mib", type=float, default=1.0, metavar="MIB",
                   help="bytes per message on the relay route (default 1 MiB)")
    c.add_argument("--json", action="store_true", help="progress events and the result as JSON Lines")
    c.set_defaults(handler=_copy)


def _copy(args: argparse.Namespace) -> int:
    from llorch_tui.cli import pools
    from llorch_tui.fleet_ops.copy import copy_model

    try:
        config = pools.load(args.config)
        if not 0 < args.chunk_mib <= 8:
            raise LlorchError("bad_request", f"--chunk-mib {args.chunk_mib} is out of range", "use 0.001 to 8")
        if args.rate_limit is not None and not args.rate_limit > 0:
            raise LlorchError("bad_request", f"--rate-limit {args.rate_limit} is not a positive rate",
                              "give MiB per second, e.g. --rate-limit 50")
    except LlorchError as e:
        print_error(e, args.json)
        return EXIT_ERROR
    console = Console()
    bar = None if args.json else DownloadBar(console)

    def on_event(progress: DownloadProgress) -> None:
        if args.json:
            print(json.dumps({"event": PROGRESS, "data": progress.model_dump(mode="json")}), flush=True)
        elif bar is not None:
            bar(progress)

    async def go() -> int:
        try:
            result = await copy_model(config, args.id, args.source, args.targets, force=args.force,
                                      chunk=max(int(args.chunk_mib * 1024 * 1024), 1), on_event=on_event,
                                      route=args.route, lan_address=args.lan_address,
                                      rate_limit_bps=args.rate_limit * 1024 * 1024 if args.rate_limit else None)
        finally:
            if bar is not None:
                bar.close()
        if args.json:
            print(json.dumps(result.to_json(), default=str), flush=True)
        else:
            how = {"lan": "from the source's mirror over the LAN",
                   "direct": "from the source's mirror through forwarded ports",
                   "relay": "relayed through this machine"}.get(result.route, "nothing to send")
            console.print(f"route: {result.route} ({how})", highlight=False)
            if result.route_note:
                console.print(f"  [yellow]note:[/] {result.route_note}", highlight=False)
            for t in result.targets:
                if t.noop:
                    console.print(f"[green]✓[/] {t.pool}: already has the same files", highlight=False)
                elif t.ok:
                    resumed = f", resumed after {fmt_bytes(t.bytes_resumed)}" if t.bytes_resumed else ""
                    console.print(f"[green]✓[/] {t.pool}: {args.id} copied from {result.source}, "
                                  f"{fmt_bytes(t.bytes_sent)} sent{resumed}, every file sha256-verified",
                                  highlight=False)
                else:
                    message, hint = (t.error.message, t.error.hint) if t.error else ("failed", None)
                    console.print(f"[bold red]✗[/] {t.pool}: {message}", highlight=False)
                    if hint:
                        console.print(f"  [yellow]hint:[/] {hint}", highlight=False)
        return EXIT_OK if result.ok else EXIT_ERROR

    return run_sync(go, args.json)
