"""The control plane and the pool agent never import torch or transformers (the worker does, in its own process)."""

from __future__ import annotations

import json
import subprocess
import sys

# Walk the whole package in a fresh interpreter (this test process may already hold torch).
PROBE = """
import importlib, json, pkgutil, sys
import llorch_tui
names, failed = [], {}
for info in pkgutil.walk_packages(llorch_tui.__path__, "llorch_tui."):
    names.append(info.name)
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed[info.name] = f"{type(exc).__name__}: {exc}"
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print(json.dumps({"modules": names, "failed": failed, "heavy": heavy}))
"""


def test_no_torch_or_transformers_in_llorch_tui() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "llorch_tui.pool.models_ops" in doc["modules"] and "llorch_tui.config_load" in doc["modules"]
    assert doc["failed"] == {}, f"modules that do not import: {doc['failed']}"
    assert doc["heavy"] == [], f"importing llorch_tui pulled in {doc['heavy'][:5]}"
