"""`llorch-tui --run-matrix`: the engine without the UI, for CI and scripts.

Prints one line per cell as it finishes (or, with --json, one JSON event per line) and ends with
`Test Results: N passed, N failed, N skipped`. Exit status: 0 all passed or skipped, 1 a cell
failed, 2 bad configuration or flags, 130 interrupted (Ctrl-C or SIGTERM; every spawned worker is
stopped first).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from contextlib import aclosing
from typing import TextIO

from llorch_tui.errors import LlorchError
from llorch_tui.fleet import Fleet
from llorch_tui.matrix.engine import MatrixEngine
from llorch_tui.matrix.events import CellFinished, CellProgress, MatrixEvent, PlanReady, RunFinished
from llorch_tui.matrix.options import MatrixOptions
from llorch_tui.matrix.reports.certificates import parity_brief
from llorch_tui.protocol.matrix import CellResult, RunSummary

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LABEL = {"pass": "PASS", "fail": "FAIL", "skipped": "SKIP"}


def cell_line(r: CellResult) -> str:
    m = r.measurements
    if r.verdict == "pass":
        parts = [f"load {m.load_s:.2f}s" if m.load_s is not None else "",
                 f"ttft {m.ttft_ms:.0f}ms" if m.ttft_ms is not None else "",
                 f"{m.tokens_per_second:.1f} tok/s" if m.tokens_per_second is not None else ""]
        if r.bench:
            parts.append(f"bench {r.bench.tokens_per_second_mean:.1f} tok/s mean")
            if r.bench.pp_tps_mean is not None:
                parts.append(f"pp{r.bench.pp_tokens} {r.bench.pp_tps_mean:.1f}±{r.bench.pp_tps_sd or 0:.1f} "
                             f"tg{r.bench.tg_tokens} {r.bench.tg_tps_mean or 0:.1f}±{r.bench.tg_tps_sd or 0:.1f} tok/s")
        if r.stability:
            parts.append(f"stability {r.stability.requests} req, p99 {r.stability.latency_ms_p99 or 0:.0f}ms")
        detail = "  ".join(p for p in parts if p)
    else:
        detail = f"{r.reason_code}: {r.reason or ''}" + (f" (exit code {r.exit_code})" if r.exit_code is not None else "")
    if r.parity is not None:
        detail = "  ".join(x for x in (detail, f"[{parity_brief(r.parity)}]") if x)
    return f"{LABEL[r.verdict]}  {r.key.id}  {detail}".rstrip()


class Printer:
    def __init__(self, as_json: bool, out: TextIO = sys.stdout) -> None:
        self.as_json, self.out = as_json, out
        self.summary: RunSummary | None = None
        self.counts = {"pass": 0, "fail": 0, "skipped": 0}
        self._stage: dict[str, str] = {}

    def __call__(self, ev: MatrixEvent) -> None:
        if isinstance(ev, CellFinished):
            self.counts[ev.result.verdict] += 1
        if isinstance(ev, RunFinished):
            self.summary = ev.summary
        if self.as_json:
            print(ev.model_dump_json(), file=self.out, flush=True)
            return
        if isinstance(ev, PlanReady):
            for p in ev.pools:
                if not p.online:
                    print(f"pool {p.name} offline: {p.error}", file=sys.stderr, flush=True)
            print(f"planned {len(ev.cells)} cells on {len(ev.pools)} pool(s)", file=sys.stderr, flush=True)
        elif isinstance(ev, CellProgress) and self._stage.get(ev.key.id) != ev.stage:
            # Stage changes (not every fraction) on stderr: a CI log shows where a slow cell is.
            self._stage[ev.key.id] = ev.stage
            print(f".. {ev.key.id}: {ev.stage}" + (f" ({ev.detail})" if ev.detail else ""), file=sys.stderr, flush=True)
        elif isinstance(ev, CellFinished):
            print(cell_line(ev.result), file=self.out, flush=True)
        elif isinstance(ev, RunFinished):
            for kind, path in ev.reports.items():
                print(f"report {kind}: {path}", file=sys.stderr, flush=True)
            if ev.report_error:
                print(f"error: {ev.report_error}", file=sys.stderr, flush=True)

    def partial(self) -> RunSummary:
        return self.summary or RunSummary(passed=self.counts["pass"], failed=self.counts["fail"],
                                          skipped=self.counts["skipped"])


class Interrupted(Exception):
    """Ctrl-C or SIGTERM ended the run (after every worker it spawned was stopped)."""


def _install_interrupt(task: asyncio.Task[RunSummary]) -> list[str]:
    """SIGINT/SIGTERM cancel the run, whose cleanup stops the workers; a second signal says what is going on,
    a third abandons the cleanup (exit 130 at once, workers may be left: `llorch-pool worker stop --all`)."""
    loop = asyncio.get_running_loop()
    got: list[str] = []

    def on_signal(name: str) -> None:
        got.append(name)
        if len(got) == 1:
            print(f"{name}: stopping the workers this run started...", file=sys.stderr, flush=True)
            task.cancel()
        elif len(got) == 2:
            print("still stopping workers; one more Ctrl-C abandons them", file=sys.stderr, flush=True)
        else:
            print("abandoned: check `llorch-pool worker list` on the pools", file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    return got


async def run_matrix(fleet: Fleet, options: MatrixOptions, printer: Printer) -> RunSummary:
    engine = MatrixEngine(fleet, options)
    task = asyncio.current_task()
    assert task is not None
    got = _install_interrupt(task)
    try:
        async with aclosing(engine.run()) as events:
            async for ev in events:
                printer(ev)
    except asyncio.CancelledError:
        if got:
            raise Interrupted(got[0]) from None
        raise
    finally:
        await fleet.close()
    return printer.partial()


def run_headless(args: argparse.Namespace) -> int:
    from llorch_tui.config_load import load_config

    try:
        loaded = load_config(args.config)
    except LlorchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = MatrixOptions.from_config(loaded.config.matrix, args)
    options.command = "llorch-tui --run-matrix " + " ".join(_flags(args))
    printer = Printer(bool(getattr(args, "json", False)))
    # The final line goes to stdout in text mode; with --json it goes to stderr so stdout stays JSON Lines.
    final_out = sys.stderr if printer.as_json else sys.stdout
    try:
        summary = asyncio.run(run_matrix(Fleet(loaded.config), options, printer))
    except (Interrupted, KeyboardInterrupt):
        print("interrupted: every worker this run spawned was stopped", file=sys.stderr, flush=True)
        print(printer.partial().line, file=final_out, flush=True)
        return EXIT_INTERRUPTED
    except LlorchError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    print(summary.line, file=final_out, flush=True)
    return EXIT_FAILED if summary.failed else EXIT_OK


def _flags(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for name in ("models", "backends", "pools", "dtypes"):
        if getattr(args, name, None):
            out += [f"--{name}", *getattr(args, name)]
    for name in ("download", "stability", "no_parity"):
        if getattr(args, name, False):
            out.append(f"--{name.replace('_', '-')}")
    if getattr(args, "bench", None):
        out += ["--bench", str(args.bench)]
    for name in ("bench_pp", "bench_tg"):
        if getattr(args, name, None):
            out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if getattr(args, "bench_concurrency", None):
        out += ["--bench-concurrency", *map(str, args.bench_concurrency)]
    return out
