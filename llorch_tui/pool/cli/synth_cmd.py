"""`llorch-pool models synth ID --architecture A [--size] | --like NAME [--dtype] [--seed] [--force]`: offline models."""

from __future__ import annotations

import argparse
from typing import Any

from llorch_tui.pool.cli.models_cmd import render_entry, split_backends
from llorch_tui.protocol import ops
from llorch_tui.pool.cli.spec import CommandSpec
from llorch_tui.pool.cli.stage_progress import StageProgress

def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="catalog id for the new model, e.g. tiny-llama")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--architecture", choices=["llama", "qwen2", "phi3", "mistral"],
                      help="real transformers architecture to build (tiny or small)")
    kind.add_argument("--like", choices=["tinyllama", "qwen-0.5b", "phi3", "mistral"],
                      help="the exact configuration of this original model: real size, random weights "
                           "(bfloat16: 1.0 GB, 2.2 GB, 7.6 GB, 14.5 GB on disk)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                   help="weights dtype with --like (default bfloat16)")
    p.add_argument("--size", default="tiny", choices=["tiny", "small"],
                   help="tiny: loads and generates in well under a second; small: ~30M parameters, for benchmarks")
    p.add_argument("--seed", type=int, default=0, help="weight seed; the same seed gives the same bytes (default 0)")
    p.add_argument("--backends", nargs="+", metavar="BACKEND", help="backends to allow (default: cpu cuda metal)")
    p.add_argument("--force", action="store_true", help="replace an existing entry and its directory")


def _params(a: argparse.Namespace) -> dict[str, Any]:
    d: dict[str, Any] = {"id": a.id, "size": a.size, "seed": a.seed, "force": a.force}
    if a.like:
        d.update(like=a.like, dtype=a.dtype)
    else:
        d["architecture"] = a.architecture
    if a.backends:
        d["backends"] = split_backends(a.backends)
    return d


COMMANDS: list[CommandSpec] = [
    CommandSpec(("models", "synth"), "write a random-weight checkpoint (tiny, or the exact shape of a real model) "
                "and register it",
                _args, op=ops.MODELS_SYNTH, to_params=_params, render=render_entry("synthesized"),
                events=StageProgress),
]
