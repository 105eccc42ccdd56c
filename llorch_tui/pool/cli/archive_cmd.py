"""`llorch-pool models export ID FILE` / `models import FILE`: a model in one archive file, for offline machines."""

from __future__ import annotations

import argparse
from typing import Callable

from rich.console import Console

from llorch_tui.pool.cli.download_cmd import DownloadBar
from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.protocol import ops
from llorch_tui.protocol.transfer import ArchiveResult
from llorch_tui.units import fmt_bytes


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="a downloaded model")
    p.add_argument("file", help="the archive to write (a .tar; on the pool)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="an archive made by `models export` (on the pool)")
    p.add_argument("--id", help="import under this id instead of the archive's")
    p.add_argument("--force", action="store_true", help="replace a model already downloaded under that id")


def _render(verb: str) -> Callable[[ArchiveResult, Console], None]:
    def render(r: ArchiveResult, console: Console) -> None:
        m = r.model
        if r.noop:
            console.print(f"{m.id}: already here with the same files at {m.path}; nothing to do", highlight=False)
            return
        console.print(f"{verb} [bold]{m.id}[/] ({len(m.files)} files, sha256-verified): "
                      f"{r.file} {fmt_bytes(r.bytes)}", highlight=False)
    return render


COMMANDS: list[CommandSpec] = [
    CommandSpec(("models", "export"), "write a downloaded model (entry, checksums, files) into one archive", _export_args,
                op=ops.MODELS_EXPORT, to_params=lambda a: {"id": a.id, "file": a.file, "force": a.force},
                render=_render("exported"), events=DownloadBar),
    CommandSpec(("models", "import"), "verify and install a model from an archive made by `models export`",
                _import_args, op=ops.MODELS_IMPORT,
                to_params=lambda a: {k: v for k, v in {"file": a.file, "id": a.id, "force": a.force}.items()
                                     if v is not None},
                render=_render("imported"), events=DownloadBar),
]
