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


# A pool installs llorch without its `tui` extra: everything but the dashboard imports without textual.
NO_TEXTUAL = """
import contextlib, importlib, io, json, pkgutil, sys
sys.modules["textual"] = None  # what a pool without the extra has: `import textual` fails
import llorch_tui
from llorch_tui import app_main
failed = {}
for info in pkgutil.walk_packages(llorch_tui.__path__, "llorch_tui."):
    if not info.name.startswith("llorch_tui.tui"):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = f"{type(exc).__name__}: {exc}"
err = io.StringIO()
with contextlib.redirect_stderr(err):
    rc = app_main.main([])
print(json.dumps({"failed": failed, "rc": rc, "said": err.getvalue()}))
"""


def test_everything_but_the_dashboard_runs_without_textual() -> None:
    proc = subprocess.run([sys.executable, "-c", NO_TEXTUAL], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["failed"] == {}, f"modules that need textual outside llorch_tui.tui: {doc['failed']}"
    assert doc["rc"] == 2 and "pip install 'llorch[tui]'" in doc["said"], doc
