"""The parity certificate and the environment in every report and in the TUI's grid, from hand-built
ParityResult values (the real ones come from a run against a recorded fingerprint)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from llorch_tui.matrix.headless import cell_line
from llorch_tui.matrix.reports import write_reports
from llorch_tui.matrix.reports.markdown import markdown_report
from llorch_tui.protocol.matrix import CellKey, CellResult, MatrixReport, RunSummary
from llorch_tui.protocol.parity import Divergence, EnvFingerprint, GoldenOutcome, ParityResult
from llorch_tui.tui.core.matrix_grid import DRIFT_STYLE, STYLE, MatrixGrid

ENV = EnvFingerprint(llorch_version="0.1.0", python="3.11.2", torch="2.13.0", transformers="5.0.0", os="Linux 6.1",
                     kernel="6.1", cpu="EPYC", model_sha256="c" * 64)
TOL = {"max_logprob_delta": 0.05, "perplexity_ratio": 0.01}
GOLDEN = [GoldenOutcome(prompt_id="capital", question="capital of France?", expected="Paris", answer="Paris.", ok=True),
          GoldenOutcome(prompt_id="sum", question="2+2?", expected="4", answer="five", ok=False)]


def _report() -> MatrixReport:
    div = Divergence(prompt_id="story", position=11, reference_token=" cat", got_token=" dog", reference_margin=1.7)
    cells = [
        CellResult(key=CellKey(pool="local", backend="cpu", model="smol", dtype="float32"), verdict="pass",
                   environment=ENV.model_copy(update={"dtype": "float32"}),
                   parity=ParityResult(verdict="pass", dtype="float32", tokens_agreed=128, tokens_total=128,
                                       max_logprob_delta=0.0004, perplexity_ratio=1.0, golden_passed=2,
                                       golden_total=2, tolerances=TOL)),
        CellResult(key=CellKey(pool="local", backend="cpu", model="smol", dtype="bfloat16"), verdict="fail",
                   reason_code="parity_drift", reason="story token 11: ' dog' instead of ' cat'; the weights changed",
                   environment=ENV.model_copy(update={"dtype": "bfloat16"}),
                   parity=ParityResult(verdict="parity_drift", dtype="bfloat16", tokens_agreed=75, tokens_total=128,
                                       first_divergence=div, max_logprob_delta=0.81, perplexity_ratio=1.093,
                                       golden_passed=1, golden_total=2, golden=GOLDEN, weights_changed=True,
                                       weights_sha256="d" * 64, tolerances={"max_logprob_delta": 0.3})),
        CellResult(key=CellKey(pool="local", backend="cpu", model="tiny-llama", dtype="float32"), verdict="pass",
                   environment=ENV.model_copy(update={"dtype": "float32", "model_sha256": "e" * 64}),
                   parity=ParityResult(verdict="pass", dtype="float32", tokens_agreed=64, tokens_total=64,
                                       golden_skipped_reason="synthetic random weights")),
        CellResult(key=CellKey(pool="local", backend="cuda", model="smol", dtype="float32"), verdict="skipped",
                   reason_code="backend_absent", reason="pool local has no usable cuda backend"),
    ]
    return MatrixReport(started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), cells=cells,
                        summary=RunSummary(passed=2, failed=1, skipped=1))


def test_markdown_parity_section_and_drift_in_the_grid() -> None:
    md = markdown_report(_report())
    assert "| smol | ✅ | ⚠️ parity_drift [1] | ⏭ [2] |" in md  # grid row (no tok/s known)
    assert "⚠️ runs but drifted from its reference" in md
    section = md[md.index("## Parity"):]
    rows = [l for l in section.splitlines() if l.startswith("| smol") or l.startswith("| tiny-llama")]
    assert rows[0] == ("| smol | local/cpu/bfloat16 | ⚠️ drift · weights changed | 75/128 | story token 11: ' dog' "
                       "instead of ' cat' (reference margin 1.7) | 0.81 | 1.0930 | 1/2 (failed: sum) |")
    assert rows[1] == "| smol | local/cpu/float32 | ✅ pass | 128/128 | none | 0.0004 | 1.0000 | 2/2 |"
    assert rows[2] == "| tiny-llama | local/cpu/float32 | ✅ pass | 64/64 | none | — | — | skipped: synthetic random weights |"
    assert "Tolerances applied: bfloat16: max_logprob_delta 0.3; float32: max_logprob_delta 0.05, perplexity_ratio 0.01" in md
    env = md[md.index("## Environment"):]
    assert "| `local/cpu:float32` | llorch 0.1.0, Python 3.11.2, torch 2.13.0, transformers 5.0.0, dtype float32 " \
           "| OS Linux 6.1, CPU EPYC |" in env  # two models, one environment: one row
    assert "`local/cpu:bfloat16`" in env


def test_json_and_junit_carry_the_certificate(tmp_path: Path) -> None:
    paths = write_reports(_report(), tmp_path)
    back = MatrixReport.model_validate_json(Path(paths["json"]).read_text())
    drift = back.cells[1].parity
    assert drift is not None and drift.first_divergence is not None and drift.first_divergence.got_token == " dog"
    assert back.cells[1].key.dtype == "bfloat16" and back.cells[1].environment == _report().cells[1].environment
    root = ET.fromstring(Path(paths["junit"]).read_text())
    case = next(c for c in root.iter("testcase") if c.get("classname") == "llorch.matrix.local.cpu.bfloat16")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["parity.verdict"] == "parity_drift" and props["parity.tokens_agreed"] == "75"
    assert props["parity.first_divergence"].startswith("story token 11: ' dog' instead of ' cat'")
    assert props["parity.max_logprob_delta"] == "0.81" and props["parity.weights_changed"] == "true"
    assert props["parity.golden_passed"] == "1" and props["parity.tolerance.max_logprob_delta"] == "0.3"
    assert props["dtype"] == "bfloat16" and props["env.torch"] == "2.13.0" and props["env.cpu"] == "EPYC"
    assert case.find("failure").get("type") == "parity_drift"  # type: ignore[union-attr]


def test_tui_grid_colours_drift_apart_and_details_it() -> None:
    from llorch_tui.matrix.events import CellFinished, PlanReady

    report = _report()
    grid = MatrixGrid()
    grid.apply(PlanReady(cells=[c.key for c in report.cells], pools=[]))
    assert grid.columns == ["local/cpu:bfloat16", "local/cpu:float32", "local/cuda:float32"]
    for c in report.cells:
        grid.apply(CellFinished(result=c))
    drift = grid.cell_text("local/cpu:bfloat16/smol")
    # The grid says it in a word; the code, reason and evidence are in the detail.
    assert drift.plain == "≈ drift" and str(drift.style) == DRIFT_STYLE != STYLE["fail"]
    assert str(grid.cell_text("local/cpu:float32/smol").style) == STYLE["pass"]
    assert grid.drifted() == 1 and grid.counts()["fail"] == 1
    detail = grid.detail("local/cpu:bfloat16/smol")
    assert detail.startswith("### smol on local/cpu:bfloat16: fail") and "(parity_drift)" in detail
    assert "**parity**: parity ⚠️ drift · tokens agreed 75/128 · first divergence story token 11" in detail
    assert "weights changed since the reference was recorded (now sha256 dddddddddddd)" in detail
    assert "**environment**: llorch 0.1.0 · Python 3.11.2 · torch 2.13.0" in detail and "dtype bfloat16" in detail


def test_headless_line_carries_the_certificate() -> None:
    ok, drift, synthetic, _skip = _report().cells
    assert cell_line(ok) == "PASS  local/cpu:float32/smol  [parity pass 128/128 tokens, max Δ 0.0004, ppl ×1.0000, golden 2/2]"
    assert cell_line(drift).startswith("FAIL  local/cpu:bfloat16/smol  parity_drift: story token 11")
    assert cell_line(drift).endswith("[parity parity_drift 75/128 tokens, max Δ 0.81, ppl ×1.0930, golden 1/2, "
                                     "weights changed]")
    assert cell_line(synthetic).endswith("[parity pass 64/64 tokens]")
