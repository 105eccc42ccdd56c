"""Build an argparse tree from CommandSpecs, shared by `llorch-pool` and `llorch pool`."""

from __future__ import annotations

import argparse
import importlib
from typing import Callable

from llorch_tui.pool.cli.spec import CommandSpec

# Each module exposes COMMANDS: list[CommandSpec]. Listed, not discovered; a module not written yet is skipped.
COMMAND_MODULES: tuple[str, ...] = (
    "llorch_tui.pool.cli.models_cmd",
    "llorch_tui.pool.cli.synth_cmd",
    "llorch_tui.pool.cli.examples_cmd",
    "llorch_tui.pool.cli.download_cmd",
    "llorch_tui.pool.cli.mirror_cmd",
    "llorch_tui.pool.cli.worker_cmd",
    "llorch_tui.pool.cli.status_cmd",
    "llorch_tui.pool.cli.fit_cmd",
    "llorch_tui.pool.cli.archive_cmd",
    "llorch_tui.pool.cli.fingerprint_cmd",
)


def all_commands() -> list[CommandSpec]:
    specs: list[CommandSpec] = []
    for mod in COMMAND_MODULES:
        try:
            specs.extend(importlib.import_module(mod).COMMANDS)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    return specs


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (the wire protocol)")


def build_tree(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", specs: list[CommandSpec],
               extra_leaf_args: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Nest specs by path; each leaf gets --json, set_defaults(spec=...) and the caller's extra args (e.g. --host)."""
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {(): sub}
    for spec in specs:
        for depth in range(1, len(spec.path)):
            prefix = spec.path[:depth]
            if prefix not in groups:
                parent = groups[prefix[:-1]]
                gp = parent.add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = gp.add_subparsers(dest=f"cmd_{depth}", metavar="COMMAND", required=True)
        leaf = groups[spec.path[:-1]].add_parser(spec.path[-1], help=spec.help, description=spec.help)
        spec.add_args(leaf)
        add_json_flag(leaf)
        if extra_leaf_args is not None:
            extra_leaf_args(leaf)
        leaf.set_defaults(spec=spec)
