"""Model load time: a GGUF loaded directly (dequantized on every load) vs its float32 safetensors conversion.

The reason the agent converts a registered GGUF once: every matrix cell starts a worker, and each
start pays the load. Both loads run in fresh processes (`python -m llorch_worker.check --load`,
which is the worker's own `Engine.load` plus one forward pass), interleaved, median of --reps.

    .venv/bin/python bench/gguf_load.py [--reps 3] [--gguf FILE --converted DIR]

Without paths it uses the SmolLM2 example from the examples cache, fetching and converting it first
when absent (`llorch-pool --models-dir ~/.cache/llorch/examples/models models fetch-example smollm2`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def load_s(model: Path) -> float:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "llorch_worker.check", "--model", str(model), "--load", "--json"],
                          capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise SystemExit(f"loading {model} failed: {proc.stdout}{proc.stderr[-2000:]}")
    return time.monotonic() - t0


def main() -> int:
    from llorch_tui.paths import examples_cache_dir

    cache = examples_cache_dir()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--gguf", type=Path, default=cache / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--converted", type=Path, default=cache / "models" / "smollm2")
    a = p.parse_args()
    if not (a.gguf.exists() and a.converted.exists()):  # the example's files, made as the test fixture makes them
        with tempfile.TemporaryDirectory() as state:
            subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", state, "--models-dir",
                            str(cache / "models"), "models", "fetch-example", "smollm2"], check=True, timeout=1800)
    gguf, conv = [], []
    for i in range(a.reps):  # interleaved, so a busier moment of the machine hits both alike
        gguf.append(load_s(a.gguf))
        conv.append(load_s(a.converted))
        print(f"rep {i + 1}: gguf {gguf[-1]:.1f} s, converted {conv[-1]:.1f} s", flush=True)
    mg, mc = statistics.median(gguf), statistics.median(conv)
    print(f"load + one forward pass, fresh process, median of {a.reps} (load average {os.getloadavg()[0]:.1f}):")
    print(f"  GGUF directly: {mg:.1f} s   converted safetensors: {mc:.1f} s   ratio {mg / mc:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
