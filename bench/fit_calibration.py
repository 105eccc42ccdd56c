"""Benchmark: `models fit`'s estimate against the measured peak RSS of a real worker, on CPU.

For each `synth --like` checkpoint (the original models' exact shapes, random weights) and each dtype the
worker is asked to load it as, one real `llorch-worker` serves one request of --tokens tokens; its peak
resident memory (Linux VmHWM) is compared with the estimate for that context, batch 1. Runs one worker at
a time (the machine is small); prints a table and the machine's load, optionally JSON.

    .venv/bin/python bench/fit_calibration.py --dir /tmp/like [--build] [--tokens 512] [--json]

With --build the checkpoints missing under --dir are written first (`python -m llorch_worker.synth --like
NAME --dtype D`): tinyllama (1.1B) and qwen-0.5b, in bfloat16 and float32 (2.2 + 4.4 + 1.0 + 2.0 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS / "fleet"), str(TESTS)]  # the measurement is the fit test's (fleet_helpers)

from fleet_helpers import measure_peak  # noqa: E402

from llorch_tui.pool.fit import estimate, local_shapes, local_stored_bytes  # noqa: E402
from llorch_tui.units import fmt_bytes  # noqa: E402

# (checkpoint dir name, --like, checkpoint dtype, the dtypes the worker loads it as)
CASES = [
    ("qwen-0.5b-bfloat16", "qwen-0.5b", "bfloat16", ("bfloat16", "float32")),
    ("qwen-0.5b-float32", "qwen-0.5b", "float32", ("float32", "bfloat16")),
    ("tinyllama-bfloat16", "tinyllama", "bfloat16", ("bfloat16", "float32")),
    ("tinyllama-float32", "tinyllama", "float32", ("float32",)),
]


def build(root: Path, name: str, like: str, dtype: str) -> Path:
    out = root / name
    if not (out / "model.safetensors").exists():
        subprocess.run([sys.executable, "-m", "llorch_worker.synth", "--out", str(out), "--like", like, "--dtype",
                        dtype, "--json"], check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, required=True, help="where the --like checkpoints are (or go, with --build)")
    ap.add_argument("--build", action="store_true", help="write the checkpoints missing under --dir")
    ap.add_argument("--tokens", type=int, default=512, help="prompt tokens of the one request (default 512)")
    ap.add_argument("--only", nargs="*", help="checkpoint names to run (default: all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    load_before = os.getloadavg()
    for name, like, ckpt_dtype, dtypes in CASES:
        if args.only and name not in args.only:
            continue
        path = build(args.dir, name, like, ckpt_dtype) if args.build else args.dir / name
        if not (path / "model.safetensors").exists():
            print(f"skipping {name}: no checkpoint at {path} (use --build)", file=sys.stderr)
            continue
        cfg, params = local_shapes(path)
        stored = local_stored_bytes(path)
        for dtype in dtypes:
            tokens, peak = measure_peak(path, args.tokens, dtype)
            est = estimate(like, cfg, params, "cpu", dtype=dtype, context=tokens, batch=1, stored_bytes=stored)
            row = {"checkpoint": name, "loaded_as": dtype, "tokens": tokens, "params": params,
                   "estimate_bytes": est.estimate_bytes, "weights_bytes": est.weights_bytes,
                   "conversion_bytes": est.conversion_bytes,
                   "measured_bytes": peak, "ratio": round(est.estimate_bytes / peak, 3)}
            rows.append(row)
            print(f"{name:20} as {dtype:9} {tokens:5} tokens: estimate {fmt_bytes(est.estimate_bytes):>10}  "
                  f"measured {fmt_bytes(peak):>10}  estimate/measured {row['ratio']:.3f}", flush=True)
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()],
            "cores": os.cpu_count()}
    print(f"load average before {load['before']}, after {load['after']} on {load['cores']} cores")
    if args.json:
        print(json.dumps({"rows": rows, "load": load}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
