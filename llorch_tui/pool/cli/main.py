"""`llorch-pool`: the pool agent's human CLI (tables, progress bars, --json) and `serve --stdio`."""

from __future__ import annotations

import argparse
import logging
import sys

from llorch_tui import __version__
from llorch_tui.pool.cli.runner import EXIT_ERROR, print_error, run_spec, run_sync
from llorch_tui.pool.cli.tree import all_commands, build_tree
from llorch_tui.pool.ops import AgentSettings, InProcessExecutor


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llorch-pool", description="llorch pool agent: catalog, downloads, workers, status")
    p.add_argument("--version", action="version", version=f"llorch-pool {__version__}")
    p.add_argument("--state-dir", help="pool state directory (default: $LLORCH_STATE_DIR or ~/.local/share/llorch/pool)")
    p.add_argument("--models-dir", help="where model files live (default: $LLORCH_MODELS_DIR or STATE_DIR/models)")
    p.add_argument("--pool-id", help="this pool's id (default: $LLORCH_POOL_ID or the hostname)")
    sub = p.add_subparsers(dest="cmd_0", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="long-lived JSON Lines service for the control plane")
    serve.add_argument("--stdio", action="store_true", required=True, help="requests on stdin, responses on stdout")
    serve.set_defaults(spec=None, serve=True)
    build_tree(sub, all_commands())
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    settings = AgentSettings.from_env(args.state_dir, args.models_dir, args.pool_id)
    if getattr(args, "serve", False):
        from llorch_tui.pool.service import run_stdio_service

        try:
            run_stdio_service(settings)
        except KeyboardInterrupt:
            pass
        return 0
    spec = args.spec
    args.settings = settings
    if spec.op is None:
        assert spec.run_local is not None
        try:
            return spec.run_local(args)
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # local commands report LlorchError like ops do
            from llorch_tui.errors import LlorchError

            if isinstance(exc, LlorchError):
                print_error(exc, getattr(args, "json", False))
                return EXIT_ERROR
            raise
    executor = InProcessExecutor(settings)
    return run_sync(lambda: run_spec(spec, args, executor), getattr(args, "json", False))


if __name__ == "__main__":
    sys.exit(main())
