"""`python -m llorch_worker.probe --json`: which torch backends are usable here (loads no model)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any


def probe() -> dict[str, Any]:
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": None,
        "transformers": None,
        "backends": {"cpu": True, "cuda": False, "metal": False},
        "cuda_devices": [],
        "errors": [],
    }
    try:
        import torch

        out["torch"] = torch.__version__
    except Exception as e:  # a broken torch install is exactly what the probe must report
        out["backends"]["cpu"] = False
        out["errors"].append(f"import torch failed: {type(e).__name__}: {e}")
        return out
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except Exception as e:
        out["errors"].append(f"import transformers failed: {type(e).__name__}: {e}")
    try:
        if torch.cuda.is_available():
            out["backends"]["cuda"] = True
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                out["cuda_devices"].append(
                    {"index": i, "name": props.name, "total_bytes": int(props.total_memory)}
                )
    except Exception as e:
        out["errors"].append(f"cuda probe failed: {type(e).__name__}: {e}")
    try:
        mps = getattr(torch.backends, "mps", None)
        out["backends"]["metal"] = bool(mps and mps.is_available())
    except Exception as e:
        out["errors"].append(f"metal probe failed: {type(e).__name__}: {e}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llorch_worker.probe", description="Probe torch backends.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    info = probe()
    if args.json:
        print(json.dumps(info))
    else:
        usable = [b for b, ok in info["backends"].items() if ok]
        print(f"python {info['python']}, torch {info['torch']}, transformers {info['transformers']}")
        print(f"usable backends: {', '.join(usable) or 'none'}")
        for d in info["cuda_devices"]:
            print(f"  cuda:{d['index']} {d['name']} {d['total_bytes'] / 2**30:.1f} GiB")
        for e in info["errors"]:
            print(f"error: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
