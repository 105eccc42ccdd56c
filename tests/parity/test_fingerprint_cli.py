"""`llorch-pool models fingerprint | fingerprint-export | fingerprint-import` for real: a worker is
spawned on cpu float32 to record, an existing reference is kept unless --accept, and a reference
travels to another pool through a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llorch_tui.protocol.parity import Fingerprint

pytestmark = pytest.mark.slow


def pool_cli(state: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(state), *args],
                          capture_output=True, text=True, timeout=600, input=stdin,
                          env={**os.environ, "COLUMNS": "300"})  # the human table unfolded


def last_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_record_keep_accept_export_import(make_pool, tmp_path: Path) -> None:
    state = make_pool(models=("llama", "qwen2"))
    first = pool_cli(state, "models", "fingerprint", "tiny-llama", "--json")
    assert first.returncode == 0, first.stderr
    rep = last_json(first)
    assert rep["recorded"] is True and not rep["weights_changed"]
    fp = Fingerprint.model_validate(rep["fingerprint"])
    assert (fp.backend, fp.dtype, fp.prompt_set_version, fp.top_k) == ("cpu", "float32", "prompts-v1", 5)
    assert fp.weights_sha256 == rep["weights_sha256"] and fp.perplexity and fp.perplexity > 1
    assert all(len(p.steps) == 32 and all(len(s.top) == 5 for s in p.steps) for p in fp.prompts)
    events = [json.loads(x)["data"].get("stage") for x in first.stdout.strip().splitlines()[:-1]]
    assert "recording" in events and "ready" in events
    # the worker it started is gone
    workers = last_json(pool_cli(state, "worker", "list", "--json"))
    assert workers and all(w["state"] in ("stopped", "dead") for w in workers)

    again = last_json(pool_cli(state, "models", "fingerprint", "tiny-llama", "--json"))
    assert again["recorded"] is False and again["fingerprint"]["recorded_at"] == rep["fingerprint"]["recorded_at"]
    human = pool_cli(state, "models", "list")
    assert human.returncode == 0 and "prompts-v1" in human.stdout and "Reference" in human.stdout

    exported = pool_cli(state, "models", "fingerprint-export", "tiny-llama")
    assert exported.returncode == 0, exported.stderr
    file = tmp_path / "fp.json"
    file.write_text(exported.stdout)
    assert Fingerprint.model_validate_json(exported.stdout) == fp
    none = pool_cli(state, "models", "fingerprint-export", "tiny-qwen2")
    assert none.returncode == 1 and "no reference fingerprint" in none.stderr

    # another pool with the same files: the reference travels
    other = make_pool(models=("llama", "qwen2"), pool_id="other")
    imported = pool_cli(other, "models", "fingerprint-import", "tiny-llama", str(file), "--json")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert last_json(imported)["fingerprint"]["weights_sha256"] == fp.weights_sha256
    ref = last_json(pool_cli(other, "models", "fingerprint", "tiny-llama", "--json"))
    assert ref["recorded"] is False and not ref["weights_changed"]
    # a different reference is not replaced silently
    changed = fp.model_copy(update={"perplexity": (fp.perplexity or 1) * 2}).model_dump_json()
    refused = pool_cli(other, "models", "fingerprint-import", "tiny-llama", "-", "--json", stdin=changed)
    assert refused.returncode == 1 and last_json(refused)["error"]["code"] == "already_exists"
    assert "--accept" in last_json(refused)["error"]["hint"]
    assert pool_cli(other, "models", "fingerprint-import", "tiny-llama", "-", "--accept", stdin=changed).returncode == 0
    # a reference of other weights (qwen2's files) is refused unless --accept
    wrong = pool_cli(other, "models", "fingerprint-import", "tiny-qwen2", str(file), "--json")
    assert wrong.returncode == 1 and "other weights" in last_json(wrong)["error"]["message"]
    bad = pool_cli(other, "models", "fingerprint-import", "tiny-qwen2", str(tmp_path / "missing.json"), "--json")
    assert bad.returncode == 1 and last_json(bad)["error"]["code"] == "bad_request"

    accepted = last_json(pool_cli(state, "models", "fingerprint", "tiny-llama", "--accept", "--json"))
    assert accepted["recorded"] is True and accepted["fingerprint"]["recorded_at"] != rep["fingerprint"]["recorded_at"]
    # float32 on the same machine: the same numbers again
    assert [s["token_id"] for p in accepted["fingerprint"]["prompts"] for s in p["steps"]] == \
           [s.token_id for p in fp.prompts for s in p.steps]
