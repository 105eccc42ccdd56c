"""Regenerate docs/model-support.md: the matrix, by the tool, on this machine's local pool.

    .venv/bin/python scripts/model_support.py [--out docs/model-support.md] [--dtypes float32 bfloat16]
                                              [--bench 5] [--stability-requests 100] [--no-synthetic]

Everything is real: a fresh pool state dir in a temp directory, the real SmolLM2-135M-Instruct
(`llorch-pool models fetch-example smollm2`, cached in the examples cache after the first fetch) and
the four synthetic architectures (`models synth`), then `llorch-tui --run-matrix` over them in each
dtype, with benchmarks, stability and the parity certificate (the reference fingerprints are recorded
on cpu float32 by the run itself). The page is the run's `matrix.md` below a note that says how and
where it was produced. The run's exit status is the script's: a failing cell still writes the page.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ARCHS = ("llama", "qwen2", "phi3", "mistral")
REPO = Path(__file__).resolve().parents[1]


def pool_cli(state: Path, *args: str, models_dir: Path | None = None) -> None:
    argv = [sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state)]
    if models_dir is not None:
        argv += ["--models-dir", str(models_dir)]
    subprocess.run([*argv, *args], check=True, stdin=subprocess.DEVNULL)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} cores"


def note(args: argparse.Namespace, load_before: str, load_after: str, models: list[str]) -> str:
    dtypes = " ".join(args.dtypes)
    synth = ("; the four synthetic checkpoints (`models synth tiny-<arch>`: tiny random-weight models with real "
             "safetensors, config and a locally trained tokenizer) prove the plumbing of each architecture — their "
             "tokens/s say nothing about real weights, and they skip the golden prompts (random weights)"
             if any(m.startswith("tiny-") for m in models) else "")
    return f"""# Model support matrix

> **How this page was produced.** By the tool, not by hand: `python scripts/model_support.py` on
> {datetime.now(timezone.utc):%Y-%m-%d} — a `local` pool holding the real SmolLM2-135M-Instruct
> (`llorch-pool models fetch-example smollm2`: the Q4_1 GGUF converted once to float32 safetensors){synth};
> then `llorch-tui --run-matrix --backends cpu --dtypes {dtypes} --bench {args.bench} --stability
> --stability-requests {args.stability_requests}`, whose `matrix.md` is copied here unchanged below this note.
> Each cell is certified against its model's reference fingerprint (recorded on cpu float32 by the first
> cell that needs it), so the float32 column checks the reference path against itself and the other
> dtypes show how far their numerics drift. Machine: {platform.node() or "?"}, {platform.system()}
> {platform.release()}, {os.cpu_count()} CPU cores, no GPU (cuda and metal are not columns); shared with
> other jobs while measuring ({load_before} before, {load_after} after), so absolute speeds are noisy.
> To refresh on your pools: `llorch-tui --run-matrix --dtypes {dtypes} --bench 10 --report-dir reports &&
> cp reports/matrix.md docs/model-support.md`.

"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "docs" / "model-support.md"))
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--bench", type=int, default=5)
    p.add_argument("--stability-requests", type=int, default=100)
    p.add_argument("--no-synthetic", action="store_true", help="only the real model")
    p.add_argument("--keep", help="work in this directory (kept) instead of a temporary one")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="llorch-model-support-") as tmp:
        root = Path(args.keep or tmp)
        state, reports = root / "pool", root / "reports"
        from llorch_tui.paths import examples_cache_dir

        # The converted checkpoint lives in the shared examples cache: converted once per machine.
        pool_cli(state, "models", "fetch-example", "smollm2", models_dir=examples_cache_dir() / "models")
        models = ["smollm2"]
        if not args.no_synthetic:
            for arch in ARCHS:
                pool_cli(state, "models", "synth", f"tiny-{arch}", "--architecture", arch)
                models.append(f"tiny-{arch}")
        config = root / "config.toml"
        config.write_text(f'[[pools]]\nname = "local"\ntransport = "local"\nstate_dir = "{state}"\n\n'
                          f'[matrix]\nreport_dir = "{reports}"\n')
        load_before = load()
        t0 = time.monotonic()
        try:
            rc = subprocess.run([sys.executable, "-m", "llorch_tui.app_main", "--run-matrix", "--config", str(config),
                                 "--models", *models, "--backends", "cpu", "--dtypes", *args.dtypes,
                                 "--bench", str(args.bench), "--stability", "--stability-requests",
                                 str(args.stability_requests)], stdin=subprocess.DEVNULL).returncode
        finally:
            # The pool's warm worker template outlives the run (it idles out later): leave nothing running.
            subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state), "worker",
                            "template", "--stop"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
        print(f"matrix run: exit {rc} after {time.monotonic() - t0:.0f} s", file=sys.stderr)
        md = (reports / "matrix.md").read_text(encoding="utf-8")
        md = md.split("\n", 1)[1] if md.startswith("# ") else md  # the note carries the page's title
        Path(args.out).write_text(note(args, load_before, load(), models) + md, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
