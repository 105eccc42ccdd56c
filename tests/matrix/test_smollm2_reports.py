"""The real SmolLM2-135M-Instruct through worker → matrix → reports on cpu, in float32 and bfloat16: both
cells certified against the reference their run records (golden answers right, parity figures within the
dtype's tolerances), and every report shows it — the Parity section, JUnit properties, the environment.
The run is the session's `smollm2_certified` (shared with tests/parity)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from matrix_helpers import worker_processes

from llorch_tui.parity.tolerances import for_dtype
from llorch_tui.protocol.matrix import MatrixReport

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def test_real_model_in_two_dtypes_is_certified_in_every_report(smollm2_certified) -> None:  # type: ignore[no-untyped-def]
    state, reports, run = smollm2_certified.state, smollm2_certified.reports, smollm2_certified.run
    assert run.rc == 0, (run.stdout_lines, run.stderr_lines[-30:])
    assert run.stdout_lines[-1] == "Test Results: 2 passed, 0 failed, 0 skipped"
    report = MatrixReport.model_validate_json((reports / "matrix.json").read_text())
    cells = {c.key.dtype: c for c in report.cells}
    for dtype, cell in cells.items():
        p = cell.parity
        assert p is not None and p.verdict == "pass", (dtype, p)
        assert (p.golden_passed, p.golden_total) == (5, 5), p.golden
        tol = for_dtype(dtype)
        assert p.max_logprob_delta is not None and p.max_logprob_delta <= tol.max_logprob_delta
        assert p.perplexity_ratio is not None and abs(p.perplexity_ratio - 1) <= tol.perplexity_ratio
        assert p.tokens_total == 160 and not p.weights_changed
        assert cell.environment is not None and cell.environment.dtype == dtype
        assert cell.environment.model_sha256 == p.weights_sha256  # one hash: the agent's measurement
        line = next(l for l in run.stdout_lines if l.startswith(f"PASS  local/cpu:{dtype}/smollm2  "))
        assert f"[parity pass {p.tokens_agreed}/160 tokens" in line and "golden 5/5]" in line
    f32 = cells["float32"].parity
    assert f32 is not None and f32.tokens_agreed == 160 and f32.max_logprob_delta is not None
    assert f32.max_logprob_delta < 1e-3  # the reference path against itself
    md = (reports / "matrix.md").read_text()
    rows = {l.split(" | ")[1]: l for l in md[md.index("## Parity"):].splitlines() if l.startswith("| smollm2 |")}
    assert set(rows) == {"local/cpu/float32", "local/cpu/bfloat16"}
    assert rows["local/cpu/float32"].endswith(" | 5/5 |") and "| ✅ pass | 160/160 |" in rows["local/cpu/float32"]
    assert "Tolerances applied: bfloat16: " in md
    props = {(c.get("classname"), p.get("name")): p.get("value")
             for c in ET.parse(reports / "matrix.junit.xml").iter("testcase") for p in c.iter("property")}
    assert props[("llorch.matrix.local.cpu.bfloat16", "parity.golden_passed")] == "5"
    assert props[("llorch.matrix.local.cpu.float32", "parity.tokens_agreed")] == "160"
    assert worker_processes(state) == []
