"""The real SmolLM2-135M-Instruct through worker → matrix → reports, on cpu float32 and bfloat16:
golden answers and parity figures; then the logit-noise fault on the unchanged model, and one weight
tensor perturbed slightly (the model still answers fluently): both fail with parity_drift, the second
naming the first divergent token and that the weights changed, and the diff report flags it.

The certified run is the session's `smollm2_certified` (shared with tests/matrix, read-only); the fault and
the perturbation run on a private copy of its pool and reports. The tests run in file order: the
perturbation comes last because it changes that copy's weights."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from parity_helpers import run_matrix

from llorch_tui.paths import PoolPaths
from llorch_tui.pool.catalog_store import CatalogStore
from llorch_tui.protocol.matrix import MatrixReport

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the first test may pay the shared run
F32, BF16 = "local/cpu:float32/smollm2", "local/cpu:bfloat16/smollm2"
# a tensor in the middle of the network, moved by 10 % of its own spread: answers stay fluent and right
PERTURBED_TENSOR, PERTURB_SCALE = "model.layers.10.mlp.down_proj.weight", 0.1


@dataclass
class Smol:
    state: Path
    model_dir: Path      # the pool's own copy: links to the shared read-only checkpoint
    reports: Path


@pytest.fixture(scope="module")
def smol(smollm2_certified, make_smollm2_pool, tmp_path_factory: pytest.TempPathFactory) -> Smol:  # type: ignore[no-untyped-def]
    """A private copy of the certified pool (same reference) and of its reports, for the runs below."""
    return Smol(*smollm2_certified.private_copy(make_smollm2_pool, tmp_path_factory.mktemp("smollm2-own")))


def test_float32_and_bfloat16_answer_right_and_match_the_reference(smollm2_certified) -> None:  # type: ignore[no-untyped-def]
    run = smollm2_certified.run
    assert run.rc == 0, run.stderr_lines[-30:]
    assert any(f".. {F32}: parity (no reference fingerprint for smollm2 yet: recording it from this cpu float32 "
               "worker)" == line for line in run.stderr_lines), run.stderr_lines
    f32, bf16 = smollm2_certified.results[F32], smollm2_certified.results[BF16]
    for cell in (f32, bf16):
        assert cell.verdict == "pass", (cell.key.id, cell.reason_code, cell.reason)
        p = cell.parity
        assert p is not None and p.verdict == "pass" and not p.weights_changed
        assert p.golden_total == 5 and p.golden_passed == 5, [(g.question, g.answer) for g in p.golden]
        answers = {g.prompt_id: g.answer for g in p.golden}
        assert "Paris" in answers["capital-france"] and "4" in answers["two-plus-two"]
        assert p.tokens_total == 160 and p.tokens_agreed == 160
    p32, p16 = f32.parity, bf16.parity
    assert p32 is not None and p16 is not None
    assert (p32.dtype, p16.dtype) == ("float32", "bfloat16")
    # float32 against its own float32 reference: rounding only
    assert p32.max_logprob_delta is not None and p32.max_logprob_delta < 1e-3
    assert p32.perplexity_ratio == pytest.approx(1.0, abs=1e-4) and p32.tokens_tied == 0
    # bfloat16 is another numeric path: it moves the numbers, within its tolerance
    assert p16.max_logprob_delta is not None and 0.01 < p16.max_logprob_delta <= p16.tolerances["max_logprob_delta"]
    assert p16.perplexity_ratio is not None and abs(p16.perplexity_ratio - 1) <= p16.tolerances["perplexity_ratio"]
    assert p16.tolerances["max_logprob_delta"] > p32.tolerances["max_logprob_delta"]
    assert p32.perplexity is not None and 2 < p32.perplexity < 200
    fp = CatalogStore(PoolPaths(smollm2_certified.state), "local").get("smollm2").fingerprint
    assert fp is not None and (fp.backend, fp.dtype) == ("cpu", "float32") and fp.weights_sha256 == p32.weights_sha256
    assert fp.perplexity == pytest.approx(p32.perplexity, rel=1e-4)  # the cell compared with what it recorded


def test_reports_carry_the_certificate(smollm2_certified) -> None:  # type: ignore[no-untyped-def]
    reports = smollm2_certified.reports
    report = MatrixReport.model_validate_json((reports / "matrix.json").read_text())
    by = {c.key.id: c for c in report.cells}
    assert set(by) == {F32, BF16} and all(by[k].parity is not None for k in by)
    # the human cell lines the runner printed from its results say what the report holds
    for key, cell in by.items():
        p = cell.parity
        assert p is not None
        line = next(l for l in smollm2_certified.run.stdout_lines if l.startswith(f"PASS  {key}  "))
        assert f"[parity pass {p.tokens_agreed}/{p.tokens_total} tokens" in line
        assert f"golden {p.golden_passed}/{p.golden_total}]" in line
    md = (reports / "matrix.md").read_text()
    assert "Parity" in md and "5/5" in md and "160/160" in md
    junit = (reports / "matrix.junit.xml").read_text()
    assert 'name="parity.golden_passed" value="5"' in junit


def test_fault_injection_on_the_unchanged_model_is_parity_drift(smol: Smol, tmp_path: Path) -> None:
    results, _ = asyncio.run(run_matrix(smol.state, tmp_path / "fault", env={"LLORCH_WORKER_FAULT_LOGIT_NOISE": "0.5"},
                                        models=["smollm2"], dtypes=["float32"]))
    cell = results[F32]
    assert cell.verdict == "fail" and cell.reason_code == "parity_drift", (cell.reason_code, cell.reason)
    p = cell.parity
    assert p is not None and not p.weights_changed and p.max_logprob_delta is not None and p.max_logprob_delta > 0.02
    assert "the weights changed" not in (cell.reason or "")


def test_perturbed_weights_are_parity_drift_and_named(smol: Smol) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    weights = smol.model_dir / "model.safetensors"
    tensors = load_file(str(weights))
    w = tensors[PERTURBED_TENSOR]
    noise = torch.randn(w.shape, generator=torch.Generator().manual_seed(0), dtype=w.dtype)
    tensors[PERTURBED_TENSOR] = (w + noise * w.std() * PERTURB_SCALE).contiguous()
    tmp = smol.model_dir / "model.safetensors.new"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, weights)  # replaces the link: the shared checkpoint stays as it was

    results, _ = asyncio.run(run_matrix(smol.state, smol.reports, models=["smollm2"], dtypes=["float32"]))
    cell = results[F32]
    assert cell.verdict == "fail" and cell.reason_code == "parity_drift", (cell.reason_code, cell.reason)
    p = cell.parity
    assert p is not None and p.weights_changed and p.weights_sha256 != p.reference_weights_sha256
    reason = cell.reason or ""
    assert reason.startswith("the weights changed since the reference was recorded")
    d = p.first_divergence
    assert d is not None and not d.tie
    assert f"reference {d.reference_token!r}" in reason and f"got {d.got_token!r}" in reason
    assert p.golden_passed == p.golden_total == 5  # still fluent and right: only the certificate sees it
    # never re-baselined: the stored reference is the original one, and the command says the weights changed
    entry = CatalogStore(PoolPaths(smol.state), "local").get("smollm2")
    assert entry.fingerprint is not None and entry.fingerprint.weights_sha256 == p.reference_weights_sha256
    shown = subprocess.run([sys.executable, "-m", "llorch_tui.pool.cli.main", "--state-dir", str(smol.state), "models",
                            "fingerprint", "smollm2", "--json"], capture_output=True, text=True, timeout=600)
    rep = json.loads(shown.stdout.strip().splitlines()[-1])
    assert rep["recorded"] is False and rep["weights_changed"] is True
    diff = json.loads((smol.reports / "matrix-diff.json").read_text())
    assert "parity_drift" in json.dumps(diff)
    assert "parity_drift" in (smol.reports / "matrix-diff.md").read_text()
