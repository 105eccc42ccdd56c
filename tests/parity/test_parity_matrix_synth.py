"""The parity certificate through the real matrix engine, agent and worker, on a synthetic model:
the reference is recorded automatically by the first cpu float32 cell (said in the event log), later
runs compare against it, and the logit-noise fault injection on an unchanged model is parity_drift."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from parity_helpers import run_matrix

from llorch_tui.paths import PoolPaths
from llorch_tui.pool.catalog_store import CatalogStore

pytestmark = pytest.mark.slow


async def test_recorded_then_certified_then_fault_drifts(make_pool, tmp_path: Path) -> None:
    state = make_pool(models=("llama",))
    results, details = await run_matrix(state, tmp_path / "r1", models=["tiny-llama"])
    cell = results["local/cpu/tiny-llama"]
    assert cell.verdict == "pass", (cell.reason_code, cell.reason)
    p = cell.parity
    assert p is not None and p.verdict == "pass"
    assert any("no reference fingerprint for tiny-llama yet: recording it from this cpu float32 worker" in d
               for d in details), details
    assert p.reason is not None and p.reason.startswith("reference recorded by this cell")
    assert p.tokens_total == 5 * 32 and p.tokens_agreed == p.tokens_total
    assert p.max_logprob_delta is not None and p.max_logprob_delta < 1e-3
    assert p.perplexity_ratio == pytest.approx(1.0, abs=1e-4)
    assert p.golden_total == 0 and p.golden_skipped_reason and "synthetic" in p.golden_skipped_reason
    assert not p.weights_changed and p.weights_sha256 == p.reference_weights_sha256
    assert cell.measurements.parity_s is not None and cell.measurements.parity_s > 0
    entry = CatalogStore(PoolPaths(state), "local").get("tiny-llama")
    assert entry.fingerprint is not None and entry.fingerprint.weights_sha256 == p.weights_sha256
    assert len(entry.fingerprint.prompts) == 5 and all(len(fp.steps) == 32 for fp in entry.fingerprint.prompts)
    assert any(fp.chat for fp in entry.fingerprint.prompts) and any(not fp.chat for fp in entry.fingerprint.prompts)
    recorded_at = entry.fingerprint.recorded_at

    # the same worker code with noise on its logits: deterministic, generating, and wrong
    # (into the same report directory: the diff against the first run must flag it)
    results, details = await run_matrix(state, tmp_path / "r1", env={"LLORCH_WORKER_FAULT_LOGIT_NOISE": "1.0"},
                                        models=["tiny-llama"])
    cell = results["local/cpu/tiny-llama"]
    assert cell.verdict == "fail" and cell.reason_code == "parity_drift", (cell.reason_code, cell.reason)
    p = cell.parity
    assert p is not None and p.verdict == "parity_drift" and not p.weights_changed
    assert p.max_logprob_delta is not None and p.max_logprob_delta > 0.02
    assert p.first_divergence is not None and not p.first_divergence.tie
    d = p.first_divergence
    assert f"reference {d.reference_token!r}" in (cell.reason or "") and f"got {d.got_token!r}" in (cell.reason or "")
    assert "max |Δ log-prob|" in (cell.reason or "") and cell.hint and "--accept" in cell.hint
    # never re-baselined: the stored reference is the first one
    entry = CatalogStore(PoolPaths(state), "local").get("tiny-llama")
    assert entry.fingerprint is not None and entry.fingerprint.recorded_at == recorded_at
    assert not any("recording" in x for x in details)
    # the reports: the drifted cell apart in the grid, its certificate, and the sentinel naming the cause
    md = (tmp_path / "r1" / "matrix.md").read_text()
    assert "| tiny-llama | ⚠️ parity_drift [1] |" in md
    assert any(l.startswith("| tiny-llama | local/cpu/float32 | ⚠️ drift |") for l in md.splitlines()), md
    (sentinel,) = json.loads((tmp_path / "r1" / "matrix-diff.json").read_text())["sentinel"]
    assert sentinel["correctness"][:2] == ["verdict pass → fail (parity_drift)", "parity pass → parity_drift"]
    assert sentinel["environment"] == ["fault injection none → logit_noise=1"]
    assert cell.environment is not None and cell.environment.faults == "logit_noise=1"
    props = {e.get("name"): e.get("value") for e in ET.parse(tmp_path / "r1" / "matrix.junit.xml").iter("property")}
    assert props["parity.verdict"] == "parity_drift" and props["env.faults"] == "logit_noise=1"


async def test_no_parity_option_skips_the_certificate(make_pool) -> None:
    state = make_pool(models=("qwen2",))
    results, _ = await run_matrix(state, None, models=["tiny-qwen2"], parity=False)
    cell = results["local/cpu/tiny-qwen2"]
    assert cell.verdict == "pass" and cell.parity is None
    assert CatalogStore(PoolPaths(state), "local").get("tiny-qwen2").fingerprint is None
