"""`llorch-tui`: the dashboard, or with --run-matrix the headless matrix runner (same engine)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from llorch_tui import __version__
from llorch_tui.protocol.matrix import DTYPES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llorch-tui", description="llorch dashboard and model x backend test matrix")
    p.add_argument("--version", action="version", version=f"llorch-tui {__version__}")
    p.add_argument("--config", help="configuration file (default: $LLORCH_CONFIG, ~/.config/llorch/config.toml, else built-in)")
    p.add_argument("--readonly", action="store_true", help="view only: no downloads, spawns, stops or matrix runs")
    m = p.add_argument_group("matrix", "the headless run (--run-matrix); without it, these flags set the "
                                        "dashboard's matrix run (g) instead")
    m.add_argument("--run-matrix", action="store_true", help="run the test matrix without the UI and exit")
    m.add_argument("--models", nargs="+", metavar="ID", help="only these models")
    m.add_argument("--backends", nargs="+", choices=["cpu", "cuda", "metal"], help="only these backends")
    m.add_argument("--pools", nargs="+", metavar="POOL", help="only these pools")
    m.add_argument("--dtypes", nargs="+", choices=list(DTYPES), metavar="DTYPE",
                   help="one column per backend and dtype: auto float32 bfloat16 float16 (default: [matrix] dtypes, "
                        "else the worker's default, auto)")
    m.add_argument("--report-dir", help="where reports go (default: [matrix] report_dir)")
    m.add_argument("--download", action="store_true", help="download models that are missing on a pool")
    m.add_argument("--bench", type=int, metavar="N", help="benchmark mode: N iterations per cell")
    m.add_argument("--bench-pp", type=int, metavar="TOKENS", help="--bench: prompt tokens of the pp runs (default 128)")
    m.add_argument("--bench-tg", type=int, metavar="TOKENS", help="--bench: generated tokens of the tg runs (default 32)")
    m.add_argument("--bench-concurrency", type=int, nargs="+", metavar="C",
                   help="--bench: concurrency levels for TTFT/TPOT/ITL percentiles (default 1 4)")
    m.add_argument("--stability", action="store_true", help="stability mode: 1000 requests, bursts, edge cases")
    m.add_argument("--stability-requests", type=int, default=1000, metavar="N", help=argparse.SUPPRESS)
    m.add_argument("--no-parity", action="store_true",
                   help="skip the parity certificate (comparison with the model's reference fingerprint)")
    m.add_argument("--json", action="store_true", help="print one JSON event per line instead of text")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_matrix:
        from llorch_tui.matrix.headless import run_headless

        return run_headless(args)
    if importlib.util.find_spec("textual") is None:  # a pool's install: the agent and CLI, no dashboard
        print("llorch-tui: the dashboard needs the `tui` extra, which is not installed here; "
              "install it with: pip install 'llorch[tui]' (the headless matrix, --run-matrix, runs without it)",
              file=sys.stderr)
        return 2
    from llorch_tui.tui.app import run_app

    return run_app(args)


if __name__ == "__main__":
    sys.exit(main())
