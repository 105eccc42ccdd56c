"""`llorch-pool models download|verify|rm`: the files half of the models group."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

from llorch_tui.protocol import ops
from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.protocol.catalog import ModelEntry
from llorch_tui.protocol.downloads import DownloadProgress, DownloadResult, RemoveResult, VerifyResult
from llorch_tui.protocol.events import Event
from llorch_tui.units import fmt_bytes, fmt_eta


class DownloadBar:
    """One bar for the whole model: bytes done/total, speed and ETA as the agent measured them.

    Retries and finished files are printed above the bar; without a terminal, a line per stage change.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.last_stage: tuple[object, object] | None = None

    def _start(self, ev: DownloadProgress) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.fields[model]}[/] {task.fields[file]}"), BarColumn(), DownloadColumn(),
            TextColumn("{task.fields[speed]}"), TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[files]}"), console=self.console, transient=False)
        self.task = self.progress.add_task("download", total=ev.bytes_total or None, model=ev.model,
                                           file="", speed="", eta="--:--", files="")
        self.progress.start()

    def __call__(self, ev: Event) -> None:
        if not isinstance(ev, DownloadProgress):
            return
        stage, file = ev.stage, ev.file
        if stage == "resolving":
            self.console.print(f"{ev.model}: resolving on {ev.endpoint or 'the Hub'}", highlight=False)
            return
        if not self.console.is_terminal:
            if (stage, file) != self.last_stage:
                self.last_stage = (stage, file)
                extra = f" ({ev.message})" if ev.message else ""
                self.console.print(f"{ev.model}: {stage} {file or ''} {fmt_bytes(ev.bytes_done)}"
                                   f"/{fmt_bytes(ev.bytes_total)}{extra}", highlight=False)
            return
        if self.progress is None:
            self._start(ev)
        assert self.progress is not None and self.task is not None
        if stage == "retrying":
            self.progress.console.print(f"[yellow]retry[/] {file}: {ev.message}", highlight=False)
        self.progress.update(
            self.task, total=ev.bytes_total or None, completed=ev.bytes_done, file=file or "",
            speed=f"{fmt_bytes(ev.speed_bps or 0)}/s", eta=fmt_eta(ev.eta_s),
            files=f"{ev.files_done}/{ev.files_total} files")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _download_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="model id in this pool's catalog (register it first)")
    p.add_argument("--revision", help="branch, tag or commit to fetch (default: the entry's revision, else main)")
    p.add_argument("--endpoint", help="Hub or mirror URL (default: the pool's hf_endpoint, then HF_ENDPOINT, "
                   "then https://huggingface.co)")
    p.add_argument("--force", action="store_true", help="download again even when the catalog says it is there")
    p.add_argument("--stall-timeout", type=float, default=30.0, metavar="S",
                   help="no data for S seconds counts as a stall and is retried with backoff (default 30)")
    p.add_argument("--retries", type=int, default=5, metavar="N",
                   help="attempts without progress before giving up (default 5)")


def _download_params(a: argparse.Namespace) -> dict[str, Any]:
    d: dict[str, Any] = {"id": a.id, "force": a.force, "stall_s": a.stall_timeout, "max_attempts": a.retries}
    if a.revision:
        d["revision"] = a.revision
    if a.endpoint:
        d["endpoint"] = a.endpoint
    return d


def render_download(result: DownloadResult, console: Console) -> None:
    m = result.model
    if result.noop:
        console.print(f"{m.id} is already downloaded ({len(m.files)} files, "
                      f"{fmt_bytes(result.bytes_total)}) in {m.path}: nothing to do "
                      "(--force downloads again)", highlight=False)
        return
    resumed = result.bytes_resumed
    console.print(f"[green]downloaded[/] {m.id} from {result.endpoint} at revision {m.revision}: "
                  f"{len(m.files)} files, {fmt_bytes(result.bytes_total)}, sha256 verified"
                  + (f" ({fmt_bytes(resumed)} resumed from an earlier attempt)" if resumed else ""), highlight=False)
    console.print(f"  in {m.path}", highlight=False)


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="model id")
    p.add_argument("--no-load", dest="load", action="store_false",
                   help="only hashes and header checks; skip loading the checkpoint (which imports torch)")


def render_verify(result: VerifyResult, console: Console) -> None:
    if result.ok:
        console.print(f"[green]ok[/] {result.model}: {result.files_checked} files match their sha256"
                      + ("; the checkpoint loads" if result.loaded else ""), highlight=False)
        return
    table = Table(title=f"{result.model}: problems")
    table.add_column("file")
    table.add_column("problem", overflow="fold")
    for p in result.problems:
        table.add_row(p.file, p.problem)
    console.print(table)
    console.print(f"[yellow]hint:[/] `llorch-pool models download {result.model} --force` fetches it again",
                  highlight=False)


def _rm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="model id")
    p.add_argument("--drop-entry", action="store_true", help="also remove the catalog entry (default: keep it, "
                   "marked not downloaded)")


def render_rm(result: ModelEntry | RemoveResult, console: Console) -> None:
    if isinstance(result, RemoveResult):
        console.print(f"removed {result.removed}: files deleted ({fmt_bytes(result.freed_bytes)}) "
                      "and catalog entry dropped", highlight=False)
    else:
        console.print(f"removed the files of {result.id}; the entry stays (downloaded: false) — "
                      f"`llorch-pool models download {result.id}` fetches them again", highlight=False)


COMMANDS: list[CommandSpec] = [
    CommandSpec(("models", "download"), "download a registered model (resumable, sha256-verified, progress bar)",
                _download_args, ops.MODELS_DOWNLOAD, _download_params, render_download, DownloadBar),
    CommandSpec(("models", "verify"), "re-hash a downloaded model's files against the catalog and check it loads",
                _verify_args, ops.MODELS_VERIFY, lambda a: {"id": a.id, "load": a.load}, render_verify,
                exit_code=lambda r: 0 if r.ok else 3),
    CommandSpec(("models", "rm"), "delete a model's files (keep the entry, or --drop-entry)",
                _rm_args, ops.MODELS_RM, lambda a: {"id": a.id, "keep_entry": not a.drop_entry}, render_rm),
]
