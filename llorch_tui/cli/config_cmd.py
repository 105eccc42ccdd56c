"""`llorch config init|show`: write a starting configuration; print the effective one and its provenance.

Wiring (llorch_tui/cli/main.py): `add_config_commands(sub)` adds the `config` group to the top-level
subparsers. Each leaf sets `handler=fn` with `fn(args) -> int` (exit code); the caller runs
`args.handler(args)`. `show` reads the top-level `--config` flag if the parser has one
(`args.config`), else the usual lookup. Errors are printed like every llorch error (exit 1).
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from typing import Any

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from llorch_tui.config_load import config_to_toml, load_config, write_config
from llorch_tui.errors import LlorchError
from llorch_tui.paths import config_file
from llorch_tui.pool.cli.runner import EXIT_ERROR, EXIT_OK, print_error


def example_text() -> str:
    """The commented example (package data; the repo's config.example.toml points at the same file)."""
    return resources.files("llorch_tui").joinpath("config.example.toml").read_text(encoding="utf-8")


def _init(args: argparse.Namespace) -> int:
    target = args.path or str(config_file())
    try:
        path = write_config(target, example_text(), force=args.force)
    except LlorchError as err:
        print_error(err, args.json)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({"path": str(path)}))
    else:
        Console().print(f"wrote {path}\nedit it, then check it with: llorch config show", highlight=False)
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(getattr(args, "config", None))
    except LlorchError as err:
        print_error(err, args.json)
        return EXIT_ERROR
    doc: dict[str, Any] = {
        "source": str(loaded.source) if loaded.source else None,
        "found_by": loaded.found_by,
        "provenance": loaded.provenance,
        "config": loaded.config.model_dump(mode="json"),
    }
    if args.json:
        print(json.dumps(doc))
        return EXIT_OK
    con = Console()
    con.print(f"configuration: [bold]{doc['source'] or 'embedded default'}[/] (found by {loaded.found_by})",
              highlight=False)
    t = Table(title="where each part came from")
    t.add_column("part")
    t.add_column("from")
    for part, origin in loaded.provenance.items():
        t.add_row(part, origin)
    con.print(t)
    con.print(Syntax(config_to_toml(loaded.config), "toml", background_color="default"))
    return EXIT_OK


def add_config_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `config init` and `config show` under the given subparsers (see module doc)."""
    grp = sub.add_parser("config", help="write or inspect the configuration file")
    leaves = grp.add_subparsers(dest="config_cmd", metavar="COMMAND", required=True)
    init = leaves.add_parser("init", help="write a commented starting configuration",
                             description="Write the commented example configuration (every key documented).")
    init.add_argument("--path", help=f"where to write it (default: $LLORCH_CONFIG or {config_file()})")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.add_argument("--json", action="store_true", help="machine-readable output")
    init.set_defaults(handler=_init)
    show = leaves.add_parser("show", help="print the effective configuration and where each part came from")
    # SUPPRESS: do not clobber a top-level --config with this subparser's default.
    show.add_argument("--config", default=argparse.SUPPRESS, help="read this file instead of the usual lookup")
    show.add_argument("--json", action="store_true", help="{source, found_by, provenance, config} as JSON")
    show.set_defaults(handler=_show)
